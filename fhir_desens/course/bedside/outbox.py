"""The outbox: what of the bedside record goes to the EHR, with a ledger of what was written.

The app is the system of record; the EHR gets what it accepts. For each resource of the session
(:func:`~fhir_desens.course.bedside.fhir_map.session_resources`) the ledger keeps one row:

``pending``        to create
``update-pending`` written, then changed in the app: to update (PUT with If-Match)
``unknown``        a create whose outcome is unknown (timeout, connection lost, 5xx): looked up by its
                   business identifier before anything is sent again, never blindly re-created
``written``        on the server (its id and version are kept)
``waiting-final``  the EHR creates but never updates this type: sent once the resource is final
``app-only``       the EHR does not accept this type (kept in the app only; the page says so)
``rejected``       the EHR refused it (4xx): the reason is kept and shown
``conflict``       someone else changed our resource on the server: shown, never overwritten

What the EHR accepts comes from its CapabilityStatement (per type: create, update), narrowed by the
per-server setting (``FHIR_WRITE_TYPES``-style list; empty = write nothing). Retries back off
(5 s, 15 s, 1 min, 5 min, then every 5 min).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.course.bedside.fhir_map import Outgoing, item_identifier, session_resources
from fhir_desens.course.bedside.state import SessionState
from fhir_desens.course.bedside.store import OutboxRow, RecordStore
from fhir_desens.errors import (
    AuthError,
    ConflictError,
    DesensError,
    FhirServerError,
    ForbiddenError,
    NotFoundError,
    TemporaryServerError,
)

BACKOFF = (5.0, 15.0, 60.0, 300.0)
SEND_ORDER = {
    "Procedure": 0,
    "MedicationAdministration": 1,
    "Observation": 2,
    "AdverseEvent": 3,
    "Provenance": 9,
}
NO_IDENTIFIER_SEARCH = frozenset({"AdverseEvent"})
NOT_IN_EHR = ("pending", "update-pending", "unknown", "waiting-final", "app-only", "rejected", "conflict")


@dataclass(frozen=True)
class ServerCapabilities:
    """Which interactions the EHR offers per resource type (from its CapabilityStatement)."""

    interactions: Mapping[str, frozenset[str]]
    reasons: Mapping[str, str] = field(default_factory=dict)  # type -> why it is not written, in words

    @classmethod
    def from_statement(
        cls, statement: Mapping[str, Any], only: Iterable[str] | None = None
    ) -> ServerCapabilities:
        allowed = set(only) if only is not None else None
        found: dict[str, frozenset[str]] = {}
        for rest in statement.get("rest") or []:
            if rest.get("mode", "server") != "server":
                continue
            for resource in rest.get("resource") or []:
                resource_type = resource.get("type")
                if not isinstance(resource_type, str) or (
                    allowed is not None and resource_type not in allowed
                ):
                    continue
                found[resource_type] = frozenset(
                    str(i.get("code")) for i in resource.get("interaction") or [] if isinstance(i, Mapping)
                )
        return cls(found)

    def can_create(self, resource_type: str) -> bool:
        return "create" in self.interactions.get(resource_type, frozenset())

    def can_update(self, resource_type: str) -> bool:
        return "update" in self.interactions.get(resource_type, frozenset())

    def why_not(self, resource_type: str) -> str:
        """Why a type is kept in the app only (the EHR, the site's setting or the launch's scopes)."""
        return self.reasons.get(resource_type, "this EHR does not accept it")


@dataclass(frozen=True)
class OutboxStatus:
    counts: dict[str, int]
    not_in_ehr: list[OutboxRow]  # what the EHR does not have (yet), with the reason
    unqueued: bool = False  # entries recorded while the EHR could not be asked: not in the ledger yet

    @property
    def unsent(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("pending", "update-pending", "unknown", "waiting-final"))

    @property
    def waiting(self) -> bool:
        """Something recorded is still on its way to the EHR."""
        return self.unqueued or any(
            r.state in ("pending", "update-pending", "unknown") for r in self.not_in_ehr
        )


def _item_key(session_id: str, key: str) -> str:
    return f"{session_id}/{key}"


def _key_of(row: OutboxRow) -> str:
    return row.item_key.split("/", 1)[1]


class Outbox:
    def __init__(
        self,
        store: RecordStore,
        capabilities: ServerCapabilities,
        clock: Callable[[], float] = time.time,
        backoff: Sequence[float] = BACKOFF,
    ) -> None:
        self.store = store
        self.capabilities = capabilities
        self.clock = clock
        self.backoff = backoff

    # -- what should be sent ----------------------------------------------------------------------
    def sync(self, state: SessionState) -> None:
        """Bring the ledger in line with the session: new resources queued, changed ones marked."""
        rows = {r.item_key: r for r in self.store.outbox(state.session_id)}
        for outgoing in session_resources(state):
            key = _item_key(state.session_id, outgoing.key)
            row = rows.get(key)
            if row is None:
                initial = self._initial_state(outgoing)
                self.store.enqueue(
                    OutboxRow(
                        key,
                        state.session_id,
                        outgoing.resource_type,
                        _identifier_text(outgoing),
                        outgoing.resource,
                        initial,
                        detail=self.capabilities.why_not(outgoing.resource_type)
                        if initial == "app-only"
                        else None,
                    )
                )
                continue
            changed = row.resource != outgoing.resource
            if not changed and not (row.state == "waiting-final" and outgoing.final):
                continue
            row.resource = outgoing.resource
            row.state = self._next_state(row.state, outgoing, changed)
            self.store.save_outbox(row)

    def _initial_state(self, outgoing: Outgoing) -> str:
        if not self.capabilities.can_create(outgoing.resource_type):
            return "app-only"
        if not outgoing.final and not self.capabilities.can_update(outgoing.resource_type):
            return "waiting-final"
        return "pending"

    def _next_state(self, current: str, outgoing: Outgoing, changed: bool) -> str:
        if current == "waiting-final":
            return "pending" if outgoing.final else current
        if current == "written" and changed:
            return "update-pending" if self.capabilities.can_update(outgoing.resource_type) else "written"
        if current == "rejected" and changed:
            return "pending"
        return current

    # -- sending --------------------------------------------------------------------------------------
    def flush(self, client: FhirClient, session_id: str) -> OutboxStatus:
        """Send what is due, in dependency order; returns where everything stands."""
        now = self.clock()
        rows = sorted(
            self.store.outbox(session_id), key=lambda r: (SEND_ORDER.get(r.resource_type, 5), r.item_key)
        )
        by_key = {_key_of(r): r for r in rows}
        for row in rows:
            if row.state not in ("pending", "update-pending", "unknown") or row.next_attempt > now:
                continue
            resolved = _resolve(row.resource, by_key)
            if resolved is None:
                continue  # a resource it points at is not on the server yet
            self._send(client, row, resolved, now)
        return self.status(session_id)

    def _send(self, client: FhirClient, row: OutboxRow, resource: dict[str, Any], now: float) -> None:
        try:
            if row.state == "update-pending":
                self._update(client, row, resource)
            else:
                if row.state == "unknown" and self._found(client, row):
                    return
                created = client.create(resource)
                row.state, row.server_id, row.version, row.detail = (
                    "written",
                    created.id,
                    created.version_id,
                    None,
                )
        except ConflictError as conflict:
            row.state, row.detail = "conflict", str(conflict)
        except NotFoundError as error:
            if row.state == "update-pending":  # the server lost it (restored, restarted): create it again
                row.state, row.server_id, row.version = "pending", None, None
                row.detail = "no longer on the server: sent again"
            else:
                self._later(row, now, str(error))
        except TemporaryServerError as error:
            self._later(row, now, str(error))
        except FhirServerError as error:
            if error.status is not None and 400 <= error.status < 500 and error.status not in (408, 429):
                row.state, row.detail = "rejected", str(error)
            else:
                self._later(row, now, str(error))
        except ForbiddenError as error:
            # the EHR (or the launch's scopes) refuses this write: nothing was written and resending
            # cannot help, so it is kept in the app with the reason, not shown as an answer lost
            row.state, row.detail = "rejected", str(error)
        except AuthError as error:
            # the access token was refused before anything was written: try again later, no lookup needed
            self._later(row, now, str(error), maybe_written=False)
        except DesensError as error:
            self._later(row, now, str(error))
        self.store.save_outbox(row)

    def _later(self, row: OutboxRow, now: float, detail: str, *, maybe_written: bool = True) -> None:
        if row.state == "pending" and maybe_written:
            row.state = "unknown"  # the create may have reached the server: look it up before resending
        row.attempts += 1
        row.next_attempt = now + self.backoff[min(row.attempts, len(self.backoff)) - 1]
        row.detail = detail

    def _found(self, client: FhirClient, row: OutboxRow) -> bool:
        """Look an unknown create up by its business identifier; True (and written) when it is there."""
        match = _lookup(client, row)
        if match is None:
            return False
        row.state, row.server_id = "written", str(match.get("id"))
        row.version = str((match.get("meta") or {}).get("versionId") or "") or None
        row.detail = "found on the server after an unknown outcome (not sent again)"
        self.store.save_outbox(row)
        return True

    def _update(self, client: FhirClient, row: OutboxRow, resource: dict[str, Any]) -> None:
        assert row.server_id is not None
        body = {**resource, "id": row.server_id}
        try:
            updated = client.update(body, if_match=row.version)
        except ConflictError:
            # another version exists: ours if an earlier update's answer was lost, someone else's otherwise
            current = client.read(row.resource_type, row.server_id)
            if _same_content(current.resource, resource):
                updated = current
            elif _identifier_text_of(current.resource) == row.identifier and _ours(current.resource, row):
                updated = client.update(body, if_match=current.version_id)
            else:
                raise
        row.state, row.version, row.detail = "written", updated.version_id, None

    def reconcile(self, client: FhirClient, session_id: str) -> int:
        """Written rows the server no longer has (a restored or restarted EHR) go back to pending."""
        missing = 0
        for row in self.store.outbox(session_id, states=["written", "update-pending"]):
            if row.resource_type == "Provenance":
                continue
            try:
                if _lookup(client, row) is None:
                    row.state, row.server_id, row.version = "pending", None, None
                    row.detail = "no longer on the server: sent again"
                    self.store.save_outbox(row)
                    missing += 1
            except DesensError:
                return missing  # the server is unreachable: try again later
        return missing

    def status(self, session_id: str) -> OutboxStatus:
        rows = self.store.outbox(session_id)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.state] = counts.get(row.state, 0) + 1
        return OutboxStatus(counts, [r for r in rows if r.state in NOT_IN_EHR])


def _identifier_text(outgoing: Outgoing) -> str:
    return f"{outgoing.identifier['system']}|{outgoing.identifier['value']}"


def _identifier_text_of(resource: Mapping[str, Any]) -> str | None:
    identifiers = resource.get("identifier")
    first = identifiers[0] if isinstance(identifiers, list) and identifiers else identifiers
    if not isinstance(first, Mapping):
        return None
    return f"{first.get('system')}|{first.get('value')}"


def _ours(resource: Mapping[str, Any], row: OutboxRow) -> bool:
    """The server's version was written by us (nobody else uses our identifier system)."""
    return _identifier_text_of(resource) == row.identifier


