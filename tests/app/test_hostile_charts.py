"""Hostile charts (issue 11): each chart a real EHR could send — spoofed names (right-to-left override,
zero-width characters), a lone surrogate, a height of 1e300 cm, an order of 1e44 mg, a weight dated 2099,
a Quantity whose unit and code disagree, an order whose reason is another patient's Condition, 100 kB of
text, wrongly typed JSON — is planted in the EHR, and a clinician walks every page of that patient:
patient, start form, plan, worksheet, PDFs, signing, signed plan, bedside, outcome. Every page answers
200 (or a clear 4xx naming the problem), never a 500 or a traceback, and never shows a direction
override or an invisible character that screening would not have seen.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from fhir_desens.course.bedside.record import BedsideRecord
from fhir_desens.course.draft import plan_for
from fhir_desens.protocol.library import builtin_protocols
from tests.app.conftest import Launcher
from tests.app.fake_ehr import FakeEhr
from tests.app.planner import Planner
from tests.bedside_session import Bedside, carboplatin_draft
from tests.hostile import HUNDRED_KB, PLAN_PAGES, page_problems
from tests.html import text_of

PATIENT = "carboplatin-ovarian"
ORDER = ("MedicationRequest", "carboplatin-ovarian.medreq-carboplatin")
HEIGHT = ("Observation", "carboplatin-ovarian.obs-height")
WEIGHT = ("Observation", "carboplatin-ovarian.obs-weight")


def _order(ehr: FakeEhr) -> dict[str, Any]:
    return ehr.stored[ORDER]


def _allergy(ehr: FakeEhr) -> dict[str, Any]:
    return next(a for a in ehr.allergies[PATIENT] if "arboplatin" in str(a.get("code")))


def _observation(ehr: FakeEhr, rid: str, kind: tuple[str, str], **changes: Any) -> None:
    planted = copy.deepcopy(ehr.stored[kind])
    planted.update({"id": rid, **changes})
    planted.pop("meta", None)
    ehr.add_resource(planted)


def rlo_names(ehr: FakeEhr) -> None:
    ehr.patients[PATIENT]["name"][0]["family"] = "\u202eecalovoL"
    _order(ehr)["medicationCodeableConcept"]["text"] = "\u202eVI W5D Lm 052 ni gm 004 nitalpobraC"
    _allergy(ehr)["code"]["text"] = "\u202enitalpobraC"


def zero_width(ehr: FakeEhr) -> None:
    ehr.patients[PATIENT]["name"][0]["given"] = ["Ma\u200bria\u2060"]
    _order(ehr)["medicationCodeableConcept"]["text"] = "Carbo\u200bplatin\ufeff 400 mg in 250 mL D5W IV"
    _allergy(ehr)["code"]["text"] = "carbo\u200dplatin"


def lone_surrogate(ehr: FakeEhr) -> None:
    ehr.patients[PATIENT]["name"][0]["family"] = "Example \udc80"
    _order(ehr)["medicationCodeableConcept"]["text"] = "Carboplatin \ud800"
    _order(ehr)["note"] = [{"text": "cycle 8 \udfff"}]
    _allergy(ehr)["note"] = [{"text": "hives \ud800 at cycle 7"}]


def height_1e300_cm(ehr: FakeEhr) -> None:
    _observation(ehr, "huge-height", HEIGHT, valueQuantity={"value": 1e300, "unit": "cm", "code": "cm"})
    ehr.stored[HEIGHT]["valueQuantity"]["value"] = 1e300


def dose_1e44_mg(ehr: FakeEhr) -> None:
    dose = _order(ehr)["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    dose["value"] = 1e44


def _weight_150(ehr: FakeEhr, rid: str, when: str, unit: str) -> None:
    """A weight of 150 (UCUM code kg, shown unit ``unit``) taken at ``when``."""
    quantity = {"value": 150, "unit": unit, "system": "http://unitsofmeasure.org", "code": "kg"}
    _observation(ehr, rid, WEIGHT, effectiveDateTime=when, valueQuantity=quantity)


def future_weight(ehr: FakeEhr) -> None:
    _weight_150(ehr, "weight-2099", "2099-01-01T08:00:00Z", "kg")


def unit_code_disagreement(ehr: FakeEhr) -> None:
    _weight_150(ehr, "weight-lb-kg", "2026-12-01T08:00:00Z", "lb")


def foreign_reason(ehr: FakeEhr) -> None:
    ehr.load_fixture("penicillin-pregnancy")
    ehr.add_resource(
        {
            "resourceType": "Condition",
            "id": "someone-elses-condition",
            "subject": {"reference": "Patient/penicillin-pregnancy"},
            "code": {"text": "Syphilis in pregnancy"},
        }
    )
    _order(ehr)["reasonReference"] = [{"reference": "Condition/someone-elses-condition"}]


def text_100_kb(ehr: FakeEhr) -> None:
    order = _order(ehr)
    order["note"] = [{"text": HUNDRED_KB}]
    order["reasonCode"] = [{"text": HUNDRED_KB}]
    order["dosageInstruction"][0]["text"] = HUNDRED_KB
    _allergy(ehr)["note"] = [{"text": HUNDRED_KB}]
    ehr.stored[HEIGHT]["note"] = [{"text": HUNDRED_KB}]


def wrongly_typed_json(ehr: FakeEhr) -> None:
    order = _order(ehr)
    order["note"] = "not a list"
    order["reasonReference"] = {"reference": 5}
    order["dosageInstruction"].append("a string")
    order["requester"] = ["list"]
    ehr.stored[HEIGHT]["valueQuantity"] = "165 cm"
    ehr.stored[WEIGHT]["effectiveDateTime"] = 20261118
    allergy = _allergy(ehr)
    allergy["reaction"] = {"manifestation": "hives"}
    allergy["criticality"] = ["high"]
    allergy["note"] = [{"text": 7}]
    ehr.patients[PATIENT]["birthDate"] = 19620101


HOSTILE: dict[str, Callable[[FakeEhr], None]] = {
    f.__name__: f
    for f in (
        rlo_names,
        zero_width,
        lone_surrogate,
        height_1e300_cm,
        dose_1e44_mg,
        future_weight,
        unit_code_disagreement,
        foreign_reason,
        text_100_kb,
        wrongly_typed_json,
    )
}


class Walker(Planner):
    """Opens every page of one patient, keeping each answer."""

    def __init__(self, launcher: Launcher, ehr: FakeEhr, app: Flask) -> None:
        super().__init__(launcher, ehr, app)
        self.visited: list[tuple[str, TestResponse]] = []

    def open(self, url: str, method: str = "GET", **data: str) -> TestResponse:
        response = self.client.get(url) if method == "GET" else self.client.post(url, data=data)
        self.visited.append((f"{method} {url}", response))
        return response


def walk(walker: Walker, app: Flask) -> list[str]:
    """Every page of the patient, in the order a clinician reaches them."""
    sid = walker.launch(PATIENT)
    walker.open(f"/s/{sid}/patient")
    start = walker.open(f"/s/{sid}/plan/new")
    assert start.status_code == 200
    form = walker.start_defaults(sid)
    form.update(target_dose="400", dose_unit="mg")
    created = walker.open(f"/s/{sid}/plan/new", "POST", csrf_token=walker.csrf(sid), **form)
    if created.status_code != 303:  # the chart's order could not be planned from: type the drug
        assert created.status_code < 500
        form.update(drug="other", other_drug="carboplatin", accept_name="yes")
        created = walker.open(f"/s/{sid}/plan/new", "POST", csrf_token=walker.csrf(sid), **form)
    assert created.status_code == 303, text_of(created.get_data(as_text=True))[:1500]
    plan_url = created.headers["Location"]
    for suffix in PLAN_PAGES:
        assert walker.open(plan_url + suffix).status_code == 200, suffix
    signed = walker.open(plan_url + "/sign", "POST", csrf_token=walker.csrf(sid))
    assert signed.status_code == 303, text_of(signed.get_data(as_text=True))[:1500]
    if signed.status_code == 303:
        orders_url = signed.headers["Location"].split("?")[0]
        for suffix in (*PLAN_PAGES, "/bedside"):
            assert walker.open(orders_url + suffix).status_code == 200, suffix
        forged = walker.client.post(
            orders_url + "/bedside",
            data={"csrf_token": walker.csrf(sid), "session_id": "\u202e" + "x/" * 17 + "y"},
        )
        assert forged.status_code == 400 and "session_id" in forged.get_data(as_text=True)
        started = walker.open(orders_url + "/bedside", "POST", csrf_token=walker.csrf(sid))
        assert started.status_code == 303, text_of(started.get_data(as_text=True))[:1500]
        flowsheet = started.headers["Location"]
        for suffix in ("", "/state", "/record", "/record.pdf"):
            walker.open(flowsheet + suffix)
    # a finished session in the app's own record, so the outcome pages have something to show
    services = app.extensions["fhir_desens"]
    record = BedsideRecord(services.record_store(), builtin_protocols(), services.now)
    bedside = Bedside(record_to=record, patient=f"Patient/{PATIENT}")
    bedside.reaction_at_step_11()
    walker.open(f"/s/{sid}/patient")
    assert walker.open(f"/s/{sid}/outcome/{bedside.session_id}").status_code == 200
    return [problem for name, response in walker.visited for problem in page_problems(name, response)]


@pytest.fixture
def walker(launcher: Launcher, ehr: FakeEhr, app: Flask) -> Walker:
    return Walker(launcher, ehr, app)


@pytest.mark.parametrize("hostile", list(HOSTILE))
def test_every_page_of_a_hostile_chart_opens(walker: Walker, ehr: FakeEhr, app: Flask, hostile: str) -> None:
    ehr.load_fixture(PATIENT)
    HOSTILE[hostile](ehr)
    problems = walk(walker, app)
    assert problems == []
    assert len(walker.visited) >= 20


def start_form(walker: Walker, ehr: FakeEhr, *plant: Callable[[FakeEhr], None]) -> tuple[str, str]:
    """The session id and the start form's HTML for the patient with ``plant`` applied to the chart."""
    ehr.load_fixture(PATIENT)
    for planted in plant:
        planted(ehr)
    sid = walker.launch(PATIENT)
    response = walker.client.get(f"/s/{sid}/plan/new")
    assert response.status_code == 200
    return sid, response.get_data(as_text=True)


