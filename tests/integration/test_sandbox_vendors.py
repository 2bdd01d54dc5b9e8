"""Vendor profiles of the sandbox gateway (permissive, epic-like, millennium-like), chosen per launch.

Real launch -> authorize -> token against the real authorization server, requests through the real gateway
to the real FHIR server process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.sandbox.fhir_server import FhirServerProcess
from fhir_desens.sandbox.server import Sandbox
from tests.integration.test_sandbox_gateway import FHIR_JSON, PATIENT_A, allergy, http, obtain_token

SCOPE = "openid fhirUser user/*.cruds"
VITALS = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
    ]
}


@pytest.fixture(scope="module")
def sandbox(fhir_server: FhirServerProcess) -> Iterator[Sandbox]:
    with Sandbox(fhir_base_url=fhir_server.base_url) as running:
        yield running


@pytest.fixture(scope="module")
def patient(sandbox: Sandbox) -> str:
    return sandbox.summary.patients[PATIENT_A].id


@pytest.fixture(scope="module")
def tokens(sandbox: Sandbox) -> dict[str, str]:
    return {
        name: obtain_token(sandbox, SCOPE, vendor=name)["access_token"]
        for name in ("permissive", "epic-like", "millennium-like")
    }


def encounter(sandbox: Sandbox, patient: str, status: str) -> str:
    """An Encounter written straight to the backend (the epic-like gateway would not create one)."""
    with FhirClient(sandbox.backend_url) as backend:
        created = backend.create(
            {
                "resourceType": "Encounter",
                "status": status,
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": f"Patient/{patient}"},
            }
        )
    return created.reference


def heart_rate(patient: str, status: str = "final", encounter_ref: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "category": [VITALS],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-12-02T10:00:00Z",
        "valueQuantity": {"value": 80, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    if encounter_ref:
        resource["encounter"] = {"reference": encounter_ref}
    return resource


def procedure(patient: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "status": status,
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "95180"}]},
        "subject": {"reference": f"Patient/{patient}"},
    }


def administration(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": {"text": "vendor test drug"},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-12-02T10:00:00Z",
    }


def post(sandbox: Sandbox, token: str, resource: dict[str, Any], **headers: str) -> requests.Response:
    return http(
        "POST",
        f"{sandbox.fhir_base_url}/{resource['resourceType']}",
        token,
        json=resource,
        headers={"Content-Type": FHIR_JSON, **headers},
    )


def test_permissive_accepts_every_write(sandbox: Sandbox, tokens: dict[str, str], patient: str) -> None:
    token = tokens["permissive"]
    assert post(sandbox, token, administration(patient)).status_code == 201
    assert post(sandbox, token, procedure(patient, "in-progress")).status_code == 201
    assert post(sandbox, token, heart_rate(patient, "preliminary")).status_code == 201


@pytest.mark.parametrize(
    "resource",
    [administration, lambda p: procedure(p, "completed")],
    ids=["MedicationAdministration", "Procedure"],
)
def test_epic_like_refuses_administration_and_procedure_writes(
    sandbox: Sandbox, tokens: dict[str, str], patient: str, resource: Any
) -> None:
    response = post(sandbox, tokens["epic-like"], resource(patient))
    assert response.status_code == 405
    assert "not offered" in response.json()["issue"][0]["diagnostics"]


def test_epic_like_vitals_need_final_status_and_an_open_encounter(
    sandbox: Sandbox, tokens: dict[str, str], patient: str
) -> None:
    token = tokens["epic-like"]
    open_encounter = encounter(sandbox, patient, "in-progress")
    closed_encounter = encounter(sandbox, patient, "finished")
    refused = {
        "no encounter": post(sandbox, token, heart_rate(patient)),
        "preliminary": post(sandbox, token, heart_rate(patient, "preliminary", open_encounter)),
        "closed encounter": post(sandbox, token, heart_rate(patient, "final", closed_encounter)),
    }
    for why, response in refused.items():
        assert response.status_code == 422, why
    assert "closed" in refused["closed encounter"].json()["issue"][0]["diagnostics"]
    created = post(sandbox, token, heart_rate(patient, "final", open_encounter))
    assert created.status_code == 201
    observation = created.json()
    observation["status"] = "amended"
    update = http(
        "PUT",
        f"{sandbox.fhir_base_url}/Observation/{observation['id']}",
        token,
        json=observation,
        headers={"Content-Type": FHIR_JSON},
    )
    assert update.status_code == 405  # create only


def test_epic_like_has_no_conditional_create_and_no_transaction(
    sandbox: Sandbox, tokens: dict[str, str], patient: str
) -> None:
    token = tokens["epic-like"]
    system = f"urn:uuid:{uuid.uuid4()}"
    conditional = post(
        sandbox, token, allergy(patient, system), **{"If-None-Exist": f"identifier={system}|1"}
    )
    assert conditional.status_code == 400
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    transaction = http("POST", sandbox.fhir_base_url, token, json=bundle, headers={"Content-Type": FHIR_JSON})
    assert transaction.status_code == 405
    assert post(sandbox, token, allergy(patient, system)).status_code == 201  # plain create is accepted


def test_epic_like_capability_statement_lists_only_what_it_accepts(
    sandbox: Sandbox, tokens: dict[str, str]
) -> None:
    def interactions(token: str | None, resource_type: str) -> set[str]:
        statement = http("GET", f"{sandbox.fhir_base_url}/metadata", token).json()
        resource = next(r for r in statement["rest"][0]["resource"] if r["type"] == resource_type)
        return {i["code"] for i in resource.get("interaction", [])}

    assert "create" in interactions(None, "MedicationAdministration")  # no token: the server as it is
    assert "create" not in interactions(tokens["epic-like"], "MedicationAdministration")
    assert "read" in interactions(tokens["epic-like"], "MedicationAdministration")
    assert interactions(tokens["epic-like"], "Observation") >= {"create", "read"}
    assert "update" not in interactions(tokens["epic-like"], "Observation")


def test_millennium_like_procedure_only_completed_and_never_updated(
    sandbox: Sandbox, tokens: dict[str, str], patient: str
) -> None:
    token = tokens["millennium-like"]
    assert post(sandbox, token, procedure(patient, "in-progress")).status_code == 422
    created = post(sandbox, token, procedure(patient, "completed"))
    assert created.status_code == 201
    update = http(
        "PUT",
        f"{sandbox.fhir_base_url}/Procedure/{created.json()['id']}",
        token,
        json=created.json(),
        headers={"Content-Type": FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert update.status_code == 405
    assert post(sandbox, token, administration(patient)).status_code == 405


def test_millennium_like_update_needs_if_match_and_a_stale_one_is_409(
    sandbox: Sandbox, tokens: dict[str, str], patient: str
) -> None:
    token = tokens["millennium-like"]
    created = post(sandbox, token, allergy(patient, f"urn:uuid:{uuid.uuid4()}"))
    assert created.status_code == 201
    resource = created.json()
    url = f"{sandbox.fhir_base_url}/AllergyIntolerance/{resource['id']}"
    resource["note"] = [{"text": "tolerated a desensitization"}]

    def put(**headers: str) -> requests.Response:
        return http("PUT", url, token, json=resource, headers={"Content-Type": FHIR_JSON, **headers})

    assert put().status_code == 412  # no If-Match
    assert put(**{"If-Match": created.headers["ETag"]}).status_code == 200
    assert put(**{"If-Match": created.headers["ETag"]}).status_code == 409  # stale version
    patch = http(
        "PATCH",
        url,
        token,
        json=[{"op": "add", "path": "/note/-", "value": {"text": "x"}}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patch.status_code == 405


def test_millennium_like_names_itself_and_keeps_millenniums_allergy_update_rules(
    sandbox: Sandbox, tokens: dict[str, str], patient: str
) -> None:
    token = tokens["millennium-like"]
    metadata = http("GET", f"{sandbox.fhir_base_url}/metadata", token).json()
    assert "Millennium" in metadata["software"]["name"]
    created = post(sandbox, token, allergy(patient, f"urn:uuid:{uuid.uuid4()}"))
    url = f"{sandbox.fhir_base_url}/AllergyIntolerance/{created.json()['id']}"
    version = {"etag": created.headers["ETag"]}

    def put(resource: dict[str, Any]) -> requests.Response:
        response = http(
            "PUT", url, token, json=resource, headers={"Content-Type": FHIR_JSON, "If-Match": version["etag"]}
        )
        version["etag"] = response.headers.get("ETag", version["etag"])
        return response

    hives = {"coding": [{"system": "http://snomed.info/sct", "code": "126485001"}]}
    flushing = {"coding": [{"system": "http://snomed.info/sct", "code": "700184005"}]}
    r4_shaped = {
        **created.json(),
        "reaction": [{"manifestation": [hives, flushing], "severity": "moderate"}],
        "note": [{"text": "tolerated", "time": "2026-12-03T10:00:00Z"}],
    }
    refused = put(r4_shaped)
    assert refused.status_code == 422
    assert "exactly one manifestation" in refused.text
    r4_shaped["reaction"] = [{"manifestation": [hives], "severity": "moderate", "onset": "2026-12-03"}]
    assert "reaction.onset" in put(r4_shaped).text
    r4_shaped["reaction"] = [{"manifestation": [hives], "severity": "moderate"}]
    assert "note.time" in put(r4_shaped).text
    millennium_shaped = {**r4_shaped, "note": [{"text": "tolerated"}]}
    accepted = put(millennium_shaped)
    assert accepted.status_code == 200, accepted.text
    changed = {**accepted.json(), "note": [{"text": "rewritten"}]}
    assert "existing note cannot be modified" in put(changed).text
    changed = {**accepted.json(), "reaction": [{"manifestation": [flushing], "severity": "moderate"}]}
    assert "reaction.manifestation cannot be modified" in put(changed).text


def test_unknown_vendor_profile_is_refused_at_launch(sandbox: Sandbox) -> None:
    response = requests.get(sandbox.launch_url(PATIENT_A, vendor="cerner"), allow_redirects=False, timeout=10)
    assert response.status_code == 400
    assert "permissive" in response.text
