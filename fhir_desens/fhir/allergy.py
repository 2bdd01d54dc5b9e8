"""Reading FHIR R4 AllergyIntolerance resources into small, immutable domain records.

The input is the raw resource ``dict`` as an EHR returned it (the source of truth, see
docs/fhir-smart.md §2.4); the output is an :class:`Allergy`. Reading is deliberately tolerant,
because real EHR content varies (everything below was seen in ``../shared/data``):

* ``type``, ``category``, ``criticality``, ``reaction.severity``, ``verificationStatus`` may be
  absent; nothing is guessed for them (they stay ``None`` / empty);
* ``code`` may mix RxNorm, SNOMED CT (substance *and* finding concepts), ATC and local systems in
  one CodeableConcept; every coding is kept;
* ``onset[x]`` may carry only a data-absent-reason extension (``_onsetDateTime``): the onset is then
  ``None`` and the reason is kept in :attr:`Allergy.onset_absent_reason`;
* clinical and verification status are CodeableConcepts in R4 (plain strings in STU3: accepted too);
* "no known allergy" records are AllergyIntolerance resources whose code is a SNOMED CT situation
  (716186003 and friends) or an IPS absent/unknown code; they are flagged, not treated as allergies;
* ``entered-in-error`` records are flagged so that views can hide them.

Only a resource that is not an AllergyIntolerance at all is refused (:class:`MappingError`).
This module does no network and no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_desens.errors import MappingError
from fhir_desens.fhir.raw import objects, text_or_none

__all__ = [
    "ATC",
    "CLINICAL_STATUS_SYSTEM",
    "DATA_ABSENT_REASON",
    "IPS_ABSENT_UNKNOWN",
    "NO_INFORMATION_CODES",
    "NO_KNOWN_ALLERGY_CODES",
    "RXNORM",
    "SNOMED",
    "VERIFICATION_STATUS_SYSTEM",
    "Allergy",
    "Coding",
    "Concept",
    "Reaction",
    "allergies_from_bundle",
    "allergy_from_fhir",
    "sort_for_display",
]

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"
CLINICAL_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VERIFICATION_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
IPS_ABSENT_UNKNOWN = "http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips"

#: Codes that state the *absence* of known allergies (a negative finding, not an allergy).
#: SNOMED CT situation concepts used by the FHIR spec examples, US Core and IPS, plus the IPS
#: absent/unknown code system.
NO_KNOWN_ALLERGY_CODES: frozenset[tuple[str, str]] = frozenset(
    {
        (SNOMED, "716186003"),  # No known allergy (situation)
        (SNOMED, "409137002"),  # No known drug allergy (situation)
        (SNOMED, "429625007"),  # No known food allergy (situation)
        (SNOMED, "428607008"),  # No known environmental allergy (situation)
        (SNOMED, "716184000"),  # No known latex allergy (situation)
        (SNOMED, "428197003"),  # No known insect allergy (situation)
        (IPS_ABSENT_UNKNOWN, "no-known-allergies"),
        (IPS_ABSENT_UNKNOWN, "no-known-medication-allergies"),
        (IPS_ABSENT_UNKNOWN, "no-known-food-allergies"),
        (IPS_ABSENT_UNKNOWN, "no-known-environmental-allergies"),
    }
)

#: Codes saying that nothing is known about allergies (neither allergies nor their absence).
NO_INFORMATION_CODES: frozenset[tuple[str, str]] = frozenset({(IPS_ABSENT_UNKNOWN, "no-allergy-info")})

_CLINICAL_STATUSES = frozenset({"active", "inactive", "resolved"})
_VERIFICATION_STATUSES = frozenset({"unconfirmed", "presumed", "confirmed", "refuted", "entered-in-error"})


@dataclass(frozen=True)
class Coding:
    """One coding of a concept; any part may be missing in real data."""

    system: str | None
    code: str | None
    display: str | None = None


@dataclass(frozen=True)
class Concept:
    """A CodeableConcept reduced to its text and codings."""

    text: str | None
    codings: tuple[Coding, ...] = ()

    @property
    def display(self) -> str:
        """Human label: the text, else the first coding display, else the first code, else ''."""
        if self.text:
            return self.text
        for coding in self.codings:
            if coding.display:
                return coding.display
        for coding in self.codings:
            if coding.code:
                return coding.code
        return ""

    def codes(self, system: str) -> tuple[str, ...]:
        """Codes of this concept in ``system`` (in document order, without duplicates)."""
        seen: list[str] = []
        for coding in self.codings:
            if coding.system == system and coding.code and coding.code not in seen:
                seen.append(coding.code)
        return tuple(seen)

    def has_any(self, pairs: frozenset[tuple[str, str]]) -> bool:
        return any((c.system, c.code) in pairs for c in self.codings if c.system and c.code)


@dataclass(frozen=True)
class Reaction:
    """One ``AllergyIntolerance.reaction`` element."""

    manifestations: tuple[Concept, ...]
    severity: str | None = None
    substance: Concept | None = None
    description: str | None = None
    onset: str | None = None
    exposure_route: Concept | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Allergy:
    """The parts of an AllergyIntolerance the app shows and reasons about."""

    id: str | None
    substance: Concept
    categories: tuple[str, ...] = ()
    type: str | None = None
    criticality: str | None = None
    clinical_status: str | None = None
    verification_status: str | None = None
    reactions: tuple[Reaction, ...] = ()
    onset: str | None = None
    onset_absent_reason: str | None = None
    recorded_date: str | None = None
    last_occurrence: str | None = None
    notes: tuple[str, ...] = ()
    patient_reference: str | None = None

    @property
    def substance_display(self) -> str:
        return self.substance.display or "(substance not recorded)"

    @property
    def rxnorm_codes(self) -> tuple[str, ...]:
        return self.substance.codes(RXNORM)

    @property
    def snomed_codes(self) -> tuple[str, ...]:
        return self.substance.codes(SNOMED)

    @property
    def is_entered_in_error(self) -> bool:
        return self.verification_status == "entered-in-error"

    @property
    def is_refuted(self) -> bool:
        return self.verification_status == "refuted"

    @property
    def is_no_known_allergy(self) -> bool:
        """A record stating that the patient has no known allergies (of some kind)."""
        return self.substance.has_any(NO_KNOWN_ALLERGY_CODES)

    @property
    def is_no_information(self) -> bool:
        """A record stating that nothing is known about the patient's allergies."""
        return self.substance.has_any(NO_INFORMATION_CODES)

    @property
    def is_drug(self) -> bool:
        """A medication allergy: category ``medication``, or no category but an RxNorm code."""
        if self.is_no_known_allergy or self.is_no_information:
            return False
        if self.categories:
            return "medication" in self.categories
        return bool(self.rxnorm_codes)

    @property
    def is_current(self) -> bool:
        """Shown as a current allergy: not entered in error, not refuted, not inactive/resolved."""
        if self.is_entered_in_error or self.is_refuted:
            return False
        return self.clinical_status in (None, "active")


