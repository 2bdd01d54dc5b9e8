"""The server-side launch/session store (fhir_desens.client.store): SQLite, memory and a real Redis server."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_desens.client.store import MemoryBackend, SessionStore, SqliteBackend, open_store
from fhir_desens.errors import ConfigurationError

SECRET = "a-test-secret-that-is-long-enough-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "memory", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[SessionStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    elif request.param == "memory":
        url = "memory:"
    else:
        url = request.getfixturevalue("redis_url")
    opened = open_store(url, SECRET, clock=clock)
    yield opened
    opened.close()


def test_put_get_delete(store: SessionStore) -> None:
    store.put("session", "sid-1", {"a": 1, "nested": {"b": [1, 2]}}, ttl=60)
    assert store.get("session", "sid-1") == {"a": 1, "nested": {"b": [1, 2]}}
    assert store.get("pending", "sid-1") is None  # namespaces are separate
    store.delete("session", "sid-1")
    assert store.get("session", "sid-1") is None
    assert store.get("session", "") is None


@pytest.mark.requirement("SMART-STATE-2")
def test_take_is_single_use(store: SessionStore) -> None:
    store.put("pending", "state-1", {"x": 1}, ttl=60)
    assert store.take("pending", "state-1") == {"x": 1}
    assert store.take("pending", "state-1") is None
    assert store.take("pending", "") is None


def test_expiry(store: SessionStore, clock: Clock) -> None:
    if type(store.backend).__name__ == "RedisBackend":
        pytest.skip("Redis expiry runs on the server's clock")
    store.put("pending", "state-2", {"x": 1}, ttl=600)
    clock.now += 601
    assert store.get("pending", "state-2") is None
    assert store.take("pending", "state-2") is None


def test_records_are_encrypted_and_keys_hashed(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "s.sqlite3"
    store = open_store(f"sqlite:///{path}", SECRET, clock=clock)
    store.put("session", "the-session-id", {"access_token": "TOKEN-VALUE-123"}, ttl=60)
    store.close()
    raw = path.read_bytes() + (
        path.with_name(path.name + "-wal").read_bytes()
        if path.with_name(path.name + "-wal").exists()
        else b""
    )
    assert b"TOKEN-VALUE-123" not in raw
    assert b"the-session-id" not in raw
    other = open_store(f"sqlite:///{path}", SECRET + "-rotated", clock=clock)
    assert other.get("session", "the-session-id") is None  # another secret reads nothing
    again = open_store(f"sqlite:///{path}", SECRET, clock=clock)
    assert again.get("session", "the-session-id") == {"access_token": "TOKEN-VALUE-123"}


def test_sqlite_take_is_atomic_across_threads(tmp_path: Path, clock: Clock) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'race.sqlite3'}", SECRET, clock=clock)
    store.put("pending", "race", {"x": 1}, ttl=60)
    results: list[object] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(store.take("pending", "race"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for r in results if r is not None) == 1


def test_purge(tmp_path: Path, clock: Clock) -> None:
    store = SessionStore(SqliteBackend(tmp_path / "p.sqlite3"), SECRET, clock=clock)
    store.put("a", "1", {}, ttl=10)
    store.put("a", "2", {}, ttl=1000)
    clock.now += 11
    assert store.purge() == 1
    assert store.get("a", "2") == {}


@pytest.mark.parametrize("url", ["postgres://x", "sqlite://", "nonsense"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError, match="FHIR_DESENS_SESSION_URL"):
        open_store(url, SECRET)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        open_store("memory:", "short")


def test_a_record_reads_as_last_written_however_often_it_was_read(store: SessionStore) -> None:
    """The store remembers what sealed bytes it opened; a rewrite is other bytes, read afresh."""
    store.put("session", "sid-1", {"v": 1}, ttl=60)
    first = store.get("session", "sid-1")
    assert first == {"v": 1}
    first["v"] = 99  # the caller's copy; the next read is the record's
    assert store.get("session", "sid-1") == {"v": 1}
    store.put("session", "sid-1", {"v": 2}, ttl=60)
    assert store.get("session", "sid-1") == store.get("session", "sid-1") == {"v": 2}
    store.delete("session", "sid-1")
    assert store.get("session", "sid-1") is None


def test_altered_bytes_are_refused_after_the_genuine_ones_were_read(clock: Clock) -> None:
    backend = MemoryBackend()
    store = SessionStore(backend, SECRET, clock=clock)
    store.put("session", "sid-1", {"access_token": "T"}, ttl=60)
    assert store.get("session", "sid-1") == {"access_token": "T"}
    (key, (sealed, expires)), *_ = backend._data.items()
    # Alter the token's bytes, not its base64 text: flipping a low bit of the last base64 character
    # can touch only padding bits and decode to the very same token (a flaky CI failure, session 8).
    token = base64.urlsafe_b64decode(sealed)
    for index in (10, len(token) // 2, len(token) - 1):
        altered = base64.urlsafe_b64encode(token[:index] + bytes([token[index] ^ 1]) + token[index + 1 :])
        assert altered != sealed
        backend._data[key] = (altered, expires)
        assert store.get("session", "sid-1") is None, index
    backend._data[key] = (sealed, expires)
    assert store.get("session", "sid-1") == {"access_token": "T"}
    clock.now += 61
    assert store.get("session", "sid-1") is None  # expired, though opened before


def test_the_storage_key_stays_the_hmac_of_namespace_and_key(clock: Clock) -> None:
    """Records written by earlier versions stay reachable: the key is HMAC-SHA256 as it always was."""
    import hashlib
    import hmac

    store = SessionStore(MemoryBackend(), SECRET, clock=clock)
    expected = hmac.new(store._key_mac, b"session\0sid-1", hashlib.sha256).hexdigest()
    assert store._key("session", "sid-1") == f"session:{expected}"


def test_a_record_read_as_a_value_is_converted_once_per_sealed_bytes(clock: Clock) -> None:
    """get_as: the same bytes read again give the very same converted value without converting again; a
    rewrite, altered bytes, expiry and deletion are honoured as by get."""
    backend = MemoryBackend()
    store = SessionStore(backend, SECRET, clock=clock)
    converted: list[dict[str, object]] = []

    def word(record: dict[str, object]) -> str | None:
        converted.append(record)
        return str(record["w"]) if "w" in record else None

    assert store.get_as("draft", "d-1", word) is None and converted == []  # absent: nothing to convert
    store.put("draft", "d-1", {"w": "first"}, ttl=60)
    assert store.get_as("draft", "d-1", word) == store.get_as("draft", "d-1", word) == "first"
    assert len(converted) == 1
    store.put("draft", "d-1", {"w": "second"}, ttl=60)  # the same content would be other bytes too
    assert store.get_as("draft", "d-1", word) == "second" and len(converted) == 2
    store.put("draft", "d-2", {"other": 1}, ttl=60)
    assert store.get_as("draft", "d-2", word) is None  # the conversion's refusal
    (key, (sealed, expires)), *_ = backend._data.items()
    token = base64.urlsafe_b64decode(sealed)
    backend._data[key] = (base64.urlsafe_b64encode(token[:-1] + bytes([token[-1] ^ 1])), expires)
    assert store.get_as("draft", "d-1", word) is None  # altered: refused, never converted
    backend._data[key] = (sealed, expires)
    assert store.get_as("draft", "d-1", word) == "second" and len(converted) == 3  # kept: not converted again
    store.delete("draft", "d-1")
    assert store.get_as("draft", "d-1", word) is None
    store.put("draft", "d-1", {"w": "third"}, ttl=60)
    clock.now += 61
    assert store.get_as("draft", "d-1", word) is None  # expired
