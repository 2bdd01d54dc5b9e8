"""The sandbox FHIR gateway: bearer tokens, SMART v1/v2 scopes and the patient compartment, over HTTP.

Tokens come from the real authorization server through the real launch/authorize/token steps (a compact
client below); the data is the seeded fixture patients on the real FHIR server process.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.scopes import render_scopes
from fhir_desens.client.smart import DEFAULT_NEEDS
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.fhir.canonical import ID_SESSION, ID_STEP_ORDER
from fhir_desens.io import json as fjson
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity
from fhir_desens.sandbox.fhir_server import FhirServerProcess
from fhir_desens.sandbox.seed import seed
from fhir_desens.sandbox.server import Sandbox

pytestmark = pytest.mark.integration

REDIRECT_URI = "http://127.0.0.1:9/app/callback"
FHIR_JSON = "application/fhir+json"
PATIENT_A = "carboplatin-ovarian"
PATIENT_B = "sjs-sulfonamide"


def http(method: str, url: str, token: str | None = None, **options: Any) -> requests.Response:
    headers = dict(options.pop("headers", {}))
    headers.setdefault("Accept", FHIR_JSON)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, url, headers=headers, timeout=15, **options)


def obtain_token(
    sandbox: Sandbox,
    scope: str,
    patient: str | None = PATIENT_A,
    *,
    vendor: str = "permissive",
    **registration: Any,
) -> dict[str, Any]:
    """Register a public client and run launch -> authorize -> token (EHR launch when a patient is given;
    ``vendor`` picks the gateway's vendor profile for that launch)."""
    client_id = f"gw-{uuid.uuid4().hex[:8]}"
    sandbox.register_client(
        client_id, "public", [REDIRECT_URI], launch_url="http://127.0.0.1:9/app/launch", **registration
    )
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": secrets.token_urlsafe(16),
        "aud": sandbox.fhir_base_url,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if patient is not None:
        launched = requests.get(
            sandbox.launch_url(patient, app=client_id, vendor=vendor), allow_redirects=False, timeout=10
        )
        params["launch"] = parse_qs(urlsplit(launched.headers["Location"]).query)["launch"][0]
        params["scope"] = f"launch {scope}"
    authorized = requests.get(sandbox.authorize_url, params=params, allow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(authorized.headers["Location"]).query)["code"][0]
    response = requests.post(
        sandbox.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": client_id,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token: dict[str, Any] = response.json()
    return token


def allergy(patient_id: str, system: str, value: str = "1") -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "identifier": [{"system": system, "value": value}],
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": "confirmed",
                }
            ]
        },
        "code": {"text": "gateway test substance"},
        "patient": {"reference": f"Patient/{patient_id}"},
    }


@pytest.fixture(scope="module")
def sandbox(fhir_server: FhirServerProcess) -> Iterator[Sandbox]:
    with Sandbox(fhir_base_url=fhir_server.base_url) as running:
        yield running


@pytest.fixture(scope="module")
def ids(sandbox: Sandbox) -> dict[str, str]:
    """Patient ids and one AllergyIntolerance id of each test patient (read from the backend directly)."""
    a = sandbox.summary.patients[PATIENT_A].id
    b = sandbox.summary.patients[PATIENT_B].id
    with FhirClient(sandbox.backend_url) as backend:
        allergy_a = backend.search("AllergyIntolerance", {"patient": f"Patient/{a}"})["entry"][0]["resource"][
            "id"
        ]
        allergy_b = backend.search("AllergyIntolerance", {"patient": f"Patient/{b}"})["entry"][0]["resource"][
            "id"
        ]
    return {"a": a, "b": b, "allergy_a": allergy_a, "allergy_b": allergy_b}


@pytest.fixture(scope="module")
def read_token(sandbox: Sandbox) -> str:
    token = obtain_token(sandbox, "patient/AllergyIntolerance.rs patient/Patient.rs patient/Practitioner.rs")
    return str(token["access_token"])


# -- authentication ------------------------------------------------------------------------------------


def test_requests_without_a_token_get_401_with_a_bearer_challenge(
    sandbox: Sandbox, ids: dict[str, str]
) -> None:
    response = http("GET", f"{sandbox.fhir_base_url}/AllergyIntolerance/{ids['allergy_a']}")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert response.json()["resourceType"] == "OperationOutcome"
    bogus = http("GET", f"{sandbox.fhir_base_url}/Patient/{ids['a']}", token="not-a-token")
    assert bogus.status_code == 401
    assert 'error="invalid_token"' in bogus.headers["WWW-Authenticate"]


