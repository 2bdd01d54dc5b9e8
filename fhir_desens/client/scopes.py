"""SMART scopes: writing the request (v2 or v1 syntax) and reading what was granted.

SMART App Launch 2.x (``scopes-and-launch-context.md``): a resource scope is
``<context>/<ResourceType|*>.<permissions>`` where the v2 permissions are letters of ``cruds`` in
that order, optionally followed by ``?param=value`` (a *granular* scope that grants only a subset).
The v1 permissions ``read``, ``write`` and ``*`` map to ``rs``, ``cud`` and ``cruds``.

Reading is conservative: a granular scope (``?category=...``) counts for reading and searching,
which the app then does on the subset the server returns, but never for writing, because the app
cannot know which writes the filter allows.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["GrantedScopes", "ScopeNeed", "granted_scopes", "render_scopes"]

_V1_TO_V2 = {"read": "rs", "write": "cud", "*": "cruds"}
_V2_ORDER = "cruds"
_RESOURCE_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perm>read|write|\*|[cruds]+)"
    r"(?P<query>\?.*)?$"
)


@dataclass(frozen=True)
class ScopeNeed:
    """A resource access the app asks for, independent of scope syntax.

    ``permissions`` are v2 letters (``"rs"``, ``"cu"``...), in any order.
    """

    context: str
    resource_type: str
    permissions: str

    def __post_init__(self) -> None:
        if self.context not in ("patient", "user", "system"):
            raise ValueError(f"scope context must be patient, user or system, not {self.context!r}")
        if not self.permissions or set(self.permissions) - set(_V2_ORDER):
            raise ValueError(f"scope permissions must be letters of 'cruds', not {self.permissions!r}")

    def v2(self) -> str:
        letters = "".join(letter for letter in _V2_ORDER if letter in self.permissions)
        return f"{self.context}/{self.resource_type}.{letters}"

    def v1(self) -> list[str]:
        scopes: list[str] = []
        if set(self.permissions) & set("rs"):
            scopes.append(f"{self.context}/{self.resource_type}.read")
        if set(self.permissions) & set("cud"):
            scopes.append(f"{self.context}/{self.resource_type}.write")
        return scopes


def render_scopes(base: Sequence[str], needs: Iterable[ScopeNeed], *, v2: bool) -> str:
    """The ``scope`` parameter: ``base`` scopes (launch, openid...) then the resource scopes."""
    out: list[str] = []
    for scope in base:
        if scope not in out:
            out.append(scope)
    for need in needs:
        for scope in [need.v2()] if v2 else need.v1():
            if scope not in out:
                out.append(scope)
    return " ".join(out)


@dataclass(frozen=True)
class _Grant:
    context: str
    resource_type: str
    permissions: frozenset[str]
    granular: bool


class GrantedScopes:
    """The scopes in a token response, queried by resource type and permission letter."""

    def __init__(self, scope: str | None) -> None:
        self.raw: tuple[str, ...] = tuple(dict.fromkeys((scope or "").split()))
        grants: list[_Grant] = []
        for item in self.raw:
            match = _RESOURCE_SCOPE.match(item)
            if not match:
                continue
            perm = match["perm"]
            letters = _V1_TO_V2.get(perm, perm)
            if perm not in _V1_TO_V2 and not _in_order(perm):
                continue  # malformed v2 permissions (letters out of order or repeated): ignore
            grants.append(
                _Grant(match["context"], match["type"], frozenset(letters), granular=bool(match["query"]))
            )
        self._grants = tuple(grants)

    def __contains__(self, scope: object) -> bool:
        return scope in self.raw

    def __str__(self) -> str:
        return " ".join(self.raw)

    def allows(
        self, resource_type: str, permission: str, *, contexts: Sequence[str] = ("patient", "user")
    ) -> bool:
        """Whether ``permission`` (one of c r u d s) on ``resource_type`` was granted in ``contexts``."""
        if len(permission) != 1 or permission not in _V2_ORDER:
            raise ValueError(f"permission must be one letter of 'cruds', not {permission!r}")
        for grant in self._grants:
            if grant.context not in contexts or grant.resource_type not in (resource_type, "*"):
                continue
            if permission not in grant.permissions:
                continue
            if grant.granular and permission not in "rs":
                continue
            return True
        return False

    def can_read(self, resource_type: str) -> bool:
        return self.allows(resource_type, "r") or self.allows(resource_type, "s")

    def can_write(self, resource_type: str) -> bool:
        """Create or update granted (what the app needs to record on ``resource_type``)."""
        return self.allows(resource_type, "c") or self.allows(resource_type, "u")


@functools.lru_cache(maxsize=256)
def granted_scopes(scope: str | None) -> GrantedScopes:
    """:class:`GrantedScopes` of ``scope``, parsed once per scope string (a page asks several times per
    request, and a session's scope never changes; the object is never changed after it is built)."""
    return GrantedScopes(scope)


def _in_order(letters: str) -> bool:
    positions = [_V2_ORDER.index(letter) for letter in letters]
    return positions == sorted(set(positions))
