"""Signed orders: "Sign and send orders", the patient's signed plans, and a signed plan read back.

Glue, no Flask routes (those are in :mod:`smart_app.blueprints.orders`): the plan comes from the
stored draft through the engine (:func:`smart_app.drafts.plan_for`, never from posted numbers), the
orders from :func:`fhir_desens.fhir.apply.apply_plan`, and they travel as ONE transaction through
:class:`~fhir_desens.client.fhir_rest.FhirClient` with the SMART session's token.

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
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from fhir_desens.client.fhir_rest import FhirClient, reference
from fhir_desens.client.smart import ORDER_WRITES, SmartSession
from fhir_desens.errors import (
    AuthError,
    ConflictError,
    DesensError,
    FhirServerError,
    ForbiddenError,
    TemporaryServerError,
)
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.apply import OVERRIDE_NOTE, ApplyContext, PlanParameters, apply_plan, plan_parameters
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.quantity import Quantity, parse_quantity, plain
from fhir_desens.protocol.report import plan_dict
from smart_app.app_session import AppSession
from smart_app.drafts import PlanDraft, assessment_for, library, plan_for, signing_blockers
from smart_app.planning import DILUENTS, Worksheet, worksheet_for
from smart_app.services import Services

log = logging.getLogger(__name__)

SIGNED_KIND = "signed-plan"
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
PRACTITIONER = re.compile(r"(?:^|/)(Practitioner/[A-Za-z0-9\-.]{1,64})$")
LOCATION = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?/?$")
#: The FHIR server may keep decimals as binary floating point (Medplum does), so a signed dose is
#: compared with the recomputed one at this many significant digits.
COMPARE_DIGITS = 12
MAX_SIGNED_PLANS = 100

__all__ = [
    "OrdersNotPermitted",
    "SignRefusal",
    "SignResult",
    "SignedOrder",
    "SignedPlan",
    "SignedPlanNotFound",
    "SignedPlanSummary",
    "SignedWithOtherValues",
    "SigningBlocked",
    "SigningFailed",
    "WrittenCheck",
    "describe_refusal",
    "draft_fields_from_signed",
    "load_signed_plan",
    "missing_order_scopes",
    "sign_draft",
    "signed_marker",
    "signed_plans",
]


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


class SignedPlanNotFound(DesensError):
    """No signed desensitization plan with this id in this patient's chart."""

    exit_code = 2
    http_status = 404

    def __init__(self) -> None:
        super().__init__("This signed plan was not found in this patient's chart.")


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


def describe_refusal(error: DesensError) -> SignRefusal:
    """What a refused or failed signing did and did not do. Only the transaction itself writes, and
    its failures are :class:`SigningFailed` carrying what the chart holds; any other error happened
    before anything was sent."""
    not_sent = "The orders were not sent"
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


# --- the SMART session and its FHIR client -----------------------------------------------------------


def missing_order_scopes(smart: SmartSession) -> list[str]:
    """The writes of the orders transaction the token lacks, as v2 scopes, for the message (whether
    signing is allowed is :attr:`SmartSession.can_sign_orders`, the one rule)."""
    granted = smart.granted
    missing = []
    for resource_type, letters in ORDER_WRITES:
        absent = "".join(letter for letter in letters if not granted.allows(resource_type, letter))
        if absent:
            missing.append(f"patient/{resource_type}.{absent}")
    return missing


@contextmanager
def _client(smart: SmartSession) -> Iterator[FhirClient]:
    """A FHIR client with the session's token, HTTP session, timeout and retry policy."""
    options: dict[str, Any] = {}
    if smart.client is not None:
        options = {"session": smart.client.http, "timeout": smart.client.timeout, "retry": smart.client.retry}
    with FhirClient(smart.fhir_base, auth=smart, **options) as client:
        yield client


def _patient(smart: SmartSession) -> str:
    if not smart.patient:
        raise AuthError(
            "the EHR did not give this launch a patient context; open the app from a patient's chart"
        )
    return reference("Patient", smart.patient)


