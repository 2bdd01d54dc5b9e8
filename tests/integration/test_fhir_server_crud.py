"""The development FHIR server over real HTTP: create, read, update, vread, delete, history, conditional writes."""

from __future__ import annotations

import email.utils
import time
import uuid

import pytest
import requests

from tests.integration.fhir_wire import (
    FHIR_JSON,
    TIMEOUT,
    post,
    put,
)

pytestmark = pytest.mark.integration


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