def test_cors_preflight_is_answered(sandbox: Sandbox) -> None:
    response = requests.options(
        f"{sandbox.fhir_base_url}/AllergyIntolerance",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


# -- reads and searches in the patient compartment ----------------------------------------------------


def test_own_patients_allergy_can_be_read(sandbox: Sandbox, ids: dict[str, str], read_token: str) -> None:
    response = http("GET", f"{sandbox.fhir_base_url}/AllergyIntolerance/{ids['allergy_a']}", read_token)
    assert response.status_code == 200, response.text
    assert response.json()["patient"]["reference"].endswith(f"Patient/{ids['a']}")
    assert response.headers.get("ETag")
    assert sandbox.backend_url not in response.text


def test_other_patients_data_is_forbidden(sandbox: Sandbox, ids: dict[str, str], read_token: str) -> None:
    allergy_b = http("GET", f"{sandbox.fhir_base_url}/AllergyIntolerance/{ids['allergy_b']}", read_token)
    assert allergy_b.status_code == 403
    assert allergy_b.json()["issue"][0]["code"] == "forbidden"
    assert ids["b"] not in allergy_b.text  # nothing of the resource leaks
    patient_b = http("GET", f"{sandbox.fhir_base_url}/Patient/{ids['b']}", read_token)
    assert patient_b.status_code == 403
    history_b = http(
        "GET", f"{sandbox.fhir_base_url}/AllergyIntolerance/{ids['allergy_b']}/_history", read_token
    )
    assert history_b.status_code == 403


def test_search_is_constrained_to_the_tokens_patient(
    sandbox: Sandbox, ids: dict[str, str], read_token: str
) -> None:
    response = http("GET", f"{sandbox.fhir_base_url}/AllergyIntolerance", read_token)
    assert response.status_code == 200, response.text
    bundle = response.json()
    patients = {e["resource"]["patient"]["reference"].split("/")[-1] for e in bundle["entry"]}
    assert patients == {ids["a"]}
    assert all(e["fullUrl"].startswith(sandbox.fhir_base_url + "/") for e in bundle["entry"])
    assert all(link["url"].startswith(sandbox.fhir_base_url) for link in bundle.get("link", []))
    with FhirClient(sandbox.backend_url) as backend:
        everything = backend.search("AllergyIntolerance", {"_count": "1000"})
    assert len(everything["entry"]) > len(bundle["entry"])  # there were other patients' allergies to hide

    for own in (f"Patient/{ids['a']}", ids["a"], f"{sandbox.fhir_base_url}/Patient/{ids['a']}"):
        same = http("GET", f"{sandbox.fhir_base_url}/AllergyIntolerance", read_token, params={"patient": own})
        assert same.status_code == 200
        assert len(same.json()["entry"]) == len(bundle["entry"])
    other = http(
        "GET",
        f"{sandbox.fhir_base_url}/AllergyIntolerance",
        read_token,
        params={"patient": f"Patient/{ids['b']}"},
    )
    assert other.status_code == 403
    either = http(
        "GET",
        f"{sandbox.fhir_base_url}/AllergyIntolerance",
        read_token,
        params={"patient": f"Patient/{ids['a']},Patient/{ids['b']}"},
    )
    assert either.status_code == 403
    posted = http(
        "POST",
        f"{sandbox.fhir_base_url}/AllergyIntolerance/_search",
        read_token,
        data={"clinical-status": "active"},
    )
    assert posted.status_code == 200
    assert {e["resource"]["patient"]["reference"].split("/")[-1] for e in posted.json()["entry"]} <= {
        ids["a"]
    }


def test_patient_search_returns_only_the_tokens_patient(
    sandbox: Sandbox, ids: dict[str, str], read_token: str
) -> None:
    response = http("GET", f"{sandbox.fhir_base_url}/Patient", read_token)
    assert [e["resource"]["id"] for e in response.json()["entry"]] == [ids["a"]]
    assert (
        http("GET", f"{sandbox.fhir_base_url}/Patient", read_token, params={"_id": ids["b"]}).status_code
        == 403
    )


def test_system_wide_search_is_not_open_to_patient_scopes(sandbox: Sandbox, read_token: str) -> None:
    assert (
        http("GET", f"{sandbox.fhir_base_url}/", read_token, params={"_type": "Patient"}).status_code == 403
    )


def test_shared_non_patient_data_can_be_read_with_a_patient_scope(sandbox: Sandbox, read_token: str) -> None:
    practitioner = sandbox.summary.practitioners["PR-0001"].id
    response = http("GET", f"{sandbox.fhir_base_url}/Practitioner/{practitioner}", read_token)
    assert response.status_code == 200


def test_user_scopes_are_not_limited_to_one_patient(sandbox: Sandbox, ids: dict[str, str]) -> None:
    token = obtain_token(sandbox, "user/AllergyIntolerance.rs", patient=None)["access_token"]
    response = http("GET", f"{sandbox.fhir_base_url}/AllergyIntolerance/{ids['allergy_b']}", token)
    assert response.status_code == 200
    assert (
        http("GET", f"{sandbox.fhir_base_url}/Patient/{ids['b']}", token).status_code == 403
    )  # no Patient scope


# -- writes ----------------------------------------------------------------------------------------------


def test_write_without_a_write_scope_is_forbidden(
    sandbox: Sandbox, ids: dict[str, str], read_token: str, unique_system: str
) -> None:
    response = http(
        "POST",
        f"{sandbox.fhir_base_url}/AllergyIntolerance",
        read_token,
        json=allergy(ids["a"], unique_system),
        headers={"Content-Type": FHIR_JSON},
    )
    assert response.status_code == 403
    with FhirClient(sandbox.backend_url) as backend:
        assert not backend.search("AllergyIntolerance", {"identifier": f"{unique_system}|"}).get("entry")


def test_v2_create_update_delete_stay_in_the_compartment(
    sandbox: Sandbox, ids: dict[str, str], unique_system: str
) -> None:
    token = obtain_token(sandbox, "patient/AllergyIntolerance.cud")["access_token"]
    base = sandbox.fhir_base_url
    created = http(
        "POST", f"{base}/AllergyIntolerance", token, json=allergy(ids["a"], unique_system),
        headers={"Content-Type": FHIR_JSON},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.headers["Location"].startswith(f"{base}/AllergyIntolerance/")
    resource = created.json()
    # no "r": reading it back is not allowed, even in the compartment
    assert http("GET", f"{base}/AllergyIntolerance/{resource['id']}", token).status_code == 403

    resource["note"] = [{"text": "tolerated a desensitization"}]
    updated = http(
        "PUT", f"{base}/AllergyIntolerance/{resource['id']}", token, json=resource,
        headers={"Content-Type": FHIR_JSON, "If-Match": created.headers["ETag"]},
    )  # fmt: skip
    assert updated.status_code == 200, updated.text

    other = http(
        "POST", f"{base}/AllergyIntolerance", token, json=allergy(ids["b"], unique_system, "2"),
        headers={"Content-Type": FHIR_JSON},
    )  # fmt: skip
    assert other.status_code == 403
    # moving someone else's allergy into my compartment by PUT is refused too
    hijack = allergy(ids["a"], unique_system, "3") | {"id": ids["allergy_b"]}
    assert (
        http(
            "PUT",
            f"{base}/AllergyIntolerance/{ids['allergy_b']}",
            token,
            json=hijack,
            headers={"Content-Type": FHIR_JSON},
        ).status_code
        == 403
    )
    assert http("DELETE", f"{base}/AllergyIntolerance/{ids['allergy_b']}", token).status_code == 403
    deleted = http("DELETE", f"{base}/AllergyIntolerance/{resource['id']}", token)
    assert deleted.status_code in (200, 204)


def test_v1_scope_syntax_is_enforced(sandbox: Sandbox, ids: dict[str, str], unique_system: str) -> None:
    base = sandbox.fhir_base_url
    read_v1 = obtain_token(sandbox, "patient/AllergyIntolerance.read")["access_token"]
    assert http("GET", f"{base}/AllergyIntolerance/{ids['allergy_a']}", read_v1).status_code == 200
    assert http("GET", f"{base}/AllergyIntolerance", read_v1).status_code == 200
    body = allergy(ids["a"], unique_system)
    post = {"json": body, "headers": {"Content-Type": FHIR_JSON}}
    assert http("POST", f"{base}/AllergyIntolerance", read_v1, **post).status_code == 403

    write_v1 = obtain_token(sandbox, "patient/AllergyIntolerance.write")["access_token"]
    assert http("POST", f"{base}/AllergyIntolerance", write_v1, **post).status_code == 201
    assert http("GET", f"{base}/AllergyIntolerance/{ids['allergy_a']}", write_v1).status_code == 403

    wildcard = obtain_token(sandbox, "patient/*.*")["access_token"]
    assert http("GET", f"{base}/AllergyIntolerance/{ids['allergy_a']}", wildcard).status_code == 200
    assert http("GET", f"{base}/AllergyIntolerance/{ids['allergy_b']}", wildcard).status_code == 403


def test_transactions_are_checked_entry_by_entry(
    sandbox: Sandbox, ids: dict[str, str], unique_system: str
) -> None:
    token = obtain_token(sandbox, "patient/AllergyIntolerance.crus")["access_token"]

    def transaction(*patients: str) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": allergy(patient, unique_system, f"tx-{i}-{patient}"),
                    "request": {"method": "POST", "url": "AllergyIntolerance"},
                }
                for i, patient in enumerate(patients)
            ],
        }

    refused = http(
        "POST",
        sandbox.fhir_base_url,
        token,
        json=transaction(ids["a"], ids["b"]),
        headers={"Content-Type": FHIR_JSON},
    )
    assert refused.status_code == 403
    assert "entry 1" in refused.json()["issue"][0]["diagnostics"]
    with FhirClient(sandbox.backend_url) as backend:
        assert not backend.search("AllergyIntolerance", {"identifier": f"{unique_system}|"}).get("entry")

    accepted = http(
        "POST",
        sandbox.fhir_base_url,
        token,
        json=transaction(ids["a"], ids["a"]),
        headers={"Content-Type": FHIR_JSON},
    )
    assert accepted.status_code == 200, accepted.text
    result = accepted.json()
    assert result["type"] == "transaction-response"
    assert all(e["response"]["status"].startswith("201") for e in result["entry"])
    assert sandbox.backend_url not in accepted.text


