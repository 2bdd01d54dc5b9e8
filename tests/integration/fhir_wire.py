"""Raw-HTTP helpers for the test_fhir_server_*.py files (the ``http`` session fixture is in conftest.py).

These tests speak raw HTTP with ``requests`` where the point is the server's wire behaviour
(statuses, headers, OperationOutcomes).
"""

from __future__ import annotations

import json
import socket
from typing import Any

import requests

FHIR_JSON = "application/fhir+json"
PROFILE_BASE = "http://example.org/fhir-desens/test/StructureDefinition"
PATIENT_PROFILE = f"{PROFILE_BASE}/test-patient"
ALLERGY_PROFILE = f"{PROFILE_BASE}/test-allergy"
TIMEOUT = (5, 30)


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


def transaction_bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