def not_used(html: str) -> str:
    found = re.search(r'<div class="message warning" id="chart-not-used"[^>]*>(.*?)</div>', html, re.S)
    assert found is not None, "no list of what was not used from the chart"
    return text_of(found.group(1))


def test_skipped_chart_measurements_are_named_on_the_start_form_with_their_references(
    walker: Walker, ehr: FakeEhr
) -> None:
    """Issue 11 "Future-dated measurements" and "Unit disagreement": neither is pre-filled, each is named
    with its reference and why; the newest valid weight is pre-filled with its date."""
    _, html = start_form(walker, ehr, future_weight, unit_code_disagreement, height_1e300_cm)
    listed = not_used(html)
    assert (
        "Weight 150 kg (Observation/weight-2099, 2099-01-01T08:00:00Z) not used: dated in the future"
        in listed
    )
    assert "Observation/weight-lb-kg" in listed and "its unit 'lb' and code 'kg' disagree" in listed
    assert "Observation/huge-height" in listed and "not used: outside 20\u2013280 cm" in listed
    assert "From the chart: 62 kg on 18 Nov 2026" in text_of(html)
    assert "Not recorded in the chart: enter it." in text_of(html)  # both heights are 1e300 cm


def test_a_reason_that_is_another_patients_condition_is_named_not_a_blocked_page(
    walker: Walker, ehr: FakeEhr
) -> None:
    listed = not_used(start_form(walker, ehr, foreign_reason)[1])
    assert "Condition/someone-elses-condition (the reason for an order) not read" in listed