def test_provenance_follows_the_patient_of_its_target(sandbox: Sandbox, ids: dict[str, str]) -> None:
    token = obtain_token(sandbox, "patient/Provenance.cr")["access_token"]

    def provenance(allergy_id: str) -> dict[str, Any]:
        return {
            "resourceType": "Provenance",
            "target": [{"reference": f"AllergyIntolerance/{allergy_id}"}],
            "recorded": "2026-11-22T10:00:00+01:00",
            "agent": [{"who": {"reference": f"Practitioner/{sandbox.summary.practitioners['PR-0001'].id}"}}],
        }

    post = {"headers": {"Content-Type": FHIR_JSON}}
    own = http(
        "POST", f"{sandbox.fhir_base_url}/Provenance", token, json=provenance(ids["allergy_a"]), **post
    )
    assert own.status_code == 201, own.text
    assert http("GET", own.headers["Location"].split("/_history")[0], token).status_code == 200
    other = http(
        "POST", f"{sandbox.fhir_base_url}/Provenance", token, json=provenance(ids["allergy_b"]), **post
    )
    assert other.status_code == 403


def test_seeding_twice_creates_nothing_new(sandbox: Sandbox) -> None:
    with FhirClient(sandbox.backend_url) as backend:
        before = {r["id"] for r in backend.search_all("Patient", {"_count": "1000"})}
        again = seed(backend)
        after = {r["id"] for r in backend.search_all("Patient", {"_count": "1000"})}
    assert again.created == 0
    assert again.matched > 0
    assert before == after
    assert {k: v.id for k, v in again.patients.items()} == {
        k: v.id for k, v in sandbox.summary.patients.items()
    }
    assert {PATIENT_A, PATIENT_B, "nka"} <= set(again.patients)
    assert again.patients[PATIENT_A].display


