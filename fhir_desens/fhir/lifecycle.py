"""Status changes of a signed plan as FHIR writes (no network): discontinue, hold and release of the
therapeutic order.

* Discontinue: ONE transaction: the RequestGroup ``revoked`` (a note says when, by whom and why),
  each step MedicationRequest not yet given ``cancelled`` and each started one ``stopped`` (both
  with ``statusReason``), every PUT guarded by ``ifMatch`` with the version that was read, and a
  Provenance PUT to an id derived from the session, so repeating the same discontinuation writes the
  same resources.
* Hold: the therapeutic (standard-rate) order ``on-hold`` with a ``statusReason`` naming the plan;
  release: back to ``active`` with that reason removed.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.provenance import provenance_resource

__all__ = [
    "COMPLETED_NOTE",
    "DISCONTINUED_NOTE",
    "HOLD_REASON_PREFIX",
    "STOPPED_AT_THE_BEDSIDE",
    "closed_group",
    "closed_order",
    "discontinue_bundle",
    "held_for",
    "on_hold_for_plan",
    "released",
    "session_of",
]

_NAMESPACE = uuid.UUID("6b2f7f0e-6a8e-4d55-9a2c-4a1f2d9a7c10")  # the session namespace of fhir.apply
DISCONTINUED_NOTE = "Discontinued: "
COMPLETED_NOTE = "Completed at the bedside: "
STOPPED_AT_THE_BEDSIDE = "Stopped at the bedside: "
HOLD_REASON_PREFIX = "On hold for the desensitization plan RequestGroup/"
#: MedicationRequest statuses after which an order is no longer changed
FINAL_ORDER_STATUSES = frozenset({"completed", "cancelled", "stopped", "entered-in-error"})


def _version_match(version: str | None) -> dict[str, str]:
    return {"ifMatch": f'W/"{version}"'} if version else {}


def _put(resource: Mapping[str, Any], version: str | None) -> dict[str, Any]:
    kind, rid = resource["resourceType"], resource["id"]
    return {
        "fullUrl": f"{kind}/{rid}",
        "resource": dict(resource),
        "request": {"method": "PUT", "url": f"{kind}/{rid}", **_version_match(version)},
    }


def discontinue_bundle(
    group: Mapping[str, Any],
    group_version: str | None,
    orders: Sequence[tuple[Mapping[str, Any], str | None]],
    started: frozenset[str],
    *,
    reason: str,
    when: str,
    practitioner: str | None,
    session: str,
) -> dict[str, Any]:
    """The transaction that discontinues a signed plan.

    ``orders``: (step MedicationRequest, its version id); ``started``: ids of the orders already
    (partly) given: those are ``stopped``, the others ``cancelled``; orders already completed,
    cancelled or stopped are left as they are. ``when`` is a FHIR dateTime with its zone.
    """
    revoked = copy.deepcopy(dict(group))
    revoked["status"] = "revoked"
    who = f" by {practitioner}" if practitioner else ""
    revoked["note"] = [*revoked.get("note", []), {"text": f"{DISCONTINUED_NOTE}{when}{who}: {reason}"}]
    entries = [_put(revoked, group_version)]
    targets = [f"RequestGroup/{group['id']}"]
    for order, version in orders:
        if order.get("status") in FINAL_ORDER_STATUSES:
            continue
        changed = copy.deepcopy(dict(order))
        changed["status"] = "stopped" if order["id"] in started else "cancelled"
        changed["statusReason"] = {"text": f"{DISCONTINUED_NOTE}{reason}"}
        entries.append(_put(changed, version))
        targets.append(f"MedicationRequest/{order['id']}")
    provenance_id = str(uuid.uuid5(_NAMESPACE, f"{session}/discontinue"))
    provenance = provenance_resource(
        targets,
        when,
        "UPDATE",
        author=practitioner,
        provenance_id=provenance_id,
        reason=DISCONTINUED_NOTE + reason,
    )
    entries.append(
        {
            "fullUrl": f"Provenance/{provenance_id}",
            "resource": provenance,
            "request": {"method": "PUT", "url": f"Provenance/{provenance_id}"},
        }
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def closed_group(
    group: Mapping[str, Any], *, completed: bool, when: str, practitioner: str | None, reason: str | None
) -> dict[str, Any]:
    """The RequestGroup once its bedside session ended: ``completed`` (the full dose was given) or
    ``revoked`` (stopped early), with a note saying when, by whom and why. A stopped session's note is a
    discontinuation note, so the plan reads as discontinued everywhere else (readback.discontinued)."""
    closed = copy.deepcopy(dict(group))
    closed["status"] = "completed" if completed else "revoked"
    who = f" by {practitioner}" if practitioner else ""
    if completed:
        text = f"{COMPLETED_NOTE}{when}{who}"
    else:
        text = f"{DISCONTINUED_NOTE}{when}{who}: {STOPPED_AT_THE_BEDSIDE}{reason or 'no reason given'}"
    closed["note"] = [*closed.get("note", []), {"text": text}]
    return closed


def closed_order(order: Mapping[str, Any], status: str, reason: str) -> dict[str, Any]:
    """A step order closed with its session: ``completed`` (given), ``stopped`` (partly given when the
    session stopped) or ``cancelled`` (never given), with ``statusReason`` saying why."""
    closed = copy.deepcopy(dict(order))
    closed["status"] = status
    closed["statusReason"] = {"text": reason}
    return closed


def held_for(order: Mapping[str, Any]) -> str | None:
    """The RequestGroup id an order is on hold for (by this app), or None."""
    if order.get("status") != "on-hold":
        return None
    reason = order.get("statusReason")
    text = reason.get("text") if isinstance(reason, Mapping) else None
    if isinstance(text, str) and text.startswith(HOLD_REASON_PREFIX):
        return text[len(HOLD_REASON_PREFIX) :].split(" ", 1)[0].rstrip(".:;,") or None
    return None


def on_hold_for_plan(order: Mapping[str, Any], rg_id: str, plan_text: str) -> dict[str, Any]:
    """The therapeutic order put on hold for the plan (``statusReason`` names the plan)."""
    held = copy.deepcopy(dict(order))
    held["status"] = "on-hold"
    # text only: no code of medicationrequest-status-reason says "given as a desensitization instead"
    held["statusReason"] = {
        "text": f"{HOLD_REASON_PREFIX}{rg_id} ({plan_text}); give it only as the plan says",
    }
    return held


def released(order: Mapping[str, Any]) -> dict[str, Any]:
    """The therapeutic order back to ``active`` once the plan is completed or discontinued."""
    active = copy.deepcopy(dict(order))
    active["status"] = "active"
    active.pop("statusReason", None)
    return active


def session_of(group: Mapping[str, Any]) -> str | None:
    for identifier in group.get("identifier") or []:
        if isinstance(identifier, Mapping) and identifier.get("system") == c.ID_SESSION:
            value = identifier.get("value")
            return value if isinstance(value, str) else None
    return None
