"""Signing a draft: "Sign and send orders" as ONE transaction, idempotent, with a truthful account of
what was written when it fails.

The plan comes from the stored draft through the engine (:func:`fhir_desens.course.draft.plan_for`,
never from posted numbers), the orders from :func:`fhir_desens.fhir.apply.apply_plan`, and they
travel as ONE transaction through :class:`~fhir_desens.client.fhir_rest.FhirClient` with the SMART
session's token.

Signing is idempotent, in three layers:

1. the business id of the session (RequestGroup.identifier, and the step orders' identifiers
   derived from it) is a hash of the patient, the draft id and the plan's fingerprint, so the same
   draft always posts the same Bundle, and every entry is a conditional create (``ifNoneExist``):
   a double click, two tabs, a retry after a timeout or a reload find the existing orders instead
   of writing a second set;
2. a per-draft marker in the session store (kind ``signed-plan``) short-circuits a repeat once the
   orders are confirmed, and refuses to sign the same draft again with other values (a new course
   is a copy, not an edit of a signed plan);
3. requests of one process for one draft are serialized by a lock, so the server sees them one by
   one.

After a failure (timeout, 5xx, refusal) the orders of the session are searched by their business
identifiers, so the person is told truthfully whether nothing, part or all of the plan was written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.smart import SmartSession
from fhir_desens.client.store import SessionStore
from fhir_desens.course.assessment import assess, signing_blockers
from fhir_desens.course.chart import (
    LOCATION,
    encounter_reference,
    missing_order_scopes,
    open_client,
    practitioner_reference,
)
from fhir_desens.course.context import CourseContext
from fhir_desens.course.draft import PlanDraft, plan_for
from fhir_desens.course.drug_review import DrugReview, drug_ref_for, review_draft
from fhir_desens.course.lifecycle import HoldOutcome, active_plans_for_drug, hold_therapeutic_order
from fhir_desens.course.readback import SignedPlanSummary
from fhir_desens.course.therapeutic import dose_blocker, dose_difference
from fhir_desens.errors import (
    AuthError,
    ConflictError,
    DesensError,
    FhirServerError,
    ForbiddenError,
    TemporaryServerError,
)
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.allergy import Allergy
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.model import Protocol
from fhir_desens.protocol.quantity import (
    parse_quantity,
)
from fhir_desens.protocol.report import plan_dict

log = logging.getLogger(__name__)

SIGNED_KIND = "signed-plan"
DOSE_NOTE = "Dose differs from the active order: "
KEPT_NOTE = "Standard-rate order "
DUPLICATE_NOTE = "A second active plan for this drug is intended: "


# --- errors (the taxonomy of fhir_desens.errors, with what the page needs) -------------------------


NOTHING_WRITTEN = "Nothing was written to the chart."


class OrdersNotPermitted(ForbiddenError):
    """The token lacks a write the orders transaction needs: nothing is sent."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.reason = (
            "the EHR did not grant this app permission to write orders (missing: " + ", ".join(missing) + ")"
        )
        self.advice = "Print the worksheet and enter the orders in the EHR."
        super().__init__(f"{self.reason[:1].upper()}{self.reason[1:]}. {NOTHING_WRITTEN} {self.advice}")
        self.missing = tuple(missing)


class SigningBlocked(DesensError):
    """The draft may not be signed yet (contraindication without override, unconfirmed drug ...)."""

    exit_code = 3
    http_status = 409

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reason = "the plan cannot be signed yet: " + " ".join(reasons)
        super().__init__(f"The plan cannot be signed yet: {' '.join(reasons)} {NOTHING_WRITTEN}")
        self.reasons = tuple(reasons)


class SignedWithOtherValues(ConflictError):
    """The draft changed after it was signed (or after an attempt that may be in the chart)."""

    def __init__(self, reason: str, written: str, advice: str) -> None:
        super().__init__(f"{reason} {written} {advice}", 409)
        self.reason, self.written, self.advice = reason, written, advice


