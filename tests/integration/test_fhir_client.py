"""FhirClient against the real FHIR server process, and its HTTP policy against a scripted local server.

FHIR semantics (versions, conditional writes, transactions, validation) are tested against the real
server. Retry, refresh, timeout and origin rules are HTTP policy, not FHIR semantics: for those a tiny
scripted HTTP server on 127.0.0.1 answers 503, 401, slow responses or foreign next links on demand.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fhir_desens import __version__
from fhir_desens.client.fhir_rest import FhirClient, Versioned, etag_version, reference
from fhir_desens.client.http import RetryPolicy
from fhir_desens.errors import (
    AuthError,
    ConflictError,
    FhirServerError,
    InputError,
    NotFoundError,
    TemporaryServerError,
)
from fhir_desens.io.json import dumps, loads

pytestmark = pytest.mark.integration

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05)


def tagged_patient(system: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": system, "value": value}], **extra}


# =============================================================================== against the FHIR server


def test_capabilities(server_client: FhirClient) -> None:
    cs = server_client.capabilities()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"


def test_create_read_vread(server_client: FhirClient, unique_system: str) -> None:
    created = server_client.create(tagged_patient(unique_system, "1", gender="female"))
    assert isinstance(created, Versioned)
    assert created.created and created.status == 201
    assert created.version_id == "1" and etag_version(created.etag) == "1"
    assert created.location is not None and created.location.endswith(f"/Patient/{created.id}/_history/1")
    assert created.reference == f"Patient/{created.id}"

    read = server_client.read("Patient", created.id)
    assert read.resource == created.resource
    assert read.version_id == "1" and read.last_modified

    updated = server_client.update({**read.resource, "gender": "male"}, if_match=read.version_id)
    assert updated.version_id == "2" and not updated.created
    old = server_client.vread("Patient", created.id, "1")
    assert old.resource["gender"] == "female" and old.version_id == "1"


def test_read_missing_is_not_found(server_client: FhirClient) -> None:
    with pytest.raises(NotFoundError) as info:
        server_client.read("Patient", f"missing-{uuid.uuid4().hex[:8]}")
    assert info.value.status == 404
    assert "read Patient/missing-" in str(info.value)


def test_conditional_create_twice_gives_one_resource(server_client: FhirClient, unique_system: str) -> None:
    patient = tagged_patient(unique_system, "only")
    condition = {"identifier": f"{unique_system}|only"}
    first = server_client.create(patient, if_none_exist=condition)
    second = server_client.create(patient, if_none_exist=condition)
    assert first.created and not second.created
    assert second.status == 200 and second.id == first.id
    assert len(server_client.search_all("Patient", condition)) == 1


def test_conditional_create_matching_several_is_a_conflict(
    server_client: FhirClient, unique_system: str
) -> None:
    server_client.create(tagged_patient(unique_system, "dup"))
    server_client.create(tagged_patient(unique_system, "dup"))
    with pytest.raises(ConflictError) as info:
        server_client.create(
            tagged_patient(unique_system, "dup"), if_none_exist=f"identifier={unique_system}|dup"
        )
    assert info.value.status == 412  # several matches: 412 on every server


def test_if_match_stale_version_is_a_conflict_and_writes_nothing(
    server_client: FhirClient, unique_system: str
) -> None:
    v1 = server_client.create(tagged_patient(unique_system, "1", gender="female"))
    v2 = server_client.update({**v1.resource, "active": True}, if_match=v1.version_id)
    assert v2.version_id == "2"
    with pytest.raises(ConflictError) as info:
        server_client.update({**v1.resource, "gender": "other"}, if_match=v1.version_id)
    message = str(info.value)
    assert f"Patient/{v1.id}" in message and "since version 1" in message
    assert info.value.status in (409, 412) and info.value.outcome is not None  # HAPI 409, R4/Medplum 412
    now = server_client.read("Patient", v1.id)
    assert now.version_id == "2" and now.resource["gender"] == "female" and now.resource["active"] is True
    # an ETag is accepted as if_match too
    assert server_client.update({**now.resource, "gender": "other"}, if_match='W/"2"').version_id == "3"


def test_unconditional_update_must_be_asked_for(server_client: FhirClient, unique_system: str) -> None:
    v1 = server_client.create(tagged_patient(unique_system, "1"))
    assert server_client.update({**v1.resource, "active": False}, if_match=None).version_id == "2"
    with pytest.raises(InputError):
        server_client.update({"resourceType": "Patient"}, if_match=None)  # no id


def test_conditional_update_creates_then_updates(server_client: FhirClient, unique_system: str) -> None:
    search = {"identifier": f"{unique_system}|cu"}
    first = server_client.conditional_update("Patient", search, tagged_patient(unique_system, "cu"))
    second = server_client.conditional_update(
        "Patient", search, tagged_patient(unique_system, "cu", active=True)
    )
    assert first.created and not second.created
    assert second.id == first.id and second.version_id == "2"


def test_delete(server_client: FhirClient, unique_system: str) -> None:
    created = server_client.create(tagged_patient(unique_system, "del"))
    server_client.delete("Patient", created.id)
    with pytest.raises(NotFoundError) as info:
        server_client.read("Patient", created.id)
    assert info.value.status == 410
    server_client.delete("Patient", created.id, missing_ok=True)
    # R4 lets a server answer 404, or 200/204, for a resource that never existed (HAPI: 200)
    never_there = contextlib.suppress(NotFoundError)
    with never_there:
        server_client.delete("Patient", "never-there")


def test_search_all_follows_next_links_across_pages(server_client: FhirClient, unique_system: str) -> None:
    ids = {server_client.create(tagged_patient(unique_system, str(n))).id for n in range(23)}
    params = {"identifier": f"{unique_system}|", "_count": "5", "_total": "accurate"}
    first_page = server_client.search("Patient", params)
    assert first_page["total"] == 23 and len(first_page["entry"]) == 5
    found = server_client.search_all("Patient", params)
    assert [r["id"] for r in found if r["id"] in ids] == [r["id"] for r in found]
    assert len(found) == 23 and {r["id"] for r in found} == ids
    with pytest.raises(FhirServerError, match="more than 2 pages"):
        server_client.search_all("Patient", params, max_pages=2)


def test_reference_search_with_the_type_and_id_form(server_client: FhirClient) -> None:
    patient = server_client.create({"resourceType": "Patient"})
    allergy = {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"text": "oxaliplatin"},
        "patient": {"reference": patient.reference},
    }
    server_client.create(allergy)
    found = server_client.search_all("AllergyIntolerance", {"patient": reference("Patient", patient.id)})
    assert [a["code"]["text"] for a in found] == ["oxaliplatin"]
    with pytest.raises(InputError):
        reference("Patient", "../metadata")


def test_transaction_rewrites_urn_uuid_references(server_client: FhirClient, unique_system: str) -> None:
    patient_urn = f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_urn,
                "resource": tagged_patient(unique_system, "tx"),
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={unique_system}|tx",
                },
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "reaction check"},
                    "subject": {"reference": patient_urn},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    result = server_client.transaction(bundle)
    assert result["type"] == "transaction-response"
    patient_id = result["entry"][0]["resource"]["id"]
    observation_id = result["entry"][1]["resource"]["id"]
    stored = server_client.read("Observation", observation_id).resource
    assert stored["subject"]["reference"] == f"Patient/{patient_id}"
    with pytest.raises(InputError):
        server_client.transaction({**bundle, "type": "batch"})


def test_batch_reports_each_entry(server_client: FhirClient, unique_system: str) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": tagged_patient(unique_system, "b1"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": f"Patient/never-{uuid.uuid4().hex[:8]}"}},
        ],
    }
    result = server_client.batch(bundle)
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses[0].startswith("201") and statuses[1].startswith("404")
    assert len(server_client.search_all("Patient", {"identifier": f"{unique_system}|b1"})) == 1


def test_validate_operation_and_refused_create(fhir_client: FhirClient) -> None:
    ok = fhir_client.validate({"resourceType": "Patient", "gender": "female"})
    assert not [i for i in ok["issue"] if i["severity"] == "error"]
    bad = fhir_client.validate({"resourceType": "Patient", "birthDate": "1970-02-30T"})
    assert [i["expression"] for i in bad["issue"] if i["severity"] == "error"] == [["Patient.birthDate"]]
    with pytest.raises(FhirServerError) as info:
        fhir_client.create({"resourceType": "Patient", "birthDate": "1970-02-30T"})
    assert info.value.status == 400
    assert "error [structure] at Patient.birthDate: Invalid date format" in str(info.value)


def test_decimals_are_decimal_on_the_python_side(fhir_client: FhirClient) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "cumulative dose"},
        "valueQuantity": {"value": Decimal("12.345"), "unit": "mg"},
        "component": [
            {"code": {"text": "step dose"}, "valueQuantity": {"value": Decimal("0.50"), "unit": "mg"}}
        ],
    }
    stored = fhir_client.create(observation).resource
    value = stored["valueQuantity"]["value"]
    assert isinstance(value, Decimal) and str(value) == "12.345"  # no float artefacts
    step = stored["component"][0]["valueQuantity"]["value"]
    # The server keeps numbers as JavaScript doubles: 0.50 comes back as 0.5 (same value, precision lost).
    assert isinstance(step, Decimal) and step == Decimal("0.50") and str(step) == "0.5"


# =================================================================== HTTP policy against a scripted server


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Scripted:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class StubServer:
    """A scripted HTTP server on 127.0.0.1: every request gets the next scripted answer (then 500)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: deque[Scripted] = deque()
        self.release = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                stub.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
                answer = (
                    stub.script.popleft()
                    if stub.script
                    else Scripted(500, {"resourceType": "OperationOutcome"})
                )
                if answer.delay:
                    stub.release.wait(answer.delay)
                payload = b"" if answer.body is None else dumps(answer.body).encode()
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    if payload:
                        self.send_header("Content-Type", "application/fhir+json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test)
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/fhir/R4"

    def add(self, status: int, body: Any = None, *, delay: float = 0.0, **headers: str) -> None:
        self.script.append(
            Scripted(status, body, {k.replace("_", "-"): v for k, v in headers.items()}, delay)
        )

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def stubs() -> Iterator[Callable[[], StubServer]]:
    started: list[StubServer] = []

    def start() -> StubServer:
        server = StubServer()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def stub(stubs: Callable[[], StubServer]) -> StubServer:
    return stubs()


PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "1"}}
OUTCOME_OK = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "information", "code": "informational"}],
}


