"""A plan draft: what the clinician chose, never computed numbers, and the engine request it stands for.

A :class:`PlanDraft` holds the drug, the target dose, the protocol and its settings, inserted
steps, risk answers, confirmations and override. Every page and the signing step recompute the plan
from it through the engine and the safety invariants (:func:`plan_for`). Where drafts are kept
(the app's session store) is the host's business; this module is pure apart from the clock the
caller passes.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from typing import Any

from fhir_desens.course.drug_review import DILUENT_CHOICES, dose_rounding_for, plan_diluent
from fhir_desens.errors import (
    InputError,
)
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.bsa import (
    BSA_DISPLAY_PLACES,
    WEIGHT_PLACES,
    body_surface_area,
    rounded_dose_for_bsa,
    rounded_dose_for_weight,
)
from fhir_desens.protocol.calculate import Plan, PlanRequest, compute_plan
from fhir_desens.protocol.crossreactivity import DrugRef
from fhir_desens.protocol.model import ClosingMethod, Protocol, ProtocolKind, TargetKind
from fhir_desens.protocol.quantity import (
    Dimension,
    Quantity,
    parse_decimal,
    parse_quantity,
    per_area_dose_unit,
    per_weight_dose_unit,
    plain,
    unit,
)
from fhir_desens.protocol.risk import ProtocolSuggestion, RiskAnswers, suggest_protocol

#: Diluents the plan form offers (stored as the key on the draft); "" means the order's diluent, else
#: the drug's usual one (DRUG-DIL-2; ``fhir_desens/drugs/data/diluents.json``).
DILUENTS: dict[str, str] = dict(DILUENT_CHOICES)


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
    diluent: str | None  # a key of DILUENTS; None: the protocol's text
    closing: str | None  # a ClosingMethod value; None: the protocol's default
    insert_before: tuple[int, ...]  # protocol step numbers with an intermediate step before them
    risk: dict[str, Any]  # the risk answers and the suggestion made from them
    unlisted_confirmed: bool
    override_reason: str | None
    copied_from: str | None  # RequestGroup id of the signed plan this one was copied from
    created_at: float
    route: str | None = None  # of the drug as ordered ("oral", "intravenous")
    order_reference: str | None = None  # "MedicationRequest/<id>" the drug was chosen from
    dose_per_m2: str | None = None  # the dose as prescribed when per body size: "75 mg/m²", "15 mg/kg"
    height_cm: str | None = None
    weight_kg: str | None = None
    order_text: str | None = None  # the therapeutic order's wording (its diluent is the default one)
    ordered_dose: str | None = None  # the therapeutic order's dose, e.g. "400 mg"
    uncoded_confirmed: bool = False  # an unresolved drug name confirmed as uncoded (DRUG-NAME-2)
    overridden: str | None = None  # the contraindication overridden, e.g. "Stevens-Johnson syndrome, 2019"
    override_authority: str | None = None  # who authorised the override (OVERRIDE-1)
    # -- reconciliation with the chart and the clock (see course.therapeutic and course.lifecycle) --
    dose_reason: str | None = None  # why the target differs from the order by more than the tolerance
    keep_order_reason: str | None = None  # set: keep the therapeutic order active (else it is put on hold)
    duplicate_reason: str | None = None  # why a second active plan for the same drug is intended
    #: premedications the allergy list rules out, acknowledged as not to be given (PLAN-PREMED-1), and by whom
    premedications_withheld: tuple[str, ...] = ()
    premedications_withheld_by: str | None = None
    planned_start: str | None = None  # ISO date-time with offset, chosen in the site's time zone
    #: the pump steps (mL/h) the plan's rates are rounded to, fixed when the draft is made from the site's
    #: setting (so a setting changed later never changes a plan being checked); None: exact rates
    pump_resolution_ml_h: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drug_rxnorm"] = list(self.drug_rxnorm)
        data["insert_before"] = list(self.insert_before)
        data["premedications_withheld"] = list(self.premedications_withheld)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanDraft:
        values = dict(data)
        values["drug_rxnorm"] = tuple(str(c) for c in values.get("drug_rxnorm") or ())
        values["insert_before"] = tuple(int(n) for n in values.get("insert_before") or ())
        values["premedications_withheld"] = tuple(str(n) for n in values.get("premedications_withheld") or ())
        values["risk"] = dict(values.get("risk") or {})
        values["unlisted_confirmed"] = bool(values.get("unlisted_confirmed"))
        values["uncoded_confirmed"] = bool(values.get("uncoded_confirmed"))
        values["created_at"] = float(values["created_at"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})


def new_draft_id() -> str:
    return secrets.token_urlsafe(16)  # 22 characters, 128 bits


@dataclass(frozen=True)
class CopiedSettings:
    """What "Copy this plan" carries over from a signed plan (repeat courses): every parameter it
    recorded, or for a plan signed without them (``recorded=False``) what its orders show."""

    request_group: str  # the RequestGroup id
    protocol_id: str | None = None
    final_rate_ml_h: str | None = None
    bag_volume_ml: str | None = None
    closing: str | None = None
    drug: str | None = None
    drug_rxnorm: tuple[str, ...] = ()
    diluent: str | None = None  # a key of DILUENTS
    insert_before: tuple[int, ...] = ()
    indication: str | None = None
    target_dose: str | None = None  # as prescribed, e.g. "75" with dose_unit "mg/m2"
    dose_unit: str | None = None
    dose_basis: str | None = None  # how a per-m² dose became the signed total
    signed_on: str | None = None  # when it was signed, for people ("2027-01-15 09:00")
    #: False: the plan was signed without its parameters, and these were read back from its orders
    recorded: bool = True


@dataclass(frozen=True)
class StartChoice:
    """The start form, parsed: the drug, the target dose (after any BSA step) and the risk answers."""

    drug: str
    drug_rxnorm: tuple[str, ...]
    route: str | None
    order_reference: str | None
    indication: str | None
    dose: Quantity  # as typed (mg, g, ug, [iU] or mg/m2)
    height_cm: Decimal | None
    weight_kg: Decimal | None
    risk: RiskAnswers
    order_text: str | None = None  # the therapeutic order's wording, when the drug came from an order
    ordered_dose: Quantity | None = None
    risk_sources: dict[str, list[str]] | None = None  # criterion -> where the chart answered it
    risk_pointers: tuple[str, ...] = ()  # criteria the chart points to as high risk (RISK-CHART-2)


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
    if draft.diluent is not None and draft.diluent not in DILUENTS:
        raise InputError("diluent", f"unknown diluent '{draft.diluent}'", ", ".join(DILUENTS.values()))
    if protocol.route.strip().lower() in ("iv", "intravenous"):
        diluent, _ = plan_diluent(draft.diluent, draft.drug, draft.drug_rxnorm, draft.order_text)
        if diluent in DILUENTS:
            protocol = _with_diluent(protocol, DILUENTS[diluent])
    return PlanRequest(
        protocol=protocol,
        drug=draft.drug,
        target=None if fixed else target,
        final_rate_ml_h=_decimal(draft.final_rate_ml_h, "final_rate"),
        bag_volume_ml=_decimal(draft.bag_volume_ml, "bag_volume"),
        closing=None if draft.closing is None else ClosingMethod.parse(draft.closing),
        insert_before=draft.insert_before,
        pump_resolution_ml_h=_decimal(draft.pump_resolution_ml_h, "pump_resolution"),
        # discrete liquid doses are measured by syringe: volumes on its marks, doses from them (INV-25)
        syringe_volumes=protocol.kind is ProtocolKind.DISCRETE,
    )


def plan_for(draft: PlanDraft, protocols: Mapping[str, Protocol]) -> Plan:
    """The exact plan of a draft; InputError / SafetyViolation when it cannot be planned safely.

    ``compute_plan`` runs every safety invariant (``invariants.check_plan``) before it returns.
    """
    return compute_plan(plan_request_for(draft, protocols))


def fixed_dose_note(draft: PlanDraft, plan: Plan) -> str | None:
    """Say so when a fixed-dose protocol's total is not the target dose that was typed."""
    target = parse_quantity(draft.target, "target_dose")
    if plan.request.target is not None or target.canonical() == plan.target_dose:
        return None
    kind = "final dose" if plan.protocol.target_kind is TargetKind.FINAL_DOSE else "total"
    return (
        f"Protocol {plan.protocol.id} gives fixed doses: its {kind} is {shown.quantity_text(plan.target_dose)}. "
        f"The target dose entered ({shown.quantity_text(target)}) is the therapeutic dose to give after the "
        "protocol."
    )