@dataclass(frozen=True)
class WrittenCheck:
    """What of one session's orders the EHR holds, found by their business identifiers."""

    checked: bool  # False: the search itself failed, so nobody knows
    request_group_id: str | None = None
    medication_requests: int = 0
    expected_requests: int = 0
    medications: int = 0
    expected_medications: int = 0

    @property
    def state(self) -> Literal["unknown", "none", "partial", "complete"]:
        if not self.checked:
            return "unknown"
        if self.request_group_id is None and not self.medication_requests and not self.medications:
            return "none"
        complete = (
            self.request_group_id is not None
            and self.medication_requests == self.expected_requests
            and self.medications == self.expected_medications
        )
        return "complete" if complete else "partial"

    def describe(self) -> str:
        """The answer to "was anything written?", for people."""
        if self.state == "unknown":
            return (
                "It could not be checked whether the orders reached the chart (the EHR did not answer the "
                "check either). Signing again is safe: it never creates a second set of orders."
            )
        if self.state == "none":
            return "Nothing was written to the chart."
        if self.state == "complete":
            return "The orders are in the chart."
        group = "the plan (RequestGroup)" if self.request_group_id else "no plan (RequestGroup)"
        return (
            f"Part of the plan was written: {group}, {self.medication_requests} of "
            f"{self.expected_requests} medication requests and {self.medications} of "
            f"{self.expected_medications} solutions (Medications). Press \u201cSign and send orders\u201d "
            "again to complete the same set (what is already written is reused, never duplicated)."
        )


class SigningFailed(DesensError):
    """The EHR refused or did not confirm the transaction; ``check`` says what was written."""

    exit_code = 4

    def __init__(self, cause: DesensError, check: WrittenCheck, status: int) -> None:
        super().__init__(f"{_what_happened(cause)} ({cause.message.rstrip('.')}). {check.describe()}")
        self.cause = cause
        self.check = check
        self.http_status = status


def _what_happened(error: DesensError) -> str:
    if isinstance(error, TemporaryServerError) and error.status is None:
        return "The EHR did not answer in time"
    if isinstance(error, ForbiddenError):
        return "The EHR refused the orders: the granted permissions do not allow them"
    if isinstance(error, AuthError):
        return "The EHR no longer accepts this app session; open the app again from the EHR"
    if isinstance(error, ConflictError):
        return "The EHR refused the orders because of a conflict with what the chart holds"
    return "The EHR did not confirm the orders"


@dataclass(frozen=True)
class SignRefusal:
    """Why "Sign and send orders" did not sign, for the alert on the plan page."""

    heading: str  # what happened to the orders
    reason: str  # why
    written: str  # what the chart holds now (the truthful account of written_check)
    advice: str | None = None

    @property
    def text(self) -> str:
        return " ".join(part for part in (f"{self.reason.rstrip('.')}.", self.written, self.advice) if part)


def _sentence(text: str) -> str:
    text = text.strip()
    return f"{text[:1].upper()}{text[1:]}" if text else text


class EarlierAttemptInChart(DesensError):
    """This attempt failed before sending anything, but an earlier attempt of the same draft whose
    outcome was never confirmed may be in the chart: ``check`` says what the chart holds of it, found
    by its business identifiers (issue 11: a retry never says "nothing was written" while the first
    attempt's orders are in the chart). Keeps the status of the error it wraps."""

    def __init__(self, cause: DesensError, check: WrittenCheck) -> None:
        super().__init__(f"{cause.message.rstrip('.')}. {_earlier_account(check)}")
        self.cause = cause
        self.check = check
        self.http_status = int(getattr(cause, "http_status", 500))
        self.exit_code = cause.exit_code


def _earlier_account(check: WrittenCheck) -> str:
    """What the chart holds of an earlier, unconfirmed attempt, for people."""
    if check.state == "unknown":
        return (
            "Nothing was sent now, but an earlier attempt to send these orders was never confirmed and "
            "the EHR could not be asked what it holds: its orders may be in the chart. Check the chart "
            "before ordering by other means; signing again never creates a second set."
        )
    if check.state == "none":
        return "Nothing was written to the chart (an earlier, unconfirmed attempt is not in it either)."
    if check.state == "complete":
        return (
            "Nothing was sent now, but the orders of an earlier attempt are in the chart: "
            f"RequestGroup/{check.request_group_id} with {check.medication_requests} medication requests "
            f"and {check.medications} solutions. Press \u201cSign and send orders\u201d again to confirm "
            "them (nothing is duplicated)."
        )
    return "Nothing was sent now, but an earlier attempt is in the chart in part. " + check.describe()