class TinyAuth:
    """The FHIR client's auth interface, with a token that can be swapped by refresh()."""

    def __init__(self, token: str, refreshed_token: str | None) -> None:
        self.token = token
        self.refreshed_token = refreshed_token
        self.refresh_calls = 0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def refresh(self) -> bool:
        self.refresh_calls += 1
        if self.refreshed_token is None:
            return False
        self.token = self.refreshed_token
        return True


def test_requests_carry_user_agent_accept_and_exact_decimals(stub: StubServer) -> None:
    stored = {"resourceType": "Observation", "id": "o1", "valueQuantity": {"value": Decimal("0.10")}}
    stub.add(201, stored, ETag='W/"1"')
    with FhirClient(stub.base_url) as client:
        result = client.create(
            {"resourceType": "Observation", "valueQuantity": {"value": Decimal("0.50")}},
            if_none_exist={"code": "x|y"},
        )
    seen = stub.seen[0]
    assert seen.headers["User-Agent"] == f"fhir-desens/{__version__}"
    assert seen.headers["Accept"] == "application/fhir+json"
    assert seen.headers["Content-Type"].startswith("application/fhir+json")
    assert seen.headers["If-None-Exist"] == "code=x%7Cy"
    assert b'"value":0.50' in seen.body  # written exactly, not as a float
    assert loads(seen.body)["valueQuantity"]["value"] == Decimal("0.50")
    assert str(result.resource["valueQuantity"]["value"]) == "0.10"  # read exactly too
    assert result.version_id == "1"  # from the ETag when meta.versionId is absent


