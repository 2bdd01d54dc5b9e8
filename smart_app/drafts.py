"""Plan drafts: one desensitization being planned in an app session, kept server-side.

A :class:`PlanDraft` holds what the clinician chose (drug, target dose, protocol and its settings,
inserted steps, risk answers, confirmations and override), never computed numbers: every page and
the signing step recompute the plan from it through the engine and the safety invariants
(:func:`plan_for`). Drafts live in the session store (kind ``"draft"``, key ``"<sid>:<draft_id>"``,
encrypted like the sessions) for the session's lifetime; a draft id is only found with the session
id that created it, so another session's draft is "not found".

The edit functions (``with_*``) take the posted form, check it and return a new draft, raising
:class:`InputError` named after the form field; the caller recomputes the plan before saving, so an
edit that the engine or the invariants refuse leaves the stored draft unchanged.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import Flask, current_app

from fhir_desens.errors import ConfigurationError, DesensError, InputError
from fhir_desens.fhir.allergy import Allergy
from fhir_desens.fhir.chart import allergen_ref
from fhir_desens.protocol.bsa import body_surface_area, dose_for_bsa
from fhir_desens.protocol.calculate import Plan, PlanRequest, compute_plan
from fhir_desens.protocol.crossreactivity import AllergyMatch, DrugRef, match_allergies
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.model import ClosingMethod, Protocol, ProtocolKind, TargetKind
from fhir_desens.protocol.quantity import (
    Dimension,
    Quantity,
    display,
    parse_decimal,
    parse_quantity,
    plain,
    unit,
)
from fhir_desens.protocol.risk import ProtocolSuggestion, RiskAnswers, suggest_protocol
from fhir_desens.protocol.screening import ScreeningResult
from smart_app.app_session import AppSession
from smart_app.patient_view import screen
from smart_app.planning import (
    DILUENTS,
    CopiedSettings,
    StartChoice,
    checkbox,
    choice,
    clean_text,
    number,
    options_for,
)
from smart_app.services import services

log = logging.getLogger(__name__)

DRAFT_KIND = "draft"
LIBRARY_EXTENSION = "fhir_desens.protocol_library"
LIBRARY_VARIABLE = "FHIR_DESENS_PROTOCOL_LIBRARY"
_DRAFT_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
MIN_OVERRIDE_REASON = 20
MAX_OVERRIDE_REASON = 2000


class DraftNotFound(DesensError):
    """No draft with this id in this app session (unknown, expired, or another session's)."""

    exit_code = 2
    http_status = 404

    def __init__(self) -> None:
        super().__init__(
            "This plan was not found in this app session (it may have expired). "
            "Start a new plan from the patient page."
        )


@dataclass(frozen=True)
class PlanDraft:
    draft_id: str
    patient: str  # "Patient/<id>"
    drug: str
    drug_rxnorm: tuple[str, ...]
    indication: str | None
    target: str  # the total dose after any BSA step, e.g. "400 mg"
    dose_basis: str | None  # e.g. "75 mg/m² × BSA 1.82 m² (Mosteller; ...)"
    protocol_id: str
    final_rate_ml_h: str | None  # None: the protocol's default
    bag_volume_ml: str | None
    diluent: str | None  # a key of planning.DILUENTS; None: the protocol's text
    closing: str | None  # a ClosingMethod value; None: the protocol's default
    insert_before: tuple[int, ...]  # protocol step numbers with an intermediate step before them
    risk: dict[str, Any]  # the risk answers and the suggestion made from them
    unlisted_confirmed: bool
    override_reason: str | None
    copied_from: str | None  # RequestGroup id of the signed plan this one was copied from
    created_at: float
    route: str | None = None  # of the drug as ordered ("oral", "intravenous")
    order_reference: str | None = None  # "MedicationRequest/<id>" the drug was chosen from
    dose_per_m2: str | None = None  # e.g. "75 mg/m2" when dosed by body surface area
    height_cm: str | None = None
    weight_kg: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drug_rxnorm"] = list(self.drug_rxnorm)
        data["insert_before"] = list(self.insert_before)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanDraft:
        values = dict(data)
        values["drug_rxnorm"] = tuple(str(c) for c in values.get("drug_rxnorm") or ())
        values["insert_before"] = tuple(int(n) for n in values.get("insert_before") or ())
        values["risk"] = dict(values.get("risk") or {})
        values["unlisted_confirmed"] = bool(values.get("unlisted_confirmed"))
        values["created_at"] = float(values["created_at"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})


def new_draft_id() -> str:
    return secrets.token_urlsafe(16)  # 22 characters, 128 bits


def _store_key(sid: str, draft_id: str) -> str:
    return f"{sid}:{draft_id}"


def save_draft(sid: str, draft: PlanDraft) -> None:
    if not _DRAFT_ID.match(draft.draft_id):
        raise ValueError("malformed draft id")
    svc = services()
    svc.store.put(DRAFT_KIND, _store_key(sid, draft.draft_id), draft.to_dict(), ttl=svc.settings.session_ttl)


def load_draft(sid: str, draft_id: str) -> PlanDraft:
    """The draft of this session, or :class:`DraftNotFound` (HTTP 404)."""
    if not _DRAFT_ID.match(draft_id):
        raise DraftNotFound()
    data = services().store.get(DRAFT_KIND, _store_key(sid, draft_id))
    if data is None:
        raise DraftNotFound()
    try:
        draft = PlanDraft.from_dict(data)
    except (KeyError, TypeError, ValueError):
        log.warning("unreadable draft record")
        raise DraftNotFound() from None
    if draft.draft_id != draft_id:
        raise DraftNotFound()
    return draft


# --- the protocol library -------------------------------------------------------------------------


def load_library(path: str | None) -> dict[str, Protocol]:
    """The built-in protocols plus those of the imported library; refuses a bad library whole."""
    protocols = dict(builtin_protocols())
    if not path:
        return protocols
    source = Path(path)
    if not source.exists():
        raise ConfigurationError(
            f"{LIBRARY_VARIABLE}: {source} does not exist (a file or a folder is expected)"
        )
    from fhir_desens.exchange.library import read_protocols  # only deployments with a library need it

    try:
        imported = read_protocols(source)
    except (DesensError, OSError, ValueError) as error:
        raise ConfigurationError(f"{LIBRARY_VARIABLE}: {source}: {error}") from None
    if not imported:
        raise ConfigurationError(
            f"{LIBRARY_VARIABLE}: {source}: no protocol (PlanDefinition of our profile) found"
        )
    for protocol in imported:
        if protocol.id in protocols:
            raise ConfigurationError(
                f"{LIBRARY_VARIABLE}: {source}: protocol id '{protocol.id}' is already in the library"
            )
        protocols[protocol.id] = protocol
    return protocols


def init_library(app: Flask, path: str | None) -> None:
    """Read the library once at app start (so a bad library stops the app, not a clinician)."""
    app.extensions[LIBRARY_EXTENSION] = load_library(path)


def library() -> Mapping[str, Protocol]:
    """The app's protocols by id: built-ins, then imported ones."""
    protocols: Mapping[str, Protocol] | None = current_app.extensions.get(LIBRARY_EXTENSION)
    return protocols if protocols is not None else builtin_protocols()


# --- from a draft to a plan ---------------------------------------------------------------------


def _decimal(text: str | None, field_name: str) -> Decimal | None:
    return None if text is None else parse_decimal(text, field_name)


def _written_for(protocol: Protocol, drug: str) -> bool:
    name = drug.lower()
    return any(d.lower() in name or name in d.lower() for d in protocol.drugs)


def _with_diluent(protocol: Protocol, diluent: str) -> Protocol:
    solutions = tuple(s if s.solid else replace(s, diluent=diluent) for s in protocol.solutions)
    return replace(protocol, solutions=solutions)


def plan_request_for(draft: PlanDraft, protocols: Mapping[str, Protocol]) -> PlanRequest:
    """The engine request a draft stands for; InputError names the form field at fault."""
    protocol = protocols.get(draft.protocol_id)
    if protocol is None:
        raise InputError("protocol", f"unknown protocol '{draft.protocol_id}'", "a protocol of the library")
    target = parse_quantity(draft.target, "target_dose")
    fixed = protocol.kind is ProtocolKind.DISCRETE and protocol.fixed_doses
    if fixed:
        # Fixed-dose protocols (oral penicillin, aspirin...) give their own doses; the target typed
        # is then the therapeutic dose that follows, and must at least be of the same kind.
        if target.dimension not in protocol.dose_dimensions:
            kinds = " or ".join(d.value for d in protocol.dose_dimensions)
            raise InputError(
                "protocol",
                f"protocol {protocol.id} gives fixed doses in {kinds}; the target dose is {target}",
                "a protocol that doses in the target's unit",
            )
        if protocol.drugs and not _written_for(protocol, draft.drug):
            raise InputError(
                "protocol",
                f"protocol {protocol.id} gives fixed doses of {', '.join(protocol.drugs)}, not {draft.drug}",
                "a protocol written for this drug, or for any drug",
            )
    if draft.diluent is not None:
        if draft.diluent not in DILUENTS:
            raise InputError("diluent", f"unknown diluent '{draft.diluent}'", ", ".join(DILUENTS.values()))
        protocol = _with_diluent(protocol, DILUENTS[draft.diluent])
    return PlanRequest(
        protocol=protocol,
        drug=draft.drug,
        target=None if fixed else target,
        final_rate_ml_h=_decimal(draft.final_rate_ml_h, "final_rate"),
        bag_volume_ml=_decimal(draft.bag_volume_ml, "bag_volume"),
        closing=None if draft.closing is None else ClosingMethod.parse(draft.closing),
        insert_before=draft.insert_before,
    )


def plan_for(draft: PlanDraft) -> Plan:
    """The exact plan of a draft; InputError / SafetyViolation when it cannot be planned safely.

    ``compute_plan`` runs every safety invariant (``invariants.check_plan``) before it returns.
    """
    return compute_plan(plan_request_for(draft, library()))


def fixed_dose_note(draft: PlanDraft, plan: Plan) -> str | None:
    """Say so when a fixed-dose protocol's total is not the target dose that was typed."""
    target = parse_quantity(draft.target, "target_dose")
    if plan.request.target is not None or target.canonical() == plan.target_dose:
        return None
    kind = "final dose" if plan.protocol.target_kind is TargetKind.FINAL_DOSE else "total"
    return (
        f"Protocol {plan.protocol.id} gives fixed doses: its {kind} is {plan.target_dose}. "
        f"The target dose entered ({draft.target}) is the therapeutic dose to give after the protocol."
    )


# --- starting a draft ---------------------------------------------------------------------------


def resolve_target(start: StartChoice) -> tuple[Quantity, str | None]:
    """The total dose (after the BSA step for per-m² doses) and how it was obtained."""
    dose = start.dose
    if unit(dose.unit).dimension is not Dimension.DOSE_PER_AREA:
        return dose, None
    assert start.height_cm is not None and start.weight_kg is not None
    bsa = body_surface_area(start.height_cm, start.weight_kg, "mosteller")
    total = dose_for_bsa(dose, bsa)
    basis = (
        f"{plain(dose.value)} {unit(dose.unit).display} × BSA {display(bsa.value_m2, 2)} m² "
        f"({bsa.formula_name} formula, height {plain(start.height_cm)} cm, weight {plain(start.weight_kg)} kg; "
        "the dose uses the exact BSA)"
    )
    return total, basis


def risk_answers(draft: PlanDraft) -> RiskAnswers:
    grade = draft.risk.get("grade")
    return RiskAnswers(
        grade=int(grade) if isinstance(grade, int) else None,
        hypotension_or_hypoxia=bool(draft.risk.get("hypotension_or_hypoxia")),
        cardiac_or_beta_blocker=bool(draft.risk.get("cardiac_or_beta_blocker")),
        fev1_below_80=bool(draft.risk.get("fev1_below_80")),
    )


def suggestion_for(draft: PlanDraft, protocols: Mapping[str, Protocol]) -> ProtocolSuggestion:
    drug = DrugRef(draft.drug, draft.drug_rxnorm)
    return suggest_protocol(risk_answers(draft), drug, draft.route, protocols)


def draft_from_start(
    start: StartChoice,
    *,
    patient: str,
    protocols: Mapping[str, Protocol],
    created_at: float,
    copied: CopiedSettings | None = None,
) -> PlanDraft:
    """A new draft: the suggested protocol (or the copied plan's), protocol defaults otherwise."""
    target, basis = resolve_target(start)
    suggestion = suggest_protocol(start.risk, DrugRef(start.drug, start.drug_rxnorm), start.route, protocols)
    protocol_id = suggestion.protocol_id
    if copied is not None and copied.protocol_id is not None and copied.protocol_id in protocols:
        protocol_id = copied.protocol_id
    risk = {
        "grade": start.risk.grade,
        "hypotension_or_hypoxia": start.risk.hypotension_or_hypoxia,
        "cardiac_or_beta_blocker": start.risk.cardiac_or_beta_blocker,
        "fev1_below_80": start.risk.fev1_below_80,
        "suggested_protocol": suggestion.protocol_id,
        "high_risk": suggestion.high_risk,
        "reasons": list(suggestion.reasons),
    }
    use_copy = copied is not None and protocol_id == copied.protocol_id
    return PlanDraft(
        draft_id=new_draft_id(),
        patient=patient,
        drug=start.drug,
        drug_rxnorm=start.drug_rxnorm,
        indication=start.indication,
        target=str(target),
        dose_basis=basis,
        protocol_id=protocol_id,
        final_rate_ml_h=copied.final_rate_ml_h if use_copy and copied else None,
        bag_volume_ml=copied.bag_volume_ml if use_copy and copied else None,
        diluent=copied.diluent if use_copy and copied and copied.diluent in DILUENTS else None,
        closing=copied.closing if use_copy and copied else None,
        insert_before=copied.insert_before if use_copy and copied else (),
        risk=risk,
        unlisted_confirmed=False,
        override_reason=None,
        copied_from=copied.request_group if copied else None,
        created_at=created_at,
        route=start.route,
        order_reference=start.order_reference,
        dose_per_m2=str(start.dose) if basis else None,
        height_cm=None if start.height_cm is None or not basis else plain(start.height_cm),
        weight_kg=None if start.weight_kg is None or not basis else plain(start.weight_kg),
    )


# --- edits from the plan page ----------------------------------------------------------------------


def _posted_number(form: Mapping[str, str], name: str, *, switched: bool) -> str | None:
    """A number field of the protocol form; absent after a protocol switch means "the default"."""
    if switched and not (form.get(name) or "").strip():
        return None
    value = number(form, name)
    return None if value is None else plain(value)


def with_protocol_settings(
    draft: PlanDraft, form: Mapping[str, str], protocols: Mapping[str, Protocol]
) -> PlanDraft:
    """The "Recalculate" form: protocol, final rate, bag volume, diluent, closing method."""
    protocol_id = choice(form, "protocol", protocols)
    protocol = protocols[protocol_id]
    switched = protocol_id != draft.protocol_id
    options = options_for(protocol)
    final_rate = _posted_number(form, "final_rate", switched=switched) if options.final_rate else None
    bag_volume = _posted_number(form, "bag_volume", switched=switched) if options.bag_volume else None
    diluent: str | None = None
    if options.diluent:
        if switched and "diluent" not in form:
            diluent = None
        else:
            diluent = choice(form, "diluent", ["", *DILUENTS]) or None
    closing: str | None = None
    if options.closing:
        allowed = [c.value for c in options.closing]
        posted = form.get("closing", "")
        if switched and posted not in allowed:
            closing = None  # the previous protocol's method does not apply to this one
        else:
            closing = choice(form, "closing", ["", *allowed]) or None
    return replace(
        draft,
        protocol_id=protocol_id,
        final_rate_ml_h=final_rate,
        bag_volume_ml=bag_volume,
        diluent=diluent,
        closing=closing,
        insert_before=() if switched else draft.insert_before,
    )


def _step_number(form: Mapping[str, str], name: str, count: int) -> int:
    raw = (form.get(name) or "").strip()
    accepted = f"a step number from 1 to {count}"
    if not raw:
        raise InputError(name, "is empty", accepted)
    if not raw.isdigit() or len(raw) > 4:
        raise InputError(name, f"'{raw[:12]}' is not a step number", accepted)
    value = int(raw)
    if not 1 <= value <= count:
        raise InputError(name, f"there is no step {value} in this plan", accepted)
    return value


def _protocol_step(plan: Plan, number: int) -> int | None:
    """The protocol's own number of the plan's step ``number`` (None for an inserted step)."""
    return plan.steps[number - 1].protocol_step


def with_insertion(draft: PlanDraft, plan: Plan, form: Mapping[str, str]) -> PlanDraft:
    """ "Insert a step before step N" (N as numbered on the worksheet)."""
    if plan.protocol.kind is not ProtocolKind.INFUSION:
        raise InputError("insert_before", "steps can be inserted in infusion protocols only")
    number_ = _step_number(form, "insert_before", len(plan.steps))
    protocol_step = _protocol_step(plan, number_)
    if protocol_step is None:
        raise InputError(
            "insert_before",
            f"step {number_} is an inserted step",
            "the number of one of the protocol's own steps",
        )
    if protocol_step in draft.insert_before:
        raise InputError(
            "insert_before", f"a step is already inserted before step {number_}", "another step number"
        )
    return replace(draft, insert_before=tuple(sorted((*draft.insert_before, protocol_step))))


def without_insertion(draft: PlanDraft, plan: Plan, form: Mapping[str, str]) -> PlanDraft:
    """ "Remove inserted step N": the insertion before the protocol step that follows it."""
    number_ = _step_number(form, "remove", len(plan.steps))
    if not plan.steps[number_ - 1].inserted:
        raise InputError(
            "remove", f"step {number_} is not an inserted step", "the number of an inserted step"
        )
    before = _protocol_step(plan, number_ + 1) if number_ < len(plan.steps) else None
    if before is None or before not in draft.insert_before:
        raise InputError("remove", f"step {number_} cannot be matched to an insertion", "reload the page")
    return replace(draft, insert_before=tuple(n for n in draft.insert_before if n != before))


# --- allergy match, contraindication, signing conditions ------------------------------------------


@dataclass(frozen=True)
class MatchedAllergy:
    allergy: Allergy
    match: AllergyMatch
    screening: ScreeningResult | None

    @property
    def contraindicated(self) -> bool:
        return self.screening is not None and self.screening.contraindicated


@dataclass(frozen=True)
class Assessment:
    """The drug against the allergy list: matches, contraindication, documentation gap."""

    drug: str
    matched: tuple[MatchedAllergy, ...]
    allergy_list_read: bool  # False: the grant does not allow reading it (nothing could be checked)

    @property
    def unlisted(self) -> bool:
        """The drug is not on the allergy list (or the list could not be read)."""
        return not self.matched

    @property
    def contraindicated(self) -> bool:
        return any(m.contraindicated for m in self.matched)

    @property
    def contraindication_reasons(self) -> tuple[str, ...]:
        reasons: list[str] = []
        for matched in self.matched:
            if matched.screening is not None and matched.contraindicated:
                reasons.extend(r for r in matched.screening.reasons if r not in reasons)
        return tuple(reasons)


def _screenable(allergy: Allergy) -> bool:
    if not allergy.is_current or allergy.is_no_known_allergy or allergy.is_no_information:
        return False
    return allergy.is_drug or not allergy.categories


def assess(drug: DrugRef, allergies: Sequence[Allergy] | None) -> Assessment:
    """Match the drug against the current drug allergies and screen the matched ones (pure)."""
    if allergies is None:
        return Assessment(drug.name, (), allergy_list_read=False)
    by_key = {f"a{index}": allergy for index, allergy in enumerate(allergies) if _screenable(allergy)}
    refs = [allergen_ref(allergy, key) for key, allergy in by_key.items()]
    matched = tuple(
        MatchedAllergy(by_key[m.allergen.key], m, screen(by_key[m.allergen.key]))
        for m in match_allergies(drug, refs)
        if m.allergen.key in by_key
    )
    return Assessment(drug.name, matched, allergy_list_read=True)


def assessment_for(session: AppSession, draft: PlanDraft, *, fresh: bool = False) -> Assessment:
    """The draft's drug against the session's allergy list (briefly cached; ``fresh`` reads it from the
    EHR again, as signing does)."""
    return assess(DrugRef(draft.drug, draft.drug_rxnorm), session.allergies(fresh=fresh))


def signing_blockers(draft: PlanDraft, assessment: Assessment, can_write: bool) -> list[str]:
    """Why this draft may not be signed yet (empty: it may be signed)."""
    reasons: list[str] = []
    if assessment.contraindicated and not draft.override_reason:
        reasons.append(
            "Desensitization is contraindicated by a matched allergy: an expert override with its reason is needed."
        )
    if assessment.unlisted and not draft.unlisted_confirmed:
        if assessment.allergy_list_read:
            reasons.append(
                f"{draft.drug} is not on the allergy list: confirm the desensitization (and update the allergy "
                "record) first."
            )
        else:
            reasons.append(
                "The allergy list could not be read, so the drug could not be checked against it: confirm first."
            )
    if not can_write:
        reasons.append(
            "The EHR did not grant this app permission to write orders: print the worksheet and order it in the EHR."
        )
    return reasons


def with_unlisted_confirmed(draft: PlanDraft, assessment: Assessment, form: Mapping[str, str]) -> PlanDraft:
    if not assessment.unlisted:
        raise InputError("confirm_unlisted", "the drug is on the allergy list; there is nothing to confirm")
    if not checkbox(form, "confirm_unlisted"):
        raise InputError("confirm_unlisted", "the box is not ticked", "tick the box, then Confirm")
    return replace(draft, unlisted_confirmed=True)


def with_override(draft: PlanDraft, assessment: Assessment, form: Mapping[str, str]) -> PlanDraft:
    if not assessment.contraindicated:
        raise InputError("override_reason", "no contraindication was found; there is nothing to override")
    accepted = f"at least {MIN_OVERRIDE_REASON} characters saying why desensitization is still indicated"
    reason = clean_text(form, "override_reason", MAX_OVERRIDE_REASON)
    if reason is None:
        raise InputError("override_reason", "is empty", accepted)
    if len(reason) < MIN_OVERRIDE_REASON:
        raise InputError("override_reason", f"is only {len(reason)} characters long", accepted)
    return replace(draft, override_reason=reason)


__all__ = [
    "DRAFT_KIND",
    "Assessment",
    "CopiedSettings",
    "DraftNotFound",
    "MatchedAllergy",
    "PlanDraft",
    "assess",
    "assessment_for",
    "draft_from_start",
    "fixed_dose_note",
    "library",
    "load_draft",
    "load_library",
    "plan_for",
    "plan_request_for",
    "save_draft",
    "signing_blockers",
    "suggestion_for",
    "with_insertion",
    "with_override",
    "with_protocol_settings",
    "with_unlisted_confirmed",
    "without_insertion",
]
