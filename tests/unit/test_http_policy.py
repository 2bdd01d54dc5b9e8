"""The HTTP policy (fhir_desens.client.http) without a network: a scripted transport adapter."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from fhir_desens import __version__
from fhir_desens.client.http import (
    DEFAULT_TIMEOUT,
    NO_RETRY,
    PolicySession,
    RetryPolicy,
    describe_issue,
    describe_outcome,
    error_for_response,
    is_idempotent,
    new_session,
    parse_retry_after,
    raise_for_status,
    send,
    url_path,
)
from fhir_desens.errors import (
    AuthError,
    ConfigurationError,
    ConflictError,
    FhirServerError,
    ForbiddenError,
    NotFoundError,
    TemporaryServerError,
)
from fhir_desens.io.json import dumps

URL = "https://ehr.example/fhir/R4/Patient?name=Smith"
NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def response(status: int, body: Any = None, **headers: str) -> requests.Response:
    result = requests.Response()
    result.status_code = status
    result.reason = {200: "OK", 404: "Not Found", 412: "Precondition Failed", 503: "Service Unavailable"}.get(
        status, ""
    )
    result.headers = CaseInsensitiveDict({k.replace("_", "-"): v for k, v in headers.items()})
    if body is not None:
        result._content = dumps(body).encode() if not isinstance(body, bytes) else body
        result.headers.setdefault("Content-Type", "application/fhir+json")
    else:
        result._content = b""
    return result


class ScriptedAdapter(BaseAdapter):
    """Answers each request with the next scripted Response or raises the next scripted exception."""

    def __init__(self, *answers: requests.Response | Exception) -> None:
        super().__init__()
        self.answers: deque[requests.Response | Exception] = deque(answers)
        self.requests: list[tuple[requests.PreparedRequest, Any]] = []

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, **kwargs: Any
    ) -> requests.Response:
        self.requests.append((request, timeout))
        answer = self.answers.popleft()
        if isinstance(answer, Exception):
            raise answer
        answer.request = request
        answer.url = str(request.url)
        return answer

    def close(self) -> None:
        pass


def session_with(*answers: requests.Response | Exception) -> tuple[PolicySession, ScriptedAdapter]:
    session = new_session()
    adapter = ScriptedAdapter(*answers)
    session.mount("https://", adapter)
    return session, adapter


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# --------------------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("GET", {}, True),
        ("head", {}, True),
        ("OPTIONS", {}, True),
        ("PUT", {}, True),
        ("DELETE", {}, True),
        ("PUT", {"If-Match": 'W/"1"'}, False),
        ("put", {"if-match": 'W/"1"'}, False),
        ("POST", {}, False),
        ("POST", {"If-None-Exist": "identifier=a|b"}, False),
        ("PATCH", {}, False),
    ],
)
def test_only_idempotent_requests_are_retryable(
    method: str, headers: Mapping[str, str], expected: bool
) -> None:
    assert is_idempotent(method, headers) is expected


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("-5") is None
    assert parse_retry_after("soon") is None
    in_90s = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(in_90s, now=NOW) == 90.0
    past = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(past, now=NOW) == 0.0


def test_retry_delays_back_off_and_respect_the_cap() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=3.0, max_retry_after=30)
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(1, None) == 0.5
    assert policy.delay(1, "7") == 7.0
    assert policy.delay(1, "31") is None
    assert policy.delay(2, format_datetime(NOW + timedelta(seconds=10), usegmt=True), now=NOW) == 10.0
    with pytest.raises(ConfigurationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigurationError):
        RetryPolicy(backoff_base=-1)


def test_describe_outcome_orders_errors_first_and_says_where() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "information", "code": "informational", "details": {"text": "fine"}},
            {
                "severity": "warning",
                "code": "code-invalid",
                "details": {"coding": [{"code": "MSG_X", "display": "odd"}]},
            },
            {
                "severity": "error",
                "code": "required",
                "diagnostics": "Patient.name: minimum required = 1",
                "expression": ["Patient.name"],
            },
            {
                "severity": "error",
                "code": "structure",
                "details": {"text": "bad\n  date"},
                "location": ["/f:birthDate"],
            },
        ],
    }
    assert describe_outcome(outcome) == (
        "error [required] at Patient.name: Patient.name: minimum required = 1; "
        "error [structure] at /f:birthDate: bad date; "
        "warning [code-invalid]: odd; information [informational]: fine"
    )
    assert describe_issue({}) == "error [unknown]"
    assert describe_outcome(None) == ""


def test_describe_outcome_is_bounded() -> None:
    many = {"issue": [{"severity": "error", "code": "invalid", "details": {"text": "x" * 2000}}] * 15}
    text = describe_outcome(many)
    assert text.endswith("and 5 more issue(s)")
    assert text.count("error [invalid]") == 10
    assert len(text) < 10 * 520 + 100


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, FhirServerError),
        (422, FhirServerError),
        (401, AuthError),
        (403, ForbiddenError),
        (404, NotFoundError),
        (410, NotFoundError),
        (409, ConflictError),
        (412, ConflictError),
        (408, TemporaryServerError),
        (429, TemporaryServerError),
        (500, TemporaryServerError),
        (502, TemporaryServerError),
        (503, TemporaryServerError),
        (504, TemporaryServerError),
        (501, TemporaryServerError),
        (418, FhirServerError),
    ],
)
def test_statuses_map_onto_the_taxonomy(status: int, error_class: type[Exception]) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "x", "diagnostics": "why"}],
    }
    error = error_for_response(response(status, outcome), "read Patient/1")
    assert type(error) is error_class
    assert str(error).startswith(f"read Patient/1: HTTP {status}")
    assert "error [x]: why" in str(error)
    if isinstance(error, FhirServerError):
        assert error.status == status and error.outcome == outcome


def test_errors_without_an_outcome_say_what_came_back() -> None:
    html = response(502, b"<html>proxy</html>", Content_Type="text/html")
    assert str(error_for_response(html, "search Patient")) == (
        "search Patient: HTTP 502: non-FHIR response body (text/html, 18 bytes)"
    )
    redirect = error_for_response(response(301, Location="https://other.example/fhir/Patient?x=1"), "read")
    assert type(redirect) is FhirServerError
    assert "https://other.example/fhir/Patient" in str(redirect) and "x=1" not in str(redirect)
    raise_for_status(response(204), "delete")  # 2xx is fine


def test_url_path_drops_host_and_query() -> None:
    assert url_path(URL) == "/fhir/R4/Patient"
    assert url_path("https://ehr.example") == "/"


# ----------------------------------------------------------------------------------- sessions and send


def test_policy_session_always_has_a_timeout_and_our_user_agent() -> None:
    session, adapter = session_with(response(200, {}), response(200, {}))
    session.get("https://ehr.example/fhir/metadata")
    session.get("https://ehr.example/fhir/metadata", timeout=None)
    assert [timeout for _, timeout in adapter.requests] == [DEFAULT_TIMEOUT, DEFAULT_TIMEOUT]
    assert adapter.requests[0][0].headers["User-Agent"] == f"fhir-desens/{__version__}"
    with pytest.raises(ConfigurationError):
        PolicySession((0, 5))
    with pytest.raises(ConfigurationError):
        PolicySession((5, float("inf")))


def test_send_passes_its_timeout_even_to_a_plain_session() -> None:
    session = requests.Session()
    adapter = ScriptedAdapter(response(200, {}))
    session.mount("https://", adapter)
    send(session, "GET", URL, timeout=(2.0, 7.0))
    assert adapter.requests[0][1] == (2.0, 7.0)
    session.close()


def test_get_is_retried_on_503_with_retry_after() -> None:
    session, adapter = session_with(response(503, Retry_After="2"), response(503), response(200, {"ok": 1}))
    sleeps = Sleeps()
    result = send(session, "GET", URL, sleep=sleeps)
    assert result.status_code == 200
    assert len(adapter.requests) == 3
    assert sleeps == [2.0, 1.0]  # Retry-After, then the policy's backoff for the 2nd retry


def test_attempts_are_bounded_and_the_last_answer_returned() -> None:
    session, adapter = session_with(*(response(503) for _ in range(3)))
    sleeps = Sleeps()
    last = send(session, "GET", URL, policy=RetryPolicy(max_attempts=3), sleep=sleeps)
    assert last.status_code == 503 and len(adapter.requests) == 3 and len(sleeps) == 2
    with pytest.raises(TemporaryServerError):
        raise_for_status(last, "search Patient")


@pytest.mark.parametrize(
    ("method", "headers"),
    [("POST", {}), ("PATCH", {}), ("PUT", {"If-Match": 'W/"3"'})],
)
def test_non_idempotent_requests_are_sent_once(method: str, headers: dict[str, str]) -> None:
    session, adapter = session_with(response(503), response(200, {}))
    sleeps = Sleeps()
    assert send(session, method, URL, headers=headers, data=b"{}", sleep=sleeps).status_code == 503
    assert len(adapter.requests) == 1 and sleeps == []


def test_idempotent_override() -> None:
    session, adapter = session_with(response(503), response(200, {}))
    assert send(session, "GET", URL, idempotent=False, sleep=Sleeps()).status_code == 503
    assert len(adapter.requests) == 1
    session, adapter = session_with(response(503), response(200, {}))
    assert send(session, "POST", URL, idempotent=True, sleep=Sleeps()).status_code == 200
    assert len(adapter.requests) == 2


def test_long_retry_after_is_not_waited_for() -> None:
    session, adapter = session_with(response(429, Retry_After="600"), response(200, {}))
    sleeps = Sleeps()
    result = send(session, "GET", URL, sleep=sleeps)
    assert result.status_code == 429 and sleeps == [] and len(adapter.requests) == 1
    assert "retry after 600" in str(error_for_response(result, "search"))


def test_connection_errors_are_retried_for_get_only() -> None:
    session, adapter = session_with(requests.ConnectionError("refused"), response(200, {}))
    sleeps = Sleeps()
    assert send(session, "GET", URL, sleep=sleeps).status_code == 200
    assert sleeps == [0.5]

    session, adapter = session_with(requests.ConnectTimeout("slow"), requests.ReadTimeout("slow"))
    with pytest.raises(
        TemporaryServerError,
        match=r"timed out \(connected, but no answer within the read timeout\) after 2 attempt",
    ):
        send(session, "GET", URL, policy=RetryPolicy(max_attempts=2), sleep=Sleeps())

    session, adapter = session_with(requests.ReadTimeout("slow"), response(201, {}))
    with pytest.raises(TemporaryServerError, match="may or may not have been applied") as info:
        send(session, "POST", URL, sleep=Sleeps())
    assert len(adapter.requests) == 1
    assert "Smith" not in str(info.value)  # the query is not echoed
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_refused_connection_is_said_in_words_not_by_the_exception_class() -> None:
    """Walk 9: `fhir-desens import --server http://127.0.0.1:9/fhir` printed "could not connect
    (ConnectionError)"; nothing listens on a port just closed, a real refusal."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TemporaryServerError) as info:
        send(
            new_session((1.0, 1.0)), "GET", f"http://127.0.0.1:{port}/fhir/ActivityDefinition", sleep=Sleeps()
        )
    message = str(info.value)
    assert message.startswith(
        "GET /fhir/ActivityDefinition: could not connect (connection refused, reset or "
    )
    assert "ConnectionError" not in message and "attempt(s)" in message