# ----------------------------------------------------------------------------------------------
# tolerant accessors


def _coding(value: Mapping[str, Any]) -> Coding | None:
    coding = Coding(
        text_or_none(value.get("system")), text_or_none(value.get("code")), text_or_none(value.get("display"))
    )
    if coding.system is None and coding.code is None and coding.display is None:
        return None
    return coding


def _concept(value: Any) -> Concept | None:
    if isinstance(value, str):  # STU3-era or sloppy content: a bare code
        text = text_or_none(value)
        return Concept(text=text) if text else None
    if not isinstance(value, Mapping):
        return None
    codings = tuple(c for c in (_coding(item) for item in objects(value.get("coding"))) if c is not None)
    text = text_or_none(value.get("text"))
    if text is None and not codings:
        return None
    return Concept(text=text, codings=codings)


def _status(value: Any, system: str, allowed: frozenset[str]) -> str | None:
    """A status code from a CodeableConcept (preferring the official system) or a bare string."""
    if isinstance(value, str):
        code = value.strip().lower()
        return code if code in allowed else None
    concept = _concept(value)
    if concept is None:
        return None
    for coding in concept.codings:
        if coding.system == system and coding.code in allowed:
            return coding.code
    for coding in concept.codings:
        if coding.code in allowed:
            return coding.code
    text = (concept.text or "").strip().lower()
    return text if text in allowed else None


def _code(value: Any, allowed: frozenset[str] | None = None) -> str | None:
    text = text_or_none(value)
    if text is None:
        return None
    if allowed is not None and text not in allowed:
        return None
    return text


def _absent_reason(resource: Mapping[str, Any], element: str) -> str | None:
    shadow = resource.get("_" + element)
    if not isinstance(shadow, Mapping):
        return None
    for extension in objects(shadow.get("extension")):
        if extension.get("url") == DATA_ABSENT_REASON:
            return text_or_none(extension.get("valueCode")) or "unknown"
    return None