def test_401_refreshes_once_and_retries_once(stub: StubServer) -> None:
    stub.add(401, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]})
    stub.add(200, PATIENT)
    auth = TinyAuth("old-token-abc", "new-token-xyz")
    with FhirClient(stub.base_url, auth=auth) as client:
        assert client.read("Patient", "p1").id == "p1"
    assert auth.refresh_calls == 1
    assert [s.headers["Authorization"] for s in stub.seen] == ["Bearer old-token-abc", "Bearer new-token-xyz"]


def test_401_after_refresh_is_an_auth_error(stub: StubServer) -> None:
    stub.add(401)
    stub.add(401)
    auth = TinyAuth("old-token-abc", "new-token-xyz")
    with FhirClient(stub.base_url, auth=auth) as client, pytest.raises(AuthError):
        client.create({"resourceType": "Patient"})
    assert auth.refresh_calls == 1 and len(stub.seen) == 2


def test_401_when_refresh_fails_is_an_auth_error_without_retry(stub: StubServer) -> None:
    stub.add(401)
    auth = TinyAuth("old-token-abc", None)
    with (
        FhirClient(stub.base_url, auth=auth) as client,
        pytest.raises(AuthError, match="launch the app again"),
    ):
        client.read("Patient", "p1")
    assert auth.refresh_calls == 1 and len(stub.seen) == 1