def test_auth_headers_are_fetched_for_every_attempt() -> None:
    tokens = iter(["token-1", "token-2"])
    session, adapter = session_with(response(503), response(200, {}))
    send(
        session, "GET", URL, auth_headers=lambda: {"Authorization": f"Bearer {next(tokens)}"}, sleep=Sleeps()
    )
    assert [r.headers["Authorization"] for r, _ in adapter.requests] == ["Bearer token-1", "Bearer token-2"]


def test_redirects_are_not_followed() -> None:
    session, adapter = session_with(response(302, Location="https://elsewhere.example/x"), response(200, {}))
    assert send(session, "GET", URL, sleep=Sleeps()).status_code == 302
    assert len(adapter.requests) == 1


def test_logs_have_method_path_and_status_but_no_headers_or_query(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fhir_desens")
    session, _ = session_with(response(503), response(404, {"resourceType": "OperationOutcome"}))
    send(
        session,
        "GET",
        URL,
        headers={"Authorization": "Bearer s3cr3t-value"},
        auth_headers=lambda: {"Authorization": "Bearer s3cr3t-value"},
        sleep=Sleeps(),
    )
    text = caplog.text
    assert "GET /fhir/R4/Patient -> 503" in text
    assert "GET /fhir/R4/Patient -> 404" in text
    assert "s3cr3t" not in text and "Bearer" not in text and "Smith" not in text


def test_no_retry_policy_sends_once() -> None:
    session, adapter = session_with(response(503), response(200, {}))
    assert send(session, "GET", URL, policy=NO_RETRY, sleep=Sleeps()).status_code == 503
    assert len(adapter.requests) == 1
