"""Tasks for the allergist when the chart could not be updated (nothing writable, a conflict, a failure).

The app records that the chart was not updated, so the patient page can show it until the allergist has
copied the text into the chart by hand and ticked it off. Tasks are keyed by the outcome's id: recording the
same outcome twice keeps one task. :class:`TaskBook` is what the write-back needs; the app backs it with
its own store (:class:`MemoryTaskBook` serves tests and a single-process development server).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

__all__ = ["WRITTEN_BY_THE_APP", "ChartTask", "MemoryTaskBook", "TaskBook", "record_written"]

#: Who closed the row of an outcome the app itself wrote to the chart (the patient page says "in the chart").
WRITTEN_BY_THE_APP = "fhir-desens (written to the chart)"


@dataclass(frozen=True)
class ChartTask:
    outcome_id: str
    patient: str  # Patient/<id>
    drug: str
    reason: str  # why the chart was not updated, in words
    text: str  # the copy-ready text
    created_at: datetime
    done_at: datetime | None = None
    done_by: str = ""

    @property
    def open(self) -> bool:
        return self.done_at is None

    @property
    def written_by_the_app(self) -> bool:
        return self.done_by == WRITTEN_BY_THE_APP


class TaskBook(Protocol):
    def record(self, task: ChartTask) -> ChartTask:
        """Keep the task (the existing one when the outcome already has one)."""
        ...

    def tasks_for(self, patient: str, *, open_only: bool = True) -> list[ChartTask]: ...

    def mark_done(self, outcome_id: str, by: str, at: datetime) -> ChartTask | None: ...


class MemoryTaskBook:
    """Tasks in this process's memory."""

    def __init__(self) -> None:
        self._tasks: dict[str, ChartTask] = {}
        self._lock = threading.Lock()

    def record(self, task: ChartTask) -> ChartTask:
        with self._lock:
            existing = self._tasks.get(task.outcome_id)
            if existing is not None and existing.open:
                return existing
            self._tasks[task.outcome_id] = task
            return task

    def tasks_for(self, patient: str, *, open_only: bool = True) -> list[ChartTask]:
        with self._lock:
            found = [t for t in self._tasks.values() if t.patient == patient and (t.open or not open_only)]
        return sorted(found, key=lambda t: t.created_at)

    def mark_done(self, outcome_id: str, by: str, at: datetime) -> ChartTask | None:
        with self._lock:
            task = self._tasks.get(outcome_id)
            if task is None:
                return None
            done = replace(task, done_at=at, done_by=by) if task.open else task
            self._tasks[outcome_id] = done
            return done


def record_written(book: TaskBook, task: ChartTask, at: datetime) -> None:
    """Keep that the outcome is in the chart: its row, closed as written by the app (an open task for the
    outcome, from an earlier failed write, is closed the same way)."""
    book.record(task)
    book.mark_done(task.outcome_id, WRITTEN_BY_THE_APP, at)