# -- the app's signed orders: the $apply transaction ------------------------------------------------------


def _apply_bundle(patient_id: str, session: str) -> dict[str, Any]:
    protocol = builtin_protocols()["iv-12-step-3-bag"]
    plan = compute_plan(PlanRequest(protocol, "carboplatin", Quantity(Decimal(400), "mg")))
    return apply_plan(plan, ApplyContext(f"Patient/{patient_id}", session_id=session))  # Decimals inside


def _post_bundle(sandbox: Sandbox, token: str, bundle: dict[str, Any]) -> requests.Response:
    return http(
        "POST", sandbox.fhir_base_url, token, data=fjson.dumps(bundle), headers={"Content-Type": FHIR_JSON}
    )


def _orders_of(sandbox: Sandbox, session: str) -> tuple[list[str], list[str]]:
    with FhirClient(sandbox.backend_url) as backend:
        groups = backend.search_all("RequestGroup", {"identifier": f"{ID_SESSION}|{session}"})
        steps = [f"{ID_STEP_ORDER}|{session}-{n}" for n in range(1, 13)]
        orders = backend.search_all("MedicationRequest", {"identifier": ",".join(steps)})
    return [g["id"] for g in groups], [o["id"] for o in orders]


@pytest.fixture(scope="module")
def order_token(sandbox: Sandbox) -> str:
    return str(obtain_token(sandbox, render_scopes([], DEFAULT_NEEDS, v2=True))["access_token"])