# --- starting a draft ---------------------------------------------------------------------------


def resolve_target(start: StartChoice) -> tuple[Quantity, str | None]:
    """The total dose (after the BSA step for per-m² doses) and how it was obtained.

    A per-m² dose is computed from the BSA rounded to the 2 decimals shown and rounded by a stated rule
    (1 mg, or the drug monograph's step), so the pharmacist can reproduce it by calculator:
    "375 mg/m² × 2.14 m² = 802.5 mg → 803 mg (rounded half-up to 1 mg)". Everything after is exact."""
    dose = start.dose
    if unit(dose.unit).dimension is Dimension.DOSE_PER_WEIGHT:
        return _per_kg_target(start)
    if unit(dose.unit).dimension is not Dimension.DOSE_PER_AREA:
        return dose, None
    assert start.height_cm is not None and start.weight_kg is not None
    bsa = body_surface_area(start.height_cm, start.weight_kg, "mosteller")
    step, rule_basis = dose_rounding_for(
        start.drug, start.drug_rxnorm, per_area_dose_unit(unit(dose.unit)).code
    )
    rounded = rounded_dose_for_bsa(dose, bsa, step, rule_basis)
    basis = (
        f"{rounded.text}. BSA {shown.bsa_text(rounded.bsa_m2)} by the {bsa.formula_name} formula from height "
        f"{shown.grouped(start.height_cm.normalize())} cm and weight {shown.grouped(start.weight_kg.normalize())} kg, "
        f"rounded half-up to {BSA_DISPLAY_PLACES} decimals; the dose is computed from the BSA as shown"
    )
    return rounded.dose, basis