def describe_refusal(error: DesensError) -> SignRefusal:
    """What a refused or failed signing did and did not do. Only the transaction itself writes, and
    its failures are :class:`SigningFailed` carrying what the chart holds; any other error happened
    before anything was sent (:class:`EarlierAttemptInChart` when an earlier attempt may be in the
    chart)."""
    not_sent = "The orders were not sent"
    if isinstance(error, EarlierAttemptInChart):
        headings = {
            "complete": "The orders were not sent again: an earlier attempt is in the chart",
            "partial": "The orders were not sent; an earlier attempt is in the chart in part",
            "unknown": "The orders were not sent; an earlier attempt may be in the chart",
        }
        inner = describe_refusal(error.cause)
        return SignRefusal(
            headings.get(error.check.state, not_sent),
            inner.reason,
            _earlier_account(error.check),
            inner.advice,
        )
    if isinstance(error, SigningFailed):
        headings = {
            "partial": "The orders were only partly written",
            "unknown": "It is not known whether the orders were written",
        }
        cause = f"{_what_happened(error.cause)} ({error.cause.message.rstrip('.')})"
        return SignRefusal(headings.get(error.check.state, not_sent), cause, error.check.describe())
    if isinstance(error, OrdersNotPermitted | SignedWithOtherValues):
        written = error.written if isinstance(error, SignedWithOtherValues) else NOTHING_WRITTEN
        return SignRefusal(not_sent, _sentence(error.reason), written, error.advice)
    if isinstance(error, SigningBlocked):
        return SignRefusal(not_sent, _sentence(error.reason), NOTHING_WRITTEN)
    return SignRefusal(not_sent, _sentence(error.message), NOTHING_WRITTEN)


def _status_for(error: DesensError) -> int:
    if isinstance(error, ForbiddenError):
        return 403
    if isinstance(error, AuthError):
        return 401
    if isinstance(error, ConflictError):
        return 409
    return 502


# --- signing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignResult:
    request_group_id: str
    medication_requests: int
    session_id: str
    created: bool  # False: the orders already existed (a repeat of the same signing)
    sent_at: str = ""  # when the orders were first sent (FHIR dateTime)
    hold: HoldOutcome | None = None  # what became of the therapeutic order
    repeat: bool = False  # True: signed before; nothing was written now


class DuplicatePlan(SigningBlocked):
    """Another active plan for the same drug: discontinue it first, or confirm both are intended."""

    def __init__(self, others: Sequence[SignedPlanSummary]) -> None:
        listed = "; ".join(f"{p.drug} {p.dose}, signed {p.authored} (RequestGroup/{p.id})" for p in others)
        super().__init__(
            [
                f"This patient already has an active desensitization plan for the same drug ({listed}). "
                "Discontinue it first, or confirm with a reason that both plans are intended."
            ]
        )
        self.others = tuple(others)


def _drug_codes(draft: PlanDraft) -> tuple[dict[str, str], ...]:
    return tuple({"system": c.RXNORM, "code": code} for code in draft.drug_rxnorm)


def _notes(draft: PlanDraft) -> tuple[str, ...]:
    """What the RequestGroup says about the choices made against the chart."""
    notes = []
    difference = dose_difference(draft)
    if draft.dose_reason and difference is not None:
        notes.append(f"{DOSE_NOTE}{difference.describe()}; acknowledged: {draft.dose_reason}")
    if draft.order_reference and draft.keep_order_reason:
        notes.append(f"{KEPT_NOTE}{draft.order_reference} kept active: {draft.keep_order_reason}")
    if draft.duplicate_reason:
        notes.append(f"{DUPLICATE_NOTE}{draft.duplicate_reason}")
    return tuple(notes)


def planned_start(draft: PlanDraft) -> datetime | None:
    return datetime.fromisoformat(draft.planned_start) if draft.planned_start else None


def _apply_context(smart: SmartSession, draft: PlanDraft) -> ApplyContext:
    prescribed = parse_quantity(draft.dose_per_m2, "target_dose") if draft.dose_per_m2 else None
    return ApplyContext(
        based_on=(draft.order_reference,) if draft.order_reference else (),
        notes=_notes(draft),
        start=planned_start(draft),
        patient=draft.patient,
        practitioner=practitioner_reference(smart),
        encounter=encounter_reference(smart),
        drug_codes=_drug_codes(draft),
        indication=draft.indication,
        prescribed_dose=prescribed,
        dose_basis=draft.dose_basis,
        override_reason=draft.override_reason,
        overridden=draft.overridden,
        override_authority=draft.override_authority,
    )


