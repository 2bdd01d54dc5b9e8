"""After signing: discontinue a plan, one active plan per drug, and the therapeutic order's hold.

Every status change is a versioned write (``If-Match`` with the version read; 409 and 412 both mean
"changed meanwhile": the resource is read again and the person asked, never overwritten) and is
safe to repeat: discontinuing a discontinued plan writes nothing and says when it happened.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.smart import SmartSession
from fhir_desens.course.chart import (
    FHIR_ID,
    belongs_to,
    open_client,
    patient_reference,
    practitioner_reference,
)
from fhir_desens.course.context import CourseContext
from fhir_desens.course.held_orders import HeldOrder, OrdersHeldMeanwhile, held_step_orders
from fhir_desens.course.readback import (
    INFUSED_ORDER,
    SignedPlanNotFound,
    SignedPlanSummary,
    order_name,
    signed_plans,
    step_order_ids,
)
from fhir_desens.drugs.overrides import check_override_reason
from fhir_desens.errors import (
    ConflictError,
    DesensError,
    FhirServerError,
    ForbiddenError,
    InputError,
)
from fhir_desens.fhir import lifecycle as fl
from fhir_desens.fhir.apply import plan_parameters
from fhir_desens.protocol.display import chart_time_text
from fhir_desens.protocol.model import Protocol

log = logging.getLogger(__name__)

#: The writes a status change needs: resource type -> permissions.
LIFECYCLE_WRITES: tuple[tuple[str, str], ...] = (
    ("RequestGroup", "u"),
    ("MedicationRequest", "u"),
    ("Provenance", "cu"),
)
ACTIVE = "active"
REASON_ACCEPTED = "at least 20 characters, in words, saying why (it is recorded with the orders)"

__all__ = [
    "Discontinued",
    "HoldOutcome",
    "LifecycleNotPermitted",
    "PlanChangedMeanwhile",
    "PlanEnded",
    "active_plans_for_drug",
    "can_change_status",
    "discontinue",
    "hold_therapeutic_order",
    "release_hold",
    "substantive_reason",
]


class LifecycleNotPermitted(ForbiddenError):
    """The token does not allow the status change: nothing is sent."""

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(
            "The EHR did not grant this app permission to change orders (missing: "
            + ", ".join(missing)
            + "). Nothing was written. Discontinue the orders in the EHR."
        )
        self.missing = tuple(missing)


class PlanChangedMeanwhile(ConflictError):
    """The plan or an order changed in the EHR since it was read: nothing was overwritten."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} changed in the EHR while this was being done, so nothing was overwritten. "
            "The page shows it as it is now: check it, then try again.",
            409,
        )


class PlanEnded(DesensError):
    """A completed plan cannot be discontinued."""

    exit_code = 3
    http_status = 409


def substantive_reason(text: str | None, field: str) -> str:
    """A reason that says something (not empty, not repeated characters, a few different words)."""
    try:
        return check_override_reason(text)
    except InputError as error:
        raise InputError(field, error.problem, REASON_ACCEPTED) from None


def missing_writes(smart: SmartSession) -> list[str]:
    granted = smart.granted
    missing = []
    for resource_type, letters in LIFECYCLE_WRITES:
        absent = "".join(letter for letter in letters if not granted.allows(resource_type, letter))
        if absent:
            missing.append(f"patient/{resource_type}.{absent}")
    return missing


def can_change_status(smart: SmartSession) -> bool:
    return not missing_writes(smart)


# --- one active plan per drug --------------------------------------------------------------------------


def _same_drug(plan: SignedPlanSummary, drug: str, rxnorm: Sequence[str]) -> bool:
    if rxnorm and set(rxnorm) & set(plan.drug_codes):
        return True
    return plan.drug.strip().casefold() == drug.strip().casefold()


def active_plans_for_drug(
    smart: SmartSession,
    protocols: Mapping[str, Any],
    drug: str,
    rxnorm: Sequence[str],
    *,
    except_session: str = "",
    zone: tzinfo | None = None,
    bundle: Mapping[str, Any] | None = None,
) -> list[SignedPlanSummary]:
    """The patient's active (signed, not discontinued or completed) plans for the same drug (signing
    times written in ``zone``, the site's). ``bundle``: the signed-plans searchset when it was already
    read (a page's cached read; signing never passes one, it searches afresh)."""
    return [
        plan
        for plan in signed_plans(smart, protocols, zone, bundle=bundle)
        if plan.status == ACTIVE and plan.session_id != except_session and _same_drug(plan, drug, rxnorm)
    ]


# --- discontinue ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Discontinued:
    request_group_id: str
    already: bool  # True: it was discontinued before; nothing was written now
    cancelled: int  # step orders cancelled (not started)
    stopped: int  # step orders stopped (started)
    when: str  # FHIR dateTime of the discontinuation
    hold: HoldOutcome | None = None  # what became of the therapeutic order's hold
    held_cancelled: tuple[HeldOrder, ...] = ()  # step orders someone had put on hold, cancelled as confirmed


