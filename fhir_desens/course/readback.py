"""Signed plans read back from the chart: the patient's list, one plan with its orders verified
against the engine, the fields "Copy this plan" pre-fills, and the settings of a plan to copy."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.smart import SmartSession
from fhir_desens.course.chart import (
    FHIR_ID,
    open_client,
    patient_reference,
)
from fhir_desens.course.draft import DILUENTS, PlanDraft
from fhir_desens.errors import (
    DesensError,
    FhirServerError,
    ForbiddenError,
)
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.apply import OVERRIDE_NOTE, PlanParameters, plan_parameters
from fhir_desens.fhir.lifecycle import DISCONTINUED_NOTE, held_for
from fhir_desens.fhir.orderset import StepFinding, verify_order_set
from fhir_desens.fhir.raw import text_or_none
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.display import chart_time_text
from fhir_desens.protocol.model import Protocol
from fhir_desens.protocol.quantity import (
    plain,
)

log = logging.getLogger(__name__)

MAX_SIGNED_PLANS = 100


class SignedPlanNotFound(DesensError):
    """No signed desensitization plan with this id in this patient's chart."""

    exit_code = 2
    http_status = 404

    def __init__(self) -> None:
        super().__init__("This signed plan was not found in this patient's chart.")


# --- reading signed plans back --------------------------------------------------------------------------


def _session_value(group: Mapping[str, Any]) -> str | None:
    for identifier in group.get("identifier") or []:
        if isinstance(identifier, Mapping) and identifier.get("system") == c.ID_SESSION:
            value = identifier.get("value")
            return value if isinstance(value, str) else None
    return None


def _subject_is(resource: Mapping[str, Any], own: str) -> bool:
    subject = resource.get("subject")
    ref = subject.get("reference") if isinstance(subject, Mapping) else None
    return isinstance(ref, str) and (ref == own or ref.endswith("/" + own))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _canonical(group: Mapping[str, Any]) -> str:
    value = next(iter(group.get("instantiatesCanonical") or []), "")
    return value if isinstance(value, str) else ""


#: the order a plan stands in for, in words that fit the drug (a dose by mouth has no rate)
INFUSED_ORDER = "standard-rate order"
ORAL_ORDER = "standard-dose order"


def order_name(route: str | None) -> str:
    """'standard-dose order' for a drug given by mouth, else 'standard-rate order' (an infusion's)."""
    return ORAL_ORDER if (route or "").strip().lower() in ("oral", "po") else INFUSED_ORDER


def _protocol_title(protocols: Mapping[str, Protocol], protocol_id: str | None, canonical: str) -> str:
    protocol = protocols.get(protocol_id or "") if protocol_id else None
    if protocol is not None:
        return protocol.title
    return canonical.rsplit("/", 1)[-1] or "(protocol not recorded)"


def _dose_text(parameters: PlanParameters | None) -> str:
    if parameters is None:
        return "—"
    target = shown.quantity_text(parameters.target_dose)
    if parameters.prescribed_dose is not None:
        return f"{target} ({shown.quantity_text(parameters.prescribed_dose)})"
    return target


