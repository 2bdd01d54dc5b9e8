"""Doses given after a desensitization, kept in the record's database (table ``later_dose``).

Same database as the bedside record and the allergist's tasks (``sqlite:///path`` or ``postgresql://...``).
One row per dose, keyed by the id minted in the page: a form sent twice records once. Rows are never
deleted; the only change is the entered-in-error mark (who and when), set once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_desens.course.outcome.later_doses import LaterDose
from fhir_desens.course.outcome.task_store import SqlStore

__all__ = ["SqlDoseBook", "open_dose_book"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS later_dose (
    dose_id TEXT PRIMARY KEY,
    patient TEXT NOT NULL,
    session_id TEXT NOT NULL,
    drug TEXT NOT NULL,
    drug_rxnorm TEXT NOT NULL DEFAULT '',
    amount TEXT NOT NULL,
    unit TEXT NOT NULL,
    given_at TEXT NOT NULL,
    recorded_by TEXT NOT NULL DEFAULT '',
    recorded_at TEXT NOT NULL,
    entered_in_error_at TEXT,
    entered_in_error_by TEXT NOT NULL DEFAULT ''
)"""
_INSERT = (
    "INSERT INTO later_dose (dose_id, patient, session_id, drug, drug_rxnorm, amount, unit, given_at, recorded_by, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dose_id) DO NOTHING"
)
_SELECT = (
    "SELECT dose_id, patient, session_id, drug, drug_rxnorm, amount, unit, given_at, recorded_by, recorded_at, "
    "entered_in_error_at, entered_in_error_by FROM later_dose WHERE "
)
_IN_ERROR = (
    "UPDATE later_dose SET entered_in_error_at = ?, entered_in_error_by = ? "
    "WHERE dose_id = ? AND entered_in_error_at IS NULL"
)
_BY_ID = _SELECT + "dose_id = ?"
_BY_PATIENT = _SELECT + "patient = ?"


#: columns added after the table's first version (a database made then gets them on opening)
_ADDED_COLUMNS = {
    "entered_in_error_at": "TEXT",
    "entered_in_error_by": "TEXT NOT NULL DEFAULT ''",
}


class SqlDoseBook(SqlStore):
    """A :class:`~fhir_desens.course.outcome.later_doses.DoseBook` over SQLite or PostgreSQL."""

    schema = _SCHEMA

    def __init__(self, url: str) -> None:
        super().__init__(url)
        with self._cursor() as cursor:
            cursor.execute("SELECT * FROM later_dose WHERE 1 = 0")
            present = {column[0] for column in cursor.description}
            for name, kind in _ADDED_COLUMNS.items():
                if name not in present:
                    cursor.execute(f"ALTER TABLE later_dose ADD COLUMN {name} {kind}")

    def record(self, dose: LaterDose) -> LaterDose:
        values = (
            dose.dose_id,
            dose.patient,
            dose.session_id,
            dose.drug,
            " ".join(dose.drug_rxnorm),
            str(dose.amount),
            dose.unit,
            dose.given_at.isoformat(),
            dose.recorded_by,
            dose.recorded_at.isoformat(),
        )
        with self._cursor() as cursor:
            cursor.execute(self._sql(_INSERT), values)
            cursor.execute(self._sql(_BY_ID), (dose.dose_id,))
            return _dose(cursor.fetchone())

    def doses_for(self, patient: str) -> list[LaterDose]:
        with self._cursor() as cursor:
            cursor.execute(self._sql(_BY_PATIENT), (patient,))
            doses = [_dose(row) for row in cursor.fetchall()]
        return sorted(doses, key=lambda d: (d.given_at, d.dose_id))

    def mark_entered_in_error(self, dose_id: str, by: str, at: datetime) -> LaterDose | None:
        with self._cursor() as cursor:
            cursor.execute(self._sql(_IN_ERROR), (at.isoformat(), by, dose_id))
            cursor.execute(self._sql(_BY_ID), (dose_id,))
            row = cursor.fetchone()
            return _dose(row) if row else None


def _dose(row: Sequence[Any]) -> LaterDose:
    return LaterDose(
        dose_id=row[0],
        patient=row[1],
        session_id=row[2],
        drug=row[3],
        drug_rxnorm=tuple(row[4].split()),
        amount=Decimal(row[5]),
        unit=row[6],
        given_at=datetime.fromisoformat(row[7]),
        recorded_by=row[8] or "",
        recorded_at=datetime.fromisoformat(row[9]),
        entered_in_error_at=datetime.fromisoformat(row[10]) if row[10] else None,
        entered_in_error_by=row[11] or "",
    )


def open_dose_book(url: str) -> SqlDoseBook:
    return SqlDoseBook(url)
