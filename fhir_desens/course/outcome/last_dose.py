"""The evidence of the last dose, from the EHR: MedicationAdministrations (proof) and the MedicationRequest
schedule (a plan, not proof), for the tolerance window (:mod:`fhir_desens.drugs.tolerance`).

The app's own session record comes first; these are the second and third sources. EHR content varies:

* an administration counts when its ``status`` is ``completed`` and it names the drug (its
  ``medicationCodeableConcept``, or the ``display``/contained Medication of ``medicationReference``);
  the time is ``effectiveDateTime`` or the end (else the start) of ``effectivePeriod``. Millennium cannot
  filter administrations by drug, so the drug is matched here (same ingredient, as the allergy matching);
* an order's schedule is read from ``dosageInstruction.timing``: explicit ``event`` times, or
  ``repeat`` with ``frequency`` per ``period`` ``periodUnit`` from ``boundsPeriod.start`` (else
  ``authoredOn``) to ``boundsPeriod.end`` (else ``until``); at most :data:`MAX_SCHEDULED` times per order.
  Only ``active``, ``on-hold`` and ``completed`` orders count.

Times without a zone are refused as evidence (skipped), never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.drugs.tolerance import DoseEvidence, DoseSource
from fhir_desens.errors import DesensError
from fhir_desens.protocol.crossreactivity import DrugRef, ingredients_of

__all__ = [
    "MAX_SCHEDULED",
    "ChartDoses",
    "administration_doses",
    "ehr_doses",
    "names_drug",
    "scheduled_doses",
]

MAX_SCHEDULED = 400
_UNITS = {
    "s": timedelta(seconds=1),
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "wk": timedelta(weeks=1),
}
_ORDER_STATUSES = {"active", "on-hold", "completed"}
_RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None and parsed.utcoffset() is not None else None


def _drug_of(concept: Any) -> DrugRef | None:
    if not isinstance(concept, Mapping):
        return None
    codings = [c for c in concept.get("coding") or [] if isinstance(c, Mapping)]
    texts = [str(concept.get("text") or "")] + [str(c.get("display") or "") for c in codings]
    codes = tuple(str(c["code"]) for c in codings if c.get("system") == _RXNORM and c.get("code"))
    name = " ".join(t for t in texts if t).strip()
    return DrugRef(name, codes) if name or codes else None


def _medication(resource: Mapping[str, Any]) -> DrugRef | None:
    concept = resource.get("medicationCodeableConcept")
    if concept is not None:
        return _drug_of(concept)
    reference = resource.get("medicationReference")
    if not isinstance(reference, Mapping):
        return None
    ref = str(reference.get("reference") or "")
    if ref.startswith("#"):
        for contained in resource.get("contained") or []:
            if isinstance(contained, Mapping) and contained.get("id") == ref[1:]:
                return _drug_of(contained.get("code"))
    display = reference.get("display")
    return DrugRef(str(display)) if display else None


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _words(text: str) -> set[str]:
    return set("".join(c if c.isalnum() else " " for c in text.lower()).split())


def names_drug(candidate: DrugRef | None, drug: DrugRef) -> bool:
    """Whether the ordered/administered medication is this drug (a shared ingredient, else the same words)."""
    if candidate is None:
        return False
    wanted, found = ingredients_of(drug), ingredients_of(candidate)
    if wanted and found:
        return bool(wanted & found)
    if set(drug.rxnorm) & set(candidate.rxnorm):
        return True
    return bool(_words(drug.name)) and _words(drug.name) <= _words(candidate.name)


def administration_doses(resources: Iterable[Mapping[str, Any]], drug: DrugRef) -> list[DoseEvidence]:
    """Completed MedicationAdministrations of the drug, as proof of a dose."""
    doses: list[DoseEvidence] = []
    for resource in resources:
        if (
            resource.get("resourceType") != "MedicationAdministration"
            or resource.get("status") != "completed"
        ):
            continue
        if not names_drug(_medication(resource), drug):
            continue
        period = _object(resource.get("effectivePeriod"))
        when = (
            _instant(resource.get("effectiveDateTime"))
            or _instant(period.get("end"))
            or _instant(period.get("start"))
        )
        if when is not None:
            doses.append(
                DoseEvidence(
                    when, DoseSource.EHR_ADMINISTRATION, f"MedicationAdministration/{resource.get('id')}"
                )
            )
    return doses


def _repeat_times(
    timing: Mapping[str, Any], authored: datetime | None, horizon: datetime
) -> Iterator[datetime]:
    repeat = timing.get("repeat")
    if not isinstance(repeat, Mapping):
        return
    unit = _UNITS.get(str(repeat.get("periodUnit")))
    period, frequency = repeat.get("period"), repeat.get("frequency", 1)
    bounds = _object(repeat.get("boundsPeriod"))
    start = _instant(bounds.get("start")) or authored
    if unit is None or start is None or not isinstance(frequency, int) or frequency < 1:
        return
    if not isinstance(period, (int, float, Decimal)) or isinstance(period, bool):
        return
    step = unit * float(period) / frequency
    if step <= timedelta(0):
        return
    end = min(x for x in (_instant(bounds.get("end")), horizon) if x is not None)
    when = start
    for _ in range(MAX_SCHEDULED):
        if when > end:
            return
        yield when
        when += step


def scheduled_doses(
    resources: Iterable[Mapping[str, Any]], drug: DrugRef, horizon: datetime
) -> list[DoseEvidence]:
    """The drug's scheduled doses up to ``horizon`` from active/on-hold/completed orders (a plan, not proof)."""
    doses: list[DoseEvidence] = []
    for resource in resources:
        if (
            resource.get("resourceType") != "MedicationRequest"
            or resource.get("status") not in _ORDER_STATUSES
        ):
            continue
        if not names_drug(_medication(resource), drug):
            continue
        reference = f"MedicationRequest/{resource.get('id')}"
        authored = _instant(resource.get("authoredOn"))
        for dosage in resource.get("dosageInstruction") or []:
            timing = dosage.get("timing") if isinstance(dosage, Mapping) else None
            if not isinstance(timing, Mapping):
                continue
            times = [
                t for t in (_instant(e) for e in timing.get("event") or []) if t is not None and t <= horizon
            ]
            times.extend(_repeat_times(timing, authored, horizon))
            doses.extend(DoseEvidence(t, DoseSource.ORDER_SCHEDULE, reference) for t in times[:MAX_SCHEDULED])
    return doses


