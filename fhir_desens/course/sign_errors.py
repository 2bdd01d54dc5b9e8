"""Why "Sign and send orders" did not sign, and what the chart holds then: the signing errors (in the
taxonomy of :mod:`fhir_desens.errors`, with what the page needs) and :func:`describe_refusal`, the account
the plan page shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fhir_desens.course.readback import SignedPlanSummary
from fhir_desens.course.written import WrittenCheck
from fhir_desens.errors import (
    AuthError,
    ConflictError,
    DesensError,
    FhirServerError,
    ForbiddenError,
    TemporaryServerError,
)

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
    reason = error.for_people if isinstance(error, FhirServerError) else error.message
    return SignRefusal(not_sent, _sentence(reason), NOTHING_WRITTEN)


def status_for(error: DesensError) -> int:
    if isinstance(error, ForbiddenError):
        return 403
    if isinstance(error, AuthError):
        return 401
    if isinstance(error, ConflictError):
        return 409
    return 502


__all__ = [
    "NOTHING_WRITTEN",
    "DuplicatePlan",
    "EarlierAttemptInChart",
    "OrdersNotPermitted",
    "SignRefusal",
    "SignedWithOtherValues",
    "SigningBlocked",
    "SigningFailed",
    "describe_refusal",
    "status_for",
]
