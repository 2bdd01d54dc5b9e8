"""Hostile charts on the real FHIR server (issue 11 "Done when"): each chart below is planted in the sandbox
EHR's FHIR server, then the app (Flask test client, real HTTP to the sandbox) opens every page of that
patient: patient, start form, plan, worksheet and pharmacy sheets with their PDFs, signing, the signed
plan, the bedside start page. All answer 200 (303 where a form is sent), none 500, none shows a direction
override or an invisible character. A chart the server itself refuses to store (it validates what it is
sent) cannot reach the app and is skipped with the server's reason; tests/app/test_hostile_charts.py
plants those in the in-process fake EHR, which stores anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.errors import DesensError
from fhir_desens.sandbox.server import Sandbox
from tests.hostile import HUNDRED_KB, PLAN_PAGES, page_problems
from tests.html import text_of
from tests.integration import test_app_launch as launch_tests
from tests.integration.test_app_launch import AppUnderTest, ehr_launch
from tests.integration.test_app_sign_orders import csrf, revoke_our_plans, selected_value

sandbox = launch_tests.sandbox
make_app = launch_tests.make_app

pytestmark = pytest.mark.integration

PATIENT = "carboplatin-ovarian"
Undo = list[Callable[[FhirClient], None]]


def _patient(sandbox: Sandbox) -> str:
    return f"Patient/{sandbox.summary.patient_id(PATIENT)}"


def _order(backend: FhirClient, patient: str) -> dict[str, Any]:
    orders = backend.search_all("MedicationRequest", {"subject": patient, "status": "active"})
    return next(o for o in orders if "arboplatin" in str(o.get("medicationCodeableConcept")))


def _changed(
    backend: FhirClient, resource: dict[str, Any], change: Callable[[dict[str, Any]], None], undo: Undo
) -> None:
    original = {k: v for k, v in resource.items() if k != "meta"}
    changed = {k: v for k, v in resource.items() if k != "meta"}
    change(changed)
    backend.update(changed, if_match=None)
    undo.append(lambda b: b.update(original, if_match=None))


def _created(backend: FhirClient, resource: dict[str, Any], undo: Undo) -> None:
    made = backend.create(resource)
    undo.append(lambda b: b.delete(made.resource_type, made.id, missing_ok=True))


def _observation(
    patient: str, loinc: str, value: Decimal | int, unit: str, code: str, when: str
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": patient},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": code},
    }


def _renamed(backend: FhirClient, patient: str, undo: Undo, name: dict[str, Any], order_text: str) -> None:
    """The patient's first name entry updated with ``name``, the carboplatin order's text ``order_text``."""
    person = backend.read("Patient", patient.split("/")[1]).resource
    _changed(backend, person, lambda p: p["name"][0].update(name), undo)
    order = _order(backend, patient)
    _changed(backend, order, lambda o: o["medicationCodeableConcept"].update(text=order_text), undo)


def rlo_names(backend: FhirClient, patient: str, undo: Undo) -> None:
    _renamed(
        backend, patient, undo, {"family": "\u202eecalovoL"}, "\u202eVI W5D Lm 052 ni gm 004 nitalpobraC"
    )


def zero_width(backend: FhirClient, patient: str, undo: Undo) -> None:
    _renamed(backend, patient, undo, {"given": ["Ele\u200banor\u2060"]}, "Carbo\u200bplatin\ufeff 400 mg IV")


def future_weight(backend: FhirClient, patient: str, undo: Undo) -> None:
    _created(backend, _observation(patient, "29463-7", 150, "kg", "kg", "2099-01-01T08:00:00Z"), undo)


def unit_code_disagreement(backend: FhirClient, patient: str, undo: Undo) -> None:
    _created(backend, _observation(patient, "29463-7", 150, "lb", "kg", "2026-12-01T08:00:00Z"), undo)


def height_1e300_cm(backend: FhirClient, patient: str, undo: Undo) -> None:
    _created(
        backend, _observation(patient, "8302-2", Decimal("1e300"), "cm", "cm", "2026-12-01T08:00:00Z"), undo
    )


def dose_1e44_mg(backend: FhirClient, patient: str, undo: Undo) -> None:
    order = _order(backend, patient)
    _changed(
        backend,
        order,
        lambda o: o["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"].update(value=Decimal("1e44")),
        undo,
    )


def foreign_reason(backend: FhirClient, patient: str, undo: Undo) -> None:
    other = backend.search_all("Patient", {"_count": "50"})
    someone = next(p for p in other if f"Patient/{p['id']}" != patient)
    condition = backend.create(
        {
            "resourceType": "Condition",
            "subject": {"reference": f"Patient/{someone['id']}"},
            "code": {"text": "Someone else's condition"},
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                ]
            },
        }
    )
    undo.append(lambda b: b.delete("Condition", condition.id, missing_ok=True))
    order = _order(backend, patient)
    _changed(
        backend, order, lambda o: o.update(reasonReference=[{"reference": f"Condition/{condition.id}"}]), undo
    )


def text_100_kb(backend: FhirClient, patient: str, undo: Undo) -> None:
    order = _order(backend, patient)

    def long_texts(o: dict[str, Any]) -> None:
        o["note"] = [{"text": HUNDRED_KB}]
        o["reasonCode"] = [{"text": HUNDRED_KB}]
        o["dosageInstruction"][0]["text"] = HUNDRED_KB

    _changed(backend, order, long_texts, undo)


HOSTILE = {
    f.__name__: f
    for f in (
        rlo_names,
        zero_width,
        future_weight,
        unit_code_disagreement,
        height_1e300_cm,
        dose_1e44_mg,
        foreign_reason,
        text_100_kb,
    )
}


@pytest.fixture
def hostile_chart(request: pytest.FixtureRequest, sandbox: Sandbox) -> Iterator[str]:
    name = request.param
    patient = _patient(sandbox)
    undo: Undo = []
    with FhirClient(sandbox.backend_url) as backend:
        try:
            HOSTILE[name](backend, patient, undo)
        except DesensError as refused:
            for step in reversed(undo):
                step(backend)
            pytest.skip(f"the FHIR server refuses to store this chart: {refused.message[:200]}")
        try:
            yield name
        finally:
            revoke_our_plans(sandbox, PATIENT)
            for step in reversed(undo):
                step(backend)


@pytest.mark.parametrize("hostile_chart", list(HOSTILE), indirect=True)
def test_every_page_of_a_hostile_chart_on_the_real_server_opens(
    sandbox: Sandbox, make_app: Any, hostile_chart: str
) -> None:
    app: AppUnderTest = make_app("symmetric")
    sid = ehr_launch(sandbox, app, PATIENT)
    seen: list[str] = []

    def get(url: str) -> Any:
        response = app.client.get(url)
        seen.extend(page_problems(url, response))
        assert response.status_code == 200, (url, text_of(response.get_data(as_text=True))[:800])
        return response

    get(f"/s/{sid}/patient")
    html = get(f"/s/{sid}/plan/new").get_data(as_text=True)
    form = {
        "csrf_token": csrf(app, sid),
        "drug": selected_value(html, "drug"),
        "target_dose": "400",
        "dose_unit": "mg",
        "indication": "",
        "grade": "",
        "hypotension_or_hypoxia": "no",
        "cardiac_or_beta_blocker": "no",
        "fev1_below_80": "no",
    }
    created = app.client.post(f"/s/{sid}/plan/new", data=form)
    seen.extend(page_problems("POST plan/new", created))
    assert created.status_code == 303, text_of(created.get_data(as_text=True))[:1500]
    plan_url = created.headers["Location"]
    for suffix in PLAN_PAGES:
        get(plan_url + suffix)
    signed = app.client.post(plan_url + "/sign", data={"csrf_token": csrf(app, sid)})
    seen.extend(page_problems("POST sign", signed))
    assert signed.status_code == 303, text_of(signed.get_data(as_text=True))[:1500]
    orders_url = signed.headers["Location"].split("?")[0]
    for suffix in ("", "/print", "/worksheet.pdf", "/bedside"):
        get(orders_url + suffix)
    get(f"/s/{sid}/patient")
    assert seen == []