@dataclass(frozen=True)
class ChartDoses:
    """The EHR's evidence for one drug, and which sources could not be read (said next to the answer)."""

    doses: tuple[DoseEvidence, ...]
    unavailable: tuple[str, ...] = ()


def ehr_doses(
    client: FhirClient, patient: str, drug: DrugRef, now: datetime, *, days: int = 14
) -> ChartDoses:
    """Administrations of the last ``days`` and the order schedule up to a week ahead, for one drug.

    A source the EHR refuses (not offered, not granted, failing) is reported, not fatal: the other
    sources still count.
    """
    since = (now - timedelta(days=days)).isoformat(timespec="seconds")
    doses: list[DoseEvidence] = []
    unavailable: list[str] = []
    try:
        administrations = client.search_all(
            "MedicationAdministration",
            {"patient": patient, "status": "completed", "effective-time": f"ge{since}"},
        )
        doses.extend(administration_doses(administrations, drug))
    except DesensError as error:
        unavailable.append(f"{DoseSource.EHR_ADMINISTRATION.value} could not be read ({error})")
    try:
        requests = client.search_all("MedicationRequest", {"patient": patient})
        doses.extend(scheduled_doses(requests, drug, now + timedelta(days=7)))
    except DesensError as error:
        unavailable.append(f"the order schedule could not be read ({error})")
    return ChartDoses(tuple(doses), tuple(unavailable))
