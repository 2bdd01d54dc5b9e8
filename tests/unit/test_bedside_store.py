"""The bedside record store: append-only, idempotent by entry id, serialised per session.

Run against SQLite and against a real PostgreSQL server (tests/services.py, started once per test session).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from fhir_desens.course.bedside.store import (
    DuplicateEntryError,
    Entry,
    NewEntry,
    OutboxRow,
    RecordStore,
    open_record_store,
)
from fhir_desens.errors import ConflictError, InputError


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bedside.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[RecordStore]:
    opened = open_record_store(store_url)
    yield opened
    opened.close()


def entry(session: str, kind: str = "vitals", entry_id: str | None = None, **data: object) -> NewEntry:
    return NewEntry(
        str(uuid.uuid4()) if entry_id is None else entry_id,
        session,
        kind,
        data or {"heart_rate": 80},
        "Practitioner/n1",
    )


def test_the_same_entry_twice_is_recorded_once(store: RecordStore) -> None:
    session = str(uuid.uuid4())
    first = store.append(entry(session, entry_id="e-" + session))
    again = store.append(entry(session, entry_id="e-" + session))
    assert first.created and not again.created
    assert again.entry == first.entry
    assert [e.entry_id for e in store.entries(session)] == ["e-" + session]


def test_an_entry_id_reused_for_other_content_is_refused(store: RecordStore) -> None:
    session = str(uuid.uuid4())
    store.append(entry(session, entry_id="x-" + session, heart_rate=80))
    with pytest.raises(DuplicateEntryError, match="different entry"):
        store.append(entry(session, entry_id="x-" + session, heart_rate=120))
    assert [e.data for e in store.entries(session)] == [{"heart_rate": 80}]


def test_a_refused_check_writes_nothing(store: RecordStore) -> None:
    session = str(uuid.uuid4())

    def refuse(entries: Sequence[Entry], new: NewEntry) -> None:
        raise InputError("heart_rate", "impossible")

    with pytest.raises(InputError):
        store.append(entry(session), refuse)
    assert store.entries(session) == []


@pytest.mark.parametrize("bad", ["", "short", "a" * 65, "semi;colon-0000"])
def test_malformed_entry_ids_are_refused(store: RecordStore, bad: str) -> None:
    with pytest.raises(InputError, match="entry_id"):
        store.append(entry(str(uuid.uuid4()), entry_id=bad))


def test_two_screens_cannot_both_stop_the_same_step(store_url: str) -> None:
    """Two app instances (two stores on one database) race; the check sees the other's entry."""
    session = str(uuid.uuid4())
    stores = [open_record_store(store_url) for _ in range(2)]
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def stop_once(entries: Sequence[Entry], new: NewEntry) -> None:
        if any(e.kind == "step-stop" for e in entries):
            raise ConflictError("step 1 was stopped already on another screen")

    def worker(index: int) -> None:
        barrier.wait()
        try:
            stores[index % 2].append(entry(session, "step-stop", step=1, screen=index), stop_once)
            outcomes.append("recorded")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in stores:
        opened.close()
    assert sorted(outcomes) == ["conflict"] * 7 + ["recorded"]
    reader = open_record_store(store_url)
    assert [e.kind for e in reader.entries(session)] == ["step-stop"]
    reader.close()


def test_entries_keep_their_order_and_survive_reopening(store_url: str) -> None:
    session = str(uuid.uuid4())
    writer = open_record_store(store_url)
    ids = [writer.append(entry(session, n=i)).entry.entry_id for i in range(5)]
    writer.close()
    reader = open_record_store(store_url)
    stored = reader.entries(session)
    assert [e.entry_id for e in stored] == ids
    assert [e.seq for e in stored] == sorted(e.seq for e in stored)
    reader.close()


def test_outbox_items_are_queued_once_and_their_state_is_kept(store: RecordStore) -> None:
    session = str(uuid.uuid4())
    row = OutboxRow(
        f"k-{session}", session, "Observation", "urn:x|1", {"resourceType": "Observation"}, "pending"
    )
    assert store.enqueue(row)
    assert not store.enqueue(row)
    row.state, row.attempts, row.server_id = "written", 1, "obs-1"
    store.save_outbox(row)
    [saved] = store.outbox(session)
    assert (saved.state, saved.attempts, saved.server_id) == ("written", 1, "obs-1")
    assert store.outbox(session, states=["pending"]) == []


def test_a_session_is_sent_by_one_sender_at_a_time(store_url: str) -> None:
    """The send lease: of many threads (or app processes on one database) exactly one holds a session; it
    is free again once released, or once its lease has run out (a sender that died)."""
    session = str(uuid.uuid4())
    stores = [open_record_store(store_url) for _ in range(6)]
    won: list[str] = []
    barrier = threading.Barrier(len(stores))

    def contend(index: int) -> None:
        barrier.wait()
        if stores[index].claim(session, f"holder-{index}", 1000.0, 60.0):
            won.append(f"holder-{index}")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(won) == 1
        first = stores[0]
        assert not first.claim(session, "late", 1030.0, 60.0)  # still held
        assert first.claim(session, "late", 1061.0, 60.0)  # the holder died: its lease ran out
        first.release(session, "late")
        assert first.claim(session, "next", 1062.0, 60.0)  # released: free at once
    finally:
        for opened in stores:
            opened.close()


def test_recorded_entries_mark_the_session_until_its_ledger_is_synced(store: RecordStore) -> None:
    session = str(uuid.uuid4())
    assert store.sessions_to_send(100.0) == [] or session not in store.sessions_to_send(100.0)
    store.mark_dirty(session)
    assert store.is_dirty(session) and session in store.sessions_to_send(100.0)
    store.synced(session, ok=False, next_try=200.0)  # the EHR could not be asked: try again at 200
    assert store.sender_attempts(session) == 1
    assert session not in store.sessions_to_send(150.0) and session in store.sessions_to_send(200.0)
    store.synced(session, ok=True)
    assert not store.is_dirty(session) and session not in store.sessions_to_send(10_000.0)
    store.enqueue(OutboxRow(f"{session}/procedure", session, "Procedure", "s|v", {}, "pending"))
    assert session in store.sessions_to_send(0.0)  # a ledger row due to be sent


def test_a_store_opened_before_a_fork_gives_each_process_its_own_connections(store_url: str) -> None:
    """gunicorn opens the store in its master, then forks the workers: a worker must not use (or end)
    the master's database connection. Here the child records, reads and closes its store, then the
    parent goes on with the connection it had before the fork."""
    store = open_record_store(store_url)
    session = str(uuid.uuid4())
    store.append(entry(session))  # the parent's connection is now idle in the pool
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which reports by its exit status
        status = 1
        try:
            store.append(entry(session))
            status = 0 if len(store.entries(session)) == 2 else 2
            store.close()
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.append(entry(session))
    assert len(store.entries(session)) == 3
    store.close()


def test_a_connection_the_server_ended_is_not_handed_out_again(postgres_url: str) -> None:
    import psycopg

    store = open_record_store(postgres_url)
    session = str(uuid.uuid4())
    store.append(entry(session))
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # a server restart, an idle timeout
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(psycopg.OperationalError):
        store.entries(session)  # the request that finds the connection gone fails (never retried blindly)
    assert len(store.entries(session)) == 1  # the next one gets a new connection
    store.close()
