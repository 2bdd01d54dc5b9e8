"""Server-side storage for SMART launch state and sessions: SQLite (default), Redis, or memory.

Records are JSON objects kept under a namespace (``"pending"`` for authorizations in flight, keyed by
OAuth ``state``; ``"session"`` for authorized launches, keyed by an opaque session id) with a
time-to-live. Two properties matter for security:

* **Keys are never stored.** The storage key is HMAC-SHA256(secret, namespace + key), so a leaked
  database does not reveal live ``state`` values or session ids, and lookup timing says nothing
  about the raw value. Callers additionally compare the raw value in constant time.
* **Values are encrypted** (Fernet: AES-128-CBC + HMAC-SHA256, from ``cryptography``) with a key
  derived from the app secret, because session records hold access and refresh tokens.

:meth:`SessionStore.take` is atomic (read and delete in one step), which makes ``state`` single use
even with several worker processes. Redis is imported only when a ``redis://`` URL is used.

A page reload reads the same unchanged records again (the session, the draft, the chart read a minute
ago), and opening a sealed value (HMAC check and AES) costs more than the rest of the read. So each
store remembers the plaintexts of the last :data:`OPENED` sealed values it opened, by the SHA-256 of
the sealed bytes: the very same bytes, already authenticated once, open to the same plaintext; other
bytes (a rewritten record: Fernet draws a new IV on every write; a tampered one) are a miss and are
checked in full. Nothing is invalidated by hand and nothing stale can be returned; expiry and deletion
are the backend's, which never returns an expired or deleted record. The memo holds plaintexts in this
process's memory only, which already holds the key that opens every record. :meth:`SessionStore.get_as`
goes one step further for records read as something immutable (a draft, a chart read's text): the
result of converting the same sealed bytes is kept too, so a reload neither parses nor converts them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fhir_desens.errors import ConfigurationError

__all__ = ["OPENED", "MemoryBackend", "RedisBackend", "SessionStore", "SqliteBackend", "open_store"]

T = TypeVar("T")

#: sealed values whose plaintext a store keeps (a few per active session: record, drafts, chart reads)
OPENED = 1024


class Backend(Protocol):
    """Raw byte storage with expiry; keys are already hashed."""

    def put(self, key: str, value: bytes, expires_at: float) -> None: ...
    def get(self, key: str, now: float) -> bytes | None: ...
    def take(self, key: str, now: float) -> bytes | None: ...
    def delete(self, key: str) -> None: ...
    def purge(self, now: float) -> int: ...
    def close(self) -> None: ...


class MemoryBackend:
    """In-process storage (tests and single-process tools)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, value: bytes, expires_at: float) -> None:
        with self._lock:
            self._data[key] = (value, expires_at)

    def get(self, key: str, now: float) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
        return item[0] if item and item[1] > now else None

    def take(self, key: str, now: float) -> bytes | None:
        with self._lock:
            item = self._data.pop(key, None)
        return item[0] if item and item[1] > now else None

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def purge(self, now: float) -> int:
        with self._lock:
            dead = [k for k, (_, exp) in self._data.items() if exp <= now]
            for k in dead:
                del self._data[k]
        return len(dead)

    def close(self) -> None:
        self._data.clear()


class SqliteBackend:
    """A SQLite file (WAL mode): safe across threads and worker processes on one host.

    One connection per process (re-opened after a fork), serialized by a lock.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        with self._lock:
            conn = self._connect()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB NOT NULL, expires REAL NOT NULL)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires)")

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            self._pid = os.getpid()
        return self._conn

    def put(self, key: str, value: bytes, expires_at: float) -> None:
        with self._lock:
            self._connect().execute(
                "INSERT INTO kv (k, v, expires) VALUES (?, ?, ?) "
                "ON CONFLICT(k) DO UPDATE SET v = excluded.v, expires = excluded.expires",
                (key, value, expires_at),
            )

    def get(self, key: str, now: float) -> bytes | None:
        with self._lock:
            row = (
                self._connect().execute("SELECT v FROM kv WHERE k = ? AND expires > ?", (key, now)).fetchone()
            )
        return bytes(row[0]) if row else None

    def take(self, key: str, now: float) -> bytes | None:
        with self._lock:
            row = (
                self._connect().execute("DELETE FROM kv WHERE k = ? RETURNING v, expires", (key,)).fetchone()
            )
        if row is None or row[1] <= now:
            return None
        return bytes(row[0])

    def delete(self, key: str) -> None:
        with self._lock:
            self._connect().execute("DELETE FROM kv WHERE k = ?", (key,))

    def purge(self, now: float) -> int:
        with self._lock:
            return self._connect().execute("DELETE FROM kv WHERE expires <= ?", (now,)).rowcount

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class RedisBackend:
    """A Redis server (several hosts). Expiry is Redis' own; ``take`` uses GETDEL (Redis ≥ 6.2)."""

    def __init__(self, url: str, *, prefix: str = "fhir-desens:") -> None:
        import redis  # optional dependency: pip install 'fhir-desens[redis]'

        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = prefix

    def put(self, key: str, value: bytes, expires_at: float) -> None:
        ttl_ms = max(1, int((expires_at - time.time()) * 1000))
        self._redis.set(self._prefix + key, value, px=ttl_ms)

    def get(self, key: str, now: float) -> bytes | None:
        value = self._redis.get(self._prefix + key)
        return bytes(value) if value is not None else None  # type: ignore[arg-type]

    def take(self, key: str, now: float) -> bytes | None:
        value = self._redis.getdel(self._prefix + key)
        return bytes(value) if value is not None else None  # type: ignore[arg-type]

    def delete(self, key: str) -> None:
        self._redis.delete(self._prefix + key)

    def purge(self, now: float) -> int:
        return 0  # Redis expires keys itself

    def close(self) -> None:
        self._redis.close()


