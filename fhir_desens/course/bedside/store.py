"""The bedside record: an append-only log of entries per session, SQLite (default) or PostgreSQL.

The app is the system of record for what happens at the bedside (no major EHR accepts
MedicationAdministration writes), so the record must survive retries, replays and several app instances:

* Every entry carries an id generated where it was typed (the browser). Appending the same id again with
  the same content returns the stored entry (a double click, a retry after a lost connection or a replay
  records once); the same id with other content is refused (:class:`DuplicateEntryError`).
* Nothing is updated or deleted. A correction is a new entry that marks an earlier one entered-in-error.
* The pool of idle connections belongs to one process. A store opened before a fork (gunicorn builds the
  app in its master, then forks the workers) would otherwise hand the same database socket to several
  processes, whose statements and results then interleave on it. A process that finds a pool it did not
  open abandons those connections without closing them (closing would end the parent's database
  session) and opens its own (:meth:`RecordStore._take`).
* :meth:`RecordStore.append` runs the caller's ``check`` on the session's entries and inserts in one
  transaction that holds the session's lock, so two screens never act on a state the other has changed
  (the second one's check sees the first one's entry).

``sqlite:///path`` (default, one host) or ``postgresql://...`` (several app instances; needs the
``postgres`` extra, psycopg 3). The outbox ledger (:mod:`fhir_desens.course.bedside.outbox`) lives in the
same database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from fhir_desens.course.bedside.entries import Entry, NewEntry
from fhir_desens.errors import ConfigurationError, DesensError, InputError
from fhir_desens.io import json as fjson

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bedside_entry (
        seq {serial},
        entry_id TEXT NOT NULL UNIQUE,
        session_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        author TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS bedside_entry_session ON bedside_entry (session_id, seq)",
    """CREATE TABLE IF NOT EXISTS bedside_outbox (
        item_key TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        resource_type TEXT NOT NULL,
        identifier TEXT NOT NULL,
        resource TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt REAL NOT NULL,
        server_id TEXT,
        version TEXT,
        detail TEXT,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS bedside_outbox_due ON bedside_outbox (state, next_attempt)",
    # one row per session the background sender looks after: whether entries are not yet in the ledger
    # (``dirty``: the EHR could not be asked when they were recorded), when to try again, and a lease so
    # one sender at a time (of all threads and app processes) sends a session
    """CREATE TABLE IF NOT EXISTS bedside_sender (
        session_id TEXT PRIMARY KEY,
        dirty INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        next_try REAL NOT NULL,
        holder TEXT,
        lease_until REAL NOT NULL,
        updated_at TEXT NOT NULL
    )""",
)
SENDING_STATES = ("pending", "update-pending", "unknown")  # ledger states the sender acts on when due
ENTRY_ID_MAX = 64
POOL_SIZE = 8  # idle connections kept per store


class DuplicateEntryError(DesensError):
    """An entry id that was used already for different content."""

    exit_code = 6
    http_status = 409


@dataclass(frozen=True)
class Appended:
    entry: Entry
    created: bool  # False: the same entry was recorded before (a retry or a replay)


@dataclass
class OutboxRow:
    """One resource on its way to the FHIR server (see :mod:`fhir_desens.course.bedside.outbox`)."""

    item_key: str
    session_id: str
    resource_type: str
    identifier: str
    resource: dict[str, Any]
    state: str
    attempts: int = 0
    next_attempt: float = 0.0
    server_id: str | None = None
    version: str | None = None
    detail: str | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


Check = Callable[[Sequence[Entry], NewEntry], None]


def _check_entry_id(entry_id: str) -> str:
    if not isinstance(entry_id, str) or not 8 <= len(entry_id) <= ENTRY_ID_MAX:
        raise InputError("entry_id", "missing or malformed", f"8 to {ENTRY_ID_MAX} characters (a UUID)")
    if not all(c.isalnum() or c in "-_" for c in entry_id):
        raise InputError("entry_id", "contains characters other than letters, digits, - and _", "a UUID")
    return entry_id


class _Dialect(Protocol):
    placeholder: str

    def connect(self) -> Any: ...
    def lock_session(self, cursor: Any, session_id: str) -> None: ...
    def usable(self, connection: Any) -> bool: ...
    def abandon(self, connection: Any) -> None: ...