def _when(value: Any, zone: tzinfo | None) -> str:
    """A FHIR dateTime for people in the site's zone, like the worksheet's clock times ("2 Dec 2026 19:50
    CET"); without a zone, as the author's offset wrote it. Display only."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return "—"
    return chart_time_text(text, zone) if zone is not None else text[:16].replace("T", " ")


@dataclass(frozen=True)
class SignedPlanSummary:
    id: str
    authored: str  # for display
    authored_raw: str  # the FHIR dateTime (sorting)
    drug: str
    dose: str
    protocol: str
    protocol_canonical: str
    status: str
    steps: int
    override: str | None = None  # the override note (what was overridden, by whom, why), when there is one
    session_id: str = ""
    drug_codes: tuple[str, ...] = ()  # RxNorm codes of the drug
    discontinued: str | None = None  # the discontinuation note, when it was discontinued
    route: str | None = None  # the protocol's route ("oral", "IV"), when the protocol is known

    @property
    def order_name(self) -> str:
        """The therapeutic order in words that fit the drug (:func:`order_name`)."""
        return order_name(self.route)


def _summary(
    group: Mapping[str, Any], protocols: Mapping[str, Protocol], zone: tzinfo | None
) -> SignedPlanSummary:
    parameters = plan_parameters(dict(group))
    canonical = _canonical(group)
    drug = parameters.drug if parameters is not None else None
    if drug is None:
        note = next((n.get("text") for n in group.get("note") or [] if isinstance(n, Mapping)), None)
        drug = _text(note) or "(drug not recorded)"
    return SignedPlanSummary(
        id=str(group.get("id")),
        authored=_when(group.get("authoredOn"), zone),
        authored_raw=str(group.get("authoredOn") or ""),
        drug=drug,
        dose=_dose_text(parameters),
        protocol=_protocol_title(protocols, parameters.protocol_id if parameters else None, canonical),
        protocol_canonical=canonical,
        status=_text(group.get("status")) or "unknown",
        steps=len(group.get("action") or []),
        override=_override(group),
        session_id=_session_value(group) or "",
        drug_codes=tuple(
            code["code"]
            for code in (parameters.drug_codes if parameters else ())
            if code.get("system") == c.RXNORM
        ),
        discontinued=next((n for n in _notes(group) if n.startswith(DISCONTINUED_NOTE)), None),
        route=_route(protocols, parameters),
    )


def _route(protocols: Mapping[str, Protocol], parameters: PlanParameters | None) -> str | None:
    protocol = protocols.get(parameters.protocol_id) if parameters is not None else None
    return protocol.route if protocol is not None else None


def signed_plans_search(own: str) -> dict[str, str]:
    """The RequestGroup search of :func:`signed_plans` (for a batch that reads it with other things)."""
    return {
        "subject": own,
        "identifier": f"{c.ID_SESSION}|",  # any value of our system (FHIR token search "system|")
        "_sort": "-authored",
        "_count": str(MAX_SIGNED_PLANS),
    }


def signed_plans(
    smart: SmartSession,
    protocols: Mapping[str, Protocol],
    zone: tzinfo | None = None,
    *,
    bundle: Mapping[str, Any] | None = None,
) -> list[SignedPlanSummary]:
    """The patient's signed desensitization plans (RequestGroups with our session identifier), newest
    first: the newest :data:`MAX_SIGNED_PLANS` (one page; older ones stay in the EHR's order list).
    ``zone``: the site's time zone, in which the signing times are written for people. ``bundle``:
    the searchset of :func:`signed_plans_search` when it was already read (in a batch)."""
    own = patient_reference(smart)
    if bundle is None:
        with open_client(smart) as client:
            bundle = client.search("RequestGroup", signed_plans_search(own))
    groups = [e.get("resource") for e in bundle.get("entry") or [] if isinstance(e, Mapping)]
    ours = [
        g
        for g in groups
        if isinstance(g, dict)
        and g.get("resourceType") == "RequestGroup"
        and _subject_is(g, own)  # a server bug must never show another patient's plans
        and _session_value(g)
        and FHIR_ID.match(str(g.get("id")))
    ]
    return sorted((_summary(g, protocols, zone) for g in ours), key=lambda s: s.authored_raw, reverse=True)


@dataclass(frozen=True)
class SignedOrder:
    """One step order as the EHR holds it."""

    id: str
    step: int | None
    status: str
    text: str  # the dosage instruction as signed
    solution: str | None  # the Medication's name (e.g. "carboplatin: Bag 1 (1:100)")


@dataclass(frozen=True)
class TherapeuticOrder:
    """The therapeutic order the plan stands in for (``RequestGroup.basedOn``), as the EHR holds it now."""

    reference: str  # "MedicationRequest/<id>"
    status: str | None  # None: it could not be read
    text: str | None  # the order's dosage text, for people
    held_for_this_plan: bool

    @property
    def still_active(self) -> bool:
        return self.status == "active"


#: the RequestGroup note of premedications the allergy list rules out, acknowledged at signing (PLAN-PREMED-1)
WITHHELD_NOTE = "Premedication not to be given (the allergy list rules it out): "
WITHHELD_BY = "; acknowledged by "


@dataclass(frozen=True)
class SignedPlan:
    id: str
    session_id: str
    status: str
    authored: str
    author: str | None  # "Practitioner/<id>"
    author_name: str | None  # the signer's name the orders carry (the reference's display), if any
    protocol_canonical: str
    protocol_title: str
    parameters: PlanParameters | None
    closing: str | None
    indication: str | None
    override_reason: str | None
    notes: tuple[str, ...]
    orders: tuple[SignedOrder, ...]
    draft: PlanDraft | None  # the plan's parameters as a draft (recomputed through the engine)
    plan: Plan | None  # the recomputed plan, only when it gives exactly the signed orders
    recompute_problem: str | None  # why there is no recomputed plan (so no worksheet), for people
    findings: tuple[StepFinding, ...] = ()  # where the orders differ from the engine's plan
    therapeutic_order: TherapeuticOrder | None = None
    planned_start: str | None = None  # when the first step is due (FHIR dateTime), if the orders say
    discontinued: str | None = None  # the discontinuation note, when it was discontinued
    route: str | None = None  # the protocol's route ("oral", "IV"), when the protocol is known

    @property
    def order_name(self) -> str:
        """The therapeutic order in words that fit the drug (:func:`order_name`)."""
        return order_name(self.route)

    @property
    def premedications_withheld(self) -> str | None:
        """The acknowledged premedications not to be given (PLAN-PREMED-1), as signed: "aspirin;
        acknowledged by Dr. A. Allergist", else None."""
        return next((n[len(WITHHELD_NOTE) :] for n in self.notes if n.startswith(WITHHELD_NOTE)), None)

    @property
    def discontinued_parts(self) -> tuple[str, str | None] | None:
        """(when, reason) of the discontinuation note "Discontinued: <when>[ by <who>]: <reason>"."""
        if not self.discontinued:
            return None
        rest = self.discontinued[len(DISCONTINUED_NOTE) :]
        head, _, reason = rest.partition(": ")
        return head.split(" ", 1)[0], reason or None

    @property
    def lifecycle(self) -> str:
        """active | completed | discontinued | other, for people and the page's grouping."""
        return {"active": "active", "completed": "completed", "revoked": "discontinued"}.get(
            self.status, "other"
        )

    @property
    def order_count(self) -> int:
        return len(self.orders)


def step_order_ids(group: Mapping[str, Any]) -> list[str]:
    """The MedicationRequest ids a signed RequestGroup's actions point to, in action order."""
    ids = []
    for action in group.get("action") or []:
        resource = action.get("resource") if isinstance(action, Mapping) else None
        ref = resource.get("reference") if isinstance(resource, Mapping) else None
        if isinstance(ref, str) and ref.startswith("MedicationRequest/") and FHIR_ID.match(ref[18:]):
            ids.append(ref[18:])
    return ids


def _by_ids(client: FhirClient, kind: str, ids: Sequence[str], own: str | None) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    params = {"_id": ",".join(ids), "_count": str(max(len(ids), 1))}
    if own is not None:
        params["patient"] = own
    found = client.search_all(kind, params, max_pages=2)
    return {
        str(r["id"]): r
        for r in found
        if r.get("resourceType") == kind and r.get("id") in ids and (own is None or _subject_is(r, own))
    }


def _medication_id(order: Mapping[str, Any]) -> str | None:
    ref = order.get("medicationReference")
    value = ref.get("reference") if isinstance(ref, Mapping) else None
    if isinstance(value, str) and value.startswith("Medication/") and FHIR_ID.match(value[11:]):
        return value[11:]
    return None


def _dosage(order: Mapping[str, Any]) -> Mapping[str, Any]:
    dosages = order.get("dosageInstruction") or []
    first = dosages[0] if dosages else {}
    return first if isinstance(first, Mapping) else {}


def _signed_order(order: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]) -> SignedOrder:
    dosage = _dosage(order)
    sequence = dosage.get("sequence")
    medication = medications.get(_medication_id(order) or "")
    code = medication.get("code") if medication else None
    return SignedOrder(
        id=str(order.get("id")),
        step=sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None,
        status=_text(order.get("status")) or "unknown",
        text=_text(dosage.get("text")) or "(no dosage text)",
        solution=_text(code.get("text")) if isinstance(code, Mapping) else None,
    )