def test_get_is_retried_after_503_honouring_retry_after(stub: StubServer) -> None:
    stub.add(503, Retry_After="1")
    stub.add(200, PATIENT)
    started = time.monotonic()
    with FhirClient(stub.base_url) as client:
        assert client.read("Patient", "p1").id == "p1"
    assert time.monotonic() - started >= 1.0
    assert [s.method for s in stub.seen] == ["GET", "GET"]


def test_post_is_never_retried(stub: StubServer) -> None:
    stub.add(503, Retry_After="0")
    stub.add(201, PATIENT)
    with FhirClient(stub.base_url, retry=FAST_RETRY) as client, pytest.raises(TemporaryServerError) as info:
        client.create({"resourceType": "Patient"})
    assert info.value.status == 503
    assert len(stub.seen) == 1


def test_versioned_put_is_not_retried_but_conditional_put_and_delete_are(stub: StubServer) -> None:
    stub.add(503)
    with FhirClient(stub.base_url, retry=FAST_RETRY) as client:
        with pytest.raises(TemporaryServerError):
            client.update(PATIENT, if_match="1")
        assert len(stub.seen) == 1
        stub.add(502)
        stub.add(201, PATIENT)
        assert client.conditional_update("Patient", {"identifier": "a|b"}, PATIENT).created
        assert [s.method for s in stub.seen[1:]] == ["PUT", "PUT"]
        stub.add(500)
        stub.add(200, OUTCOME_OK)
        client.delete("Patient", "p1")
        assert [s.method for s in stub.seen[3:]] == ["DELETE", "DELETE"]


def test_retries_are_bounded_and_long_retry_after_is_not_waited_for(stub: StubServer) -> None:
    for _ in range(5):
        stub.add(503)
    with FhirClient(stub.base_url, retry=FAST_RETRY) as client, pytest.raises(TemporaryServerError):
        client.read("Patient", "p1")
    assert len(stub.seen) == 3
    stub.seen.clear()
    stub.script.clear()
    stub.add(429, Retry_After="3600")
    started = time.monotonic()
    with FhirClient(stub.base_url) as client, pytest.raises(TemporaryServerError, match="retry after 3600"):
        client.read("Patient", "p1")
    assert time.monotonic() - started < 5 and len(stub.seen) == 1


def test_timeouts_are_enforced(stub: StubServer) -> None:
    stub.add(200, PATIENT, delay=5)
    stub.add(200, PATIENT, delay=5)
    started = time.monotonic()
    policy = RetryPolicy(max_attempts=2, backoff_base=0.01)
    with FhirClient(stub.base_url, timeout=(1.0, 0.3), retry=policy) as client:
        with pytest.raises(TemporaryServerError, match="timed out"):
            client.read("Patient", "p1")
        assert len(stub.seen) == 2
        stub.add(201, PATIENT, delay=5)
        with pytest.raises(TemporaryServerError, match="may or may not have been applied"):
            client.create({"resourceType": "Patient"})
        assert len(stub.seen) == 3
    assert time.monotonic() - started < 4


def test_unreachable_server_is_a_temporary_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = FhirClient(f"http://127.0.0.1:{port}/fhir", retry=FAST_RETRY)
    with client, pytest.raises(TemporaryServerError, match="could not connect"):
        client.capabilities()