def test_the_apply_transaction_is_accepted_in_the_compartment_and_idempotent(
    sandbox: Sandbox, ids: dict[str, str], order_token: str
) -> None:
    session = uuid.uuid4().hex
    bundle = _apply_bundle(ids["a"], session)
    first = _post_bundle(sandbox, order_token, bundle)
    assert first.status_code == 200, first.text
    statuses = [e["response"]["status"] for e in first.json()["entry"]]
    assert statuses[:-1] == ["201 Created"] * (len(statuses) - 1)  # RequestGroup, 3 Medications, 12 orders
    groups, orders = _orders_of(sandbox, session)
    assert len(groups) == 1 and len(orders) == 12
    again = _post_bundle(sandbox, order_token, bundle)
    assert again.status_code == 200, again.text
    assert all(s.startswith("200") for s in [e["response"]["status"] for e in again.json()["entry"]])
    assert _orders_of(sandbox, session) == (groups, orders)
    provenance = next(e for e in again.json()["entry"] if e["response"]["location"].startswith("Provenance/"))
    assert provenance["resource"]["target"][0]["reference"] == f"RequestGroup/{groups[0]}"


def test_the_apply_transaction_for_another_patient_is_refused_whole(
    sandbox: Sandbox, ids: dict[str, str], order_token: str
) -> None:
    session = uuid.uuid4().hex
    refused = _post_bundle(sandbox, order_token, _apply_bundle(ids["b"], session))
    assert refused.status_code == 403
    assert "entry 0" in refused.json()["issue"][0]["diagnostics"]
    assert _orders_of(sandbox, session) == ([], [])


def test_shared_resources_are_created_only_for_the_bundles_own_orders(
    sandbox: Sandbox, ids: dict[str, str], order_token: str
) -> None:
    session = uuid.uuid4().hex
    bundle = _apply_bundle(ids["a"], session)
    medication = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Medication")
    alone = http(
        "POST", f"{sandbox.fhir_base_url}/Medication", order_token, data=fjson.dumps(medication["resource"]),
        headers={"Content-Type": FHIR_JSON},
    )  # fmt: skip
    assert alone.status_code == 403  # a patient scope does not write shared data on its own
    orphan = {"resourceType": "Bundle", "type": "transaction", "entry": [medication]}
    assert _post_bundle(sandbox, order_token, orphan).status_code == 403
    read_only = obtain_token(sandbox, "patient/*.rs")["access_token"]
    refused = _post_bundle(sandbox, read_only, bundle)
    assert refused.status_code == 403
    assert _orders_of(sandbox, session) == ([], [])


def test_a_provenance_about_another_patients_orders_is_refused(
    sandbox: Sandbox, ids: dict[str, str], order_token: str
) -> None:
    session = uuid.uuid4().hex
    bundle = _apply_bundle(ids["a"], session)
    other = _apply_bundle(ids["b"], uuid.uuid4().hex)
    group_b = next(e for e in other["entry"] if e["resource"]["resourceType"] == "RequestGroup")
    with FhirClient(sandbox.backend_url) as backend:  # someone else's RequestGroup, already stored
        stored_b = backend.create(group_b["resource"]).resource
    provenance = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance")
    provenance["resource"]["target"] = [{"reference": f"RequestGroup/{stored_b['id']}"}]
    only = {"resourceType": "Bundle", "type": "transaction", "entry": [provenance]}
    assert _post_bundle(sandbox, order_token, only).status_code == 403


# -- the signed-in user (SMART "openid fhirUser") -----------------------------------------------------------


def test_the_fhir_user_scope_lets_the_app_read_its_own_user_only(sandbox: Sandbox) -> None:
    token = obtain_token(sandbox, "openid fhirUser patient/Patient.rs")
    own = token["fhirUser"].rsplit("/", 1)[1]
    response = http("GET", f"{sandbox.fhir_base_url}/Practitioner/{own}", token["access_token"])
    assert response.status_code == 200 and response.json()["id"] == own
    other = next(p.id for p in sandbox.summary.practitioners.values() if p.id != own)
    assert (
        http("GET", f"{sandbox.fhir_base_url}/Practitioner/{other}", token["access_token"]).status_code == 403
    )
    search = http("GET", f"{sandbox.fhir_base_url}/Practitioner", token["access_token"], params={"_id": own})
    assert search.status_code == 403  # a read of the user, not a Practitioner scope

    without = obtain_token(sandbox, "openid patient/Patient.rs")["access_token"]
    assert http("GET", f"{sandbox.fhir_base_url}/Practitioner/{own}", without).status_code == 403
