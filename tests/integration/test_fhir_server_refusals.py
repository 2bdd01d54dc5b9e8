"""The development FHIR server over real HTTP: what it refuses on write (invalid resources, bad requests, big bodies)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from fhir_desens.sandbox.fhir_server import FhirServerProcess
from tests.integration.fhir_wire import (
    FHIR_JSON,
    TIMEOUT,
    allergy,
    issues_text,
    post,
    put,
)

pytestmark = pytest.mark.integration


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