class RecordStore:
    """The bedside log and the outbox ledger over a DB-API connection (SQLite or PostgreSQL)."""

    def __init__(self, dialect: _Dialect, clock: Callable[[], datetime] | None = None) -> None:
        self._dialect = dialect
        self._clock = clock or (lambda: datetime.now(UTC))
        self._pool_lock = threading.Lock()
        self._idle: list[Any] = []
        self._pid = os.getpid()  # the process whose connections are in ``_idle``
        self._closed = False
        with self._transaction() as cursor:
            serial = (
                "BIGSERIAL PRIMARY KEY"
                if dialect.placeholder == "%s"
                else "INTEGER PRIMARY KEY AUTOINCREMENT"
            )
            for statement in SCHEMA:
                cursor.execute(statement.format(serial=serial))

    # -- plumbing: a small pool of connections, one per transaction in flight ---------------------------
    def _take(self) -> Any:
        """An idle connection of this process that still works, or a new one."""
        with self._pool_lock:
            if self._pid != os.getpid():  # forked: the idle connections are the parent's sockets
                inherited, self._idle, self._pid = self._idle, [], os.getpid()
                for connection in inherited:
                    self._dialect.abandon(connection)
            while self._idle:
                connection = self._idle.pop()
                if self._dialect.usable(connection):
                    return connection
                connection.close()  # the server ended it (restart, idle timeout): never handed out
        return self._dialect.connect()

    def _give_back(self, connection: Any) -> None:
        with self._pool_lock:
            keep = not self._closed and len(self._idle) < POOL_SIZE and self._pid == os.getpid()
            if keep and self._dialect.usable(connection):
                self._idle.append(connection)
                return
        connection.close()

    @contextmanager
    def _transaction(self, session_id: str | None = None) -> Iterator[Any]:
        connection = self._take()
        cursor = connection.cursor()
        try:
            if session_id is not None:
                self._dialect.lock_session(cursor, session_id)
            yield cursor
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            cursor.close()
            self._give_back(connection)

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self._dialect.placeholder)

    def close(self) -> None:
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
            inherited = self._pid != os.getpid()
        for connection in idle:
            if inherited:
                self._dialect.abandon(connection)
            else:
                connection.close()

    # -- the log ---------------------------------------------------------------------------------------
    def append(self, new: NewEntry, check: Check | None = None) -> Appended:
        """Record ``new`` once. ``check(entries_so_far, new)`` raises to refuse it (nothing is written)."""
        _check_entry_id(new.entry_id)
        with self._transaction(new.session_id) as cursor:
            existing = self._entry_by_id(cursor, new.entry_id)
            if existing is not None:
                if not new.same_content(existing):
                    raise DuplicateEntryError(
                        f"entry id {new.entry_id} was already used for a different entry; nothing was recorded"
                    )
                return Appended(existing, created=False)
            if check is not None:
                check(self._entries(cursor, new.session_id), new)
            recorded_at = self._clock()
            cursor.execute(
                self._sql(
                    "INSERT INTO bedside_entry (entry_id, session_id, kind, data, author, recorded_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (
                    new.entry_id,
                    new.session_id,
                    new.kind,
                    json.dumps(dict(new.data)),
                    new.author,
                    recorded_at.isoformat(),
                ),
            )
            stored = self._entry_by_id(cursor, new.entry_id)
            assert stored is not None
            return Appended(stored, created=True)

    def entries(self, session_id: str) -> list[Entry]:
        with self._transaction() as cursor:
            return self._entries(cursor, session_id)

    def session_ids(self, patient: str) -> list[str]:
        """Sessions started for ``patient`` (``Patient/<id>``), oldest first."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "SELECT session_id, data FROM bedside_entry WHERE kind = 'session-start' ORDER BY seq"
                )
            )
            return [row[0] for row in cursor.fetchall() if json.loads(row[1]).get("patient") == patient]

    def entry(self, entry_id: str) -> Entry | None:
        with self._transaction() as cursor:
            return self._entry_by_id(cursor, entry_id)

    def _entries(self, cursor: Any, session_id: str) -> list[Entry]:
        cursor.execute(
            self._sql(
                "SELECT seq, entry_id, session_id, kind, data, author, recorded_at FROM bedside_entry "
                "WHERE session_id = ? ORDER BY seq"
            ),
            (session_id,),
        )
        return [_entry(row) for row in cursor.fetchall()]

    def _entry_by_id(self, cursor: Any, entry_id: str) -> Entry | None:
        cursor.execute(
            self._sql(
                "SELECT seq, entry_id, session_id, kind, data, author, recorded_at FROM bedside_entry "
                "WHERE entry_id = ?"
            ),
            (entry_id,),
        )
        row = cursor.fetchone()
        return _entry(row) if row else None

    # -- the outbox ledger -------------------------------------------------------------------------------
    def enqueue(self, row: OutboxRow) -> bool:
        """Add a resource to send, once per key; False when the key is queued already."""
        with self._transaction(row.session_id) as cursor:
            cursor.execute(self._sql("SELECT 1 FROM bedside_outbox WHERE item_key = ?"), (row.item_key,))
            if cursor.fetchone():
                return False
            cursor.execute(
                self._sql(
                    "INSERT INTO bedside_outbox (item_key, session_id, resource_type, identifier, resource, state, "
                    "attempts, next_attempt, server_id, version, detail, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                _outbox_values(row, self._clock()),
            )
            return True

    def save_outbox(self, row: OutboxRow) -> None:
        """Store the new state of a queued item (the ledger records where each item stands)."""
        with self._transaction(row.session_id) as cursor:
            cursor.execute(
                self._sql(
                    "UPDATE bedside_outbox SET resource = ?, state = ?, attempts = ?, next_attempt = ?, "
                    "server_id = ?, version = ?, detail = ?, updated_at = ? WHERE item_key = ?"
                ),
                (*_outbox_state(row, self._clock()), row.item_key),
            )

    def outbox(self, session_id: str | None = None, states: Sequence[str] = ()) -> list[OutboxRow]:
        clauses, params = [], []
        if session_id is not None:
            clauses.append("session_id = ?")
            params.append(session_id)
        if states:
            clauses.append("state IN (" + ", ".join("?" for _ in states) + ")")
            params.extend(states)
        where = (
            f" WHERE {' AND '.join(clauses)}" if clauses else ""
        )  # constant clauses; values are parameters
        select = (
            "SELECT item_key, session_id, resource_type, identifier, resource, state, attempts, "
            "next_attempt, server_id, version, detail, updated_at FROM bedside_outbox"
        )
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(select + where + " ORDER BY updated_at, item_key"),
                tuple(params),
            )
            return [_outbox_row(row) for row in cursor.fetchall()]

    # -- the background sender's bookkeeping ----------------------------------------------------------
    def mark_dirty(self, session_id: str) -> None:
        """Entries were recorded: the session's ledger must be brought up to date (sent as soon as possible)."""
        with self._transaction(session_id) as cursor:
            cursor.execute(
                self._sql(
                    "INSERT INTO bedside_sender (session_id, dirty, attempts, next_try, holder, lease_until, "
                    "updated_at) VALUES (?, 1, 0, 0, NULL, 0, ?) ON CONFLICT (session_id) DO UPDATE SET "
                    "dirty = 1, attempts = 0, next_try = 0, updated_at = excluded.updated_at"
                ),
                (session_id, self._clock().isoformat()),
            )

    def synced(self, session_id: str, ok: bool, next_try: float = 0.0) -> None:
        """The ledger was brought up to date (``ok``), or the EHR could not be asked: try at ``next_try``."""
        with self._transaction(session_id) as cursor:
            if ok:
                cursor.execute(
                    self._sql(
                        "UPDATE bedside_sender SET dirty = 0, attempts = 0, next_try = 0 WHERE session_id = ?"
                    ),
                    (session_id,),
                )
            else:
                cursor.execute(
                    self._sql(
                        "UPDATE bedside_sender SET attempts = attempts + 1, next_try = ? WHERE session_id = ?"
                    ),
                    (next_try, session_id),
                )

    def sender_attempts(self, session_id: str) -> int:
        with self._transaction() as cursor:
            cursor.execute(
                self._sql("SELECT attempts FROM bedside_sender WHERE session_id = ?"), (session_id,)
            )
            row = cursor.fetchone()
            return int(row[0]) if row else 0

    def is_dirty(self, session_id: str) -> bool:
        """Entries recorded that are not in the ledger yet (the EHR could not be asked)."""
        with self._transaction() as cursor:
            cursor.execute(self._sql("SELECT dirty FROM bedside_sender WHERE session_id = ?"), (session_id,))
            row = cursor.fetchone()
            return bool(row and row[0])

    def sessions_to_send(self, now: float) -> list[str]:
        """Sessions with entries not in the ledger yet, or ledger rows due to be sent at ``now``."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "SELECT session_id FROM bedside_sender WHERE dirty = 1 AND next_try <= ? UNION "
                    "SELECT session_id FROM bedside_outbox WHERE state IN (?, ?, ?) AND next_attempt <= ?"
                ),
                (now, *SENDING_STATES, now),
            )
            return sorted({row[0] for row in cursor.fetchall()})

    def claim(self, session_id: str, holder: str, now: float, lease: float) -> bool:
        """Take the session's send lease until ``now + lease``; False while another holder has it."""
        with self._transaction(session_id) as cursor:
            cursor.execute(
                self._sql("SELECT holder, lease_until FROM bedside_sender WHERE session_id = ?"),
                (session_id,),
            )
            row = cursor.fetchone()
            if row is None:
                cursor.execute(
                    self._sql(
                        "INSERT INTO bedside_sender (session_id, dirty, attempts, next_try, holder, lease_until, "
                        "updated_at) VALUES (?, 0, 0, 0, ?, ?, ?)"
                    ),
                    (session_id, holder, now + lease, self._clock().isoformat()),
                )
                return True
            if row[0] not in (None, holder) and float(row[1]) > now:
                return False
            cursor.execute(
                self._sql("UPDATE bedside_sender SET holder = ?, lease_until = ? WHERE session_id = ?"),
                (holder, now + lease, session_id),
            )
            return True

    def release(self, session_id: str, holder: str) -> None:
        with self._transaction(session_id) as cursor:
            cursor.execute(
                self._sql(
                    "UPDATE bedside_sender SET holder = NULL, lease_until = 0 WHERE session_id = ? AND holder = ?"
                ),
                (session_id, holder),
            )