class SessionStore:
    """Namespaced, encrypted, expiring JSON records over a :class:`Backend`."""

    def __init__(
        self, backend: Backend, secret: str | bytes, *, clock: Callable[[], float] = time.time
    ) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        if len(raw) < 16:
            raise ConfigurationError("the session store secret must have at least 16 bytes")
        self.backend = backend
        self._clock = clock
        self._key_mac = _derive(raw, b"fhir-desens store keys")
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(raw, b"fhir-desens store values")))
        self._opened: OrderedDict[bytes, bytes] = OrderedDict()  # sha256(sealed) -> plaintext
        self._converted: OrderedDict[tuple[bytes, Callable[..., Any]], Any] = OrderedDict()  # ... -> get_as
        self._opened_lock = threading.Lock()

    def _key(self, namespace: str, key: str) -> str:
        # hmac.digest: the one-shot HMAC (same value as hmac.new(...).hexdigest(), a fraction of its cost)
        return namespace + ":" + hmac.digest(self._key_mac, f"{namespace}\0{key}".encode(), "sha256").hex()

    def _seal(self, value: Mapping[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode())

    def _open(self, blob: bytes | None, digest: bytes | None = None) -> dict[str, Any] | None:
        if blob is None:
            return None
        try:
            value = json.loads(self._decrypt(blob, digest))
        except (InvalidToken, ValueError):
            return None  # written with another secret, or corrupted: treat as absent
        return value if isinstance(value, dict) else None

    def _decrypt(self, blob: bytes, digest: bytes | None = None) -> bytes:
        """The plaintext of ``blob`` (InvalidToken: not sealed with this store's key, or altered);
        the same bytes opened before are not checked and decrypted again. ``digest``: its SHA-256."""
        digest = digest or hashlib.sha256(blob).digest()
        with self._opened_lock:
            plain = self._opened.get(digest)
            if plain is not None:
                self._opened.move_to_end(digest)
                return plain
        plain = self._fernet.decrypt(blob)
        with self._opened_lock:
            self._opened[digest] = plain
            while len(self._opened) > OPENED:
                self._opened.popitem(last=False)
        return plain

    def put(self, namespace: str, key: str, value: Mapping[str, Any], ttl: float) -> None:
        self.backend.put(self._key(namespace, key), self._seal(value), self._clock() + ttl)

    def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        if not key:
            return None
        return self._open(self.backend.get(self._key(namespace, key), self._clock()))

    def get_as(self, namespace: str, key: str, convert: Callable[[dict[str, Any]], T | None]) -> T | None:
        """The record as ``convert`` makes it (None: absent, expired, unreadable, or ``convert`` says so),
        converted once per sealed value: reading the very same bytes again gives the very same result, so
        ``convert`` must depend on the record alone and make something immutable (a string, a frozen
        record). A rewritten record is other bytes, converted afresh."""
        if not key:
            return None
        blob = self.backend.get(self._key(namespace, key), self._clock())
        if blob is None:
            return None
        digest = hashlib.sha256(blob).digest()
        with self._opened_lock:
            if (digest, convert) in self._converted:
                self._converted.move_to_end((digest, convert))
                kept: T | None = self._converted[(digest, convert)]
                return kept
        record = self._open(blob, digest)
        value = convert(record) if record is not None else None
        with self._opened_lock:
            self._converted[(digest, convert)] = value
            while len(self._converted) > OPENED:
                self._converted.popitem(last=False)
        return value

    def take(self, namespace: str, key: str) -> dict[str, Any] | None:
        """Read and delete atomically: a second ``take`` of the same key returns ``None``."""
        if not key:
            return None
        return self._open(self.backend.take(self._key(namespace, key), self._clock()))

    def delete(self, namespace: str, key: str) -> None:
        if key:
            self.backend.delete(self._key(namespace, key))

    def purge(self) -> int:
        return self.backend.purge(self._clock())

    def close(self) -> None:
        with self._opened_lock:
            self._opened.clear()
            self._converted.clear()
        self.backend.close()


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def open_store(url: str, secret: str | bytes, *, clock: Callable[[], float] = time.time) -> SessionStore:
    """A store from a URL: ``sqlite:///absolute/path.db``, ``sqlite:///:memory:``, ``redis://…``,
    ``rediss://…``, or ``memory:``."""
    parts = urlsplit(url)
    backend: Backend
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if path.startswith("/:memory:"):
            path = ":memory:"
        if not path or path == "/":
            raise ConfigurationError(
                "FHIR_DESENS_SESSION_URL: a sqlite URL needs a file path (sqlite:///path)"
            )
        backend = SqliteBackend(path)
    elif parts.scheme in ("redis", "rediss", "unix"):
        backend = RedisBackend(url)
    elif parts.scheme == "memory":
        backend = MemoryBackend()
    else:
        raise ConfigurationError(
            "FHIR_DESENS_SESSION_URL: unsupported store URL scheme "
            f"{parts.scheme or '(none)'!r} (accepted: sqlite:///path, redis://host:port/db, memory:)"
        )
    return SessionStore(backend, secret, clock=clock)