def _practitioner(smart: SmartSession) -> str | None:
    """The signer: the session's fhirUser when it is a Practitioner of this FHIR server."""
    user = smart.fhir_user or ""
    match = PRACTITIONER.search(user)
    if match is None:
        return None
    if "://" in user and not user.startswith(smart.fhir_base.rstrip("/") + "/"):
        return None  # a Practitioner of another server cannot be referenced from this chart
    return match.group(1)


def _encounter(smart: SmartSession) -> str | None:
    value = smart.encounter or ""
    value = value.removeprefix("Encounter/")
    return f"Encounter/{value}" if FHIR_ID.match(value) else None


# --- signing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignResult:
    request_group_id: str
    medication_requests: int
    session_id: str
    created: bool  # False: the orders already existed (a repeat of the same signing)


def _drug_codes(draft: PlanDraft) -> tuple[dict[str, str], ...]:
    return tuple({"system": c.RXNORM, "code": code} for code in draft.drug_rxnorm)


def _apply_context(smart: SmartSession, draft: PlanDraft) -> ApplyContext:
    prescribed = parse_quantity(draft.dose_per_m2, "target_dose") if draft.dose_per_m2 else None
    return ApplyContext(
        patient=draft.patient,
        practitioner=_practitioner(smart),
        encounter=_encounter(smart),
        drug_codes=_drug_codes(draft),
        indication=draft.indication,
        prescribed_dose=prescribed,
        dose_basis=draft.dose_basis,
        override_reason=draft.override_reason,
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
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _session_id(draft: PlanDraft, fingerprint: str) -> str:
    return hashlib.sha256(f"{draft.patient}|{draft.draft_id}|{fingerprint}".encode()).hexdigest()[:32]


_LOCKS = tuple(threading.Lock() for _ in range(64))


def _lock(key: str) -> threading.Lock:
    return _LOCKS[int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(_LOCKS)]


def _marker_key(sid: str, draft_id: str) -> str:
    return f"{sid}:{draft_id}"


def signed_marker(svc: Services, sid: str, draft_id: str) -> SignResult | None:
    """The orders a draft was signed as (None: not signed, or not confirmed yet)."""
    marker = svc.store.get(SIGNED_KIND, _marker_key(sid, draft_id))
    if not marker or marker.get("state") != "signed":
        return None
    return _result_of(marker)


def sign_draft(svc: Services, session: AppSession, draft: PlanDraft) -> SignResult:
    """Sign a stored draft: ONE transaction of the $apply Bundle, idempotent (see the module doc).

    The allergy list is read afresh (never the pages' cache) before anything is written. Raises
    :class:`OrdersNotPermitted` (403, nothing sent), :class:`SigningBlocked` (409),
    :class:`SignedWithOtherValues` (409: signed before with other values), :class:`SigningFailed` (the
    EHR refused or did not answer; says what was written), InputError/SafetyViolation (the plan).
    Every error but SigningFailed happens before anything is sent (see :func:`describe_refusal`).
    """
    smart, sid = session.smart, session.sid
    if not smart.can_sign_orders:  # the one rule (SmartSession.can_sign_orders), also the page's
        raise OrdersNotPermitted(missing_order_scopes(smart))
    plan = plan_for(draft)
    blockers = signing_blockers(draft, assessment_for(session, draft, fresh=True), can_write=True)
    if blockers:
        raise SigningBlocked(blockers)
    context = _apply_context(smart, draft)
    fingerprint = _fingerprint(plan, context)
    key = _marker_key(sid, draft.draft_id)
    with _lock(key), _client(smart) as client:
        marker = svc.store.get(SIGNED_KIND, key) or {}
        if marker.get("fingerprint") == fingerprint and marker.get("state") == "signed":
            return _result_of(marker)
        if marker and marker.get("fingerprint") != fingerprint:
            _refuse_other_values(client, draft.patient, marker)
        record = _pending(svc, key, marker, _session_id(draft, fingerprint), fingerprint, plan)
        authored = datetime.fromisoformat(record["authored"])
        bundle = apply_plan(plan, replace(context, session_id=record["session"], authored=authored))
        result = _post(client, bundle, plan, draft.patient, record["session"])
        signed = {
            **record,
            "state": "signed",
            "rg_id": result.request_group_id,
            "count": result.medication_requests,
        }
        svc.store.put(SIGNED_KIND, key, signed, ttl=svc.settings.session_ttl)
        log.info(
            "signed as RequestGroup/%s (%s)", result.request_group_id, "new" if result.created else "existing"
        )
        return result


def _result_of(marker: Mapping[str, Any]) -> SignResult:
    return SignResult(str(marker["rg_id"]), int(marker["count"]), str(marker["session"]), created=False)


def _pending(
    svc: Services, key: str, marker: Mapping[str, Any], session: str, fingerprint: str, plan: Plan
) -> dict[str, Any]:
    """Record the attempt before sending it; a retry of the same values reuses its signing time,
    so it posts the very same Bundle."""
    authored = marker.get("authored") if marker.get("fingerprint") == fingerprint else None
    if not isinstance(authored, str):
        authored = datetime.fromtimestamp(svc.clock()).astimezone().isoformat(timespec="seconds")
    record = {
        "state": "pending",
        "fingerprint": fingerprint,
        "session": session,
        "authored": authored,
        "expected": [len(plan.steps), len(plan.solutions)],
    }
    svc.store.put(SIGNED_KIND, key, record, ttl=svc.settings.session_ttl)
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


def _session_value(group: Mapping[str, Any]) -> str | None:
    for identifier in group.get("identifier") or []:
        if isinstance(identifier, Mapping) and identifier.get("system") == c.ID_SESSION:
            value = identifier.get("value")
            return value if isinstance(value, str) else None
    return None


def _subject_is(resource: Mapping[str, Any], own: str) -> bool:
    subject = resource.get("subject")
    ref = subject.get("reference") if isinstance(subject, Mapping) else None
    return isinstance(ref, str) and (ref == own or ref.endswith("/" + own))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _canonical(group: Mapping[str, Any]) -> str:
    value = next(iter(group.get("instantiatesCanonical") or []), "")
    return value if isinstance(value, str) else ""


def _protocol_title(protocol_id: str | None, canonical: str) -> str:
    protocol = library().get(protocol_id or "") if protocol_id else None
    if protocol is not None:
        return protocol.title
    return canonical.rsplit("/", 1)[-1] or "(protocol not recorded)"


def _dose_text(parameters: PlanParameters | None) -> str:
    if parameters is None:
        return "—"
    target = str(parameters.target_dose)
    if parameters.prescribed_dose is not None:
        return f"{parameters.prescribed_dose} ({target})"
    return target


def _when(value: Any) -> str:
    """A FHIR dateTime as "YYYY-MM-DD HH:MM" (display only; the zone stays the author's)."""
    text = value if isinstance(value, str) else ""
    return text[:16].replace("T", " ") if len(text) >= 16 else text or "—"


@dataclass(frozen=True)
class SignedPlanSummary:
    id: str
    authored: str  # for display
    authored_raw: str  # the FHIR dateTime (sorting)
    drug: str
    dose: str
    protocol: str
    protocol_canonical: str
    status: str
    steps: int


def _summary(group: Mapping[str, Any]) -> SignedPlanSummary:
    parameters = plan_parameters(dict(group))
    canonical = _canonical(group)
    drug = parameters.drug if parameters is not None else None
    if drug is None:
        note = next((n.get("text") for n in group.get("note") or [] if isinstance(n, Mapping)), None)
        drug = _text(note) or "(drug not recorded)"
    return SignedPlanSummary(
        id=str(group.get("id")),
        authored=_when(group.get("authoredOn")),
        authored_raw=str(group.get("authoredOn") or ""),
        drug=drug,
        dose=_dose_text(parameters),
        protocol=_protocol_title(parameters.protocol_id if parameters else None, canonical),
        protocol_canonical=canonical,
        status=_text(group.get("status")) or "unknown",
        steps=len(group.get("action") or []),
    )


def signed_plans(smart: SmartSession) -> list[SignedPlanSummary]:
    """The patient's signed desensitization plans (RequestGroups with our session identifier), newest
    first: the newest :data:`MAX_SIGNED_PLANS` (one page; older ones stay in the EHR's order list)."""
    own = _patient(smart)
    params = {
        "subject": own,
        "identifier": f"{c.ID_SESSION}|",  # any value of our system (FHIR token search "system|")
        "_sort": "-authored",
        "_count": str(MAX_SIGNED_PLANS),
    }
    with _client(smart) as client:
        bundle = client.search("RequestGroup", params)
    groups = [e.get("resource") for e in bundle.get("entry") or [] if isinstance(e, Mapping)]
    ours = [
        g
        for g in groups
        if isinstance(g, dict)
        and g.get("resourceType") == "RequestGroup"
        and _subject_is(g, own)  # a server bug must never show another patient's plans
        and _session_value(g)
        and FHIR_ID.match(str(g.get("id")))
    ]
    return sorted((_summary(g) for g in ours), key=lambda s: s.authored_raw, reverse=True)


@dataclass(frozen=True)
class SignedOrder:
    """One step order as the EHR holds it."""

    id: str
    step: int | None
    status: str
    text: str  # the dosage instruction as signed
    solution: str | None  # the Medication's name (e.g. "carboplatin: Bag 1 (1:100)")


@dataclass(frozen=True)
class SignedPlan:
    id: str
    session_id: str
    status: str
    authored: str
    author: str | None  # "Practitioner/<id>"
    protocol_canonical: str
    protocol_title: str
    parameters: PlanParameters | None
    closing: str | None
    indication: str | None
    override_reason: str | None
    notes: tuple[str, ...]
    orders: tuple[SignedOrder, ...]
    draft: PlanDraft | None  # the plan's parameters as a draft (recomputed through the engine)
    plan: Plan | None  # the recomputed plan, only when it gives exactly the signed orders
    worksheet: Worksheet | None
    recompute_problem: str | None  # why there is no worksheet, for people

    @property
    def order_count(self) -> int:
        return len(self.orders)


def _action_ids(group: Mapping[str, Any]) -> list[str]:
    ids = []
    for action in group.get("action") or []:
        resource = action.get("resource") if isinstance(action, Mapping) else None
        ref = resource.get("reference") if isinstance(resource, Mapping) else None
        if isinstance(ref, str) and ref.startswith("MedicationRequest/") and FHIR_ID.match(ref[18:]):
            ids.append(ref[18:])
    return ids


def _by_ids(client: FhirClient, kind: str, ids: Sequence[str], own: str | None) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    params = {"_id": ",".join(ids), "_count": str(max(len(ids), 1))}
    if own is not None:
        params["patient"] = own
    found = client.search_all(kind, params, max_pages=2)
    return {
        str(r["id"]): r
        for r in found
        if r.get("resourceType") == kind and r.get("id") in ids and (own is None or _subject_is(r, own))
    }


def _medication_id(order: Mapping[str, Any]) -> str | None:
    ref = order.get("medicationReference")
    value = ref.get("reference") if isinstance(ref, Mapping) else None
    if isinstance(value, str) and value.startswith("Medication/") and FHIR_ID.match(value[11:]):
        return value[11:]
    return None


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dosage(order: Mapping[str, Any]) -> Mapping[str, Any]:
    dosages = order.get("dosageInstruction") or []
    first = dosages[0] if dosages else {}
    return first if isinstance(first, Mapping) else {}


def _signed_order(order: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]) -> SignedOrder:
    dosage = _dosage(order)
    sequence = dosage.get("sequence")
    medication = medications.get(_medication_id(order) or "")
    code = medication.get("code") if medication else None
    return SignedOrder(
        id=str(order.get("id")),
        step=sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None,
        status=_text(order.get("status")) or "unknown",
        text=_text(dosage.get("text")) or "(no dosage text)",
        solution=_text(code.get("text")) if isinstance(code, Mapping) else None,
    )