def _per_kg_target(start: StartChoice) -> tuple[Quantity, str]:
    """A per-kg dose: the weight to 0.1 kg, times the dose per kg, rounded by the stated rule (1 mg or
    the monograph's step): "15 mg/kg × 72.4 kg = 1,086 mg → 1,086 mg (rounded half-up to 1 mg)"."""
    dose = start.dose
    step, rule_basis = dose_rounding_for(
        start.drug, start.drug_rxnorm, per_weight_dose_unit(unit(dose.unit)).code
    )
    rounded = rounded_dose_for_weight(dose, start.weight_kg, step, rule_basis)
    basis = (
        f"{rounded.text}. Weight {shown.grouped(rounded.weight_kg.normalize())} kg, rounded half-up to "
        f"{WEIGHT_PLACES} decimal; the dose is computed from the weight as shown"
    )
    return rounded.dose, basis


def _answer(value: Any) -> bool | None:
    """A stored risk answer: True, False, or None (unknown, never "no")."""
    return value if isinstance(value, bool) else None


def risk_answers(draft: PlanDraft) -> RiskAnswers:
    grade = draft.risk.get("grade")
    return RiskAnswers(
        grade=int(grade) if isinstance(grade, int) and not isinstance(grade, bool) else None,
        hypotension_or_hypoxia=_answer(draft.risk.get("hypotension_or_hypoxia")),
        cardiac_or_beta_blocker=_answer(draft.risk.get("cardiac_or_beta_blocker")),
        fev1_below_80=_answer(draft.risk.get("fev1_below_80")),
    )


def suggestion_for(draft: PlanDraft, protocols: Mapping[str, Protocol]) -> ProtocolSuggestion:
    drug = DrugRef(draft.drug, draft.drug_rxnorm)
    pointers = tuple(str(p) for p in draft.risk.get("pointers") or ())
    return suggest_protocol(risk_answers(draft), drug, draft.route, protocols, pointers)


def _copied_closing(copied: CopiedSettings, protocol: Protocol) -> str | None:
    """The copied plan's closing method, when it can be planned without extra inputs (a plan signed from
    the CLI with --bag-fractions or --concentrations falls back to the protocol's default)."""
    usable = {m.value for m in protocol.self_contained_closing_methods}
    return copied.closing if copied.closing in usable else None


def draft_from_start(
    start: StartChoice,
    *,
    patient: str,
    protocols: Mapping[str, Protocol],
    created_at: float,
    copied: CopiedSettings | None = None,
    pump_resolution_ml_h: Decimal | None = None,
) -> PlanDraft:
    """A new draft: the suggested protocol (or the copied plan's), protocol defaults otherwise; rates at
    ``pump_resolution_ml_h`` (the site's pump steps; None: exact)."""
    target, basis = resolve_target(start)
    pointers = start.risk_pointers
    suggestion = suggest_protocol(
        start.risk, DrugRef(start.drug, start.drug_rxnorm), start.route, protocols, pointers
    )
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
        "sources": {key: list(found) for key, found in (start.risk_sources or {}).items()},
        "pointers": list(start.risk_pointers),
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
        closing=_copied_closing(copied, protocols[protocol_id]) if use_copy and copied else None,
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
        order_text=start.order_text,
        ordered_dose=str(start.ordered_dose) if start.ordered_dose is not None else None,
        pump_resolution_ml_h=plain(pump_resolution_ml_h) if pump_resolution_ml_h is not None else None,
    )
