"""What the chart says for planning a desensitization: candidate drugs and the latest height/weight.

Raw FHIR R4 resources (``dict``) in, small immutable records out; no network. Reading is tolerant
like :mod:`fhir_desens.fhir.allergy`: a resource that cannot be used (no drug, unknown unit, not
final) is skipped, never guessed at.

* **Drug candidates**: active, on-hold and draft MedicationRequests first (in that order), then the
  patient's current drug allergies, de-duplicated by RxNorm code or normalized name. The drug is
  ``medicationCodeableConcept`` or a ``medicationReference`` resolved through ``medications``
  (keyed ``Medication/<id>``, or ``#id`` for contained resources). The name is the drug-class
  table's name when the codes or text identify one drug, so an order for "Carboplatin 400 mg (AUC 5)
  in 250 mL D5W IV" is offered as "Carboplatin".
* **Body measurements**: LOINC 8302-2 (also 8306-3 lying, 8308-9 standing) and 29463-7 (also
  3141-9); status final, amended or corrected; the latest by ``effectiveDateTime``,
  ``effectivePeriod.end`` (else start), ``effectiveInstant`` or ``issued``; undated ones only when
  no dated one exists. Units are converted exactly to cm and kg (1 in = 2.54 cm, 1 lb =
  0.45359237 kg, both exact by definition).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_desens.errors import UnitError
from fhir_desens.fhir.allergy import RXNORM, SNOMED, Allergy
from fhir_desens.fhir.raw import objects, text_or_none
from fhir_desens.protocol.calculate import MAX_TARGET, MIN_TARGET
from fhir_desens.protocol.crossreactivity import AllergenRef, DrugRef, known_drug_name
from fhir_desens.protocol.quantity import EXACT, Quantity, plain
from fhir_desens.protocol.quantity import unit as unit_of

__all__ = [
    "HEIGHT_CODES",
    "LOINC",
    "WEIGHT_CODES",
    "BodyMeasurements",
    "DrugCandidate",
    "Measurement",
    "allergen_ref",
    "drug_candidates",
    "drug_ref",
    "latest_body_measurements",
]

LOINC = "http://loinc.org"
HEIGHT_CODES = frozenset({"8302-2", "8306-3", "8308-9"})  # body height; lying; standing
WEIGHT_CODES = frozenset({"29463-7", "3141-9"})  # body weight; measured
_USABLE_OBSERVATION = frozenset({"final", "amended", "corrected"})
_ORDER_STATUS_RANK = {"active": 0, "on-hold": 1, "draft": 2}
_ROUTE_CODES = {"26643006": "oral", "47625008": "intravenous"}
_ROUTE_WORDS = {
    "oral": "oral",
    "po": "oral",
    "by mouth": "oral",
    "per os": "oral",
    "oral route": "oral",
    "intravenous": "intravenous",
    "intravenous route": "intravenous",
    "iv": "intravenous",
}

#: Plausible body measurements, inclusive: from a very preterm newborn to the tallest and heaviest
#: people recorded. Anything outside is a typing or unit error and is never pre-filled.
HEIGHT_RANGE_CM = (Decimal(20), Decimal(280))
WEIGHT_RANGE_KG = (Decimal("0.3"), Decimal(650))
#: A measurement dated up to a day ahead is a time zone east of UTC, not the future.
FUTURE_TOLERANCE = timedelta(days=1)

#: Exact factors to cm and kg, by UCUM code (and the common non-UCUM spellings).
_TO_CM = {
    "cm": Decimal(1),
    "m": Decimal(100),
    "mm": Decimal("0.1"),
    "[in_i]": Decimal("2.54"),
    "in": Decimal("2.54"),
    "[in_us]": Decimal("2.54"),
    "centimeter": Decimal(1),
    "centimeters": Decimal(1),
    "centimetre": Decimal(1),
    "centimetres": Decimal(1),
    "meter": Decimal(100),
    "meters": Decimal(100),
    "metre": Decimal(100),
    "metres": Decimal(100),
    "inch": Decimal("2.54"),
    "inches": Decimal("2.54"),
}
_TO_KG = {
    "kg": Decimal(1),
    "g": Decimal("0.001"),
    "[lb_av]": Decimal("0.45359237"),
    "lb": Decimal("0.45359237"),
    "lbs": Decimal("0.45359237"),
    "[oz_av]": Decimal("0.028349523125"),
    "oz": Decimal("0.028349523125"),
    "kilogram": Decimal(1),
    "kilograms": Decimal(1),
    "kgs": Decimal(1),
    "gram": Decimal("0.001"),
    "grams": Decimal("0.001"),
    "pound": Decimal("0.45359237"),
    "pounds": Decimal("0.45359237"),
}


@dataclass(frozen=True)
class DrugCandidate:
    name: str
    rxnorm: tuple[str, ...]
    source: str  # "order" | "allergy"
    route: str | None  # "oral" | "intravenous" | None
    indication: str | None
    order_reference: str | None  # "MedicationRequest/<id>"
    dose: Quantity | None
    text: str = (
        ""  # the order's or allergy record's own wording, e.g. "Carboplatin 400 mg (AUC 5) in 250 mL D5W IV"
    )


@dataclass(frozen=True)
class Measurement:
    value: Decimal
    unit: str  # "cm" | "kg"
    date: str | None
    reference: str | None


@dataclass(frozen=True)
class BodyMeasurements:
    height: Measurement | None
    weight: Measurement | None
    notes: tuple[str, ...] = ()  # measurements in the chart that were not used, and why


# ----------------------------------------------------------------------------------------------
# tolerant accessors


def _codings(concept: Any) -> list[Mapping[str, Any]]:
    return objects(concept.get("coding")) if isinstance(concept, Mapping) else []


def _codes(concept: Any, system: str) -> tuple[str, ...]:
    codes = (text_or_none(c.get("code")) for c in _codings(concept) if c.get("system") == system)
    return tuple(dict.fromkeys(code for code in codes if code))


def _concept_text(concept: Any) -> str | None:
    """The concept's text, else its first coding display."""
    if not isinstance(concept, Mapping):
        return None
    return text_or_none(concept.get("text")) or next(
        (d for d in (text_or_none(c.get("display")) for c in _codings(concept)) if d), None
    )