def test_next_link_to_another_origin_is_refused(stubs: Callable[[], StubServer]) -> None:
    server, elsewhere = stubs(), stubs()
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": PATIENT}],
        "link": [{"relation": "next", "url": f"{elsewhere.base_url}/Patient?page=2"}],
    }
    server.add(200, page)
    auth = TinyAuth("secret-token-123", None)
    with (
        FhirClient(server.base_url, auth=auth) as client,
        pytest.raises(FhirServerError, match="another origin"),
    ):
        client.search_all("Patient")
    assert elsewhere.seen == []


def test_relative_next_links_are_followed_on_the_same_origin(stub: StubServer) -> None:
    stub.add(200, {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": PATIENT}],
                   "link": [{"relation": "next", "url": "Patient?page=2"}]})  # fmt: skip
    stub.add(
        200, {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {**PATIENT, "id": "p2"}}]}
    )
    with FhirClient(stub.base_url) as client:
        assert [p["id"] for p in client.search_all("Patient")] == ["p1", "p2"]
    assert stub.seen[1].path == "/fhir/R4/Patient?page=2"


def test_redirects_are_not_followed(stubs: Callable[[], StubServer]) -> None:
    server, elsewhere = stubs(), stubs()
    server.add(302, Location=f"{elsewhere.base_url}/Patient/p1")
    client = FhirClient(server.base_url, auth=TinyAuth("secret-token-123", None))
    with client, pytest.raises(FhirServerError, match="redirects are not followed"):
        client.read("Patient", "p1")
    assert elsewhere.seen == []


def test_operation_outcome_becomes_a_readable_message(stub: StubServer) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "warning", "code": "informational", "diagnostics": "just so you know"},
            {
                "severity": "error",
                "code": "business-rule",
                "details": {"text": "dose above the target"},
                "expression": ["MedicationRequest.dosageInstruction[0]"],
            },
        ],
    }
    stub.add(422, outcome)
    with FhirClient(stub.base_url) as client, pytest.raises(FhirServerError) as info:
        client.create({"resourceType": "MedicationRequest"})
    assert str(info.value) == (
        "create MedicationRequest: HTTP 422 Unprocessable Entity: error [business-rule] at "
        "MedicationRequest.dosageInstruction[0]: dose above the target; warning [informational]: just so you know"
    )
    assert info.value.outcome == outcome and info.value.status == 422


def test_tokens_never_reach_logs_or_errors(
    stubs: Callable[[], StubServer], caplog: pytest.LogCaptureFixture
) -> None:
    server, elsewhere = stubs(), stubs()
    caplog.set_level(logging.DEBUG)
    auth = TinyAuth("old-secret-token-1", "new-secret-token-2")
    server.add(401)
    server.add(503, Retry_After="0")
    server.add(200, PATIENT)
    server.add(
        404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
    )
    server.add(200, {"resourceType": "Bundle", "type": "searchset",
                     "link": [{"relation": "next", "url": f"{elsewhere.base_url}/x"}]})  # fmt: skip
    messages: list[str] = []
    with FhirClient(server.base_url, auth=auth, retry=FAST_RETRY) as client:
        client.read("Patient", "p1")
        for call in (
            lambda: client.read("Patient", "p2"),
            lambda: client.search_all("Patient", {"name": "Smith"}),
        ):
            with pytest.raises(FhirServerError) as info:
                call()
            messages.append(str(info.value))
    assert auth.refresh_calls == 1
    logged = caplog.text
    # the logs are there (the app's process-wide log hygiene, once installed by an earlier app test,
    # writes the patient's id as <id>) ...
    assert re.search(r"GET /fhir/R4/Patient/(p1|<id>) -> 401", logged)
    assert "retrying" in logged
    for secret in ("old-secret-token-1", "new-secret-token-2", "Bearer"):  # ... without tokens (any logger)
        assert secret not in logged
        assert all(secret not in m for m in messages)
    # Our own records carry paths, never queries (which may hold names). urllib3's DEBUG records do show
    # queries: keep the urllib3 logger above DEBUG in production.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("fhir_desens"))
    assert "/fhir/R4/Patient" in ours and "Smith" not in ours
    assert all("Smith" not in m for m in messages)