def _read_plan(client: FhirClient, rg_id: str, own: str) -> tuple[dict[str, Any], str | None]:
    if not FHIR_ID.match(rg_id):
        raise SignedPlanNotFound()
    try:
        read = client.read("RequestGroup", rg_id)
    except ForbiddenError:
        raise SignedPlanNotFound() from None
    except FhirServerError as error:
        if error.status in (404, 410):
            raise SignedPlanNotFound() from None
        raise
    group = read.resource
    if not belongs_to(group, own, "subject") or fl.session_of(group) is None:
        raise SignedPlanNotFound()
    return group, read.version_id


def _read_orders(client: FhirClient, ids: Sequence[str], own: str) -> list[tuple[dict[str, Any], str | None]]:
    """Each step order with its version (read one by one: the version must be the one written over)."""
    orders = []
    for order_id in ids:
        read = client.read("MedicationRequest", order_id)
        if belongs_to(read.resource, own, "subject"):
            orders.append((read.resource, read.version_id))
    return orders


def _started(client: FhirClient, smart: SmartSession, own: str, ids: Sequence[str]) -> frozenset[str]:
    """Step orders with a recorded administration. When that cannot be read, every order counts as
    started (``stopped`` is true of an order whether or not a dose was given; ``cancelled`` would
    claim that none was)."""
    if not ids:
        return frozenset()
    if not smart.granted.can_read("MedicationAdministration"):
        return frozenset(ids)
    refs = ",".join(f"MedicationRequest/{i}" for i in ids)
    try:
        given = client.search_all("MedicationAdministration", {"patient": own, "request": refs}, max_pages=3)
    except DesensError as error:
        log.warning(
            "administrations could not be read (%s): every open step counts as started", type(error).__name__
        )
        return frozenset(ids)
    started = set()
    for administration in given:
        request = administration.get("request")
        ref = request.get("reference") if isinstance(request, Mapping) else None
        if isinstance(ref, str) and ref.startswith("MedicationRequest/") and ref[18:] in ids:
            started.add(ref[18:])
    return frozenset(started)


def _discontinued_when(group: Mapping[str, Any]) -> str:
    for note in reversed(group.get("note") or []):
        text = note.get("text") if isinstance(note, Mapping) else None
        if isinstance(text, str) and text.startswith(fl.DISCONTINUED_NOTE):
            return text[len(fl.DISCONTINUED_NOTE) :].split(" ", 1)[0].rstrip(":")
    meta = group.get("meta")
    updated = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    return updated if isinstance(updated, str) else ""


def discontinue(
    ctx: CourseContext,
    rg_id: str,
    reason: str,
    *,
    release: bool = False,
    cancel_held: Collection[str] = (),
) -> Discontinued:
    """Discontinue a signed plan: ONE transaction (see :func:`fhir_desens.fhir.lifecycle.discontinue_bundle`).

    Idempotent: a plan already revoked is reported with when it was discontinued, nothing written.
    ``release``: also put the therapeutic order this plan held back to active. A step order someone put on
    hold is never cancelled silently: :class:`~fhir_desens.course.held_orders.OrdersHeldMeanwhile` (nothing
    written) unless ``cancel_held`` names every held order ("MedicationRequest/<id>", as the person was shown
    them: an order put on hold after that is asked about again); the result then names what was on hold.
    """
    reason = substantive_reason(reason, "discontinue_reason")
    smart = ctx.smart
    missing = missing_writes(smart)
    if missing:
        raise LifecycleNotPermitted(missing)
    own = patient_reference(smart)
    with open_client(smart) as client:
        group, version = _read_plan(client, rg_id, own)
        if group.get("status") == "revoked":
            hold = (
                release_hold(client, group, rg_id, plan_order_name(group, ctx.protocols)) if release else None
            )
            return Discontinued(rg_id, True, 0, 0, _discontinued_when(group), hold)
        if group.get("status") == "completed":
            raise PlanEnded("This plan is completed: there is nothing left to discontinue.")
        ids = step_order_ids(group)
        orders = _read_orders(client, ids, own)
        held = held_step_orders(client, [order for order, _ in orders])
        if held and not {h.reference for h in held} <= set(cancel_held):
            raise OrdersHeldMeanwhile(held, lambda value: chart_time_text(value, ctx.time_zone))
        started = _started(client, smart, own, ids)
        when = datetime.fromtimestamp(ctx.clock(), ctx.time_zone).isoformat(timespec="seconds")
        bundle = fl.discontinue_bundle(
            group,
            version,
            orders,
            started,
            reason=reason,
            when=when,
            practitioner=practitioner_reference(smart),
            session=fl.session_of(group) or rg_id,
        )
        try:
            client.transaction(bundle)
        except ConflictError:
            again, _ = _read_plan(client, rg_id, own)
            if again.get("status") == "revoked":  # discontinued meanwhile (another tab): the same end
                return Discontinued(rg_id, True, 0, 0, _discontinued_when(again))
            raise PlanChangedMeanwhile("The plan or one of its orders") from None
        open_orders = [o for o, _ in orders if o.get("status") not in fl.FINAL_ORDER_STATUSES]
        stopped = sum(1 for o in open_orders if o["id"] in started)
        hold = release_hold(client, group, rg_id, plan_order_name(group, ctx.protocols)) if release else None
        log.info("discontinued RequestGroup/%s", rg_id)
        return Discontinued(rg_id, False, len(open_orders) - stopped, stopped, when, hold, held)