def _decimal(value: Any) -> Decimal | None:
    """A JSON number as Decimal; the project's JSON reader already yields Decimal, stdlib json gives float/int."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _normalized(name: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", name.lower()))


def _capitalized(name: str) -> str:
    return name[:1].upper() + name[1:]


# ----------------------------------------------------------------------------------------------
# drug candidates


def _medication_concept(
    request: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    concept = request.get("medicationCodeableConcept")
    if isinstance(concept, Mapping):
        return concept
    reference = request.get("medicationReference")
    if not isinstance(reference, Mapping):
        return None
    target = text_or_none(reference.get("reference"))
    medication: Mapping[str, Any] | None = None
    if target and target.startswith("#"):
        contained = (r for r in objects(request.get("contained")) if r.get("resourceType") == "Medication")
        medication = next((r for r in contained if r.get("id") == target[1:]), None)
        medication = medication or medications.get(target)
    elif target:
        medication = medications.get(target)
    if medication is not None and isinstance(medication.get("code"), Mapping):
        code: Mapping[str, Any] = medication["code"]
        return code
    display = text_or_none(reference.get("display"))
    return {"text": display} if display else None


def _route(request: Mapping[str, Any]) -> str | None:
    for dosage in objects(request.get("dosageInstruction")):
        route = dosage.get("route")
        for coding in _codings(route):
            code = text_or_none(coding.get("code"))
            if coding.get("system") == SNOMED and code in _ROUTE_CODES:
                return _ROUTE_CODES[code]
        for text in filter(
            None, [_concept_text(route), *(text_or_none(c.get("display")) for c in _codings(route))]
        ):
            kind = _ROUTE_WORDS.get(_normalized(text))
            if kind:
                return kind
    return None


def _dose(request: Mapping[str, Any]) -> Quantity | None:
    """The first dose quantity whose unit the engine knows (mg, g, ug, [iU]); tablets and ranges give None."""
    for dosage in objects(request.get("dosageInstruction")):
        for dose_and_rate in objects(dosage.get("doseAndRate")):
            quantity = dose_and_rate.get("doseQuantity")
            if not isinstance(quantity, Mapping):
                continue
            value = _decimal(quantity.get("value"))
            code = text_or_none(quantity.get("code")) or text_or_none(quantity.get("unit"))
            if value is None or value <= 0 or code is None:
                continue
            try:
                known = unit_of(code)
            except UnitError:  # e.g. {tbl}: not a dose the engine can plan with
                continue
            if known.dimension.value in ("mass", "activity") and _plausible_dose(value, known.code):
                return Quantity(value, known.code)
    return None


def _plausible_dose(value: Decimal, code: str) -> bool:
    """Within the engine's target bounds, so a chart's 1e44 mg never reaches the arithmetic."""
    if not -20 < value.adjusted() < 20:
        return False
    canonical = Quantity(value, code).canonical()
    dimension = canonical.dimension
    return MIN_TARGET[dimension] <= canonical.value <= MAX_TARGET[dimension]


def _about(resource: Mapping[str, Any], patient: str | None) -> bool:
    """Whether a resolved resource is about the patient (no patient given: trusted as before)."""
    if patient is None:
        return True
    subject = resource.get("subject")
    reference = text_or_none(subject.get("reference")) if isinstance(subject, Mapping) else None
    return reference is None or reference == patient or reference.endswith("/" + patient)


def _indication(
    request: Mapping[str, Any], conditions: Mapping[str, Mapping[str, Any]], patient: str | None = None
) -> str | None:
    texts: list[str] = [t for t in (_concept_text(c) for c in objects(request.get("reasonCode"))) if t]
    for reference in objects(request.get("reasonReference")):
        text = text_or_none(reference.get("display"))
        target = conditions.get(text_or_none(reference.get("reference")) or "")
        if target is not None and not (isinstance(target, Mapping) and _about(target, patient)):
            target = None  # another patient's Condition: never shown here
        if text is None and target is not None:
            text = _concept_text(target.get("code"))
        if text:
            texts.append(text)
    unique = list(dict.fromkeys(texts))
    return "; ".join(unique) if unique else None


def _candidate_name(rxnorm: Sequence[str], text: str, concept: Any = None) -> str:
    """The table's name, else the display of a single RxNorm coding ('metoprolol'), else the text."""
    known = known_drug_name(rxnorm, text)
    if known:
        return _capitalized(known)
    displays = [text_or_none(c.get("display")) for c in _codings(concept) if c.get("system") == RXNORM]
    if len(displays) == 1 and displays[0]:
        return _capitalized(displays[0])
    return text