def _same(a: Decimal | None, b: Any) -> bool:
    if a is None:
        return b is None
    if not isinstance(b, Decimal | int) or isinstance(b, bool):
        return False
    return Decimal(f"{a:.{COMPARE_DIGITS}g}") == Decimal(f"{Decimal(b):.{COMPARE_DIGITS}g}")


def _matches(plan: Plan, orders: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the recomputed plan gives exactly the signed step orders (dose, rate, duration)."""
    if len(orders) != len(plan.steps):
        return False
    for step, order in zip(plan.steps, orders, strict=True):
        dosage = _dosage(order)
        dose_rate = _obj((dosage.get("doseAndRate") or [{}])[0])
        dose, rate = _obj(dose_rate.get("doseQuantity")), _obj(dose_rate.get("rateQuantity"))
        repeat = _obj(_obj(dosage.get("timing")).get("repeat"))
        if dosage.get("sequence") != step.number or dose.get("code") != step.dose.unit:
            return False
        if not (_same(step.dose.value, dose.get("value")) and _same(step.minutes, repeat.get("duration"))):
            return False
        if not _same(step.rate_ml_h, rate.get("value")):
            return False
    return True


def _diluent_key(text: str | None) -> str | None:
    return next((key for key, value in DILUENTS.items() if value == text), None)


def _closing(group: Mapping[str, Any]) -> str | None:
    for extension in group.get("extension") or []:
        if isinstance(extension, Mapping) and extension.get("url") == c.EXT_CLOSING_METHOD:
            return _text(extension.get("valueCode"))
    return None


def _draft_of(group: Mapping[str, Any], parameters: PlanParameters, own: str) -> PlanDraft:
    """The signed plan's parameters as a draft, so the engine can recompute it like any plan."""
    return PlanDraft(
        draft_id=str(group.get("id")),
        patient=own,
        drug=parameters.drug,
        drug_rxnorm=tuple(code["code"] for code in parameters.drug_codes if code.get("system") == c.RXNORM),
        indication=_indication(group),
        target=str(parameters.target_dose),
        dose_basis=parameters.dose_basis,
        protocol_id=parameters.protocol_id,
        final_rate_ml_h=plain(parameters.final_rate_ml_h) if parameters.final_rate_ml_h is not None else None,
        bag_volume_ml=plain(parameters.bag_volume_ml) if parameters.bag_volume_ml is not None else None,
        diluent=_diluent_key(parameters.diluent),
        closing=_closing(group),
        insert_before=parameters.insert_before,
        risk={},
        unlisted_confirmed=True,
        override_reason=_override(group),
        copied_from=None,
        created_at=0.0,
        dose_per_m2=str(parameters.prescribed_dose) if parameters.prescribed_dose is not None else None,
    )


def _indication(group: Mapping[str, Any]) -> str | None:
    for concept in group.get("reasonCode") or []:
        if isinstance(concept, Mapping) and _text(concept.get("text")):
            return str(concept["text"])
    return None


def _notes(group: Mapping[str, Any]) -> list[str]:
    return [
        str(n["text"]) for n in group.get("note") or [] if isinstance(n, Mapping) and _text(n.get("text"))
    ]


def _override(group: Mapping[str, Any]) -> str | None:
    return next((n[len(OVERRIDE_NOTE) :] for n in _notes(group) if n.startswith(OVERRIDE_NOTE)), None)


def _recompute(
    group: Mapping[str, Any], parameters: PlanParameters | None, own: str, orders: Sequence[Mapping[str, Any]]
) -> tuple[PlanDraft | None, Plan | None, str | None]:
    if parameters is None:
        return None, None, "The signed plan does not record what it was computed from."
    draft = _draft_of(group, parameters, own)
    protocol = library().get(parameters.protocol_id)
    if protocol is None:
        return draft, None, f"Protocol {parameters.protocol_id} is not in this app's library."
    if f"|{protocol.version}" not in _canonical(group):
        return draft, None, f"The library now has version {protocol.version} of protocol {protocol.id}."
    try:
        plan = plan_for(draft)
    except DesensError as error:
        return draft, None, f"The plan cannot be recomputed: {error.message}"
    if not _matches(plan, orders):
        return draft, None, "Recomputing the plan does not give the signed orders."
    return draft, plan, None


def load_signed_plan(smart: SmartSession, rg_id: str, *, started_at: datetime | None = None) -> SignedPlan:
    """A signed plan of this patient: the RequestGroup, its orders and solutions, and the worksheet.

    The worksheet is the engine's recomputation from the recorded parameters, shown only when it
    gives exactly the signed orders; otherwise the orders are shown as signed. Runs in the Flask app
    context (the protocol library is the app's).
    """
    if not FHIR_ID.match(rg_id):
        raise SignedPlanNotFound()
    own = _patient(smart)
    with _client(smart) as client:
        group = _read_group(client, rg_id, own)
        ids = _action_ids(group)
        found = _by_ids(client, "MedicationRequest", ids, own)
        orders = [found[i] for i in ids if i in found]
        medication_ids = sorted({m for m in (_medication_id(o) for o in orders) if m})
        medications = _by_ids(client, "Medication", medication_ids, None)
    parameters = plan_parameters(group)
    draft, plan, problem = _recompute(group, parameters, own, orders)
    worksheet = None
    if plan is not None:
        worksheet = worksheet_for(plan, started_at or datetime.now().astimezone())
    canonical = _canonical(group)
    author = group.get("author")
    return SignedPlan(
        id=rg_id,
        session_id=_session_value(group) or "",
        status=_text(group.get("status")) or "unknown",
        authored=_when(group.get("authoredOn")),
        author=_text(author.get("reference")) if isinstance(author, Mapping) else None,
        protocol_canonical=canonical,
        protocol_title=_protocol_title(parameters.protocol_id if parameters else None, canonical),
        parameters=parameters,
        closing=_closing(group),
        indication=_indication(group),
        override_reason=_override(group),
        notes=tuple(n for n in _notes(group) if not n.startswith(OVERRIDE_NOTE)),
        orders=tuple(_signed_order(o, medications) for o in orders),
        draft=draft,
        plan=plan,
        worksheet=worksheet,
        recompute_problem=problem,
    )


def _read_group(client: FhirClient, rg_id: str, own: str) -> dict[str, Any]:
    try:
        group = client.read("RequestGroup", rg_id).resource
    except ForbiddenError:
        raise SignedPlanNotFound() from None  # e.g. another patient's: never say it exists
    except FhirServerError as error:
        if error.status in (404, 410):
            raise SignedPlanNotFound() from None
        raise
    if not _subject_is(group, own) or _session_value(group) is None:
        raise SignedPlanNotFound()  # another patient's, or not a desensitization session
    return group


def draft_fields_from_signed(signed: SignedPlan) -> dict[str, Any]:
    """What "Copy this plan" pre-fills, named like the draft's fields and the start form's.

    ``request_group, protocol_id, final_rate_ml_h, bag_volume_ml, closing, drug, drug_rxnorm`` (as
    :class:`smart_app.planning.CopiedSettings`), ``diluent`` (a key of ``planning.DILUENTS``, None:
    the protocol's), ``insert_before``, ``indication``, and the dose as prescribed:
    ``target_dose`` (text) and ``dose_unit`` (UCUM code: mg, mg/m2 ...) with ``dose_basis`` (how a
    per-m² dose became the total). Only ``request_group`` when the signed plan does not record its
    parameters.
    """
    parameters = signed.parameters
    if parameters is None:
        return {"request_group": signed.id}
    dose: Quantity = parameters.prescribed_dose or parameters.target_dose
    return {
        "request_group": signed.id,
        "protocol_id": parameters.protocol_id,
        "drug": parameters.drug,
        "drug_rxnorm": tuple(
            code["code"] for code in parameters.drug_codes if code.get("system") == c.RXNORM
        ),
        "indication": signed.indication,
        "target_dose": plain(dose.value),
        "dose_unit": dose.unit,
        "final_rate_ml_h": plain(parameters.final_rate_ml_h)
        if parameters.final_rate_ml_h is not None
        else None,
        "bag_volume_ml": plain(parameters.bag_volume_ml) if parameters.bag_volume_ml is not None else None,
        "diluent": _diluent_key(parameters.diluent),
        "closing": signed.closing,
        "insert_before": parameters.insert_before,
        "dose_basis": parameters.dose_basis,
    }
