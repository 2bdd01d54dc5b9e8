"""Tasks for the allergist in the bedside record's database: SQLite and a real PostgreSQL server."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fhir_desens.course.outcome.task_store import SqlTaskBook
from fhir_desens.course.outcome.tasks import ChartTask, MemoryTaskBook, TaskBook

T0 = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def book(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskBook]:
    if request.param == "memory":
        yield MemoryTaskBook()
    elif request.param == "sqlite":
        yield SqlTaskBook(f"sqlite:///{tmp_path / 'record.sqlite3'}")
    else:
        yield SqlTaskBook(request.getfixturevalue("postgres_url"))


def task(patient: str, outcome_id: str | None = None, **change: object) -> ChartTask:
    base = ChartTask(
        outcome_id or str(uuid.uuid4()), patient, "ceftriaxone", "nothing writable", "copy me", T0
    )
    return dataclasses.replace(base, **change)  # type: ignore[arg-type]


@pytest.mark.requirement("OUT-8")
def test_one_task_per_outcome_until_done(book: TaskBook) -> None:
    patient = f"Patient/{uuid.uuid4().hex[:8]}"
    first = book.record(task(patient, "o-1" + patient))
    again = book.record(
        task(patient, "o-1" + patient, reason="another try", created_at=T0 + timedelta(hours=1))
    )
    book.record(task(f"Patient/other-{uuid.uuid4().hex[:6]}"))
    assert again == first
    assert [t.outcome_id for t in book.tasks_for(patient)] == ["o-1" + patient]

    done = book.mark_done("o-1" + patient, "Dr A. Allergist", T0 + timedelta(hours=2))
    assert done is not None and not done.open and done.done_by == "Dr A. Allergist"
    assert book.tasks_for(patient) == []
    assert len(book.tasks_for(patient, open_only=False)) == 1
    assert book.mark_done("unknown", "x", T0) is None

    reopened = book.record(task(patient, "o-1" + patient, reason="failed again"))
    assert reopened.open and reopened.reason == "failed again"