def review_for(draft: PlanDraft, plan: Plan, protocols: Mapping[str, Protocol]) -> DrugReview:
    """The drug checks of a draft's plan (the page and signing use the same)."""
    return review_draft(
        plan,
        protocols[draft.protocol_id],
        drug=draft.drug,
        rxnorm=draft.drug_rxnorm,
        diluent=draft.diluent,
        order_text=draft.order_text,
        ordered_dose=draft.ordered_dose,
    )


def _fingerprint(plan: Plan, context: ApplyContext) -> str:
    """What the orders say, minus who signs them and when: equal fingerprints, equal orders."""
    material = {
        "plan": plan_dict(plan),
        "patient": context.patient,
        "encounter": context.encounter,
        "codes": list(context.drug_codes),
        "indication": context.indication,
        "prescribed": str(context.prescribed_dose) if context.prescribed_dose else None,
        "basis": context.dose_basis,
        "override": context.override_reason,
        "overridden": context.overridden,
        "override_authority": context.override_authority,
        "based_on": list(context.based_on),
        "notes": list(context.notes),
        "start": context.start.isoformat() if context.start else None,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _session_id(draft: PlanDraft, fingerprint: str) -> str:
    return hashlib.sha256(f"{draft.patient}|{draft.draft_id}|{fingerprint}".encode()).hexdigest()[:32]


_LOCKS = tuple(threading.Lock() for _ in range(64))


def _lock(key: str) -> threading.Lock:
    return _LOCKS[int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(_LOCKS)]


def _marker_key(sid: str, draft_id: str) -> str:
    return f"{sid}:{draft_id}"


def signed_marker(store: SessionStore, scope: str, draft_id: str) -> SignResult | None:
    """The orders a draft was signed as (None: not signed, or not confirmed yet)."""
    marker = store.get(SIGNED_KIND, _marker_key(scope, draft_id))
    if not marker or marker.get("state") != "signed":
        return None
    return _result_of(marker)


def sign_draft(
    ctx: CourseContext, draft: PlanDraft, read_allergies: Callable[[], Sequence[Allergy] | None]
) -> SignResult:
    """Sign a stored draft (see :func:`_sign_draft`). An error before anything is sent, while an
    earlier attempt of this draft is unconfirmed (its marker still "pending"), becomes
    :class:`EarlierAttemptInChart` saying what the chart holds of that attempt."""
    try:
        return _sign_draft(ctx, draft, read_allergies)
    except (SigningFailed, SignedWithOtherValues):
        raise  # they say themselves what the chart holds
    except DesensError as error:
        marker = ctx.store.get(SIGNED_KIND, _marker_key(ctx.scope, draft.draft_id)) or {}
        if marker.get("state") != "pending" or not marker.get("session"):
            raise
        expected = marker.get("expected") or [0, 0]
        try:
            with open_client(ctx.smart) as client:
                check = written_check(
                    client, draft.patient, str(marker["session"]), int(expected[0]), int(expected[1])
                )
        except DesensError:
            check = WrittenCheck(
                False, expected_requests=int(expected[0]), expected_medications=int(expected[1])
            )
        log.info("signing refused before sending; an earlier attempt is %s in the chart", check.state)
        raise EarlierAttemptInChart(error, check) from error


def _sign_draft(
    ctx: CourseContext, draft: PlanDraft, read_allergies: Callable[[], Sequence[Allergy] | None]
) -> SignResult:
    """Sign a stored draft: ONE transaction of the $apply Bundle, idempotent (see the module doc).

    ``read_allergies`` reads the allergy list afresh (never a page's cache; None: the grant does not
    allow reading it); it is called once the plan computes, before anything is written. Raises
    :class:`OrdersNotPermitted` (403, nothing sent), :class:`SigningBlocked` (409),
    :class:`SignedWithOtherValues` (409: signed before with other values), :class:`SigningFailed` (the
    EHR refused or did not answer; says what was written), InputError/SafetyViolation (the plan).
    Every error but SigningFailed happens before anything is sent (see :func:`describe_refusal`).
    """
    smart, store = ctx.smart, ctx.store
    if not smart.can_sign_orders:  # the one rule (SmartSession.can_sign_orders), also the page's
        raise OrdersNotPermitted(missing_order_scopes(smart))
    plan = plan_for(draft, ctx.protocols)
    assessment = assess(drug_ref_for(draft.drug, draft.drug_rxnorm), read_allergies())
    review = review_for(draft, plan, ctx.protocols)
    blockers = signing_blockers(draft, assessment, can_write=True, review=review)
    dose = dose_blocker(draft, ctx.dose_tolerance_percent)
    if dose:
        blockers.append(dose)
    if blockers:
        raise SigningBlocked(blockers)
    context = replace(_apply_context(smart, draft), products=review.products)
    fingerprint = _fingerprint(plan, context)
    key = _marker_key(ctx.scope, draft.draft_id)
    with _lock(key), open_client(smart) as client:
        marker = store.get(SIGNED_KIND, key) or {}
        if marker.get("fingerprint") == fingerprint and marker.get("state") == "signed":
            return _result_of(marker)
        if marker and marker.get("fingerprint") != fingerprint:
            _refuse_other_values(client, draft.patient, marker)
        session = _session_id(draft, fingerprint)
        if not draft.duplicate_reason:
            others = active_plans_for_drug(
                smart,
                ctx.protocols,
                draft.drug,
                draft.drug_rxnorm,
                except_session=session,
                zone=ctx.time_zone,
            )
            if others:
                raise DuplicatePlan(others)
        record = _pending(ctx, key, marker, session, fingerprint, plan)
        authored = datetime.fromisoformat(record["authored"])
        bundle = apply_plan(plan, replace(context, session_id=record["session"], authored=authored))
        result = _post(client, bundle, plan, draft.patient, record["session"])
        hold = None
        if draft.order_reference and not draft.keep_order_reason:
            plan_text = f"{plan.drug} {plan.target_dose}, {len(plan.steps)} steps"
            hold = hold_therapeutic_order(
                client, smart, draft.order_reference, result.request_group_id, plan_text
            )
        signed = {
            **record,
            "state": "signed",
            "rg_id": result.request_group_id,
            "count": result.medication_requests,
            "hold": None
            if hold is None
            else {"state": hold.state, "order": hold.order, "message": hold.message},
        }
        store.put(SIGNED_KIND, key, signed, ttl=ctx.ttl)
        result = replace(result, sent_at=record["authored"], hold=hold)
        log.info(
            "signed as RequestGroup/%s (%s)", result.request_group_id, "new" if result.created else "existing"
        )
        return result


def _result_of(marker: Mapping[str, Any]) -> SignResult:
    held = marker.get("hold")
    hold = HoldOutcome(held["state"], held["order"], held["message"]) if isinstance(held, Mapping) else None
    return SignResult(
        str(marker["rg_id"]),
        int(marker["count"]),
        str(marker["session"]),
        created=False,
        sent_at=str(marker.get("authored") or ""),
        hold=hold,
        repeat=True,
    )


def _pending(
    ctx: CourseContext, key: str, marker: Mapping[str, Any], session: str, fingerprint: str, plan: Plan
) -> dict[str, Any]:
    """Record the attempt before sending it; a retry of the same values reuses its signing time,
    so it posts the very same Bundle."""
    authored = marker.get("authored") if marker.get("fingerprint") == fingerprint else None
    if not isinstance(authored, str):
        authored = datetime.fromtimestamp(ctx.clock()).astimezone().isoformat(timespec="seconds")
    record = {
        "state": "pending",
        "fingerprint": fingerprint,
        "session": session,
        "authored": authored,
        "expected": [len(plan.steps), len(plan.solutions)],
    }
    ctx.store.put(SIGNED_KIND, key, record, ttl=ctx.ttl)
    return record


def _refuse_other_values(client: FhirClient, patient: str, marker: Mapping[str, Any]) -> None:
    """The draft changed after a signing attempt: allowed only when nothing of that attempt is in the chart."""
    if marker.get("state") == "signed":
        raise SignedWithOtherValues(
            f"This plan was already signed (RequestGroup/{marker.get('rg_id')}) and has changed since.",
            "Nothing more was written.",
            "Signed orders are not edited here: open the signed plan and use \u201cCopy this plan\u201d to "
            "start a new one.",
        )
    expected = marker.get("expected") or [0, 0]
    check = written_check(client, patient, str(marker.get("session")), int(expected[0]), int(expected[1]))
    if check.state != "none":
        raise SignedWithOtherValues(
            "An earlier signing of this plan, with other values, may be in the chart: " + check.describe(),
            "Nothing was written now.",
            "Sign the plan as it was, or check the chart before ordering it again.",
        )


def _post(client: FhirClient, bundle: dict[str, Any], plan: Plan, patient: str, session: str) -> SignResult:
    expected = (len(plan.steps), len(plan.solutions))
    try:
        response = client.transaction(bundle)
    except (FhirServerError, AuthError) as error:
        check = written_check(client, patient, session, *expected)
        if check.state == "complete" and check.request_group_id is not None:
            return SignResult(check.request_group_id, check.medication_requests, session, created=True)
        raise SigningFailed(error, check, _status_for(error)) from None
    parsed = _parse_response(bundle, response)
    if parsed is not None and parsed.medication_requests == expected[0]:
        return replace(parsed, session_id=session)
    check = written_check(client, patient, session, *expected)
    if check.state == "complete" and check.request_group_id is not None:
        return SignResult(check.request_group_id, check.medication_requests, session, created=True)
    unconfirmed = FhirServerError("the EHR's answer does not confirm every order of the plan")
    raise SigningFailed(unconfirmed, check, 502)


def _parse_response(bundle: Mapping[str, Any], response: Mapping[str, Any]) -> SignResult | None:
    """The RequestGroup id and the number of MedicationRequests the transaction-response confirms."""
    sent = bundle.get("entry") or []
    answered = response.get("entry") or []
    if len(sent) != len(answered):
        return None
    group_id: str | None = None
    requests = 0
    created = False
    for request_entry, answer in zip(sent, answered, strict=True):
        kind = request_entry["resource"]["resourceType"]
        outcome = answer.get("response") if isinstance(answer, Mapping) else None
        status = str(outcome.get("status", "")) if isinstance(outcome, Mapping) else ""
        if not status.startswith("2"):
            return None
        created = created or status.startswith("201")
        found = _located(answer, kind)
        if kind == "RequestGroup":
            group_id = found
        elif kind == "MedicationRequest" and found is not None:
            requests += 1
    if group_id is None:
        return None
    return SignResult(group_id, requests, "", created)


def _located(answer: Mapping[str, Any], kind: str) -> str | None:
    resource = answer.get("resource")
    if (
        isinstance(resource, Mapping)
        and resource.get("resourceType") == kind
        and isinstance(resource.get("id"), str)
    ):
        return str(resource["id"])
    outcome = answer.get("response")
    location = outcome.get("location") if isinstance(outcome, Mapping) else None
    match = LOCATION.search(location) if isinstance(location, str) else None
    return match.group(2) if match and match.group(1) == kind else None


def written_check(
    client: FhirClient, patient: str, session: str, expected_requests: int, expected_medications: int
) -> WrittenCheck:
    """Search one session's orders by their business identifiers (never raises: unknown on failure)."""
    try:
        groups = client.search_all(
            "RequestGroup", {"patient": patient, "identifier": f"{c.ID_SESSION}|{session}"}, max_pages=2
        )
        steps = [f"{c.ID_STEP_ORDER}|{session}-{n}" for n in range(1, expected_requests + 1)]
        solutions = [f"{c.ID_SOLUTION}|{session}-{n}" for n in range(1, expected_medications + 1)]
        orders = client.search_all(
            "MedicationRequest",
            {"patient": patient, "identifier": ",".join(steps), "_count": "100"},
            max_pages=2,
        )
        medications = (
            client.search_all("Medication", {"identifier": ",".join(solutions), "_count": "100"}, max_pages=2)
            if solutions
            else []
        )
    except DesensError as error:
        log.warning("could not check what the orders transaction wrote: %s", type(error).__name__)
        return WrittenCheck(
            False, expected_requests=expected_requests, expected_medications=expected_medications
        )
    group_ids = sorted({str(g.get("id")) for g in groups if g.get("resourceType") == "RequestGroup"})
    return WrittenCheck(
        True,
        request_group_id=group_ids[0] if group_ids else None,
        medication_requests=len(
            {o.get("id") for o in orders if o.get("resourceType") == "MedicationRequest"}
        ),
        expected_requests=expected_requests,
        medications=len({m.get("id") for m in medications if m.get("resourceType") == "Medication"}),
        expected_medications=expected_medications,
    )


# --- reading signed plans back --------------------------------------------------------------------------
