"""Planning glue: what the chart says (through the SMART session), form parsing, and the worksheet
view-model.

Thin on purpose. FHIR reading lives in :mod:`fhir_desens.fhir` (``allergy``, ``chart``), the arithmetic
in :mod:`fhir_desens.protocol`; this module sends the FHIR requests with the session's token, turns
form text into domain values (``InputError`` naming the form field), and formats an engine
:class:`~fhir_desens.protocol.calculate.Plan` for people. Every number shown is the engine's number,
rounded for display by ``fhir_desens.protocol.report`` / ``quantity.display``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import requests

from fhir_desens.client.fhir_rest import FhirClient, reference
from fhir_desens.client.smart import SmartSession
from fhir_desens.errors import AuthError, DesensError, FhirServerError, InputError, SafetyViolation
from fhir_desens.fhir.allergy import RXNORM, Allergy, allergy_from_fhir
from fhir_desens.fhir.canonical import EXT_CLOSING_METHOD
from fhir_desens.fhir.chart import (
    BodyMeasurements,
    DrugCandidate,
    Measurement,
    drug_candidates,
    latest_body_measurements,
)
from fhir_desens.fhir.plandefinition import canonical_url
from fhir_desens.protocol.calculate import Plan, PlannedSolution, PlannedStep
from fhir_desens.protocol.model import ClosingMethod, Protocol, ProtocolKind
from fhir_desens.protocol.quantity import Quantity, display, parse_decimal, plain, unit
from fhir_desens.protocol.report import clock_text, dose_text
from fhir_desens.protocol.risk import RiskAnswers
from smart_app.patient_view import PatientBanner, banner_from_patient, belongs_to
from smart_app.timeline import timeline_svg

log = logging.getLogger(__name__)

LOINC = "http://loinc.org"
HEIGHT_LOINC = "8302-2"
WEIGHT_LOINC = "29463-7"
ORDER_STATUSES = "active,on-hold,draft"
MAX_MEDICATION_READS = 20
MAX_TEXT = 200
MAX_INDICATION = 500
MAX_NUMBER_TEXT = 24
_REFERENCE = {kind: re.compile(kind + r"/[A-Za-z0-9\-.]{1,64}") for kind in ("Medication", "Condition")}

# --- form fields: names, labels (exact texts of ui-contract.md) and engine field names -------------

LABELS: dict[str, str] = {
    "drug": "Drug",
    "other_drug": "Other drug",
    "indication": "Indication",
    "target_dose": "Target dose",
    "dose_unit": "Dose unit",
    "height_cm": "Height (cm)",
    "weight_kg": "Weight (kg)",
    "grade": "Severity of the index reaction",
    "hypotension_or_hypoxia": "Hypotension or hypoxia during the index reaction",
    "cardiac_or_beta_blocker": "Cardiac disease or beta-blocker",
    "fev1_below_80": "FEV1 below 80%",
    "protocol": "Protocol",
    "final_rate": "Final rate (mL/h)",
    "bag_volume": "Bag volume (mL)",
    "diluent": "Diluent",
    "closing": "Closing method",
    "insert_before": "Insert a step before step",
    "remove": "Remove inserted step",
    "confirm_unlisted": "I confirm desensitization for a drug the allergy list does not record",
    "override_reason": "Override reason",
    "action": "Action",
    "copy": "Copy of a signed plan",
    "plan": "Plan",
}

#: engine / domain field names -> form field names
_ENGINE_FIELDS: dict[str, str] = {
    "--drug": "drug",
    "--dose": "target_dose",
    "target": "target_dose",
    "--protocol": "protocol",
    "--final-rate": "final_rate",
    "--bag-volume": "bag_volume",
    "--bag-volumes": "bag_volume",
    "--closing": "closing",
    "--bag-fractions": "closing",
    "--concentrations": "closing",
    "--insert-before": "insert_before",
    "--pump-max": "final_rate",
    "height": "height_cm",
    "height_cm": "height_cm",
    "weight": "weight_kg",
    "weight_kg": "weight_kg",
    "formula": "height_cm",
    "unit": "dose_unit",
    "dose": "target_dose",
    "grade": "grade",
}

#: the protocol-form field most likely at fault when a safety invariant refuses a recalculation
_INVARIANT_FIELDS = {"INV-03": "bag_volume", "INV-06": "final_rate"}

#: Dose units offered on the start form: value -> text shown. "ug" is shown as "mcg" (ISMP: "ug" is
#: easily misread as "mg").
DOSE_UNITS: dict[str, str] = {"mg": "mg", "g": "g", "ug": "mcg", "[iU]": "units", "mg/m2": "mg/m2"}
PER_AREA_UNITS = frozenset({"mg/m2"})

GRADES: dict[str, str] = {
    "1": "1 - mild (skin, mucosa)",
    "2": "2 - moderate",
    "3": "3 - severe (hypotension, hypoxia, neurological)",
}
RISK_CHECKBOXES = ("hypotension_or_hypoxia", "cardiac_or_beta_blocker", "fev1_below_80")
CHECKED = frozenset({"yes", "on", "true", "1"})

#: Diluents the plan form offers (stored as the key on the draft); "" keeps the protocol's text.
DILUENTS: dict[str, str] = {
    "ns": "0.9% sodium chloride (NS)",
    "d5w": "5% dextrose (D5W)",
}

CLOSING_TEXT: dict[ClosingMethod, str] = {
    ClosingMethod.REDUCED_FINAL_BAG: "Reduced final bag (last bag holds the rest of the dose, infused whole)",
    ClosingMethod.TRUNCATED_FINAL_STEP: "Truncated final step (full-strength last bag, stop at the target)",
    ClosingMethod.REMAINDER_STEP: "Remainder step (fixed concentrations, last step carries the rest)",
    ClosingMethod.FRACTION_BAGS: "Fraction bags (each bag holds a fraction of the dose, infused whole)",
}


@dataclass(frozen=True)
class FieldError:
    field: str  # the form field's name (its id in the page)
    message: str  # for people: starts with the field's label

    @property
    def label(self) -> str:
        return LABELS.get(self.field, self.field)


def form_field(engine_field: str) -> str:
    """The form field an engine/domain error field name belongs to."""
    if engine_field in LABELS:
        return engine_field
    return _ENGINE_FIELDS.get(engine_field, "plan")


def field_error(error: DesensError, *, default: str = "plan") -> FieldError:
    """A message naming the form field (its visible label) and what is accepted."""
    if isinstance(error, InputError):
        name = form_field(error.field)
        if name == "plan":
            name = default
        text = f"{LABELS.get(name, name)}: {error.problem}"
        if error.accepted:
            text += f" (accepted: {error.accepted})"
        return FieldError(name, text)
    if isinstance(error, SafetyViolation):
        name = _INVARIANT_FIELDS.get(error.invariant_id, default) if default == "protocol" else default
        return FieldError(
            name,
            f"{LABELS.get(name, name)}: this change would make an unsafe plan, so it was not made "
            f"({error.invariant_id}: {error.detail})",
        )
    return FieldError(default, f"{LABELS.get(default, default)}: {error.message}")


def error_status(errors: Iterable[FieldError | DesensError]) -> int:
    """HTTP status of a refused form: 422 when a safety invariant refused it, else 400."""
    return 422 if any(isinstance(e, SafetyViolation) for e in errors) else 400


# --- reading the chart --------------------------------------------------------------------------


def fhir_client(smart: SmartSession, *, http: requests.Session, timeout: float) -> FhirClient:
    return FhirClient(smart.fhir_base, session=http, auth=smart, timeout=(min(5.0, timeout), timeout))


def patient_reference(smart: SmartSession) -> str:
    if not smart.patient:
        raise AuthError(
            "the EHR did not give this launch a patient context; open the app from a patient's chart"
        )
    return reference("Patient", smart.patient)


def read_banner(client: FhirClient, smart: SmartSession) -> tuple[PatientBanner, dict[str, Any]]:
    """The launch patient's banner and Patient resource, read from the EHR (uncached: see app_session)."""
    patient_reference(smart)
    assert smart.patient is not None
    resource = client.read("Patient", smart.patient).resource
    return banner_from_patient(resource), resource


