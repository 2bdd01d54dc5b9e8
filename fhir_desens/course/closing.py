"""A signed plan's end after its bedside session: the RequestGroup and its step orders closed, and what
the EHR holds now (for the flowsheet's offer to release the therapeutic order's hold).

* A completed session (the full dose given): each step order given ``completed``, any never given
  ``cancelled``, then the RequestGroup ``completed``.
* A stopped session: each step order (partly) given ``stopped``, the others ``cancelled``, then the
  RequestGroup ``revoked`` with a discontinuation note naming the bedside reason.

Every write is a versioned update (``If-Match`` with the version read; 409 and 412 both mean "changed
meanwhile"): an order someone changed meanwhile is never overwritten, it is reported, and the
RequestGroup stays active until every order is closed (so trying again finishes the job). Individual
PUTs, not a transaction: EHRs such as Epic offer no transactions. Closing a closed plan writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.smart import SmartSession
from fhir_desens.course.chart import FHIR_ID, belongs_to, patient_reference, practitioner_reference
from fhir_desens.course.readback import SignedPlanNotFound, step_order_ids
from fhir_desens.errors import ConflictError, DesensError, ForbiddenError
from fhir_desens.fhir import lifecycle as fl

log = logging.getLogger(__name__)

ClosedState = Literal["closed", "already", "left", "partly", "changed", "not-permitted", "failed"]

__all__ = ["ClosedPlan", "PlanInEhr", "close_plan", "plan_in_ehr"]


@dataclass(frozen=True)
class ClosedPlan:
    """What closing the plan did, for people (``problems``: each order that was not changed)."""

    state: ClosedState
    message: str
    orders_closed: int = 0
    problems: tuple[str, ...] = ()

    @property
    def needs_action(self) -> bool:
        return self.state in ("partly", "changed", "not-permitted", "failed")


@dataclass(frozen=True)
class PlanInEhr:
    """The plan and the therapeutic order as the EHR holds them now (None: could not be read)."""

    group_status: str | None
    therapeutic_order: str | None  # "MedicationRequest/<id>" the plan stands in for
    order_status: str | None
    held_for_this_plan: bool


def _group_id(reference: str) -> str:
    rg_id = reference.removeprefix("RequestGroup/")
    if not FHIR_ID.match(rg_id):
        raise SignedPlanNotFound()
    return rg_id


def _read_group(client: FhirClient, rg_id: str, own: str) -> tuple[dict[str, Any], str | None]:
    read = client.read("RequestGroup", rg_id)
    if not belongs_to(read.resource, own, "subject"):
        raise SignedPlanNotFound()
    return read.resource, read.version_id


def plan_in_ehr(client: FhirClient, smart: SmartSession, request_group: str) -> PlanInEhr:
    """The RequestGroup's status and its therapeutic order's (both read now; None where unreadable)."""
    try:
        group, _ = _read_group(client, _group_id(request_group), patient_reference(smart))
    except DesensError as error:
        log.warning("the plan could not be read back (%s)", type(error).__name__)
        return PlanInEhr(None, None, None, False)
    based_on = [b.get("reference") for b in group.get("basedOn") or [] if isinstance(b, Mapping)]
    order_ref = next((r for r in based_on if isinstance(r, str) and r.startswith("MedicationRequest/")), None)
    if order_ref is None:
        return PlanInEhr(str(group.get("status")), None, None, False)
    try:
        order = client.read("MedicationRequest", order_ref.removeprefix("MedicationRequest/")).resource
    except DesensError:
        return PlanInEhr(str(group.get("status")), order_ref, None, False)
    held = fl.held_for(order) == group.get("id")
    return PlanInEhr(str(group.get("status")), order_ref, str(order.get("status")), held)


def _order_target(completed: bool, given: bool) -> tuple[str, str]:
    if not given:
        why = "the session completed without it" if completed else "the session stopped before it"
        return "cancelled", f"Not given at the bedside: {why}."
    if completed:
        return "completed", "Given at the bedside (desensitization completed)."
    return "stopped", "Given in part: the desensitization was stopped at the bedside."


def _close_order(client: FhirClient, order_id: str, own: str, completed: bool, given: bool) -> str | None:
    """Close one step order; None when done (or closed already), else the problem for people."""
    read = client.read("MedicationRequest", order_id)
    order = read.resource
    if not belongs_to(order, own, "subject") or order.get("status") in fl.FINAL_ORDER_STATUSES:
        return None
    status, reason = _order_target(completed, given)
    try:
        client.update(fl.closed_order(order, status, reason), if_match=read.version_id)
    except ConflictError:
        again = client.read("MedicationRequest", order_id).resource
        if again.get("status") in fl.FINAL_ORDER_STATUSES:
            return None
        return f"MedicationRequest/{order_id} changed in the EHR meanwhile and was not overwritten"
    return None


def close_plan(
    client: FhirClient,
    smart: SmartSession,
    request_group: str,
    *,
    completed: bool,
    given_orders: Collection[str],
    when: str,
    reason: str | None = None,
) -> ClosedPlan:
    """Close the plan ``request_group`` after its session (``given_orders``: MedicationRequest ids of the
    steps that ran). Never raises for EHR trouble: the outcome says what a person must do."""
    granted = smart.granted
    if not (granted.allows("RequestGroup", "u") and granted.allows("MedicationRequest", "u")):
        return ClosedPlan(
            "not-permitted",
            "This app may not change orders in this EHR: mark the plan and its orders "
            f"{'completed' if completed else 'stopped'} in the EHR.",
        )
    own = patient_reference(smart)
    target = "completed" if completed else "revoked"
    try:
        rg_id = _group_id(request_group)
        group, version = _read_group(client, rg_id, own)
        status = group.get("status")
        if status == target:
            return ClosedPlan("already", f"The plan is {_words(target)} in the EHR.")
        if status != "active":
            return ClosedPlan("left", f"The plan is {_words(str(status))} in the EHR; it was left as it is.")
        ids = step_order_ids(group)
        problems = [
            p for i in ids if (p := _close_order(client, i, own, completed, i in given_orders)) is not None
        ]
        if problems:
            return ClosedPlan(
                "partly",
                "Some step orders changed in the EHR meanwhile, so the plan was left active: check them, "
                "then try again.",
                len(ids) - len(problems),
                tuple(problems),
            )
        closed = fl.closed_group(
            group, completed=completed, when=when, practitioner=practitioner_reference(smart), reason=reason
        )
        try:
            client.update(closed, if_match=version)
        except ConflictError:
            again, _ = _read_group(client, rg_id, own)
            if again.get("status") == target:
                return ClosedPlan("already", f"The plan is {_words(target)} in the EHR.", len(ids))
            return ClosedPlan(
                "changed",
                "The plan changed in the EHR meanwhile, so it was not overwritten: check it, then try again.",
                len(ids),
            )
    except ForbiddenError:
        return ClosedPlan("not-permitted", "The EHR refused to change the plan: close it in the EHR.")
    except DesensError as error:
        log.warning("the plan could not be closed (%s)", type(error).__name__)
        return ClosedPlan("failed", "The EHR did not confirm closing the plan; it may still be active there.")
    log.info("closed RequestGroup/%s as %s", rg_id, target)
    return ClosedPlan(
        "closed", f"The plan is {_words(target)} in the EHR, and its {len(ids)} step orders closed.", len(ids)
    )


def _words(status: str) -> str:
    return {"revoked": "discontinued (stopped)", "completed": "completed"}.get(status, status)