def _diluent_key(text: str | None) -> str | None:
    return next((key for key, value in DILUENTS.items() if value == text), None)


def _closing(group: Mapping[str, Any]) -> str | None:
    for extension in group.get("extension") or []:
        if isinstance(extension, Mapping) and extension.get("url") == c.EXT_CLOSING_METHOD:
            return _text(extension.get("valueCode"))
    return None


def withheld_premedications(group: Mapping[str, Any]) -> tuple[str, ...]:
    """The premedications signed as not to be given (PLAN-PREMED-1), read back from the RequestGroup note
    "Premedication not to be given (...): aspirin; acknowledged by ...", so the bedside does not ask for them."""
    note = next((n for n in _notes(group) if n.startswith(WITHHELD_NOTE)), None)
    if note is None:
        return ()
    names = note[len(WITHHELD_NOTE) :].split(WITHHELD_BY, 1)[0]
    return tuple(name.strip() for name in names.split(", ") if name.strip())


def _draft_of(group: Mapping[str, Any], parameters: PlanParameters, own: str) -> PlanDraft:
    """The signed plan's parameters as a draft, so the engine can recompute it like any plan."""
    return PlanDraft(
        draft_id=str(group.get("id")),
        patient=own,
        drug=parameters.drug,
        drug_rxnorm=tuple(code["code"] for code in parameters.drug_codes if code.get("system") == c.RXNORM),
        indication=_indication(group),
        target=str(parameters.target_dose),
        dose_basis=parameters.dose_basis,
        protocol_id=parameters.protocol_id,
        final_rate_ml_h=plain(parameters.final_rate_ml_h) if parameters.final_rate_ml_h is not None else None,
        bag_volume_ml=plain(parameters.bag_volume_ml) if parameters.bag_volume_ml is not None else None,
        diluent=_diluent_key(parameters.diluent),
        closing=_closing(group),
        insert_before=parameters.insert_before,
        risk={},
        unlisted_confirmed=True,
        override_reason=_override(group),
        copied_from=None,
        created_at=0.0,
        premedications_withheld=withheld_premedications(group),
        dose_per_m2=str(parameters.prescribed_dose) if parameters.prescribed_dose is not None else None,
        pump_resolution_ml_h=plain(parameters.pump_resolution_ml_h)
        if parameters.pump_resolution_ml_h is not None
        else None,
    )