def _entry(row: Sequence[Any]) -> Entry:
    seq, entry_id, session_id, kind, data, author, recorded_at = row
    return Entry(
        int(seq), entry_id, session_id, kind, json.loads(data), author, datetime.fromisoformat(recorded_at)
    )


def _outbox_values(row: OutboxRow, now: datetime) -> tuple[Any, ...]:
    """A new ledger row: what identifies the item, then where it stands."""
    return (row.item_key, row.session_id, row.resource_type, row.identifier, *_outbox_state(row, now))


def _outbox_state(row: OutboxRow, now: datetime) -> tuple[Any, ...]:
    """Where a ledger item stands (the columns ``save_outbox`` updates, in its order)."""
    return (
        fjson.dumps(row.resource),
        row.state,
        row.attempts,
        row.next_attempt,
        row.server_id,
        row.version,
        row.detail,
        now.isoformat(),
    )


def _outbox_row(row: Sequence[Any]) -> OutboxRow:
    (
        key,
        session_id,
        resource_type,
        identifier,
        resource,
        state,
        attempts,
        next_attempt,
        server_id,
        version,
        detail,
        at,
    ) = row
    return OutboxRow(
        key,
        session_id,
        resource_type,
        identifier,
        fjson.loads(resource),
        state,
        int(attempts),
        float(next_attempt),
        server_id,
        version,
        detail,
        datetime.fromisoformat(at),
    )