# --- the therapeutic order ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldOutcome:
    """What became of the therapeutic order (standard-rate, or standard-dose by mouth), for people."""

    state: Literal["held", "released", "kept", "changed", "not-permitted", "failed", "not-found", "unchanged"]
    order: str  # "MedicationRequest/<id>"
    message: str

    @property
    def needs_action(self) -> bool:
        """The order may still be given at the standard rate: someone must act in the EHR."""
        return self.state in ("changed", "not-permitted", "failed", "not-found")


def _order_id(reference: str | None) -> str | None:
    if reference and reference.startswith("MedicationRequest/") and FHIR_ID.match(reference[18:]):
        return reference[18:]
    return None


def still_active(name: str) -> str:
    """What to do when the therapeutic order (``name``: :func:`~fhir_desens.course.readback.order_name`)
    could not be put on hold."""
    return (
        f"The {name} is still active: put it on hold in the EHR so that it is not given alongside the "
        "desensitization."
    )


def plan_order_name(group: Mapping[str, Any], protocols: Mapping[str, Protocol]) -> str:
    """The therapeutic order of a signed plan in words that fit its drug (its protocol's route)."""
    parameters = plan_parameters(dict(group))
    protocol = protocols.get(parameters.protocol_id) if parameters is not None else None
    return order_name(protocol.route if protocol is not None else None)


def hold_therapeutic_order(
    client: FhirClient,
    smart: SmartSession,
    reference: str,
    rg_id: str,
    plan_text: str,
    name: str = INFUSED_ORDER,
) -> HoldOutcome:
    """Put the therapeutic order on hold for the plan (versioned update). Never raises: the orders
    are signed already; the outcome says what the person must do when the hold was not written.
    ``name``: the order in words that fit the drug (:func:`~fhir_desens.course.readback.order_name`)."""
    still = still_active(name)
    order_id = _order_id(reference)
    if order_id is None:
        return HoldOutcome("not-found", reference, f"{reference} is not a medication order. {still}")
    if not smart.granted.allows("MedicationRequest", "u"):
        return HoldOutcome(
            "not-permitted",
            reference,
            f"This app may not change orders in this EHR. {still}",
        )
    try:
        read = client.read("MedicationRequest", order_id)
        order = read.resource
        if not belongs_to(order, patient_reference(smart), "subject"):
            return HoldOutcome("not-found", reference, f"{reference} is not this patient's order.")
        if fl.held_for(order) == rg_id:
            return HoldOutcome("held", reference, f"The {name} is on hold for this plan.")
        if order.get("status") != ACTIVE:
            status = order.get("status")
            return HoldOutcome("unchanged", reference, f"The {name} is {status}; it was left as it is.")
        client.update(fl.on_hold_for_plan(order, rg_id, plan_text), if_match=read.version_id)
    except ConflictError:
        return HoldOutcome(
            "changed",
            reference,
            f"The {name} changed in the EHR while it was being put on hold, so it was not "
            f"changed. Check it, then put it on hold again. {still}",
        )
    except ForbiddenError:
        return HoldOutcome("not-permitted", reference, f"The EHR refused to change the order. {still}")
    except DesensError as error:
        log.warning("the therapeutic order could not be put on hold: %s", type(error).__name__)
        return HoldOutcome("failed", reference, f"The EHR did not confirm the hold. {still}")
    return HoldOutcome("held", reference, f"The {name} was put on hold for this plan.")


def release_hold(
    client: FhirClient, group: Mapping[str, Any], rg_id: str, name: str = INFUSED_ORDER
) -> HoldOutcome | None:
    """Put the therapeutic order this plan held back to active (None: the plan held none); ``name`` as
    :func:`hold_therapeutic_order`'s."""
    based_on = [b.get("reference") for b in group.get("basedOn") or [] if isinstance(b, Mapping)]
    reference = next((r for r in based_on if isinstance(r, str) and _order_id(r)), None)
    if reference is None:
        return None
    try:
        read = client.read("MedicationRequest", str(_order_id(reference)))
        if fl.held_for(read.resource) != rg_id:
            status = read.resource.get("status")
            return HoldOutcome("unchanged", reference, f"The {name} is {status}; it was left as it is.")
        client.update(fl.released(read.resource), if_match=read.version_id)
    except ConflictError:
        return HoldOutcome(
            "changed", reference, f"The {name} changed in the EHR meanwhile; it was not changed."
        )
    except DesensError as error:
        log.warning("the hold could not be released: %s", type(error).__name__)
        return HoldOutcome(
            "failed", reference, "The EHR did not confirm releasing the hold; release it in the EHR."
        )
    return HoldOutcome("released", reference, f"The {name} is active again.")