def _same_content(server: Mapping[str, Any], ours: Mapping[str, Any]) -> bool:
    return all(server.get(k) == v for k, v in ours.items() if k not in ("id", "meta", "text"))


def _lookup(client: FhirClient, row: OutboxRow) -> dict[str, Any] | None:
    if row.resource_type == "Provenance":
        targets = [t.get("reference") for t in row.resource.get("target") or [] if isinstance(t, Mapping)]
        literal = next((t for t in targets if isinstance(t, str)), None)
        if literal is None:
            return None
        bundle = client.search("Provenance", {"target": literal})
    elif row.resource_type in NO_IDENTIFIER_SEARCH:
        # R4 defines no identifier search for these: search the patient's at that time, match the identifier
        subject = (row.resource.get("subject") or {}).get("reference")
        bundle = client.search(
            row.resource_type, {"subject": str(subject), "date": str(row.resource.get("date"))}
        )
    else:
        bundle = client.search(row.resource_type, {"identifier": row.identifier})
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource")
        if (
            isinstance(resource, dict)
            and resource.get("resourceType") == row.resource_type
            and (row.resource_type == "Provenance" or _identifier_text_of(resource) == row.identifier)
        ):
            return resource
    return None


def _resolve(node: Any, by_key: Mapping[str, OutboxRow]) -> Any:
    """References to the session's own resources made literal; None while a target is still on its way."""
    if isinstance(node, list):
        items = [_resolve(item, by_key) for item in node]
        return None if any(i is None for i in items) else items
    if not isinstance(node, dict):
        return node
    if "_item" in node:
        target = by_key.get(str(node["_item"]))
        logical = {k: v for k, v in node.items() if k != "_item"}
        if target is None or target.state in ("app-only", "rejected", "conflict", "waiting-final"):
            return logical  # the EHR will not have it: the identifier says where it lives
        if target.state == "written" or (target.state == "update-pending" and target.server_id):
            return {"reference": f"{target.resource_type}/{target.server_id}", "type": node.get("type")}
        return None
    result: dict[str, Any] = {}
    for key, value in node.items():
        resolved = _resolve(value, by_key)
        if resolved is None:
            return None
        result[key] = resolved
    return result


__all__ = ["Outbox", "OutboxStatus", "ServerCapabilities", "item_identifier"]