def _quantity_text(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return None
    number = value.get("value")
    if isinstance(number, bool) or not isinstance(number, int | Decimal | float):
        return None
    unit = text_or_none(value.get("unit")) or text_or_none(value.get("code")) or ""
    return f"{number} {unit}".strip()


def _onset(resource: Mapping[str, Any], prefix: str = "onset") -> tuple[str | None, str | None]:
    """(onset text, data-absent reason) from ``onset[x]``."""
    for suffix in ("DateTime", "String"):
        text = text_or_none(resource.get(prefix + suffix))
        if text:
            return text, None
    age = _quantity_text(resource.get(prefix + "Age"))
    if age:
        return f"age {age}", None
    period = resource.get(prefix + "Period")
    if isinstance(period, Mapping):
        start, end = text_or_none(period.get("start")), text_or_none(period.get("end"))
        if start or end:
            return f"{start or '?'} – {end or '?'}", None
    range_ = resource.get(prefix + "Range")
    if isinstance(range_, Mapping):
        low, high = _quantity_text(range_.get("low")), _quantity_text(range_.get("high"))
        if low or high:
            return f"{low or '?'} – {high or '?'}", None
    for suffix in ("DateTime", "Age", "Period", "Range", "String"):
        reason = _absent_reason(resource, prefix + suffix)
        if reason:
            return None, reason
    return None, None


def _notes(value: Any) -> tuple[str, ...]:
    return tuple(text for text in (text_or_none(item.get("text")) for item in objects(value)) if text)


def _reaction(value: Mapping[str, Any]) -> Reaction:
    manifestations = tuple(m for m in (_concept(item) for item in objects(value.get("manifestation"))) if m)
    return Reaction(
        manifestations=manifestations,
        severity=_code(value.get("severity"), frozenset({"mild", "moderate", "severe"})),
        substance=_concept(value.get("substance")),
        description=text_or_none(value.get("description")),
        onset=text_or_none(value.get("onset")),
        exposure_route=_concept(value.get("exposureRoute")),
        notes=_notes(value.get("note")),
    )


def allergy_from_fhir(resource: Mapping[str, Any]) -> Allergy:
    """Read one AllergyIntolerance resource (a JSON dict) into an :class:`Allergy`."""
    if not isinstance(resource, Mapping) or resource.get("resourceType") != "AllergyIntolerance":
        kind = resource.get("resourceType") if isinstance(resource, Mapping) else type(resource).__name__
        raise MappingError(f"expected an AllergyIntolerance resource, got {kind!r}")
    categories_raw = resource.get("category")
    if isinstance(categories_raw, str):
        categories_raw = [categories_raw]
    categories = tuple(
        c
        for c in (_code(item) for item in (categories_raw if isinstance(categories_raw, list) else []))
        if c is not None
    )
    onset, absent = _onset(resource)
    patient = resource.get("patient")
    return Allergy(
        id=text_or_none(resource.get("id")),
        substance=_concept(resource.get("code")) or Concept(text=None),
        categories=categories,
        type=_code(resource.get("type"), frozenset({"allergy", "intolerance"})),
        criticality=_code(resource.get("criticality"), frozenset({"low", "high", "unable-to-assess"})),
        clinical_status=_status(resource.get("clinicalStatus"), CLINICAL_STATUS_SYSTEM, _CLINICAL_STATUSES),
        verification_status=_status(
            resource.get("verificationStatus"), VERIFICATION_STATUS_SYSTEM, _VERIFICATION_STATUSES
        ),
        reactions=tuple(_reaction(item) for item in objects(resource.get("reaction"))),
        onset=onset,
        onset_absent_reason=absent,
        recorded_date=text_or_none(resource.get("recordedDate")),
        last_occurrence=text_or_none(resource.get("lastOccurrence")),
        notes=_notes(resource.get("note")),
        patient_reference=text_or_none(patient.get("reference")) if isinstance(patient, Mapping) else None,
    )


def allergies_from_bundle(bundle: Mapping[str, Any]) -> list[Allergy]:
    """Every AllergyIntolerance among a Bundle's entries (search ``include``/``outcome`` entries skipped)."""
    found: list[Allergy] = []
    for entry in objects(bundle.get("entry")):
        search = entry.get("search")
        if isinstance(search, Mapping) and search.get("mode") in ("include", "outcome"):
            continue
        resource = entry.get("resource")
        if isinstance(resource, Mapping) and resource.get("resourceType") == "AllergyIntolerance":
            found.append(allergy_from_fhir(resource))
    return found


def sort_for_display(allergies: Iterable[Allergy]) -> list[Allergy]:
    """Drug allergies first, then the others; current before inactive/resolved; otherwise stable."""
    items: Sequence[Allergy] = list(allergies)
    return sorted(items, key=lambda a: (not a.is_drug, not a.is_current))
