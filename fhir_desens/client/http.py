"""HTTP policy: the one place where fhir-desens decides how it talks HTTP.

* **Timeouts.** Every request has a connect and a read timeout (:data:`DEFAULT_TIMEOUT`). Sessions
  from :func:`new_session` fill in the default when a caller forgets, and :func:`send` always passes
  one explicitly, so even a plain ``requests.Session`` never waits forever.
* **Retries.** Only idempotent requests are retried (:func:`is_idempotent`): GET, HEAD, OPTIONS, and
  PUT/DELETE unless they carry ``If-Match``. A retried versioned write would fail with a spurious 412
  when the first attempt did reach the server, so those are not retried; POST is never retried (a
  retried ``POST MedicationRequest`` is a duplicate order). Retried: connection errors, timeouts and
  the statuses in :data:`RETRY_STATUSES`, a bounded number of times with exponential backoff. A
  ``Retry-After`` header (seconds or HTTP-date) is honoured; when it asks for longer than
  :attr:`RetryPolicy.max_retry_after` we stop and report it instead of hammering the server.
* **No redirects.** Redirects are not followed (a redirected POST changes meaning, and a redirect to
  another host must not receive the Authorization header); a 3xx is reported as a configuration
  problem with the FHIR base URL.
* **Errors.** :func:`raise_for_status` maps HTTP statuses onto the taxonomy in
  :mod:`fhir_desens.errors` and turns the server's OperationOutcome into a readable message.
* **Logs.** Records carry the method, the URL *path* (never the query, which may hold patient
  identifiers), the status and the duration. Headers, and so tokens, are never logged.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import requests

from fhir_desens import __version__
from fhir_desens.client.plain_words import plain_failure
from fhir_desens.errors import (
    AuthError,
    ConfigurationError,
    ConflictError,
    DesensError,
    FhirFormatError,
    FhirServerError,
    ForbiddenError,
    NotFoundError,
    TemporaryServerError,
)
from fhir_desens.io.json import loads as json_loads

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "FHIR_JSON",
    "NO_RETRY",
    "RETRY_STATUSES",
    "USER_AGENT",
    "PolicySession",
    "RetryPolicy",
    "Timeout",
    "describe_issue",
    "describe_outcome",
    "error_for_response",
    "is_idempotent",
    "new_session",
    "outcome_of",
    "parse_retry_after",
    "raise_for_status",
    "send",
    "url_path",
]

logger = logging.getLogger(__name__)

#: (connect, read) timeout in seconds.
Timeout = tuple[float, float]

USER_AGENT: Final = f"fhir-desens/{__version__}"
DEFAULT_TIMEOUT: Final[Timeout] = (5.0, 30.0)
FHIR_JSON: Final = "application/fhir+json"
RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENT_WRITES: Final = frozenset({"PUT", "DELETE"})
_MAX_ISSUES_IN_MESSAGE: Final = 10
_MAX_TEXT: Final = 500


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, and how patiently, an idempotent request is retried.

    ``max_attempts`` counts the first try: 3 means at most two retries. The wait before retry *n*
    (1-based) is ``min(backoff_max, backoff_base * 2 ** (n - 1))`` unless the server sent
    ``Retry-After``; a ``Retry-After`` longer than ``max_retry_after`` ends the retries.
    """

    max_attempts: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 30.0
    retry_statuses: frozenset[int] = RETRY_STATUSES

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be at least 1")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.max_retry_after < 0:
            raise ConfigurationError("RetryPolicy delays must not be negative")

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry) without Retry-After."""
        return min(self.backoff_max, self.backoff_base * 2.0 ** max(0, retry_number - 1))

    def delay(
        self, retry_number: int, retry_after: str | None, *, now: datetime | None = None
    ) -> float | None:
        """Seconds to wait before retry ``retry_number``, or None when the server asked for too long."""
        asked = parse_retry_after(retry_after, now=now)
        if asked is None:
            return self.backoff(retry_number)
        if asked > self.max_retry_after:
            return None
        return asked


DEFAULT_RETRY: Final = RetryPolicy()
NO_RETRY: Final = RetryPolicy(max_attempts=1)


def _check_timeout(timeout: Timeout) -> Timeout:
    connect, read = timeout
    for value in (connect, read):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ConfigurationError(f"timeouts must be positive finite seconds, not {timeout!r}")
    return (float(connect), float(read))


class PolicySession(requests.Session):
    """A ``requests.Session`` that sends our User-Agent and never sends a request without a timeout."""

    def __init__(self, timeout: Timeout = DEFAULT_TIMEOUT, *, user_agent: str = USER_AGENT) -> None:
        super().__init__()
        self.default_timeout: Timeout = _check_timeout(timeout)
        self.headers["User-Agent"] = user_agent

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        # ``timeout`` is the 7th positional parameter of Session.request after method and url.
        if len(args) < 7 and kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


def new_session(timeout: Timeout = DEFAULT_TIMEOUT, *, user_agent: str = USER_AGENT) -> PolicySession:
    """The session factory every fhir-desens HTTP client uses."""
    return PolicySession(timeout, user_agent=user_agent)


def is_idempotent(method: str, headers: Mapping[str, str] | None = None) -> bool:
    """Whether a request may be sent again after a failure without changing its effect.

    GET/HEAD/OPTIONS: yes. PUT/DELETE: yes, unless they carry ``If-Match`` (a repeat of a versioned
    write that did reach the server fails with 412). POST, PATCH and anything else: no.
    """
    verb = method.upper()
    if verb in SAFE_METHODS:
        return True
    if verb in IDEMPOTENT_WRITES:
        return not any(name.lower() == "if-match" for name in (headers or {}))
    return False


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now (never negative), or None when absent or unreadable.

    Accepts delay-seconds (``"120"``) and an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def url_path(url: str) -> str:
    """The path of a URL, for logs and messages: no scheme, host, query or fragment."""
    return urlsplit(url).path or "/"


def _network_reason(exc: requests.RequestException) -> str:
    """Why no answer came, in an engineer's words rather than the exception's class name."""
    if isinstance(exc, requests.ConnectTimeout):
        return "no connection within the connect timeout"
    if isinstance(exc, requests.Timeout):
        return "connected, but no answer within the read timeout"
    if isinstance(exc, requests.exceptions.SSLError):
        return "the TLS handshake failed: check the server's certificate"
    return "connection refused, reset or host unreachable"


def _clean(text: object) -> str:
    one_line = " ".join(str(text).split())
    return one_line if len(one_line) <= _MAX_TEXT else one_line[: _MAX_TEXT - 1] + "…"


def describe_issue(issue: Mapping[str, Any]) -> str:
    """One OperationOutcome issue as ``severity [code] at expression: text``."""
    severity = _clean(issue.get("severity") or "error")
    code = _clean(issue.get("code") or "unknown")
    details = issue.get("details")
    text = None
    if isinstance(details, Mapping):
        text = details.get("text")
        if not text:
            codings = details.get("coding")
            if isinstance(codings, list) and codings and isinstance(codings[0], Mapping):
                text = codings[0].get("display") or codings[0].get("code")
    if not text:
        text = issue.get("diagnostics")
    where = issue.get("expression") or issue.get("location")
    result = f"{severity} [{code}]"
    if isinstance(where, list) and where:
        result += " at " + ", ".join(_clean(item) for item in where[:3])
    if text:
        result += f": {_clean(text)}"
    return result


def describe_outcome(outcome: Mapping[str, Any] | None) -> str:
    """A readable one-line summary of an OperationOutcome (errors first, at most 10 issues)."""
    if not outcome:
        return ""
    issues = [item for item in outcome.get("issue") or [] if isinstance(item, Mapping)]
    rank = {"fatal": 0, "error": 1, "warning": 2, "information": 3}
    issues.sort(key=lambda item: rank.get(str(item.get("severity")), 4))
    parts = [describe_issue(item) for item in issues[:_MAX_ISSUES_IN_MESSAGE]]
    if len(issues) > _MAX_ISSUES_IN_MESSAGE:
        parts.append(f"and {len(issues) - _MAX_ISSUES_IN_MESSAGE} more issue(s)")
    return "; ".join(parts)


def outcome_of(response: requests.Response) -> dict[str, Any] | None:
    """The OperationOutcome in a response body, if it has one."""
    content_type = response.headers.get("Content-Type", "")
    if "json" not in content_type.lower() or not response.content:
        return None
    try:
        body = json_loads(response.content, lone_surrogates="replace")
    except FhirFormatError:
        return None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return body
    return None


def error_for_response(response: requests.Response, context: str) -> DesensError:
    """The taxonomy error for an unsuccessful response; ``context`` says what we were doing."""
    status = response.status_code
    outcome = outcome_of(response)
    summary = describe_outcome(outcome)
    if not summary and response.content:
        content_type = response.headers.get("Content-Type", "unknown type") or "unknown type"
        summary = f"non-FHIR response body ({_clean(content_type)}, {len(response.content)} bytes)"
    reason = _clean(response.reason or "")
    message = f"{context}: HTTP {status}{' ' + reason if reason else ''}"
    if summary:
        message += f": {summary}"
    sent = response.request
    plain = (
        plain_failure(str(sent.method), url_path(str(sent.url)), status=status, timed_out=False, attempts=1)
        if sent is not None and sent.method and sent.url
        else None
    )
    if 300 <= status < 400:
        target = urlsplit(response.headers.get("Location", ""))
        where = f"{target.scheme}://{target.netloc}{target.path}" if target.netloc else target.path
        return FhirServerError(
            f"{message}: the server redirects to {where or 'an unknown place'}; "
            "configure the FHIR base URL to the final address (redirects are not followed)",
            status,
            outcome,
        )
    if status == 401:
        return AuthError(f"{message}: the access token was refused")
    if status == 403:
        return ForbiddenError(f"{message}: the granted scopes do not allow this")
    if status in (404, 410):
        return NotFoundError(message, status, outcome)
    if status in (409, 412):
        return ConflictError(message, status, outcome, plain=plain)
    if status in RETRY_STATUSES or status >= 500:
        retry_after = response.headers.get("Retry-After")
        if retry_after:
            message += f" (the server asked to retry after {_clean(retry_after)})"
        return TemporaryServerError(message, status, outcome, plain=plain)
    return FhirServerError(message, status, outcome, plain=plain)


def raise_for_status(response: requests.Response, context: str) -> None:
    """Raise the taxonomy error for any status outside 2xx."""
    if not 200 <= response.status_code < 300:
        raise error_for_response(response, context)


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    auth_headers: Callable[[], Mapping[str, str]] | None = None,
    params: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
    data: bytes | None = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    policy: RetryPolicy = DEFAULT_RETRY,
    idempotent: bool | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> requests.Response:
    """Send one request under the policy and return the final response, whatever its status.

    ``auth_headers`` is called before every attempt, so a refreshed token is used on the next try.
    ``idempotent`` overrides :func:`is_idempotent` (pass False to forbid retries). Connection errors
    and timeouts that remain after the allowed attempts raise :class:`TemporaryServerError`; map
    the returned response with :func:`raise_for_status`.
    """
    verb = method.upper()
    base_headers = dict(headers or {})
    retryable = is_idempotent(verb, base_headers) if idempotent is None else idempotent
    attempts = policy.max_attempts if retryable else 1
    path = url_path(url)
    timeout = _check_timeout(timeout)
    attempt = 0
    while True:
        attempt += 1
        request_headers = dict(base_headers)
        if auth_headers is not None:
            request_headers.update(auth_headers())
        started = time.monotonic()
        try:
            response = session.request(
                verb,
                url,
                headers=request_headers,
                params=params,
                data=data,
                timeout=timeout,
                allow_redirects=False,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            failure = "timed out" if isinstance(exc, requests.Timeout) else "could not connect"
            elapsed = (time.monotonic() - started) * 1000
            if attempt < attempts:
                wait = policy.backoff(attempt)
                logger.warning(
                    "%s %s %s after %.0f ms; retrying in %.2f s (attempt %d of %d)",
                    verb,
                    path,
                    failure,
                    elapsed,
                    wait,
                    attempt + 1,
                    attempts,
                )
                sleep(wait)
                continue
            logger.warning(
                "%s %s %s after %.0f ms (attempt %d of %d)", verb, path, failure, elapsed, attempt, attempts
            )
            hint = "" if retryable else "; it was not retried and may or may not have been applied"
            raise TemporaryServerError(
                f"{verb} {path}: {failure} ({_network_reason(exc)}) after {attempt} attempt(s){hint}",
                plain=plain_failure(
                    verb, path, status=None, timed_out=isinstance(exc, requests.Timeout), attempts=attempt
                ),
            ) from None
        elapsed = (time.monotonic() - started) * 1000
        status = response.status_code
        logger.debug("%s %s -> %d (%.0f ms, attempt %d)", verb, path, status, elapsed, attempt)
        if status in policy.retry_statuses and attempt < attempts:
            wait_or_none = policy.delay(attempt, response.headers.get("Retry-After"))
            if wait_or_none is not None:
                logger.warning(
                    "%s %s -> %d; retrying in %.2f s (attempt %d of %d)",
                    verb,
                    path,
                    status,
                    wait_or_none,
                    attempt + 1,
                    attempts,
                )
                response.close()
                sleep(wait_or_none)
                continue
            logger.warning(
                "%s %s -> %d with a Retry-After beyond %.0f s; not retrying",
                verb,
                path,
                status,
                policy.max_retry_after,
            )
        elif status >= 400:
            logger.info("%s %s -> %d (%.0f ms)", verb, path, status, elapsed)
        return response
