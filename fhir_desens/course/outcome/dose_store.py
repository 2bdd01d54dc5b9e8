"""Doses given after a desensitization, kept in the record's database (table ``later_dose``).

Same database as the bedside record and the allergist's tasks (``sqlite:///path`` or ``postgresql://...``).
One row per dose, keyed by the id minted in the page: a form sent twice records once. Rows are never
changed or deleted here.
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
    recorded_at TEXT NOT NULL
)"""
_INSERT = (
    "INSERT INTO later_dose (dose_id, patient, session_id, drug, drug_rxnorm, amount, unit, given_at, recorded_by, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dose_id) DO NOTHING"
)
_SELECT = (
    "SELECT dose_id, patient, session_id, drug, drug_rxnorm, amount, unit, given_at, recorded_by, recorded_at "
    "FROM later_dose WHERE "
)
_BY_ID = _SELECT + "dose_id = ?"
_BY_PATIENT = _SELECT + "patient = ?"


class SqlDoseBook(SqlStore):
    """A :class:`~fhir_desens.course.outcome.later_doses.DoseBook` over SQLite or PostgreSQL."""

    schema = _SCHEMA

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
    )


def open_dose_book(url: str) -> SqlDoseBook:
    return SqlDoseBook(url)