# -- dialects ----------------------------------------------------------------------------------------------
_ABANDONED: list[Any] = []  # connections inherited through a fork: never used, never closed


class _Sqlite:
    placeholder = "?"

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            timeout=30,
            isolation_level="DEFERRED",
            check_same_thread=False,  # pooled, one user at a time
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        return connection

    def lock_session(self, cursor: Any, session_id: str) -> None:
        # SQLite has one writer: take the write lock before reading, so read-check-insert is atomic
        cursor.execute("BEGIN IMMEDIATE")

    def usable(self, connection: Any) -> bool:
        return True  # a file, not a server: nothing ends it behind our back

    def abandon(self, connection: Any) -> None:
        # closing the parent's SQLite connection in a child would drop the child's own POSIX locks on the
        # file (they are per process): keep it unreachable-but-alive instead (at most POOL_SIZE per fork)
        _ABANDONED.append(connection)


class _Postgres:
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> Any:
        try:
            import psycopg
        except ImportError as error:  # pragma: no cover - depends on the installed extras
            raise ConfigurationError(
                "a postgresql:// bedside store needs psycopg (pip install 'fhir-desens[postgres]')"
            ) from error
        return psycopg.connect(self.url)

    def lock_session(self, cursor: Any, session_id: str) -> None:
        # one transaction-scoped advisory lock per session: appends to one session are serialised
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (session_id,))

    def usable(self, connection: Any) -> bool:
        return not (connection.closed or connection.broken)

    def abandon(self, connection: Any) -> None:
        # The socket is shared with the parent: closing the connection here would send the server the
        # end of the parent's session. Point this process's descriptor at /dev/null instead: the parent's
        # socket is untouched, and whatever libpq does with the descriptor later goes nowhere.
        try:
            descriptor = connection.fileno()
        except Exception:  # already closed or broken: no socket to give up
            return
        blank = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(blank, descriptor)
        finally:
            os.close(blank)
        _ABANDONED.append(connection)


def open_record_store(url: str, clock: Callable[[], datetime] | None = None) -> RecordStore:
    """``sqlite:///path/to/bedside.sqlite3`` or ``postgresql://user@host:port/db``."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path = unquote(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigurationError("the bedside store URL must be sqlite:///<path> or postgresql://...")
        return RecordStore(_Sqlite(Path(path)), clock)
    if scheme in ("postgresql", "postgres"):
        return RecordStore(_Postgres(url), clock)
    raise ConfigurationError("the bedside store URL must be sqlite:///<path> or postgresql://...")


__all__ = [
    "Appended",
    "DuplicateEntryError",
    "Entry",
    "NewEntry",
    "OutboxRow",
    "RecordStore",
    "open_record_store",
]