def _own(resources: list[dict[str, Any]], own: str, element: str, kind: str) -> list[dict[str, Any]]:
    """Drop resources of another patient (a server bug must never mix charts)."""
    kept = [r for r in resources if belongs_to(r, own, element)]
    if len(kept) != len(resources):
        log.warning("dropped %d %s resources of another patient", len(resources) - len(kept), kind)
    return kept


def search_allergies(client: FhirClient, smart: SmartSession) -> list[dict[str, Any]] | None:
    """The patient's AllergyIntolerance resources, or None when the grant does not allow reading them
    (uncached: see app_session)."""
    own = patient_reference(smart)
    if not smart.granted.can_read("AllergyIntolerance"):
        return None
    resources = client.search_all("AllergyIntolerance", {"patient": own, "_count": "100"})
    return [
        r
        for r in _own(resources, own, "patient", "AllergyIntolerance")
        if r.get("resourceType") == "AllergyIntolerance"
    ]


def allergies_of(resources: list[dict[str, Any]] | None) -> list[Allergy] | None:
    return None if resources is None else [allergy_from_fhir(r) for r in resources]


def read_allergies(client: FhirClient, smart: SmartSession) -> list[Allergy] | None:
    """The patient's AllergyIntolerance records, or None when the grant does not allow reading them."""
    return allergies_of(search_allergies(client, smart))


