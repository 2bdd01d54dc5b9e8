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
identifiers (:mod:`fhir_desens.course.written`), so the person is told truthfully whether nothing, part
or all of the plan was written (:mod:`fhir_desens.course.sign_errors`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.smart import SmartSession
from fhir_desens.client.store import SessionStore
from fhir_desens.course.assessment import assess, premedication_allergies, signing_blockers
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
from fhir_desens.course.readback import WITHHELD_BY, WITHHELD_NOTE, order_name
from fhir_desens.course.sign_errors import (
    DuplicatePlan,
    EarlierAttemptInChart,
    OrdersNotPermitted,
    SignedWithOtherValues,
    SigningBlocked,
    SigningFailed,
    status_for,
)
from fhir_desens.course.therapeutic import dose_blocker, dose_difference
from fhir_desens.course.written import WrittenCheck, written_check
from fhir_desens.errors import AuthError, DesensError, FhirServerError
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.allergy import Allergy
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.model import Protocol
from fhir_desens.protocol.quantity import parse_quantity
from fhir_desens.protocol.report import plan_dict

log = logging.getLogger(__name__)

SIGNED_KIND = "signed-plan"
DOSE_NOTE = "Dose differs from the active order: "
KEPT_NOTE = "Standard-rate order "
DUPLICATE_NOTE = "A second active plan for this drug is intended: "


@dataclass(frozen=True)
class SignResult:
    request_group_id: str
    medication_requests: int
    session_id: str
    created: bool  # False: the orders already existed (a repeat of the same signing)
    sent_at: str = ""  # when the orders were first sent (FHIR dateTime)
    hold: HoldOutcome | None = None  # what became of the therapeutic order
    repeat: bool = False  # True: signed before; nothing was written now


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
    if draft.premedications_withheld:
        who = f"{WITHHELD_BY}{draft.premedications_withheld_by}" if draft.premedications_withheld_by else ""
        notes.append(f"{WITHHELD_NOTE}{', '.join(draft.premedications_withheld)}{who}")
    return tuple(notes)


def planned_start(draft: PlanDraft) -> datetime | None:
    return datetime.fromisoformat(draft.planned_start) if draft.planned_start else None


def _apply_context(smart: SmartSession, draft: PlanDraft, user_name: str | None = None) -> ApplyContext:
    prescribed = parse_quantity(draft.dose_per_m2, "target_dose") if draft.dose_per_m2 else None
    return ApplyContext(
        based_on=(draft.order_reference,) if draft.order_reference else (),
        notes=_notes(draft),
        start=planned_start(draft),
        patient=draft.patient,
        practitioner=practitioner_reference(smart),
        practitioner_name=user_name,
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
    Every error but SigningFailed happens before anything is sent (see
    :func:`fhir_desens.course.sign_errors.describe_refusal`).
    """
    smart, store = ctx.smart, ctx.store
    plan, review = _signable(ctx, draft, read_allergies)
    context = replace(_apply_context(smart, draft, ctx.user_name), products=review.products)
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
            _refuse_duplicates(ctx, draft, session)
        record = _pending(ctx, key, marker, session, fingerprint, plan)
        authored = datetime.fromisoformat(record["authored"])
        bundle = apply_plan(plan, replace(context, session_id=record["session"], authored=authored))
        result = _post(client, bundle, plan, draft.patient, record["session"])
        hold = None
        if draft.order_reference and not draft.keep_order_reason:
            plan_text = f"{plan.drug} {plan.target_dose}, {len(plan.steps)} steps"
            hold = hold_therapeutic_order(
                client,
                smart,
                draft.order_reference,
                result.request_group_id,
                plan_text,
                order_name(plan.protocol.route),
            )
        store.put(SIGNED_KIND, key, _signed_record(record, result, hold), ttl=ctx.ttl)
        result = replace(result, sent_at=record["authored"], hold=hold)
        log.info(
            "signed as RequestGroup/%s (%s)", result.request_group_id, "new" if result.created else "existing"
        )
        return result


def _signable(
    ctx: CourseContext, draft: PlanDraft, read_allergies: Callable[[], Sequence[Allergy] | None]
) -> tuple[Plan, DrugReview]:
    """The plan and drug review of a draft that may be signed; raises when it may not (yet)."""
    if not ctx.smart.can_sign_orders:  # the one rule (SmartSession.can_sign_orders), also the page's
        raise OrdersNotPermitted(missing_order_scopes(ctx.smart))
    plan = plan_for(draft, ctx.protocols)
    allergies = read_allergies()
    assessment = assess(drug_ref_for(draft.drug, draft.drug_rxnorm), allergies)
    review = review_for(draft, plan, ctx.protocols)
    ruled_out = premedication_allergies(plan.premedications, allergies)
    blockers = signing_blockers(
        draft, assessment, can_write=True, review=review, premedications_ruled_out=ruled_out
    )
    dose = dose_blocker(draft, ctx.dose_tolerance_percent)
    if dose:
        blockers.append(dose)
    if blockers:
        raise SigningBlocked(blockers)
    return plan, review


def _refuse_duplicates(ctx: CourseContext, draft: PlanDraft, session: str) -> None:
    """Another active plan for the same drug (not this session's) blocks signing without a reason."""
    others = active_plans_for_drug(
        ctx.smart,
        ctx.protocols,
        draft.drug,
        draft.drug_rxnorm,
        except_session=session,
        zone=ctx.time_zone,
    )
    if others:
        raise DuplicatePlan(others)


def _signed_record(record: Mapping[str, Any], result: SignResult, hold: HoldOutcome | None) -> dict[str, Any]:
    """The marker of a confirmed signing (what :func:`_result_of` reads back)."""
    return {
        **record,
        "state": "signed",
        "rg_id": result.request_group_id,
        "count": result.medication_requests,
        "hold": None if hold is None else {"state": hold.state, "order": hold.order, "message": hold.message},
    }


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
        raise SigningFailed(error, check, status_for(error)) from None
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


__all__ = [
    # what the pages import from here: signing and its result (refusals: fhir_desens.course.sign_errors)
    "SIGNED_KIND",
    "SignResult",
    "planned_start",
    "review_for",
    "sign_draft",
    "signed_marker",
]