def _order_candidate(
    request: Mapping[str, Any],
    medications: Mapping[str, Mapping[str, Any]],
    conditions: Mapping[str, Mapping[str, Any]],
    patient: str | None = None,
) -> DrugCandidate | None:
    concept = _medication_concept(request, medications)
    text = _concept_text(concept)
    if concept is None or text is None:
        return None
    rxnorm = _codes(concept, RXNORM)
    order_id = text_or_none(request.get("id"))
    return DrugCandidate(
        name=_candidate_name(rxnorm, text, concept),
        rxnorm=rxnorm,
        source="order",
        route=_route(request),
        indication=_indication(request, conditions, patient),
        order_reference=f"MedicationRequest/{order_id}" if order_id else None,
        dose=_dose(request),
        text=text,
    )


def _allergy_candidate(allergy: Allergy) -> DrugCandidate | None:
    if not (allergy.is_drug and allergy.is_current):
        return None
    text = allergy.substance.display
    if not text:
        return None
    return DrugCandidate(
        name=_candidate_name(allergy.rxnorm_codes, text),
        rxnorm=allergy.rxnorm_codes,
        source="allergy",
        route=None,
        indication=None,
        order_reference=None,
        dose=None,
        text=text,
    )


def _orders(requests: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    usable = [
        r
        for r in requests
        if isinstance(r, Mapping)
        and r.get("resourceType", "MedicationRequest") == "MedicationRequest"
        and text_or_none(r.get("status")) in _ORDER_STATUS_RANK
        and r.get("doNotPerform") is not True
    ]
    return sorted(usable, key=lambda r: _ORDER_STATUS_RANK[str(text_or_none(r.get("status")))])


def drug_candidates(
    medication_requests: Iterable[Mapping[str, Any]],
    allergies: Iterable[Allergy],
    medications: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    conditions: Mapping[str, Mapping[str, Any]] | None = None,
    patient: str | None = None,
) -> list[DrugCandidate]:
    """Drugs to offer: active/on-hold/draft orders first, then current drug allergies; de-duplicated.

    ``medications`` resolves ``medicationReference`` (keys ``Medication/<id>`` or ``#id``);
    ``conditions`` resolves ``reasonReference`` without a display (keys as the references are
    written, e.g. ``Condition/<id>`` or a bundle's ``urn:uuid:...``); with ``patient``
    (``Patient/<id>``) a Condition about someone else is ignored. A candidate is dropped when
    an earlier one has a common RxNorm code or the same normalized name.
    """
    found: list[DrugCandidate | None] = [
        _order_candidate(request, medications or {}, conditions or {}, patient)
        for request in _orders(medication_requests)
    ]
    found += [_allergy_candidate(allergy) for allergy in allergies]
    unique: list[DrugCandidate] = []
    for candidate in found:
        if candidate is not None and not any(_same(candidate, kept) for kept in unique):
            unique.append(candidate)
    return unique


def _same(a: DrugCandidate, b: DrugCandidate) -> bool:
    return bool(set(a.rxnorm) & set(b.rxnorm)) or _normalized(a.name) == _normalized(b.name)


# ----------------------------------------------------------------------------------------------
# height and weight


def _when(observation: Mapping[str, Any]) -> str | None:
    period = observation.get("effectivePeriod")
    candidates = [
        observation.get("effectiveDateTime"),
        period.get("end") if isinstance(period, Mapping) else None,
        period.get("start") if isinstance(period, Mapping) else None,
        observation.get("effectiveInstant"),
        observation.get("issued"),
    ]
    return next((text for text in map(text_or_none, candidates) if text and _instant(text) is not None), None)


_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")


def _instant(text: str) -> datetime | None:
    """A FHIR date or dateTime as an aware datetime (partial dates at their start; no zone means UTC)."""
    match = _PARTIAL_DATE.match(text)
    try:
        if match:
            year, month, day = (int(part) if part else 1 for part in match.groups())
            return datetime(year, month, day, tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _has_code(observation: Mapping[str, Any], codes: frozenset[str]) -> bool:
    return any(
        c.get("system") == LOINC and text_or_none(c.get("code")) in codes
        for c in _codings(observation.get("code"))
    )


def _factor(spelling: str | None, factors: Mapping[str, Decimal]) -> Decimal | None:
    if spelling is None:
        return None
    return factors.get(spelling) or factors.get(spelling.lower())


def _shown(value: Decimal) -> str:
    """A chart number for a note: plain when it is of human size, else as the EHR's exponent form."""
    return plain(value) if -7 < value.adjusted() < 10 else str(value)


@dataclass(frozen=True)
class _Kind:
    label: str  # "Height" | "Weight"
    codes: frozenset[str]
    factors: Mapping[str, Decimal]
    unit: str  # "cm" | "kg"
    plausible: tuple[Decimal, Decimal]  # inclusive, in ``unit``


_HEIGHT = _Kind("Height", HEIGHT_CODES, _TO_CM, "cm", HEIGHT_RANGE_CM)
_WEIGHT = _Kind("Weight", WEIGHT_CODES, _TO_KG, "kg", WEIGHT_RANGE_KG)


def _reading(observation: Mapping[str, Any], kind: _Kind, now: datetime) -> Measurement | str | None:
    """The observation as a measurement; a note (str) when it is a measurement the app will not use;
    None when it is no usable measurement at all (not final, no quantity)."""
    if text_or_none(observation.get("status")) not in _USABLE_OBSERVATION:
        return None
    quantity = observation.get("valueQuantity")
    if not isinstance(quantity, Mapping):
        return None
    value = _decimal(quantity.get("value"))
    code, unit_text = text_or_none(quantity.get("code")), text_or_none(quantity.get("unit"))
    by_code, by_unit = _factor(code, kind.factors), _factor(unit_text, kind.factors)
    factor = by_code or by_unit
    if value is None or factor is None:
        return None
    observation_id = text_or_none(observation.get("id"))
    where = ", ".join(
        filter(None, [f"Observation/{observation_id}" if observation_id else None, _when(observation)])
    )
    said = f"{kind.label} {_shown(value)} {unit_text or code}" + (f" ({where})" if where else "")
    if by_code is not None and by_unit is not None and by_code != by_unit:
        return f"{said} not used: its unit '{unit_text}' and code '{code}' disagree"
    date = _when(observation)
    moment = _instant(date) if date else None
    if moment is not None and moment > now + FUTURE_TOLERANCE:
        return f"{said} not used: dated in the future"
    low, high = kind.plausible
    converted = EXACT.multiply(value, factor) if -20 < value.adjusted() < 20 else None
    if converted is None or not low <= converted <= high:
        return f"{said} not used: outside {plain(low)}\u2013{plain(high)} {kind.unit}"
    return Measurement(
        value=converted,
        unit=kind.unit,
        date=date,
        reference=f"Observation/{observation_id}" if observation_id else None,
    )


def _latest(
    observations: Sequence[Mapping[str, Any]], kind: _Kind, now: datetime
) -> tuple[Measurement | None, list[str]]:
    readings = [_reading(o, kind, now) for o in observations if _has_code(o, kind.codes)]
    found = [r for r in readings if isinstance(r, Measurement)]
    notes = [r for r in readings if isinstance(r, str)]
    dated = [(moment, m) for m in found if m.date and (moment := _instant(m.date)) is not None]
    if dated:
        return max(dated, key=lambda pair: pair[0])[1], notes
    return (found[0] if found else None), notes


def latest_body_measurements(
    observations: Iterable[Mapping[str, Any]], *, now: datetime | None = None
) -> BodyMeasurements:
    """The latest plausible height (cm) and weight (kg) Observations, converted exactly.

    Future-dated (beyond a day's time-zone slack), implausible and self-contradicting ones (unit
    and code naming different units) are not used; each is named in ``notes`` for the person.
    """
    items = [o for o in observations if isinstance(o, Mapping)]
    moment = now or datetime.now(UTC)
    height, height_notes = _latest(items, _HEIGHT, moment)
    weight, weight_notes = _latest(items, _WEIGHT, moment)
    return BodyMeasurements(height=height, weight=weight, notes=tuple(height_notes + weight_notes))


# ----------------------------------------------------------------------------------------------
# bridges to the pure cross-reactivity engine


def allergen_ref(allergy: Allergy, key: str) -> AllergenRef:
    """The allergy record as the cross-reactivity engine sees it (its text and every coding display)."""
    displays = [c.display for c in allergy.substance.codings if c.display]
    text = "; ".join(dict.fromkeys(t for t in [allergy.substance.text, *displays] if t))
    return AllergenRef(
        key=key,
        name=allergy.substance_display,
        rxnorm=allergy.rxnorm_codes,
        snomed=allergy.snomed_codes,
        text=text,
    )


def drug_ref(candidate: DrugCandidate) -> DrugRef:
    """The candidate as the cross-reactivity engine sees it."""
    return DrugRef(name=candidate.name, rxnorm=candidate.rxnorm)