def _first_page(client: FhirClient, resource_type: str, params: dict[str, str]) -> list[dict[str, Any]]:
    bundle = client.search(resource_type, params)
    found = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        search = entry.get("search") if isinstance(entry, dict) else None
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
            found.append(resource)
    return found


def _medication_references(requests_: Iterable[Mapping[str, Any]]) -> list[str]:
    refs: list[str] = []
    for request in requests_:
        ref = request.get("medicationReference")
        value = ref.get("reference") if isinstance(ref, Mapping) else None
        if isinstance(value, str) and _REFERENCE["Medication"].fullmatch(value) and value not in refs:
            refs.append(value)
    return refs[:MAX_MEDICATION_READS]


def _condition_references(requests_: Iterable[Mapping[str, Any]]) -> list[str]:
    refs: list[str] = []
    for request in requests_:
        for reason in request.get("reasonReference") or []:
            value = reason.get("reference") if isinstance(reason, Mapping) else None
            if isinstance(value, str) and _REFERENCE["Condition"].fullmatch(value) and value not in refs:
                refs.append(value)
    return refs[:MAX_MEDICATION_READS]


def _read_references(client: FhirClient, refs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Read each "Type/id" reference; one unreadable resource must not hide the rest."""
    found: dict[str, dict[str, Any]] = {}
    for ref in refs:
        resource_type, _, resource_id = ref.partition("/")
        try:
            found[ref] = client.read(resource_type, resource_id).resource
        except FhirServerError as error:
            log.warning("could not read a %s: status %s", resource_type, error.status)
    return found


@dataclass(frozen=True)
class ChartForPlanning:
    """What the start form is pre-filled from."""

    candidates: tuple[DrugCandidate, ...]
    measurements: BodyMeasurements
    allergies: tuple[Allergy, ...] | None  # None: the grant does not allow reading them
    unavailable: tuple[str, ...] = ()  # what could not be read, for people ("medication orders")

    @property
    def height_source(self) -> str | None:
        """'165 cm on 2026-11-18': what the chart says, for the form's hint."""
        return _measured(self.measurements.height)

    @property
    def weight_source(self) -> str | None:
        return _measured(self.measurements.weight)


def _measured(measurement: Measurement | None) -> str | None:
    if measurement is None:
        return None
    when = f" on {measurement.date[:10]}" if measurement.date else ""
    return f"{display(measurement.value, 2)} {measurement.unit}{when}"


def read_chart(
    client: FhirClient, smart: SmartSession, allergies: Sequence[Allergy] | None
) -> ChartForPlanning:
    """Active orders (with their Medications) and the latest height and weight, read from the EHR, with
    the allergy list the caller read (None: the grant does not allow reading it)."""
    own = patient_reference(smart)
    granted = smart.granted
    unavailable: list[str] = []
    orders: list[dict[str, Any]] = []
    medications: dict[str, dict[str, Any]] = {}
    if granted.can_read("MedicationRequest"):
        orders = client.search_all(
            "MedicationRequest", {"patient": own, "status": ORDER_STATUSES, "_count": "100"}
        )
        orders = _own(orders, own, "subject", "MedicationRequest")
        if granted.can_read("Medication"):
            medications = _read_references(client, _medication_references(orders))
    else:
        unavailable.append("medication orders")
    observations: list[dict[str, Any]] = []
    if granted.can_read("Observation"):
        codes = f"{LOINC}|{HEIGHT_LOINC},{LOINC}|{WEIGHT_LOINC}"
        observations = _first_page(
            client, "Observation", {"patient": own, "code": codes, "_sort": "-date", "_count": "50"}
        )
        observations = _own(observations, own, "subject", "Observation")
    else:
        unavailable.append("height and weight")
    if allergies is None:
        unavailable.append("the allergy list")
    conditions = (
        _read_references(client, _condition_references(orders)) if granted.can_read("Condition") else {}
    )
    candidates = drug_candidates(orders, allergies or [], medications, conditions=conditions)
    return ChartForPlanning(
        candidates=tuple(candidates),
        measurements=latest_body_measurements(observations),
        allergies=None if allergies is None else tuple(allergies),
        unavailable=tuple(unavailable),
    )


def candidate_key(candidate: DrugCandidate) -> str:
    """A stable option value for a candidate (the chart is read again when the form comes back)."""
    material = "|".join(
        [candidate.source, candidate.order_reference or "", candidate.name, *candidate.rxnorm]
    )
    return "c-" + hashlib.sha256(material.encode()).hexdigest()[:16]


# --- copying a signed plan ("Copy this plan") -------------------------------------------------------

_RESOURCE_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class SignedPlanNotFound(DesensError):
    """The RequestGroup to copy is not in this patient's chart."""

    exit_code = 2
    http_status = 404

    def __init__(self) -> None:
        super().__init__("The signed plan to copy was not found in this patient's chart.")


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


def _step_orders(client: FhirClient, group: Mapping[str, Any]) -> list[dict[str, Any]]:
    ids = []
    for action in group.get("action") or []:
        resource = action.get("resource") if isinstance(action, Mapping) else None
        ref = resource.get("reference") if isinstance(resource, Mapping) else None
        if isinstance(ref, str) and ref.startswith("MedicationRequest/") and _RESOURCE_ID.match(ref[18:]):
            ids.append(ref[18:])
    if not ids:
        return []
    return _first_page(client, "MedicationRequest", {"_id": ",".join(ids[:100]), "_count": "100"})


def _rates(orders: Iterable[Mapping[str, Any]]) -> list[Decimal]:
    rates = []
    for order in orders:
        for dosage in order.get("dosageInstruction") or []:
            for dose_rate in dosage.get("doseAndRate") or [] if isinstance(dosage, Mapping) else []:
                rate = dose_rate.get("rateQuantity") if isinstance(dose_rate, Mapping) else None
                value = rate.get("value") if isinstance(rate, Mapping) else None
                if isinstance(value, Decimal | int) and not isinstance(value, bool):
                    rates.append(Decimal(value))
    return rates


def _last_medication(client: FhirClient, orders: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    refs = _medication_references(orders[-1:])
    if not refs:
        return None
    try:
        return client.read("Medication", refs[0].split("/", 1)[1]).resource
    except FhirServerError:
        return None


def _drug_of(medication: Mapping[str, Any] | None) -> tuple[str | None, tuple[str, ...], str | None]:
    """(drug name, RxNorm codes, bag volume) from the Medication of the last solution."""
    if medication is None:
        return None, (), None
    drug: str | None = None
    codes: tuple[str, ...] = ()
    for ingredient in medication.get("ingredient") or []:
        concept = ingredient.get("itemCodeableConcept") if isinstance(ingredient, Mapping) else None
        if isinstance(concept, Mapping) and ingredient.get("isActive") is not False:
            drug = concept.get("text") if isinstance(concept.get("text"), str) else None
            codes = tuple(
                str(c["code"])
                for c in concept.get("coding") or []
                if isinstance(c, Mapping) and c.get("system") == RXNORM and isinstance(c.get("code"), str)
            )
            break
    amount = medication.get("amount")
    numerator = amount.get("numerator") if isinstance(amount, Mapping) else None
    volume = numerator.get("value") if isinstance(numerator, Mapping) else None
    bag = (
        plain(Decimal(volume)) if isinstance(volume, Decimal | int) and not isinstance(volume, bool) else None
    )
    return drug, codes, bag


def read_copy_source(
    client: FhirClient, smart: SmartSession, request_group_id: str, protocols: Mapping[str, Protocol]
) -> CopiedSettings:
    """The settings of a signed plan of this patient, read back from its RequestGroup and orders."""
    if not _RESOURCE_ID.match(request_group_id):
        raise InputError("copy", "is not a FHIR resource id", "the id of a signed plan (RequestGroup)")
    own = patient_reference(smart)
    try:
        group = client.read("RequestGroup", request_group_id).resource
    except FhirServerError as error:
        if error.status in (404, 410):
            raise SignedPlanNotFound() from None
        raise
    if not belongs_to(group, own, "subject"):
        raise SignedPlanNotFound()
    canonical = next(iter(group.get("instantiatesCanonical") or []), "")
    url = canonical.partition("|")[0] if isinstance(canonical, str) else ""
    protocol = next((p for p in protocols.values() if canonical_url(p) == url), None)
    closing = next(
        (
            e.get("valueCode")
            for e in group.get("extension") or []
            if isinstance(e, Mapping) and e.get("url") == EXT_CLOSING_METHOD
        ),
        None,
    )
    orders = [o for o in _step_orders(client, group) if belongs_to(o, own, "subject")]
    rates = _rates(orders)
    drug, codes, bag = _drug_of(_last_medication(client, orders)) if orders else (None, (), None)
    uses_final_rate = protocol is not None and protocol.uses_final_rate
    return CopiedSettings(
        request_group=request_group_id,
        protocol_id=protocol.id if protocol is not None else None,
        final_rate_ml_h=plain(max(rates)) if rates and uses_final_rate else None,
        bag_volume_ml=bag if protocol is not None and protocol.kind is ProtocolKind.INFUSION else None,
        closing=closing
        if protocol is not None and closing in {c.value for c in protocol.closing_methods}
        else None,
        drug=drug,
        drug_rxnorm=codes,
    )


# --- the start form -----------------------------------------------------------------------------


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


def clean_text(form: Mapping[str, str], name: str, limit: int, *, required: bool = False) -> str | None:
    raw = form.get(name, "")
    text = " ".join(raw.split())
    if not text:
        if required:
            raise InputError(name, "is required")
        return None
    if len(text) > limit or any(ord(ch) < 32 for ch in raw if ch not in "\t\r\n"):
        raise InputError(
            name,
            f"is longer than {limit} characters or holds control characters",
            f"up to {limit} characters",
        )
    return text


def number(form: Mapping[str, str], name: str, *, required: bool = True) -> Decimal | None:
    """A positive decimal from a form field ("400", "0.5"); the message names the field."""
    raw = (form.get(name) or "").strip()
    if not raw:
        if required:
            raise InputError(name, "is empty", "a number above zero, e.g. 75")
        return None
    if len(raw) > MAX_NUMBER_TEXT:
        raise InputError(name, "is too long to be a number", "a number above zero, e.g. 75")
    value = parse_decimal(raw, name)
    if value <= 0:
        raise InputError(name, f"{raw} is not above zero", "a number above zero")
    return value


def choice(form: Mapping[str, str], name: str, allowed: Iterable[str]) -> str:
    value = form.get(name, "")
    options = list(allowed)
    if value not in options:
        raise InputError(
            name, "is not one of the offered choices", ", ".join(o or "(empty)" for o in options)
        )
    return value


def checkbox(form: Mapping[str, str], name: str) -> bool:
    value = form.get(name)
    if value is None or value == "":
        return False
    if value.lower() not in CHECKED:
        raise InputError(name, f"'{value}' is not a checkbox value", "checked or not")
    return True


def parse_risk(form: Mapping[str, str]) -> RiskAnswers:
    grade = choice(form, "grade", ["", *GRADES])
    return RiskAnswers(
        grade=int(grade) if grade else None,
        hypotension_or_hypoxia=checkbox(form, "hypotension_or_hypoxia"),
        cardiac_or_beta_blocker=checkbox(form, "cardiac_or_beta_blocker"),
        fev1_below_80=checkbox(form, "fev1_below_80"),
    )


def _collect(errors: list[FieldError], parse: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return parse(*args, **kwargs)
    except InputError as error:
        errors.append(field_error(error, default=form_field(error.field)))
        return None


def parse_start(
    form: Mapping[str, str], candidates: Sequence[DrugCandidate]
) -> tuple[StartChoice | None, list[FieldError]]:
    """Every field checked, every problem reported at once (so the user fixes them in one go)."""
    errors: list[FieldError] = []
    by_key = {candidate_key(c): c for c in candidates}
    key = _collect(errors, choice, form, "drug", [*by_key, "other"])
    candidate = by_key.get(key or "")
    other = _collect(errors, clean_text, form, "other_drug", MAX_TEXT, required=key == "other")
    indication = _collect(errors, clean_text, form, "indication", MAX_INDICATION)
    value = _collect(errors, number, form, "target_dose")
    dose_unit = _collect(errors, choice, form, "dose_unit", DOSE_UNITS)
    per_area = dose_unit in PER_AREA_UNITS
    height = _collect(errors, number, form, "height_cm", required=per_area)
    weight = _collect(errors, number, form, "weight_kg", required=per_area)
    risk = _collect(errors, parse_risk, form)
    if errors or key is None:
        return None, errors
    name = candidate.name if candidate is not None else other
    assert name is not None and value is not None and dose_unit is not None
    return (
        StartChoice(
            drug=name,
            drug_rxnorm=candidate.rxnorm if candidate is not None else (),
            route=candidate.route if candidate is not None else None,
            order_reference=candidate.order_reference if candidate is not None else None,
            indication=indication,
            dose=Quantity(value, dose_unit),
            height_cm=height if per_area else None,
            weight_kg=weight if per_area else None,
            risk=risk,
        ),
        [],
    )


def start_defaults(chart: ChartForPlanning) -> dict[str, str]:
    """Initial values of the start form: the first candidate (orders come first), height and weight."""
    values: dict[str, str] = {"drug": "other", "dose_unit": "mg", "grade": ""}
    if chart.candidates:
        first = chart.candidates[0]
        values["drug"] = candidate_key(first)
        values["indication"] = first.indication or ""
        if first.dose is not None and first.dose.unit in DOSE_UNITS:
            values["target_dose"] = display(first.dose.value, 6)
            values["dose_unit"] = first.dose.unit
    height, weight = chart.measurements.height, chart.measurements.weight
    if height is not None:
        values["height_cm"] = display(height.value, 1)
    if weight is not None:
        values["weight_kg"] = display(weight.value, 1)
    return values


# --- protocol choices on the plan page ----------------------------------------------------------


@dataclass(frozen=True)
class ProtocolOptions:
    """Which settings the protocol lets a person change (and so which fields the page shows)."""

    final_rate: bool
    bag_volume: bool
    diluent: bool
    closing: tuple[ClosingMethod, ...]
    insert: bool


def options_for(protocol: Protocol) -> ProtocolOptions:
    infusion = protocol.kind is ProtocolKind.INFUSION
    return ProtocolOptions(
        final_rate=infusion and protocol.uses_final_rate,
        bag_volume=infusion,
        diluent=infusion and any(not s.solid for s in protocol.solutions),
        closing=protocol.closing_methods if infusion and len(protocol.closing_methods) > 1 else (),
        insert=infusion,
    )


# --- the worksheet view-model ---------------------------------------------------------------------


@dataclass(frozen=True)
class SolutionRow:
    number: int
    label: str
    strength: str
    concentration: str
    volume: str
    drug_amount: str
    infused: str
    diluent: str
    steps: str  # "1-4": the steps that use it


@dataclass(frozen=True)
class StepRow:
    number: int
    solution: int
    rate: str
    minutes: str
    volume: str
    dose: str
    cumulative: str
    elapsed: str
    clock: str
    inserted: bool
    closing: bool
    note: str | None


@dataclass(frozen=True)
class PremedicationRow:
    drug: str
    dose: str
    route: str
    timing: str
    condition: str | None
    clock: str | None


@dataclass(frozen=True)
class Worksheet:
    """Everything a worksheet shows, as display text (the partial ``_worksheet.html`` renders it)."""

    title: str
    protocol_id: str
    protocol_version: str
    protocol_canonical: str  # url|version
    evidence: str
    route: str
    infusion: bool
    drug: str
    target: str
    dose_unit: str
    closing: str | None
    final_rate: str | None
    solutions: tuple[SolutionRow, ...]
    steps: tuple[StepRow, ...]
    total_minutes: str
    total_time: str
    started_at: str  # "2027-01-15 09:00 CET"
    ends_at: str
    premedications: tuple[PremedicationRow, ...]
    nursing_instructions: tuple[str, ...]
    warnings: tuple[str, ...]
    timeline_svg: str = field(repr=False)

    @property
    def step_count(self) -> int:
        return len(self.steps)


def _amount(value: Decimal | None, unit_code: str) -> str:
    return "—" if value is None else f"{dose_text(value)} {unit(unit_code).display}"


def _ml(value: Decimal | None, places: int = 3) -> str:
    return "—" if value is None else f"{display(value, places)} mL"


def _clock(start: datetime, minutes: Decimal) -> datetime:
    seconds = int(display(minutes * 60, 0))  # display rounding: to the second, for the clock only
    return start + timedelta(seconds=seconds)


def _hhmm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "—"
    return str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}-{numbers[-1]}"


def _solution_row(plan: Plan, solution: PlannedSolution) -> SolutionRow:
    dose_unit = plan.dose_unit
    steps = [s.number for s in plan.steps if s.solution == solution.number]
    if solution.unit_dose is not None:  # tablets/capsules
        count = solution.units_used or Decimal(0)
        return SolutionRow(
            number=solution.number,
            label=solution.label,
            strength=solution.strength,
            concentration=f"{_amount(solution.unit_dose.value, dose_unit)} per unit",
            volume="—",
            drug_amount=_amount(solution.drug_amount.value, dose_unit),
            infused=f"{display(count, 2)} units",
            diluent="—",
            steps=_ranges(steps),
        )
    assert solution.concentration is not None
    return SolutionRow(
        number=solution.number,
        label=solution.label,
        strength=solution.strength,
        concentration=f"{dose_text(solution.concentration.value)} {unit(solution.concentration.unit).display}",
        volume=_ml(solution.volume_ml, 2),
        drug_amount=_amount(solution.drug_amount.value, dose_unit),
        infused=_ml(solution.volume_infused_ml),
        diluent=solution.diluent or "—",
        steps=_ranges(steps),
    )


def _step_row(plan: Plan, step: PlannedStep, start: datetime) -> StepRow:
    if step.units is not None:
        volume = f"{display(step.units, 2)} unit(s)"
    else:
        volume = "—" if step.volume_ml is None else display(step.volume_ml, 3)
    return StepRow(
        number=step.number,
        solution=step.solution,
        rate="—" if step.rate_ml_h is None else display(step.rate_ml_h, 3),
        minutes=display(step.minutes, 3),
        volume=volume,
        dose=_amount(step.dose.value, plan.dose_unit),
        cumulative=_amount(step.cumulative_dose.value, plan.dose_unit),
        elapsed=clock_text(step.start_minute),
        clock=_hhmm(_clock(start, step.start_minute)),
        inserted=step.inserted,
        closing=step.closing,
        note=step.note,
    )


def worksheet_for(plan: Plan, started_at: datetime) -> Worksheet:
    """The worksheet of an engine plan; clock times count from ``started_at`` (timezone-aware)."""
    if started_at.tzinfo is None:
        raise ValueError("started_at needs a time zone")
    protocol = plan.protocol
    premeds = tuple(
        PremedicationRow(
            drug=p.drug,
            dose=p.dose,
            route=p.route,
            timing=p.timing,
            condition=p.condition,
            clock=None if p.offset_minutes is None else _hhmm(_clock(started_at, p.offset_minutes)),
        )
        for p in plan.premedications
    )
    return Worksheet(
        title=protocol.title,
        protocol_id=protocol.id,
        protocol_version=protocol.version,
        protocol_canonical=f"{canonical_url(protocol)}|{protocol.version}",
        evidence=protocol.evidence.value,
        route=protocol.route,
        infusion=protocol.kind is ProtocolKind.INFUSION,
        drug=plan.drug,
        target=_amount(plan.target_dose.value, plan.dose_unit),
        dose_unit=unit(plan.dose_unit).display,
        closing=CLOSING_TEXT.get(plan.closing) if plan.closing is not None else None,
        final_rate=None if plan.final_rate_ml_h is None else f"{display(plan.final_rate_ml_h, 3)} mL/h",
        solutions=tuple(_solution_row(plan, s) for s in plan.solutions),
        steps=tuple(_step_row(plan, s, started_at) for s in plan.steps),
        total_minutes=display(plan.total_minutes, 3),
        total_time=clock_text(plan.total_minutes),
        started_at=started_at.strftime("%Y-%m-%d %H:%M %Z").strip(),
        ends_at=_clock(started_at, plan.total_minutes).strftime("%Y-%m-%d %H:%M %Z").strip(),
        premedications=premeds,
        nursing_instructions=plan.nursing_instructions,
        warnings=plan.warnings,
        timeline_svg=timeline_svg(plan),
    )


def local_now(epoch: float) -> datetime:
    """The server's local time (clock times on the worksheet say which zone they are in)."""
    return datetime.fromtimestamp(epoch).astimezone()
