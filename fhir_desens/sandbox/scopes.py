"""SMART scopes: parsing (v1 and v2 syntax), granting and checking.

Pure functions over strings; the authorization server uses them to decide what it grants and the FHIR
gateway uses them to decide what a token may do.

SMART App Launch 2.x, "Scopes and Launch Context":

* resource scopes are ``<level>/<type>.<permissions>`` with level ``patient``, ``user`` or ``system``,
  type a FHIR resource type or ``*``;
* v1 permissions are ``read``, ``write`` or ``*``; v2 permissions are a non-empty subsequence of
  ``cruds`` in that order (create, read, update, delete, search);
* v1 maps onto v2 as ``read`` = ``rs``, ``write`` = ``cud``, ``*`` = ``cruds``;
* v2 "granular" scopes carry a query (``patient/Observation.rs?category=...``). The sandbox never grants
  them (a server may grant less than asked), because its gateway does not enforce the query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Level = Literal["patient", "user", "system"]
Access = Literal["unrestricted", "patient"]

PERMISSION_ORDER = "cruds"
V1_PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset("rs"),
    "write": frozenset("cud"),
    "*": frozenset("cruds"),
}

#: Scopes that carry no resource permission but ask for launch context, identity or refresh.
CONTEXT_SCOPES: frozenset[str] = frozenset(
    {
        "launch",
        "launch/patient",
        "launch/encounter",
        "openid",
        "fhirUser",
        "profile",
        "online_access",
        "offline_access",
    }
)

_RESOURCE_SCOPE = re.compile(
    r"^(?P<level>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{1,63})\.(?P<perm>[a-z*]+)(?:\?(?P<query>.+))?$"
)


@dataclass(frozen=True)
class ResourceScope:
    """One parsed resource scope."""

    level: Level
    resource_type: str
    permissions: frozenset[str]
    version: Literal[1, 2]
    query: str | None = None

    def covers(self, resource_type: str, permission: str) -> bool:
        """Whether this scope grants ``permission`` (one of ``cruds``) on ``resource_type``."""
        return (
            self.query is None
            and self.resource_type in ("*", resource_type)
            and permission in self.permissions
        )

    def render(self) -> str:
        """The scope string, in v1 form when the permissions are exactly a v1 set and it was v1."""
        suffix = format_permissions(self.permissions)
        if self.version == 1:
            for name, perms in V1_PERMISSIONS.items():
                if perms == self.permissions:
                    suffix = name
                    break
        text = f"{self.level}/{self.resource_type}.{suffix}"
        return f"{text}?{self.query}" if self.query else text


def format_permissions(permissions: Iterable[str]) -> str:
    """``{"s", "r"}`` -> ``"rs"``: v2 permissions in canonical ``cruds`` order."""
    wanted = set(permissions)
    return "".join(p for p in PERMISSION_ORDER if p in wanted)


def parse_scope(scope: str) -> ResourceScope | None:
    """Parse a resource scope; None for context scopes, unknown scopes and malformed permissions."""
    match = _RESOURCE_SCOPE.match(scope)
    if not match:
        return None
    level: Level = match["level"]  # type: ignore[assignment]
    perm = match["perm"]
    query = match["query"]
    if perm in V1_PERMISSIONS:
        if query is not None:
            return None  # granular scopes exist only in v2
        return ResourceScope(level, match["type"], V1_PERMISSIONS[perm], 1)
    # v2: a non-empty subsequence of "cruds", in order, without repetition
    if not perm or format_permissions(perm) != perm:
        return None
    return ResourceScope(level, match["type"], frozenset(perm), 2, query)


def split_scope(scope: str | None) -> list[str]:
    """Split a space-separated scope string, dropping duplicates but keeping the order."""
    seen: dict[str, None] = {}
    for item in (scope or "").split():
        seen.setdefault(item, None)
    return list(seen)


def grant(requested: str | None, ceiling: str | None, override: str | None = None) -> str:
    """The scope an authorization server grants for ``requested`` under a client's ``ceiling``.

    * context scopes are granted when the ceiling lists them;
    * a resource scope is narrowed to what the ceiling's resource scopes of the same level allow
      (e.g. ``patient/Observation.cruds`` under ``patient/*.rs`` -> ``patient/Observation.rs``);
      it is dropped when nothing is left; v1 syntax is kept when the result is still a v1 set;
    * granular (query) scopes are never granted;
    * ``override``, when given, replaces the resource scopes of the result (context scopes still follow
      the request): a way to simulate an EHR that grants something other than what the app asked for.
    """
    ceiling_items = split_scope(ceiling)
    ceiling_context = {s for s in ceiling_items if s in CONTEXT_SCOPES}
    ceiling_resources = [p for p in (parse_scope(s) for s in ceiling_items) if p is not None]
    granted: list[str] = []
    for item in split_scope(requested):
        if item in CONTEXT_SCOPES:
            if item in ceiling_context:
                granted.append(item)
            continue
        if override is not None:
            continue
        parsed = parse_scope(item)
        if parsed is None or parsed.query is not None:
            continue
        allowed: set[str] = set()
        for limit in ceiling_resources:
            same_level = limit.query is None and limit.level == parsed.level
            if same_level and limit.resource_type in ("*", parsed.resource_type):
                allowed |= limit.permissions
        permissions = frozenset(parsed.permissions & allowed)
        if permissions:
            narrowed = ResourceScope(parsed.level, parsed.resource_type, permissions, parsed.version)
            rendered = narrowed.render()
            if rendered not in granted:
                granted.append(rendered)
    if override is not None:
        for item in split_scope(override):
            parsed = parse_scope(item)
            if parsed is not None and parsed.query is None and item not in granted:
                granted.append(item)
    return " ".join(granted)


class ScopeSet:
    """The resource permissions of one token."""

    def __init__(self, scope: str | None) -> None:
        self.items = split_scope(scope)
        self.resources = [p for p in (parse_scope(s) for s in self.items) if p is not None]

    def __contains__(self, item: str) -> bool:
        return item in self.items

    def access(self, resource_type: str, permission: str) -> Access | None:
        """How ``permission`` on ``resource_type`` is granted: ``unrestricted`` by a user/system scope,
        ``patient`` (limited to the patient compartment) by a patient scope, or None (not granted)."""
        if permission not in PERMISSION_ORDER or len(permission) != 1:
            raise ValueError(f"permission must be one of {PERMISSION_ORDER!r}")
        covering = [s for s in self.resources if s.covers(resource_type, permission)]
        if any(s.level in ("user", "system") for s in covering):
            return "unrestricted"
        if any(s.level == "patient" for s in covering):
            return "patient"
        return None

    def has_patient_scopes(self) -> bool:
        return any(s.level == "patient" for s in self.resources)