def _indication(group: Mapping[str, Any]) -> str | None:
    for concept in group.get("reasonCode") or []:
        if isinstance(concept, Mapping) and _text(concept.get("text")):
            return str(concept["text"])
    return None


def _notes(group: Mapping[str, Any]) -> list[str]:
    return [
        str(n["text"]) for n in group.get("note") or [] if isinstance(n, Mapping) and _text(n.get("text"))
    ]


def _override(group: Mapping[str, Any]) -> str | None:
    return next((n[len(OVERRIDE_NOTE) :] for n in _notes(group) if n.startswith(OVERRIDE_NOTE)), None)


def load_signed_plan(
    smart: SmartSession, rg_id: str, protocols: Mapping[str, Protocol], zone: tzinfo | None = None
) -> SignedPlan:
    """A signed plan of this patient: the RequestGroup, its orders and solutions, verified against the engine.

    ``plan`` is the engine's recomputation from the recorded parameters
    (:func:`fhir_desens.fhir.orderset.verify_order_set`), given only when it yields exactly the
    signed orders; otherwise ``recompute_problem`` says why and the orders are shown as signed.
    """
    if not FHIR_ID.match(rg_id):
        raise SignedPlanNotFound()
    own = patient_reference(smart)
    with open_client(smart) as client:
        group = _read_group(client, rg_id, own)
        ids = step_order_ids(group)
        found = _by_ids(client, "MedicationRequest", ids, own)
        orders = [found[i] for i in ids if i in found]
        medication_ids = sorted({m for m in (_medication_id(o) for o in orders) if m})
        medications = _by_ids(client, "Medication", medication_ids, None)
        therapeutic = _therapeutic_order(client, group, own, rg_id)
    parameters = plan_parameters(group)
    check = verify_order_set(group, orders, medications, protocols)
    draft = _draft_of(group, parameters, own) if parameters is not None else None
    canonical = _canonical(group)
    author = group.get("author")
    return SignedPlan(
        id=rg_id,
        session_id=_session_value(group) or "",
        status=_text(group.get("status")) or "unknown",
        authored=_when(group.get("authoredOn"), zone),
        author=_text(author.get("reference")) if isinstance(author, Mapping) else None,
        author_name=_signer_name(group, orders),
        protocol_canonical=canonical,
        protocol_title=_protocol_title(protocols, parameters.protocol_id if parameters else None, canonical),
        parameters=parameters,
        closing=_closing(group),
        indication=_indication(group),
        override_reason=_override(group),
        notes=tuple(n for n in _notes(group) if not n.startswith(OVERRIDE_NOTE)),
        orders=tuple(_signed_order(o, medications) for o in orders),
        draft=draft,
        plan=check.plan if check.matches else None,
        recompute_problem=check.problem,
        findings=check.findings,
        therapeutic_order=therapeutic,
        planned_start=_planned_start(orders),
        discontinued=next((n for n in _notes(group) if n.startswith(DISCONTINUED_NOTE)), None),
        route=_route(protocols, parameters),
    )


