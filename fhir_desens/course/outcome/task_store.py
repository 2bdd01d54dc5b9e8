"""Tasks for the allergist, kept in the same database as the bedside record (table ``outcome_task``).

``sqlite:///path`` or ``postgresql://...``, the URL of the bedside record store. One row per outcome
(primary key: the outcome id): recording the same outcome again keeps the open task; a task is closed by
who and when, never deleted.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from fhir_desens.course.outcome.tasks import ChartTask
from fhir_desens.errors import ConfigurationError

__all__ = ["SqlStore", "SqlTaskBook", "open_task_book"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS outcome_task (
    outcome_id TEXT PRIMARY KEY,
    patient TEXT NOT NULL,
    drug TEXT NOT NULL,
    reason TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at TEXT NOT NULL,
    done_at TEXT,
    done_by TEXT NOT NULL DEFAULT ''
)"""
_INSERT = (
    "INSERT INTO outcome_task (outcome_id, patient, drug, reason, text, created_at, done_at, done_by) "
    "VALUES (?, ?, ?, ?, ?, ?, NULL, '') "
    "ON CONFLICT (outcome_id) DO UPDATE SET reason = excluded.reason, text = excluded.text, "
    "created_at = excluded.created_at, done_at = NULL, done_by = '' "
    "WHERE outcome_task.done_at IS NOT NULL"
)
_BY_ID = (
    "SELECT outcome_id, patient, drug, reason, text, created_at, done_at, done_by FROM outcome_task "
    "WHERE outcome_id = ?"
)
_BY_PATIENT = (
    "SELECT outcome_id, patient, drug, reason, text, created_at, done_at, done_by FROM outcome_task "
    "WHERE patient = ? ORDER BY created_at"
)
_DONE = "UPDATE outcome_task SET done_at = ?, done_by = ? WHERE outcome_id = ? AND done_at IS NULL"


class SqlStore:
    """One table in the record's database (SQLite or PostgreSQL): the connection and placeholders."""

    schema = ""

    def __init__(self, url: str) -> None:
        scheme = urlsplit(url).scheme
        self._postgres = scheme in ("postgresql", "postgres")
        if not self._postgres:
            path = unquote(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else ""
            if scheme != "sqlite" or not path:
                raise ConfigurationError("the record store URL must be sqlite:///<path> or postgresql://...")
            self._path = Path(path)
        self._url = url
        self._lock = threading.Lock()
        with self._cursor() as cursor:
            cursor.execute(self.schema)

    def _connect(self) -> Any:
        if self._postgres:
            try:
                import psycopg
            except ImportError as error:  # pragma: no cover - depends on the installed extras
                raise ConfigurationError("a postgresql:// record store needs psycopg") from error
            return psycopg.connect(self._url)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(self._path, timeout=30)

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self._lock:
            connection = self._connect()
            try:
                cursor = connection.cursor()
                yield cursor
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                connection.close()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._postgres else statement


class SqlTaskBook(SqlStore):
    """A :class:`~fhir_desens.course.outcome.tasks.TaskBook` over SQLite or PostgreSQL."""

    schema = _SCHEMA

    def record(self, task: ChartTask) -> ChartTask:
        values = (
            task.outcome_id,
            task.patient,
            task.drug,
            task.reason,
            task.text,
            task.created_at.isoformat(),
        )
        with self._cursor() as cursor:
            cursor.execute(self._sql(_INSERT), values)
            cursor.execute(self._sql(_BY_ID), (task.outcome_id,))
            return _task(cursor.fetchone())

    def tasks_for(self, patient: str, *, open_only: bool = True) -> list[ChartTask]:
        with self._cursor() as cursor:
            cursor.execute(self._sql(_BY_PATIENT), (patient,))
            tasks = [_task(row) for row in cursor.fetchall()]
        return [t for t in tasks if t.open or not open_only]

    def mark_done(self, outcome_id: str, by: str, at: datetime) -> ChartTask | None:
        with self._cursor() as cursor:
            cursor.execute(self._sql(_DONE), (at.isoformat(), by, outcome_id))
            cursor.execute(self._sql(_BY_ID), (outcome_id,))
            row = cursor.fetchone()
            return _task(row) if row else None


def _task(row: Sequence[Any]) -> ChartTask:
    return ChartTask(
        outcome_id=row[0],
        patient=row[1],
        drug=row[2],
        reason=row[3],
        text=row[4],
        created_at=datetime.fromisoformat(row[5]),
        done_at=datetime.fromisoformat(row[6]) if row[6] else None,
        done_by=row[7] or "",
    )


def open_task_book(url: str) -> SqlTaskBook:
    return SqlTaskBook(url)
