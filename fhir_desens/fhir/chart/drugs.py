"""Which drug the plan may be for: candidate drugs from the chart's orders and drug allergies.

Active, on-hold and draft MedicationRequests first (in that order), then the patient's current
drug allergies, de-duplicated by RxNorm code or normalized name. The drug is
``medicationCodeableConcept`` or a ``medicationReference`` resolved through ``medications``
(keyed ``Medication/<id>``, or ``#id`` for contained resources). The name is the drug-class
table's name when the codes or text identify one drug, so an order for "Carboplatin 400 mg (AUC 5)
in 250 mL D5W IV" is offered as "Carboplatin". An order that cannot be used (no drug, not active,
do-not-perform) is skipped, never guessed at.

Also the bridges to the pure cross-reactivity engine: an allergy record as an ``AllergenRef``, a
candidate as a ``DrugRef``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_desens.drugs.monograph import ordered_tablets_strength
from fhir_desens.errors import UnitError
from fhir_desens.fhir.allergy import RXNORM, SNOMED, Allergy
from fhir_desens.fhir.chart.values import codings, json_decimal
from fhir_desens.fhir.raw import objects, text_or_none
from fhir_desens.protocol.calculate import MAX_TARGET, MIN_TARGET
from fhir_desens.protocol.crossreactivity import AllergenRef, DrugRef, known_drug_name
from fhir_desens.protocol.quantity import Quantity, mul
from fhir_desens.protocol.quantity import unit as unit_of

__all__ = ["DrugCandidate", "allergen_ref", "drug_candidates", "drug_ref"]

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


# ----------------------------------------------------------------------------------------------
# tolerant accessors


def _codes(concept: Any, system: str) -> tuple[str, ...]:
    codes = (text_or_none(c.get("code")) for c in codings(concept) if c.get("system") == system)
    return tuple(dict.fromkeys(code for code in codes if code))


def _concept_text(concept: Any) -> str | None:
    """The concept's text, else its first coding display."""
    if not isinstance(concept, Mapping):
        return None
    return text_or_none(concept.get("text")) or next(
        (d for d in (text_or_none(c.get("display")) for c in codings(concept)) if d), None
    )


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
        for coding in codings(route):
            code = text_or_none(coding.get("code"))
            if coding.get("system") == SNOMED and code in _ROUTE_CODES:
                return _ROUTE_CODES[code]
        for text in filter(
            None, [_concept_text(route), *(text_or_none(c.get("display")) for c in codings(route))]
        ):
            kind = _ROUTE_WORDS.get(_normalized(text))
            if kind:
                return kind
    return None


def _dose(request: Mapping[str, Any], rxnorm: tuple[str, ...] = ()) -> Quantity | None:
    """The first dose quantity whose unit the engine knows (mg, g, ug, [iU]), or a number of tablets of the
    product the order names by its RxNorm code (1 tablet of SMX/TMP DS: 800 mg); ranges give None."""
    for dosage in objects(request.get("dosageInstruction")):
        for dose_and_rate in objects(dosage.get("doseAndRate")):
            quantity = dose_and_rate.get("doseQuantity")
            if not isinstance(quantity, Mapping):
                continue
            value = json_decimal(quantity.get("value"))
            code = text_or_none(quantity.get("code")) or text_or_none(quantity.get("unit"))
            if value is None or value <= 0 or code is None:
                continue
            try:
                known = unit_of(code)
            except UnitError:  # e.g. {tbl}: the tablets' strength, when the order names the product
                tablets = _tablets_dose(value, code, rxnorm)
                if tablets is not None:
                    return tablets
                continue
            if known.dimension.value in ("mass", "activity") and _plausible_dose(value, known.code):
                return Quantity(value, known.code)
    return None


def _tablets_dose(count: Decimal, code: str, rxnorm: tuple[str, ...]) -> Quantity | None:
    """``count`` tablets as a dose: the walk of session 9 found the SMX/TMP order ("1 tablet" of DS) left the
    target dose empty, and a typed 160 mg (the trimethoprim) headed a plan of 800 mg sulfamethoxazole."""
    if code.strip("{}").lower() not in ("tbl", "tablet", "tablets"):
        return None
    strength = ordered_tablets_strength(rxnorm)
    if strength is None:
        return None
    dose = mul(strength.value, count)
    return Quantity(dose, strength.unit) if _plausible_dose(dose, strength.unit) else None


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
    displays = [text_or_none(c.get("display")) for c in codings(concept) if c.get("system") == RXNORM]
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
        dose=_dose(request, rxnorm),
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