def _signer_name(group: Mapping[str, Any], orders: Sequence[Mapping[str, Any]]) -> str | None:
    """The name the orders give their signer: the RequestGroup's author display, else a step order's
    requester display (another EHR may fill only one of them)."""
    for person in [group.get("author"), *(o.get("requester") for o in orders)]:
        if isinstance(person, Mapping):
            name = text_or_none(person.get("display"), limit=200)
            if name:
                return name
    return None


def _therapeutic_order(
    client: FhirClient, group: Mapping[str, Any], own: str, rg_id: str
) -> TherapeuticOrder | None:
    refs = [b.get("reference") for b in group.get("basedOn") or [] if isinstance(b, Mapping)]
    ref = next((r for r in refs if isinstance(r, str) and r.startswith("MedicationRequest/")), None)
    if ref is None or not FHIR_ID.match(ref[18:]):
        return None
    try:
        order = client.read("MedicationRequest", ref[18:]).resource
    except DesensError as error:
        log.info("the therapeutic order could not be read (%s)", type(error).__name__)
        return TherapeuticOrder(ref, None, None, held_for_this_plan=False)
    if not _subject_is(order, own):
        return TherapeuticOrder(ref, None, None, held_for_this_plan=False)
    return TherapeuticOrder(
        ref,
        _text(order.get("status")),
        _text(_dosage(order).get("text")),
        held_for_this_plan=held_for(order) == rg_id,
    )


def _planned_start(orders: Sequence[Mapping[str, Any]]) -> str | None:
    timing = _dosage(orders[0]).get("timing") if orders else None
    if not isinstance(timing, Mapping):
        return None
    events = timing.get("event") or []
    if events and isinstance(events[0], str):
        return str(events[0])
    repeat = timing.get("repeat")
    bounds = repeat.get("boundsPeriod") if isinstance(repeat, Mapping) else None
    start = bounds.get("start") if isinstance(bounds, Mapping) else None
    return start if isinstance(start, str) else None


def _read_group(client: FhirClient, rg_id: str, own: str) -> dict[str, Any]:
    try:
        group = client.read("RequestGroup", rg_id).resource
    except ForbiddenError:
        raise SignedPlanNotFound() from None  # e.g. another patient's: never say it exists
    except FhirServerError as error:
        if error.status in (404, 410):
            raise SignedPlanNotFound() from None
        raise
    if not _subject_is(group, own) or _session_value(group) is None:
        raise SignedPlanNotFound()  # another patient's, or not a desensitization session
    return group