def test_a_100_kb_chart_text_is_cut_to_fit_the_form_so_continue_works(walker: Walker, ehr: FakeEhr) -> None:
    """Issue 11: a 100 kB chart text made "Continue" fail (first a bare 413, then the form refusing its own
    pre-filled indication): the indication is pre-filled cut and marked, and the defaults are accepted."""
    sid, html = start_form(walker, ehr, text_100_kb)
    form = walker.start_defaults(sid)
    assert len(form["indication"]) <= 500 and form["indication"].endswith("[\u2026]")
    created = walker.start(sid, **form)
    assert created.status_code == 303, text_of(created.get_data(as_text=True))[:1000]
    assert "Premedication and observation notes." in html


@pytest.mark.parametrize(
    "dose", ["0 mg", "-5 mg", "1" * 30 + " mg", "0." + "0" * 30 + "1 mg", "1e-400 mg", "4\u202e00 mg"]
)
def test_a_tampered_later_dose_is_refused_and_nothing_recorded(
    walker: Walker, ehr: FakeEhr, app: Flask, dose: str
) -> None:
    """The outcome's "Record a dose given after desensitization" form goes through the one number check."""
    ehr.load_fixture(PATIENT)
    sid = walker.launch(PATIENT)
    services = app.extensions["fhir_desens"]
    bedside = Bedside(
        record_to=BedsideRecord(services.record_store(), builtin_protocols(), services.now),
        patient=f"Patient/{PATIENT}",
    )
    bedside.reaction_at_step_11()
    form = {
        "csrf_token": walker.csrf(sid),
        "session_id": bedside.session_id,
        "dose": dose,
        "dose_id": "d0000000-0000-4000-8000-000000000001",
        "given_at": "2026-12-20T09:00",
    }
    response = walker.client.post(f"/s/{sid}/outcome/doses", data=form)
    assert response.status_code == 400, response.status_code
    assert "dose" in text_of(response.get_data(as_text=True))
    assert services.dose_book().doses_for(f"Patient/{PATIENT}") == []
    recorded = walker.client.post(f"/s/{sid}/outcome/doses", data={**form, "dose": "400 mg"})
    assert recorded.status_code == 303, text_of(recorded.get_data(as_text=True))[:800]
    assert [d.amount for d in services.dose_book().doses_for(f"Patient/{PATIENT}")] == [400]


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("dose", "two grams", "Dose: 'two grams' is not a quantity"),
        ("dose", "2 mL", "Dose: 'mL' is not a dose unit"),
        ("given_at", "yesterday", "Given at: 'yesterday' is not a date and time"),
        ("given_at", "2020-01-01T08:00", "Given at: is before the desensitization's last step"),
        ("given_at", "2999-01-01T08:00", "Given at: is in the future"),
        ("session_id", "none-such", "Drug: choose a drug this patient was desensitized to"),
    ],
)
def test_a_later_dose_refused_names_the_field_as_its_label_does(
    walker: Walker, ehr: FakeEhr, app: Flask, field: str, value: str, said: str
) -> None:
    """The walk: "given_at: is before ..." named the field by its code, not by its label "Given at"."""
    ehr.load_fixture(PATIENT)
    sid = walker.launch(PATIENT)
    services = app.extensions["fhir_desens"]
    bedside = Bedside(
        record_to=BedsideRecord(services.record_store(), builtin_protocols(), services.now),
        patient=f"Patient/{PATIENT}",
    )
    bedside.now = services.now() - timedelta(days=2)
    bedside.reaction_at_step_11()
    form = {
        "csrf_token": walker.csrf(sid),
        "session_id": bedside.session_id,
        "dose": "400 mg",
        "dose_id": "d0000000-0000-4000-8000-000000000002",
        "given_at": (services.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        field: value,
    }
    response = walker.client.post(f"/s/{sid}/outcome/doses", data=form)
    assert response.status_code == 400
    page = text_of(response.get_data(as_text=True))
    assert said in page, page[:600]
    assert "given_at" not in page and "session_id" not in page


def test_a_form_too_large_for_the_app_says_so_in_words(walker: Walker, ehr: FakeEhr) -> None:
    """Issue 11 "a bare 413": a form beyond the app's size limit gets a page saying what happened and what to do."""
    sid, _ = start_form(walker, ehr)
    form = walker.start_defaults(sid, indication="x" * 100_000)
    response = walker.start(sid, **form)
    assert response.status_code == 413
    text = text_of(response.get_data(as_text=True))
    assert "The form was larger than the app accepts (64 kB), so nothing was saved." in text
    assert "Shorten the longest text" in text and "Traceback" not in text


@pytest.mark.parametrize(
    ("field", "value", "input_id", "said"),
    [
        ("dose", "two grams", "dose-amount", "Dose: 'two grams' is not a quantity"),
        ("given_at", "2999-01-01T08:00", "dose-time", "Given at: is in the future"),
        ("dose", "0 mg", "dose-amount", "Dose: 0 is out of range"),
    ],
)
def test_a_refused_later_dose_shows_the_form_again_as_typed_with_the_message_beside_the_field(
    walker: Walker, ehr: FakeEhr, app: Flask, field: str, value: str, input_id: str, said: str
) -> None:
    """The walk: the refusal was a separate error page and what the nurse typed was lost. Now the patient
    page comes back with the form as it was sent, the message under the field it is about (named by
    aria-describedby, the field focused), and nothing recorded."""
    ehr.load_fixture(PATIENT)
    sid = walker.launch(PATIENT)
    services = app.extensions["fhir_desens"]
    # ceftriaxone: tolerance kept by continued dosing, so the page offers the form (carboplatin's does not)
    draft = dataclasses.replace(
        carboplatin_draft(f"Patient/{PATIENT}"), drug="ceftriaxone", drug_rxnorm=("2193",), target="2 g"
    )
    bedside = Bedside(
        plan=plan_for(draft, builtin_protocols()),
        draft=draft,
        record_to=BedsideRecord(services.record_store(), builtin_protocols(), services.now),
        patient=f"Patient/{PATIENT}",
    )
    bedside.now = services.now() - timedelta(days=2)
    bedside.reaction_at_step_11()
    given = (services.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    form = {
        "csrf_token": walker.csrf(sid),
        "session_id": bedside.session_id,
        "dose": "400 mg",
        "dose_id": "d0000000-0000-4000-8000-000000000003",
        "given_at": given,
        field: value,
    }
    response = walker.client.post(f"/s/{sid}/outcome/doses", data=form)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    message = re.search(rf'<p class="field-error" id="{input_id}-error">(.*?)</p>', html, re.S)
    assert message is not None and text_of(message.group(1)).startswith(said), html[
        html.find("record-dose-heading") - 200 :
    ][:3000]
    [tag] = re.findall(rf'<input id="{input_id}"[^>]*>', html)
    assert 'aria-invalid="true"' in tag and "autofocus" in tag and f"{input_id}-error" in tag
    [amount] = re.findall(r'<input id="dose-amount"[^>]*>', html)
    [when] = re.findall(r'<input id="dose-time"[^>]*>', html)
    assert f'value="{form["dose"]}"' in amount and f'value="{form["given_at"]}"' in when  # as typed
    assert re.search(rf'<option value="{bedside.session_id}" selected>', html)
    assert 'name="dose_id" value="d0000000-0000-4000-8000-000000000003"' in html  # the same entry
    assert "Record a dose given after desensitization" in text_of(html)
    # the answer scrolls to the form: the refusal is read where it was typed
    assert re.search(r'action="/s/[^"]+/outcome/doses#record-dose" id="record-dose"', html)
    assert services.dose_book().doses_for(f"Patient/{PATIENT}") == []
    # corrected, it is recorded; by a user whose name the EHR does not give: said so, not "Practitioner/7"
    fixed = walker.client.post(
        f"/s/{sid}/outcome/doses", data={**form, field: {"dose": "400 mg", "given_at": given}[field]}
    )
    assert fixed.status_code == 303
    patient_page = text_of(walker.client.get(fixed.headers["Location"]).get_data(as_text=True))
    assert "recorded by a user whose name is not readable from the EHR" in patient_page
    assert "Practitioner/7" not in patient_page.split("Signed in as")[0]
