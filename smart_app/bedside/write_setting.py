"""What the bedside writes to each EHR: ``FHIR_DESENS_BEDSIDE_WRITE_TYPES``, the EHR's CapabilityStatement and
the launch's scopes, combined into the outbox's :class:`ServerCapabilities` with a reason for each type that
is kept in the app only (shown on the flowsheet).

The setting, per server (FHIR base) or for all servers::

    auto                                     as each EHR's CapabilityStatement offers (the default)
    none                                     write nothing to any EHR
    Observation,Procedure                    only these types (create, and update where the EHR offers it)
    Observation:create                       create only, never update: sent once final
    https://ehr.example/fhir=Observation; *=auto
                                             per server (its FHIR base, compared without case, default port
                                             or trailing slash); ``*`` for every other server

A type is written only when the EHR's CapabilityStatement offers ``create`` for it, the setting for that
server lets it, and the launch was granted write access (``c``; updates need ``u``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_desens.client.scopes import GrantedScopes
from fhir_desens.course.bedside.outbox import SEND_ORDER, ServerCapabilities
from fhir_desens.errors import ConfigurationError
from smart_app.config import normalize_base

SETTING = "FHIR_DESENS_BEDSIDE_WRITE_TYPES"
BEDSIDE_TYPES = tuple(SEND_ORDER)  # what the bedside writes
INTERACTIONS = frozenset({"create", "update"})
NOT_OFFERED = "this EHR does not accept it"
NOT_SET = "this site's setting does not write it to this EHR"
NOT_GRANTED = "this launch was not granted write access to it"

Rule = Mapping[str, frozenset[str]] | None  # type -> interactions; None: as the EHR offers


@dataclass(frozen=True)
class WriteSetting:
    default: Rule = None
    servers: Mapping[str, Rule] = field(default_factory=dict)  # normalized FHIR base -> rule

    def for_server(self, fhir_base: str) -> Rule:
        return self.servers.get(normalize_base(fhir_base), self.default)

    @classmethod
    def parse(cls, raw: Any) -> WriteSetting:
        """The setting's value (a string, or a list of types); ConfigurationError naming what is wrong."""
        if raw is None:
            return cls()
        if isinstance(raw, (list, tuple)):
            raw = ",".join(str(item) for item in raw)
        text = str(raw).strip()
        if "=" not in text:
            return cls(_rule(text))
        default: Rule = None
        servers: dict[str, Rule] = {}
        for part in (p.strip() for p in text.split(";")):
            if not part:
                continue
            server, equals, value = part.partition("=")
            if not equals:
                raise ConfigurationError(f"{SETTING}: {part!r} is not <FHIR base>=<types>")
            if server.strip() == "*":
                default = _rule(value)
            elif server.strip().startswith(("https://", "http://")):
                servers[normalize_base(server.strip())] = _rule(value)
            else:
                raise ConfigurationError(f"{SETTING}: {server.strip()!r} is not a FHIR base URL or '*'")
        return cls(default, servers)


def _rule(text: str) -> Rule:
    text = text.strip()
    if text.lower() in ("", "auto"):
        return None
    if text.lower() == "none":
        return {}
    rule: dict[str, set[str]] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        resource_type, _, interaction = item.partition(":")
        if resource_type not in BEDSIDE_TYPES:
            raise ConfigurationError(
                f"{SETTING}: {resource_type!r} is not a type the bedside writes ({', '.join(BEDSIDE_TYPES)})"
            )
        wanted = {interaction} if interaction else set(INTERACTIONS)
        if not wanted <= INTERACTIONS:
            raise ConfigurationError(f"{SETTING}: {item!r}: the interaction is create or update")
        rule.setdefault(resource_type, set()).update(wanted)
    return {t: frozenset(i) for t, i in rule.items()}


def effective_capabilities(
    statement: Mapping[str, Any], rule: Rule, scope: str, types: Iterable[str] = BEDSIDE_TYPES
) -> ServerCapabilities:
    """What the bedside may write to this EHR now, and why each other type stays in the app."""
    offered = ServerCapabilities.from_statement(statement)
    granted = GrantedScopes(scope)
    interactions: dict[str, frozenset[str]] = {}
    reasons: dict[str, str] = {}
    for resource_type in types:
        have = offered.interactions.get(resource_type, frozenset()) & INTERACTIONS
        if rule is not None:
            have &= rule.get(resource_type, frozenset())
        if "create" not in offered.interactions.get(resource_type, frozenset()):
            reasons[resource_type] = NOT_OFFERED
        elif "create" not in have:
            reasons[resource_type] = NOT_SET
        elif not granted.allows(resource_type, "c"):
            reasons[resource_type] = NOT_GRANTED
        else:
            interactions[resource_type] = frozenset(
                i for i in have if i == "create" or granted.allows(resource_type, "u")
            )
    return ServerCapabilities(interactions, reasons)


__all__ = ["BEDSIDE_TYPES", "WriteSetting", "effective_capabilities"]
