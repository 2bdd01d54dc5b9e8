"""Signing orders end to end against the real sandbox EHR (Authlib SMART server, scope-enforcing
gateway, and each FHIR server behind it: Medplum's engine and HAPI FHIR JPA): launch for the
carboplatin patient, plan through the app's pages, sign, and find the orders on the FHIR server; sign again, replay, two tabs at once; a read-only
grant; the patient page list, the read-only signed plan and "Copy this plan".

The test plays the browser with Flask's test client (see test_app_launch.py); the app makes real
HTTP calls to the sandbox. The FHIR server is read directly (no gateway) to count what was written.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.course.copy import draft_fields_from_signed
from fhir_desens.course.sign import SIGNED_KIND
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.lifecycle import held_for, released
from fhir_desens.protocol.report import plan_dict
from fhir_desens.sandbox.server import Sandbox
from smart_app.chart.page import person_name
from smart_app.orders.signed import load_signed_plan
from smart_app.planning.drafts import PlanDraft, plan_for
from tests.html import alerts, input_value, selected_value, start_form_values, text_of
from tests.integration import test_app_launch as launch_tests
from tests.integration.test_app_launch import AppUnderTest, ehr_launch, page

# the sandbox EHR and the app factory of the launch tests (fixtures)
sandbox = launch_tests.sandbox_on_each_server
make_app = launch_tests.make_app

pytestmark = pytest.mark.integration

PATIENT = "carboplatin-ovarian"


def csrf(app: AppUnderTest, sid: str) -> str:
    return str(app.store.get("session", sid)["csrf"])


def start(app: AppUnderTest, sid: str, query: str = "") -> str:
    """Post the start form as the chart pre-fills it; returns the draft id."""
    html = app.client.get(f"/s/{sid}/plan/new{query}").get_data(as_text=True)
    form = {"csrf_token": csrf(app, sid), **start_form_values(html)}
    copy = re.search(r'<input type="hidden" name="copy" value="([^"]+)"', html)
    if copy:
        form["copy"] = copy.group(1)
    response = app.client.post(f"/s/{sid}/plan/new", data=form)
    assert response.status_code == 303, text_of(response.get_data(as_text=True))[:1500]
    return response.headers["Location"].rsplit("/", 1)[1]


def recalculate(app: AppUnderTest, sid: str, draft_id: str, **changes: str) -> None:
    html = app.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    form = {
        "csrf_token": csrf(app, sid),
        "action": "recalculate",
        "protocol": selected_value(html, "protocol"),
    }
    for name in ("final_rate", "bag_volume"):
        form[name] = input_value(html, name)
    for name in ("diluent", "closing"):
        if f'<select id="{name}"' in html:
            form[name] = selected_value(html, name)
    form.update(changes)
    response = app.client.post(f"/s/{sid}/plan/{draft_id}", data=form)
    assert response.status_code == 303, alerts(response.get_data(as_text=True))


def sign(client: FlaskClient, app: AppUnderTest, sid: str, draft_id: str) -> TestResponse:
    return client.post(f"/s/{sid}/plan/{draft_id}/sign", data={"csrf_token": csrf(app, sid)})


def signed_id(response: TestResponse, sid: str) -> str:
    assert response.status_code == 303, alerts(response.get_data(as_text=True))
    match = re.fullmatch(
        rf"/s/{sid}/orders/([A-Za-z0-9\-.]+)\?sent=(?:1|again)", response.headers["Location"]
    )
    assert match, response.headers["Location"]
    return match.group(1)


def on_server(sandbox: Sandbox, rg_id: str) -> dict[str, Any]:
    """What the FHIR server holds for a signed plan, found by its business identifiers."""
    with FhirClient(sandbox.backend_url) as backend:
        group = backend.read("RequestGroup", rg_id).resource
        session = next(i["value"] for i in group["identifier"] if i["system"] == c.ID_SESSION)
        groups = backend.search_all("RequestGroup", {"identifier": f"{c.ID_SESSION}|{session}"})
        steps = ",".join(f"{c.ID_STEP_ORDER}|{session}-{n}" for n in range(1, 40))
        orders = backend.search_all("MedicationRequest", {"identifier": steps, "_count": "100"})
        provenance = backend.search_all("Provenance", {"target": f"RequestGroup/{rg_id}"})
    return {"group": group, "groups": groups, "orders": orders, "provenance": provenance}


def plans_of(sandbox: Sandbox, patient_id: str) -> int:
    with FhirClient(sandbox.backend_url) as backend:
        return len(backend.search_all("RequestGroup", {"subject": f"Patient/{patient_id}", "_count": "200"}))


def revoke_our_plans(sandbox: Sandbox, patient_key: str) -> None:
    """Test isolation (one active plan per drug, ORDER-DUP-1): end every active plan this app signed
    for the patient, and release the holds on its orders."""
    patient = f"Patient/{sandbox.summary.patient_id(patient_key)}"
    with FhirClient(sandbox.backend_url) as backend:
        for group in backend.search_all(
            "RequestGroup", {"subject": patient, "identifier": f"{c.ID_SESSION}|"}
        ):
            if group.get("status") == "active":
                backend.update({**group, "status": "revoked"}, if_match=None)
        for order in backend.search_all("MedicationRequest", {"subject": patient, "status": "on-hold"}):
            if held_for(order):
                backend.update(released(order), if_match=None)


@pytest.fixture(autouse=True)
def _one_test_one_course(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        revoke_our_plans(request.getfixturevalue("sandbox"), PATIENT)


@pytest.fixture
def clinician(sandbox: Sandbox, make_app: Any) -> tuple[AppUnderTest, str]:
    app = make_app("symmetric")
    return app, ehr_launch(sandbox, app, PATIENT)


def test_sign_writes_the_request_group_and_its_12_orders_once(
    sandbox: Sandbox, clinician: tuple[AppUnderTest, str]
) -> None:
    app, sid = clinician
    patient_id = sandbox.summary.patient_id(PATIENT)
    draft_id = start(app, sid)
    recalculate(app, sid, draft_id, protocol="iv-12-step-3-bag", final_rate="75")
    plan_page = app.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    assert re.search(r'<button type="submit">Sign and send orders</button>', plan_page)

    rg_id = signed_id(sign(app.client, app, sid, draft_id), sid)
    held = on_server(sandbox, rg_id)
    assert held["group"]["subject"]["reference"] == f"Patient/{patient_id}"
    assert held["group"]["instantiatesCanonical"] == [f"{c.plan_definition('iv-12-step-3-bag')}|1.0.0"]
    assert len(held["groups"]) == 1 and len(held["orders"]) == 12
    session = held["group"]["identifier"][0]["value"]
    assert {o["groupIdentifier"]["value"] for o in held["orders"]} == {session}
    assert {a["resource"]["reference"] for a in held["group"]["action"]} == {
        f"MedicationRequest/{o['id']}" for o in held["orders"]
    }
    rates = sorted(
        o["dosageInstruction"][0]["doseAndRate"][0]["rateQuantity"]["value"] for o in held["orders"]
    )
    assert rates[-1] == 75
    (provenance,) = held["provenance"]
    practitioner = app.store.get("session", sid)["smart"]["fhir_user"].split("/fhir/")[-1]
    assert provenance["agent"][0]["who"]["reference"] == practitioner
    assert held["group"]["author"]["reference"] == practitioner

    shown = app.client.get(f"/s/{sid}/orders/{rg_id}?sent=1").get_data(as_text=True)
    assert "Orders sent: 12 medication requests" in text_of(shown)

    # the signer by name: the app read its fhirUser (the gateway allows it with the fhirUser scope)
    with FhirClient(sandbox.backend_url) as backend:
        name = person_name(backend.read("Practitioner", practitioner.split("/")[1]).resource, titles=True)
    assert name and name.startswith("Dr. ")
    user = app.store.get("session", sid)["user"]
    assert {k: user[k] for k in ("reference", "name")} == {"reference": practitioner, "name": name}
    assert "Allergy and Immunology" in user["allergist"]  # the sandbox's signed-in allergist (OVERRIDE-1)
    assert f"Signed by {name}" in text_of(shown) and f"signed by {name}." in text_of(plan_page)
    assert "/fhir/Practitioner/" not in shown + plan_page

    # sign again, and replay the POST without the app's marker: still one set
    assert signed_id(sign(app.client, app, sid, draft_id), sid) == rg_id
    app.store.delete(SIGNED_KIND, f"{sid}:{draft_id}")
    assert signed_id(sign(app.client, app, sid, draft_id), sid) == rg_id
    again = on_server(sandbox, rg_id)
    assert len(again["groups"]) == 1 and len(again["orders"]) == 12
    assert {o["id"] for o in again["orders"]} == {o["id"] for o in held["orders"]}


def test_two_tabs_signing_the_same_plan_at_once_make_one_set(
    sandbox: Sandbox, clinician: tuple[AppUnderTest, str]
) -> None:
    app, sid = clinician
    draft_id = start(app, sid)
    recalculate(app, sid, draft_id, protocol="iv-12-step-3-bag")  # the chart now suggests the 16-step one
    responses: list[TestResponse] = []

    def tab() -> None:
        responses.append(sign(app.app.test_client(), app, sid, draft_id))

    tabs = [threading.Thread(target=tab) for _ in range(2)]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join(timeout=120)
    ids = {signed_id(r, sid) for r in responses}
    assert len(ids) == 1
    held = on_server(sandbox, ids.pop())
    assert len(held["groups"]) == 1 and len(held["orders"]) == 12


def test_a_read_only_grant_gets_403_with_the_reason_and_nothing_is_written(
    sandbox: Sandbox, make_app: Any
) -> None:
    app = make_app("public", granted_scope="patient/*.rs")
    sid = ehr_launch(sandbox, app, PATIENT)
    patient_id = sandbox.summary.patient_id(PATIENT)
    before = plans_of(sandbox, patient_id)
    draft_id = start(app, sid)
    plan_page = app.client.get(f"/s/{sid}/plan/{draft_id}").get_data(as_text=True)
    assert "permission to write orders" in text_of(plan_page)
    response = sign(app.client, app, sid, draft_id)
    assert response.status_code == 403
    html = response.get_data(as_text=True)
    assert "did not grant this app permission to write orders" in alerts(html)
    assert "Nothing was written" in alerts(html)
    assert "Open the worksheet" in html and "Open the pharmacy sheet" in html
    assert plans_of(sandbox, patient_id) == before


def test_signed_plans_are_listed_opened_read_only_and_copied(
    sandbox: Sandbox, clinician: tuple[AppUnderTest, str]
) -> None:
    app, sid = clinician
    draft_id = start(app, sid)
    recalculate(app, sid, draft_id, protocol="iv-12-step-3-bag", final_rate="75")
    original = dict(app.store.get("draft", f"{sid}:{draft_id}"))
    rg_id = signed_id(sign(app.client, app, sid, draft_id), sid)

    patient_page = page(app, sid)
    section = patient_page.split('id="signed-plans-heading"', 1)[1].split("</section>", 1)[0]
    assert f'href="/s/{sid}/orders/{rg_id}"' in section
    assert f'href="/s/{sid}/plan/new?copy={rg_id}"' in section and "Copy this plan" in section
    assert "400 mg" in text_of(section)

    opened = app.client.get(f"/s/{sid}/orders/{rg_id}")
    assert opened.status_code == 200
    html = opened.get_data(as_text=True)
    steps = re.search(r'<table[^>]*id="steps".*?<tbody>(.*?)</tbody>', html, re.S)
    assert steps is not None, text_of(html)[:3000]
    assert len(re.findall(r"<tr", steps.group(1))) == 12
    # read-only: nothing to edit; the one form is the lifecycle's "Discontinue" (ORDER-DC-1)
    forms = re.findall(r'<form[^>]*action="([^"]+)"', html.split("<main", 1)[1])
    assert forms == [f"/s/{sid}/orders/{rg_id}/discontinue"]
    assert "Final rate 75 mL/h" in text_of(html)
    assert app.client.get(f"/s/{sid}/orders/{rg_id}/print").status_code == 200

    # "Copy this plan": the start form carries the copy, and the new plan has the same parameters
    copy_form = app.client.get(f"/s/{sid}/plan/new?copy={rg_id}").get_data(as_text=True)
    assert f"(signed plan {rg_id})" in text_of(copy_form)
    copied_id = start(app, sid, f"?copy={rg_id}")
    copied = dict(app.store.get("draft", f"{sid}:{copied_id}"))
    for name in ("drug", "target", "protocol_id", "final_rate_ml_h", "closing"):
        assert copied[name] == original[name] or (
            name == "closing" and copied[name] in (None, original[name])
        ), name
    assert copied["copied_from"] == rg_id
    with app.app.app_context():  # the copy recomputes to the very same plan
        assert plan_dict(plan_for(PlanDraft.from_dict(copied))) == plan_dict(
            plan_for(PlanDraft.from_dict(original))
        )
    copied_page = app.client.get(f"/s/{sid}/plan/{copied_id}").get_data(as_text=True)
    assert input_value(copied_page, "final_rate") == "75"
    assert selected_value(copied_page, "protocol") == original["protocol_id"]

    # what the signed plan records reproduces every parameter (fhir_desens.course.copy.draft_fields_from_signed)
    _, smart = app.app.extensions["fhir_desens"].load_session(sid)
    with app.app.test_request_context():
        fields = draft_fields_from_signed(load_signed_plan(smart, rg_id))
    assert (fields["protocol_id"], fields["drug"], fields["final_rate_ml_h"]) == (
        original["protocol_id"],
        original["drug"],
        "75",
    )
    assert f"{fields['target_dose']} {fields['dose_unit']}" == original["target"]
    assert fields["indication"] == original["indication"]
    assert tuple(fields["drug_rxnorm"]) == tuple(original["drug_rxnorm"])


def test_another_patients_signed_plan_is_not_shown(
    sandbox: Sandbox, make_app: Any, clinician: tuple[AppUnderTest, str]
) -> None:
    app, sid = clinician
    rg_id = signed_id(sign(app.client, app, sid, start(app, sid)), sid)
    other = ehr_launch(sandbox, app, "nka")
    assert app.client.get(f"/s/{other}/orders/{rg_id}").status_code == 404
    assert rg_id not in page(app, other)
