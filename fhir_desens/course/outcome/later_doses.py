"""Doses given after a desensitization, recorded in the app ("Record a dose given after desensitization").

Tolerance after a desensitization lasts while dosing continues (TMP-SMX: a dose at least every 24 h;
beta-lactams: 48 h). The doses that keep it are given on the ward, often days after the session; when the
nurse or allergist records one here, the app's own record knows the last dose before the EHR does
(TOL-2: the app's record first, then the EHR's MedicationAdministrations, then the order schedule).

A :class:`LaterDose` names the drug (as the session named it), the dose (an exact Decimal with its UCUM
unit), when it was given (timezone-aware) and who recorded it, and the desensitization session it
follows. Each entry is keyed by an id minted in the page, so a form sent twice records once
(:class:`DoseBook`). A dose recorded by mistake is marked entered in error (by whom, when): it stays in the
record, shown struck through, and is no longer evidence. Pure: storage lives in :mod:`.dose_store`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from fhir_desens.drugs.tolerance import DoseEvidence, DoseSource
from fhir_desens.errors import InputError
from fhir_desens.protocol.crossreactivity import DrugRef
from fhir_desens.protocol.display import dose_text
from fhir_desens.protocol.quantity import Dimension, unit

__all__ = [
    "CLOCK_SKEW",
    "DoseBook",
    "LaterDose",
    "MemoryDoseBook",
    "dose_evidence",
]

#: A dose may be recorded as given up to this far ahead of the app's clock (a ward clock a little fast).
CLOCK_SKEW = timedelta(minutes=5)
_DOSE_ID = re.compile(r"^[A-Za-z0-9\-]{8,64}$")
_DOSE_DIMENSIONS = (Dimension.MASS, Dimension.ACTIVITY)


def _aware(value: datetime, field: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InputError(field, "must be a date and time with a time zone")


@dataclass(frozen=True)
class LaterDose:
    """One dose of a desensitized drug, given after the session and recorded in the app."""

    dose_id: str  # minted in the page: a replay records once
    patient: str  # Patient/<id>
    session_id: str  # the desensitization it follows
    drug: str  # the drug as the session named it
    drug_rxnorm: tuple[str, ...]
    amount: Decimal
    unit: str  # UCUM code (mg, g, ug, [iU])
    given_at: datetime
    recorded_by: str
    recorded_at: datetime
    entered_in_error_at: datetime | None = None
    entered_in_error_by: str = ""

    @property
    def in_error(self) -> bool:
        return self.entered_in_error_at is not None

    def __post_init__(self) -> None:
        if not _DOSE_ID.match(self.dose_id):
            raise InputError("dose_id", "is not an entry id minted by the page")
        if not self.drug.strip():
            raise InputError("drug", "must not be empty")
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite() or self.amount <= 0:
            raise InputError("dose", "must be a dose above zero")
        if unit(self.unit).dimension not in _DOSE_DIMENSIONS:
            raise InputError("dose", f"'{self.unit}' is not a dose unit", "mg, g, mcg or units")
        _aware(self.given_at, "given_at")
        _aware(self.recorded_at, "recorded_at")
        if self.given_at > self.recorded_at + CLOCK_SKEW:
            raise InputError("given_at", "is in the future: record a dose once it has been given")

    @property
    def dose(self) -> str:
        """The dose as people read it ("2 g", "960 mg")."""
        return dose_text(self.amount, self.unit)

    @property
    def drug_ref(self) -> DrugRef:
        return DrugRef(self.drug, self.drug_rxnorm)

    def evidence(self) -> DoseEvidence:
        """This dose as evidence from the app's own record (proof that a dose was given)."""
        who = f" by {self.recorded_by}" if self.recorded_by else ""
        return DoseEvidence(
            self.given_at,
            DoseSource.APP_RECORD,
            f"{self.dose} given after desensitization, recorded{who}",
            description=f"{self.drug} {self.dose}",
        )


class DoseBook(Protocol):
    def record(self, dose: LaterDose) -> LaterDose:
        """Keep the dose (the one already recorded under the same id when the form is sent twice)."""
        ...

    def doses_for(self, patient: str) -> list[LaterDose]:
        """This patient's recorded doses, oldest first (those entered in error too, marked)."""
        ...

    def mark_entered_in_error(self, dose_id: str, by: str, at: datetime) -> LaterDose | None:
        """Mark a dose entered in error (the first marking stands); None when there is no such dose."""
        ...


def dose_evidence(doses: Iterable[LaterDose]) -> list[DoseEvidence]:
    """The recorded doses that are evidence (not entered in error)."""
    return [dose.evidence() for dose in doses if not dose.in_error]


class MemoryDoseBook:
    """Doses in this process's memory (tests, a single-process development server)."""

    def __init__(self) -> None:
        self._doses: dict[str, LaterDose] = {}
        self._lock = threading.Lock()

    def record(self, dose: LaterDose) -> LaterDose:
        with self._lock:
            return self._doses.setdefault(dose.dose_id, dose)

    def doses_for(self, patient: str) -> list[LaterDose]:
        with self._lock:
            found = [d for d in self._doses.values() if d.patient == patient]
        return sorted(found, key=lambda d: (d.given_at, d.dose_id))

    def mark_entered_in_error(self, dose_id: str, by: str, at: datetime) -> LaterDose | None:
        with self._lock:
            dose = self._doses.get(dose_id)
            if dose is None or dose.in_error:
                return dose
            marked = replace(dose, entered_in_error_at=at, entered_in_error_by=by)
            self._doses[dose_id] = marked
            return marked
