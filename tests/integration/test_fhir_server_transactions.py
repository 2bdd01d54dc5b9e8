"""The development FHIR server over real HTTP: transaction Bundles, their references, atomicity and rollback."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from tests.integration.fhir_wire import (
    TIMEOUT,
    allergy,
    issues_text,
    post,
    put,
    transaction_bundle,
)

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------------------------- batch/transaction


def test_transaction_rewrites_urn_uuid_references(fhir_base_url: str, http: requests.Session) -> None:
    patient_urn = f"urn:uuid:{uuid.uuid4()}"
    bundle = transaction_bundle(
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
    bundle = transaction_bundle(
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
    bundle = transaction_bundle(
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
    first = post(http, fhir_base_url, transaction_bundle(entries)).json()
    second = post(http, fhir_base_url, transaction_bundle(entries)).json()
    assert [e["response"]["status"] for e in first["entry"]] == ["201 Created"] * 12
    assert [e["response"]["status"] for e in second["entry"]] == ["200 OK"] * 12
    total = http.get(f"{fhir_base_url}/Patient", params={"identifier": f"{unique_system}|"}, timeout=TIMEOUT)
    assert total.json()["total"] == 12


def test_transaction_with_an_invalid_resource_writes_nothing(
    fhir_base_url: str, http: requests.Session, unique_system: str
) -> None:
    bundle = transaction_bundle(
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
