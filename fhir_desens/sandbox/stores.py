"""In-memory, thread-safe, expiring storage for launches, codes and tokens (the sandbox keeps no disk state).

Keys are bearer secrets (launch ids, codes, tokens); they are stored as SHA-256 digests so that a dump of
the store would not reveal a usable value.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

V = TypeVar("V")
Clock = Callable[[], float]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ExpiringStore(Generic[V]):
    """A dict whose entries expire; ``pop`` is atomic, which makes single-use values single use."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, V]] = {}

    def put(self, key: str, value: V, ttl: float) -> None:
        with self._lock:
            self._purge()
            self._items[digest(key)] = (self._clock() + ttl, value)

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(digest(key))
            if item is None or item[0] <= self._clock():
                return None
            return item[1]

    def pop(self, key: str) -> V | None:
        """Remove and return the value; None when absent or expired."""
        with self._lock:
            item = self._items.pop(digest(key), None)
            if item is None or item[0] <= self._clock():
                return None
            return item[1]

    def add_once(self, key: str, value: V, ttl: float) -> bool:
        """Store ``value`` unless a live entry exists already; False means "seen before" (replay)."""
        with self._lock:
            self._purge()
            hashed = digest(key)
            if hashed in self._items:
                return False
            self._items[hashed] = (self._clock() + ttl, value)
            return True

    def remove_where(self, predicate: Callable[[V], bool]) -> int:
        with self._lock:
            doomed = [k for k, (_, v) in self._items.items() if predicate(v)]
            for key in doomed:
                del self._items[key]
            return len(doomed)

    def _purge(self) -> None:
        now = self._clock()
        expired = [k for k, (expires, _) in self._items.items() if expires <= now]
        for key in expired:
            del self._items[key]

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._items)


@dataclass(frozen=True)
class LaunchContext:
    """What the EHR knows when it launches an app (or what the user picked in a standalone launch)."""

    patient: str | None = None
    encounter: str | None = None
    practitioner: str | None = None
    need_patient_banner: bool = True
    client_id: str | None = None
    vendor: str = "permissive"  # the gateway's vendor profile for this launch (sandbox/vendors.py)


@dataclass(frozen=True)
class GrantContext:
    """The "user" of an authorization in Authlib's terms: who authorized, in which launch context."""

    practitioner: str | None
    patient: str | None
    encounter: str | None
    need_patient_banner: bool
    auth_time: int
    family: str  # one id per authorization: every token derived from the same code shares it
    vendor: str = "permissive"  # the gateway's vendor profile (sandbox/vendors.py), chosen at launch

    def get_user_id(self) -> str:
        return self.practitioner or "sandbox-user"


@dataclass(frozen=True)
class AuthorizationCode:
    """Implements Authlib's ``AuthorizationCodeMixin`` (and the OIDC nonce/auth_time accessors)."""

    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    context: GrantContext

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.context.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class TokenRecord:
    """An access token or a refresh token (Authlib's ``TokenMixin`` for refresh tokens)."""

    client_id: str
    scope: str
    context: GrantContext
    expires_at: float
    kind: str = "access"
    revoked: bool = field(default=False)

    def check_client(self, client: object) -> bool:
        return getattr(client, "client_id", None) == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, int(self.expires_at - time.time()))

    def is_expired(self) -> bool:
        return self.expires_at <= time.time()

    def is_revoked(self) -> bool:
        return self.revoked
