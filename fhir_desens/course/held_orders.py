"""Step orders that someone put on hold in the EHR after the plan was signed.

This app never puts a step order on hold (it holds only the therapeutic order), so a step order found
``on-hold`` when a plan is discontinued is another person's decision. Discontinuing would cancel it; the
project's rule is that a change by someone else is reported, never overwritten silently: the nurse is told
what was put on hold, when, why and by whom as far as the EHR says, and nothing is written until they
confirm that those orders are to be cancelled too (:class:`OrdersHeldMeanwhile`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.errors import ConflictError, DesensError
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.raw import text_or_none

log = logging.getLogger(__name__)

__all__ = ["HeldOrder", "OrdersHeldMeanwhile", "held_step_orders"]

#: turns a FHIR dateTime into the site's words ("3 Dec 2026 20:15 CET"); returns it unchanged if it cannot
TimeText = Callable[[str], str]


@dataclass(frozen=True)
class HeldOrder:
    """A step order on hold: which step, since when, why and by whom (None: the EHR does not say)."""

    reference: str  # "MedicationRequest/<id>", for support
    step: str | None
    since: str | None  # FHIR dateTime of the order's last change
    reason: str | None  # its statusReason as written
    by: str | None  # a name from the EHR's Provenance of the change

    def words(self, time_text: TimeText) -> str:
        """ "the order of step 1 (put on hold by Dr. Lee, 3 Dec 2026 20:15 CET: "febrile")"."""
        what = f"the order of step {self.step}" if self.step else "a step order"
        details = [f"by {self.by}" if self.by else "by someone the EHR does not name"]
        if self.since:
            details.append(time_text(self.since))
        said = ", ".join(details)
        return f"{what} (put on hold {said}{f': “{self.reason}”' if self.reason else ''})"


class OrdersHeldMeanwhile(ConflictError):
    """Step orders were put on hold by someone else: nothing is written until cancelling them is confirmed."""

    def __init__(self, held: Sequence[HeldOrder], time_text: TimeText) -> None:
        self.held = tuple(held)
        one = len(self.held) == 1
        listed = "; ".join(h.words(time_text) for h in self.held)
        super().__init__(
            f"Nothing was written. Since this plan was signed, {'a step order was' if one else 'step orders were'} "
            f"put on hold in the EHR: {listed}. Discontinuing the plan would cancel "
            f"{'it' if one else 'them'} too. Ask whoever put {'it' if one else 'them'} on hold if you can; to "
            f"discontinue anyway, tick “Also cancel the {'order' if one else 'orders'} put on hold” and "
            "discontinue again.",
            409,
        )


def held_step_orders(client: FhirClient, orders: Sequence[Mapping[str, Any]]) -> tuple[HeldOrder, ...]:
    """The plan's step orders that are ``on-hold`` (another person's decision: see the module)."""
    return tuple(_held(client, order) for order in orders if order.get("status") == "on-hold")


def _held(client: FhirClient, order: Mapping[str, Any]) -> HeldOrder:
    reference = f"MedicationRequest/{order.get('id')}"
    reason = order.get("statusReason")
    meta = order.get("meta")
    return HeldOrder(
        reference=reference,
        step=_step(order),
        since=text_or_none(meta.get("lastUpdated")) if isinstance(meta, Mapping) else None,
        reason=text_or_none(reason.get("text"), limit=200) if isinstance(reason, Mapping) else None,
        by=_changed_by(client, reference),
    )


def _step(order: Mapping[str, Any]) -> str | None:
    """The step number from the order's business identifier ("<session>-<step>")."""
    for identifier in order.get("identifier") or []:
        if isinstance(identifier, Mapping) and identifier.get("system") == c.ID_STEP_ORDER:
            value = identifier.get("value")
            if isinstance(value, str) and "-" in value:
                return value.rsplit("-", 1)[1]
    return None


def _changed_by(client: FhirClient, reference: str) -> str | None:
    """Who last changed the order, from the newest Provenance of an update that names a person (best effort:
    many EHRs keep none a client can read)."""
    try:
        found = client.search_all("Provenance", {"target": reference}, max_pages=1)
    except DesensError as error:
        log.info("provenance of a held order not readable (%s)", type(error).__name__)
        return None
    updates = [p for p in found if _activity(p) != "CREATE"]
    for provenance in sorted(updates, key=_recorded, reverse=True):
        for agent in provenance.get("agent") or []:
            who = agent.get("who") if isinstance(agent, Mapping) else None
            name = text_or_none(who.get("display"), limit=200) if isinstance(who, Mapping) else None
            if name:
                return name
    return None


def _activity(provenance: Mapping[str, Any]) -> str | None:
    activity = provenance.get("activity")
    codings = activity.get("coding") if isinstance(activity, Mapping) else None
    for coding in codings or []:
        if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return None


def _recorded(provenance: Mapping[str, Any]) -> datetime:
    try:
        moment = datetime.fromisoformat(str(provenance.get("recorded")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
