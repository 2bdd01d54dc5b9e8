"""Doses given after a desensitization, in the bedside record's database: SQLite and a real PostgreSQL."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from fhir_desens.course.outcome.dose_store import SqlDoseBook
from fhir_desens.course.outcome.later_doses import DoseBook, LaterDose, MemoryDoseBook, dose_evidence

T0 = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def book(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DoseBook]:
    if request.param == "memory":
        yield MemoryDoseBook()
    elif request.param == "sqlite":
        yield SqlDoseBook(f"sqlite:///{tmp_path / 'record.sqlite3'}")
    else:
        yield SqlDoseBook(request.getfixturevalue("postgres_url"))


def dose(patient: str, hours: int, amount: str = "0.0125", unit: str = "g") -> LaterDose:
    return LaterDose(
        dose_id=str(uuid.uuid4()),
        patient=patient,
        session_id="session-1",
        drug="trimethoprim / sulfamethoxazole",
        drug_rxnorm=("10831", "10180"),
        amount=Decimal(amount),
        unit=unit,
        given_at=T0 + timedelta(hours=hours),
        recorded_by="N. Nurse",
        recorded_at=T0 + timedelta(hours=hours, minutes=5),
    )


@pytest.mark.requirement("OUT-13")
def test_a_recorded_dose_is_kept_exactly_and_once(book: DoseBook) -> None:
    patient = f"Patient/{uuid.uuid4().hex[:8]}"
    later, first = dose(patient, 24, "960", "mg"), dose(patient, 0)
    book.record(later)
    kept = book.record(first)
    replay = LaterDose(**{**first.__dict__, "amount": Decimal("1")})
    assert book.record(replay) == kept  # the same page entry sent twice records once
    book.record(dose(f"Patient/other-{uuid.uuid4().hex[:6]}", 1))

    found = book.doses_for(patient)
    assert found == [first, later]  # oldest first, every field as recorded
    assert found[0].amount == Decimal("0.0125") and str(found[0].amount) == "0.0125"  # exact Decimal
    assert found[0].given_at.utcoffset() == timedelta(0)
    assert found[1].dose == "960 mg"


@pytest.mark.requirement("OUT-13")
def test_a_dose_entered_in_error_is_kept_marked_once_and_is_no_longer_evidence(book: DoseBook) -> None:
    patient = f"Patient/{uuid.uuid4().hex[:8]}"
    kept, wrong = book.record(dose(patient, 0)), book.record(dose(patient, 30))
    marked = book.mark_entered_in_error(wrong.dose_id, "Dr A. Allergist", T0 + timedelta(hours=31))
    assert marked is not None and marked.in_error and marked.entered_in_error_by == "Dr A. Allergist"
    again = book.mark_entered_in_error(wrong.dose_id, "someone else", T0 + timedelta(hours=40))
    assert again == marked  # the first marking stands
    assert book.mark_entered_in_error("no-such-dose", "x", T0) is None
    assert book.doses_for(patient) == [kept, marked]  # never deleted
    assert [e.at for e in dose_evidence(book.doses_for(patient))] == [kept.given_at]


def test_a_database_from_before_the_entered_in_error_mark_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as connection:  # the table as first landed
        connection.execute(
            "CREATE TABLE later_dose (dose_id TEXT PRIMARY KEY, patient TEXT NOT NULL, session_id TEXT NOT NULL, "
            "drug TEXT NOT NULL, drug_rxnorm TEXT NOT NULL DEFAULT '', amount TEXT NOT NULL, unit TEXT NOT NULL, "
            "given_at TEXT NOT NULL, recorded_by TEXT NOT NULL DEFAULT '', recorded_at TEXT NOT NULL)"
        )
    book = SqlDoseBook(f"sqlite:///{path}")
    recorded = book.record(dose("Patient/p1", 1))
    assert book.mark_entered_in_error(recorded.dose_id, "x", T0 + timedelta(hours=2)) is not None
