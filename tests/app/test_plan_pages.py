"""The planning pages over HTTP (Flask test client + the in-process fake EHR, charts from fixtures/):
start form, draft, worksheet, protocol choice and editing, allergy match and screening, print pages."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from fhir_desens.errors import ConfigurationError
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.fhir.plandefinition import library_bundle
from fhir_desens.io.formats import write_resource
from fhir_desens.io.json import dumps
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity
from fhir_desens.protocol.report import dose_text
from tests.app.clinician import Clinician
from tests.app.conftest import AppFactory, Launcher, https_client
from tests.app.fake_ehr import FakeEhr
from tests.html import input_value, option_value, selected_text, start_form_values, table_rows, text_of

SVG = "{http://www.w3.org/2000/svg}"
CSS = Path(__file__).resolve().parents[2] / "smart_app" / "static" / "app.css"


class Planner(Clinician):
    """Plays the clinician: launch, open the start form, post it, work on the plan page."""

    def start_form(self, sid: str, query: str = "") -> TestResponse:
        return self.client.get(f"/s/{sid}/plan/new{query}")

    def start(self, sid: str, **fields: str) -> TestResponse:
        form = {"csrf_token": self.csrf(sid), **fields}
        return self.client.post(f"/s/{sid}/plan/new", data=form)

    def start_defaults(self, sid: str, **fields: str) -> dict[str, str]:
        """The start form as pre-filled, with ``fields`` changed (drug given as its option text)."""
        html = self.start_form(sid).get_data(as_text=True)
        values = start_form_values(html)
        if "drug" in fields and not fields["drug"].startswith(("c-", "other")):
            fields["drug"] = option_value(html, "drug", fields["drug"])
        values.update(fields)
        return values

    def create(self, sid: str, **fields: str) -> str:
        """Start a plan; returns the draft id."""
        response = self.start(sid, **self.start_defaults(sid, **fields))
        assert response.status_code == 303, text_of(response.get_data(as_text=True))[:2000]
        location = response.headers["Location"]
        assert re.fullmatch(rf"/s/{sid}/plan/[A-Za-z0-9_-]{{22}}", location), location
        return location.rsplit("/", 1)[1]

    def page(self, sid: str, draft_id: str) -> TestResponse:
        return self.client.get(f"/s/{sid}/plan/{draft_id}")

    def post(self, sid: str, draft_id: str, **fields: str) -> TestResponse:
        return self.client.post(f"/s/{sid}/plan/{draft_id}", data={"csrf_token": self.csrf(sid), **fields})

    def recalculate(self, sid: str, draft_id: str, **fields: str) -> TestResponse:
        html = self.page(sid, draft_id).get_data(as_text=True)
        form = {
            "action": "recalculate",
            "protocol": re.search(  # type: ignore[union-attr]
                r'<select id="protocol".*?<option value="([^"]+)"[^>]*selected', html, re.S
            ).group(1),
        }
        for name in ("final_rate", "bag_volume"):
            if f'id="{name}"' in html:
                form[name] = input_value(html, name)
        for name in ("diluent", "closing"):
            found = re.search(rf'<select id="{name}".*?<option value="([^"]*)"[^>]*selected', html, re.S)
            if found:
                form[name] = found.group(1)
        form.update(fields)
        return self.post(sid, draft_id, **form)

    def draft(self, sid: str, draft_id: str) -> dict[str, Any]:
        return dict(self.store.get("draft", f"{sid}:{draft_id}"))

    def writes(self) -> list[str]:
        """FHIR requests that could change the chart."""
        return [f"{r.method} {r.url}" for r in self.ehr.requests if "/fhir/" in r.url and r.method != "GET"]


@pytest.fixture
def planner(launcher: Launcher, ehr: FakeEhr, app: Flask) -> Planner:
    return Planner(launcher, ehr, app)


def engine_plan(protocol: str, dose: str, **options: Any) -> Any:
    value, unit_code = dose.split()
    return compute_plan(
        PlanRequest(
            protocol=builtin_protocols()[protocol],
            drug="Carboplatin",
            target=Quantity(Decimal(value), unit_code),
            **options,
        )
    )


# --- patient page and start form -------------------------------------------------------------------


def test_patient_page_links_to_planning(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    html = planner.launcher.page(sid).get_data(as_text=True)
    link = re.search(r'<a class="button" href="([^"]+)">Plan a desensitization</a>', html)
    assert link is not None and link.group(1) == f"/s/{sid}/plan/new"


def test_start_form_is_prefilled_from_the_chart(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    response = planner.start_form(sid)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert selected_text(html, "drug") == "Carboplatin"
    assert "Other drug (type below)" in html
    assert input_value(html, "target_dose") == "400" and selected_text(html, "dose_unit") == "mg"
    assert input_value(html, "height_cm") == "165" and input_value(html, "weight_kg") == "62"
    assert "From the chart: 165 cm on 2026-11-18" in text_of(html)
    assert "Body surface area by the Mosteller formula" in text_of(html)
    assert "serous carcinoma of both ovaries" in input_value(html, "indication"), "from the reasonReference"
    for label in (
        "Drug",
        "Other drug",
        "Indication",
        "Target dose",
        "Dose unit",
        "Height (cm)",
        "Weight (kg)",
        "Severity of the index reaction",
    ):
        found = re.search(rf'<label for="([^"]+)">{re.escape(label)}</label>', html)
        assert found is not None, label
        assert f'id="{found.group(1)}"' in html
    for label in (
        "Hypotension or hypoxia during the index reaction",
        "Cardiac disease or beta-blocker",
        "FEV1 below 80%",
    ):
        # yes / no / not known radios in a fieldset named by its legend (RISK-CHART-2)
        assert re.search(
            rf'<fieldset class="answer" id="[a-z0-9_]+"[^>]*>\s*<legend>{re.escape(label)}</legend>', html
        ), label
    grades = [
        text_of(o)
        for o in re.findall(r"<option[^>]*>(.*?)</option>", html.split('id="grade"')[1].split("</select>")[0])
    ]
    assert grades[1:] == [
        "1 - mild (skin, mucosa)",
        "2 - moderate",
        "3 - severe (hypotension, hypoxia, neurological)",
    ]
    assert re.search(r'<button type="submit">Continue</button>', html)
    assert "<script" not in html


def test_start_form_without_chart_access_offers_free_choice(planner: Planner, ehr: FakeEhr) -> None:
    ehr.withhold_scopes = {"patient/MedicationRequest.crus", "patient/Observation.rs"}
    sid = planner.launch("carboplatin-ovarian")
    html = planner.start_form(sid).get_data(as_text=True)
    assert "did not grant access to medication orders, height and weight" in text_of(html)
    assert selected_text(html, "drug") == "Carboplatin"  # still offered from the drug allergy
    assert not [r for r in ehr.requests if "MedicationRequest" in r.url or "Observation" in r.url]


# --- the headline journey ------------------------------------------------------------------------


def test_carboplatin_400_mg_12_steps_at_75_ml_h(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid, grade="2")
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert selected_text(html, "protocol").startswith(
        "IV 12-step, 3-bag rapid desensitization (BWH/Castells)"
    )
    assert "(suggested)" in selected_text(html, "protocol")
    assert len(table_rows(html, "steps")) == 12

    response = planner.recalculate(sid, draft_id, final_rate="75")
    assert response.status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    steps = table_rows(html, "steps")
    assert len(steps) == 12
    # the app plans at the site's pump resolution (default 0.1 mL/h): 1.875 mL/h is programmed as 1.9
    expected = engine_plan(
        "iv-12-step-3-bag", "400 mg", final_rate_ml_h=Decimal(75), pump_resolution_ml_h=Decimal("0.1")
    )
    assert [row[2] for row in steps[:3]] == ["1.9", "4.7", "9.4"]
    assert "Rates as programmed, in steps of 0.1 mL/h" in text_of(html)
    for row, step in zip(steps, expected.steps, strict=True):
        assert row[0].split()[0] == str(step.number)
        assert row[5] == f"{dose_text(step.dose.value)} mg"
        assert row[6] == f"{dose_text(step.cumulative_dose.value)} mg"
    assert steps[-1][2] == "75" and steps[-1][3] == "187" and steps[-1][6] == "400 mg"  # whole minutes
    text = text_of(html)
    assert "Final rate 75 mL/h" in text
    assert "Total time: 352 minutes (5 h 52 min)" in text
    solutions = table_rows(html, "solutions")
    assert [r[1] for r in solutions] == ["0.016 mg/mL", "0.16 mg/mL", "1.588 mg/mL"]
    assert solutions[2][3] == "397 mg"  # display policy: 4 significant figures
    assert "Vital signs every 15 minutes, and every 30 minutes during the final step." in text
    assert "epinephrine 0.3 mg IM" in text
    assert "diphenhydramine 25 mg IV : 20 min before step 1" in text
    assert "<caption>Solutions</caption>" in html and "<caption>Steps</caption>" in html
    assert planner.draft(sid, draft_id)["final_rate_ml_h"] == "75"
    assert '<button type="submit">Sign and send orders</button>' in html
    assert f'action="/s/{sid}/plan/{draft_id}/sign"' in html
    assert planner.writes() == []


def test_clock_times_count_from_now_in_the_server_zone(planner: Planner, ehr: FakeEhr) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    html = planner.page(sid, draft_id).get_data(as_text=True)
    start = datetime.fromtimestamp(ehr.clock()).astimezone()
    steps = table_rows(html, "steps")
    assert steps[0][7].startswith(start.strftime("%H:%M"))
    assert steps[1][7].split()[0] == datetime.fromtimestamp(ehr.clock() + 15 * 60).astimezone().strftime(
        "%H:%M"
    )
    assert (
        f"Clock times if started now ({start.strftime('%Y-%m-%d %H:%M %Z').strip()}; the site's time zone)"
        in text_of(html)
    )


def test_grade_3_suggests_the_16_step_protocol(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid, grade="3")
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert selected_text(html, "protocol").startswith(
        "IV 16-step, 4-bag rapid desensitization for high-risk patients"
    )
    assert "(suggested)" in selected_text(html, "protocol")
    assert "Brown grade 3" in text_of(html)
    assert len(table_rows(html, "steps")) == 16
    assert len(table_rows(html, "solutions")) == 4


def test_any_library_protocol_can_be_chosen(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    assert planner.recalculate(sid, draft_id, protocol="iv-8-step-2-bag").status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert len(table_rows(html, "steps")) == 8
    assert "(suggested)" not in selected_text(html, "protocol")
    assert planner.recalculate(sid, draft_id, protocol="iv-one-solution-rate-escalation").status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert 'id="final_rate"' not in html, "fixed-rate protocols have no final rate to edit"


def test_diluent_closing_and_bag_volume_recompute(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    response = planner.recalculate(
        sid, draft_id, final_rate="75", bag_volume="100", diluent="d5w", closing="truncated-final-step"
    )
    assert response.status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    expected = engine_plan(
        "iv-12-step-3-bag",
        "400 mg",
        final_rate_ml_h=Decimal(75),
        bag_volume_ml=Decimal(100),
        closing=builtin_protocols()["iv-12-step-3-bag"].closing_methods[1],
    )
    steps = table_rows(html, "steps")
    assert len(steps) == len(expected.steps)
    assert steps[-1][6] == "400 mg"
    solutions = table_rows(html, "solutions")
    assert all(row[5] == "5% dextrose (D5W)" for row in solutions)
    assert solutions[2][1] == f"{dose_text(expected.solutions[2].concentration.value)} mg/mL"
    assert selected_text(html, "closing").startswith("Truncated final step")


def test_only_closing_methods_the_page_can_plan_are_offered(planner: Planner) -> None:
    """Remainder-step needs a fixed concentration per bag and fraction-bags a fraction per bag; the page
    has no field for either, so for protocols that do not define them they are not offered, and every
    method that is offered plans."""
    from smart_app.planning.forms import options_for

    for protocol in builtin_protocols().values():
        for method in options_for(protocol).closing:
            plan = compute_plan(
                PlanRequest(
                    protocol=protocol, drug="Carboplatin", target=Quantity(Decimal(400), "mg"), closing=method
                )
            )
            assert plan.closing is method
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    html = planner.page(sid, draft_id).get_data(as_text=True)
    offered = re.findall(
        r'<option value="([^"]*)"', re.search(r'<select id="closing".*?</select>', html, re.S).group(0)
    )  # type: ignore[union-attr]
    assert offered == ["reduced-final-bag", "truncated-final-step"]
    response = planner.recalculate(sid, draft_id, closing="remainder-step")
    assert response.status_code == 400 and "Closing method" in text_of(response.get_data(as_text=True))
    assert planner.draft(sid, draft_id)["closing"] is None
    # a plan signed elsewhere with remainder-step is copied with the protocol's default method instead
    from fhir_desens.course.draft import CopiedSettings, _copied_closing

    protocol = builtin_protocols()["iv-12-step-3-bag"]
    assert _copied_closing(CopiedSettings("rg", closing="remainder-step"), protocol) is None
    assert (
        _copied_closing(CopiedSettings("rg", closing="truncated-final-step"), protocol)
        == "truncated-final-step"
    )


IV_WORDS = ("Drug in the bag", "Volume to be infused", "Rate (mL/h)", "infuse", "Infuse", " bag ", "Bag ")


@pytest.mark.parametrize("patient", ["penicillin-pregnancy", "aspirin-aerd"])
def test_an_oral_plan_reads_in_oral_words_on_every_page(planner: Planner, patient: str) -> None:
    sid = planner.launch(patient)
    draft_id = planner.create(sid)
    for suffix in ("", "/print", "/pharmacy"):
        page = text_of(planner.client.get(f"/s/{sid}/plan/{draft_id}{suffix}").get_data(as_text=True))
        assert "by mouth" in page, suffix
        assert [w for w in IV_WORDS if w in page] == [], suffix
    html = planner.page(sid, draft_id).get_data(as_text=True)
    header = text_of(re.search(r'<table[^>]*id="steps".*?</thead>', html, re.S).group(0))  # type: ignore[union-attr]
    assert "Wait (min)" in header and "Give by mouth" in header and "Rate" not in header
    first = table_rows(html, "steps")[0]
    assert first[3].endswith((" mL", " tablet", " tablets")), first  # what to give, with its unit


def test_insert_and_remove_a_step(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    assert planner.post(sid, draft_id, action="insert", insert_before="12").status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    steps = table_rows(html, "steps")
    assert len(steps) == 13
    assert steps[11][0].startswith("12 inserted")
    assert steps[11][2] == "60", "halfway between 40 and 80 mL/h"
    assert "Remove inserted step 12" in html
    assert planner.draft(sid, draft_id)["insert_before"] == [12]
    assert steps[-1][6] == "400 mg"

    assert planner.post(sid, draft_id, action="insert", insert_before="1").status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert len(table_rows(html, "steps")) == 14
    assert "Remove inserted step 1" in html and "Remove inserted step 13" in html

    assert planner.post(sid, draft_id, action="remove", remove="13").status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert len(table_rows(html, "steps")) == 13
    assert planner.draft(sid, draft_id)["insert_before"] == [1]
    assert planner.post(sid, draft_id, action="remove", remove="1").status_code == 303
    assert len(table_rows(planner.page(sid, draft_id).get_data(as_text=True), "steps")) == 12


def test_a_typed_drug_name_is_escaped_everywhere(planner: Planner) -> None:
    sid = planner.launch("nka")
    name = '<img src=x onerror="alert(1)"> & co'
    draft_id = planner.create(sid, drug="other", other_drug=name)
    for path in ("", "/print", "/pharmacy"):
        html = planner.client.get(f"/s/{sid}/plan/{draft_id}{path}").get_data(as_text=True)
        assert "<img src=x" not in html
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; co" in html or "&lt;img src=x" in html


def test_switching_protocol_drops_inserted_steps(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    planner.post(sid, draft_id, action="insert", insert_before="5")
    assert planner.recalculate(sid, draft_id, protocol="iv-16-step-4-bag").status_code == 303
    draft = planner.draft(sid, draft_id)
    assert draft["protocol_id"] == "iv-16-step-4-bag" and draft["insert_before"] == []


# --- allergy match and screening ---------------------------------------------------------------


def test_matched_allergy_is_shown(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    html = planner.page(sid, planner.create(sid)).get_data(as_text=True)
    section = text_of(html.split('id="allergy-heading"')[1].split("</section>")[0])
    assert "Carboplatin (same drug)" in section
    assert "is not on the allergy list" not in html
    assert "Desensitization is contraindicated" not in html


def test_unlisted_drug_needs_confirmation(planner: Planner) -> None:
    sid = planner.launch("nka")
    draft_id = planner.create(sid)
    html = planner.page(sid, draft_id).get_data(as_text=True)
    warning = re.search(r'<p class="message warning" role="alert">(.*?)</p>', html, re.S)
    assert warning is not None and "is not on the allergy list" in text_of(warning.group(1))
    assert "Oxaliplatin" in text_of(warning.group(1))
    assert (
        '<label for="confirm_unlisted">I confirm desensitization for a drug the allergy list does not record</label>'
        in html
    )
    assert len(table_rows(html, "steps")) == 12, "the worksheet shows before confirmation"
    assert re.search(r"<button type=\"submit\" disabled[^>]*>Sign and send orders</button>", html)
    assert "is not on the allergy list: confirm" in text_of(html)

    refused = planner.post(sid, draft_id, action="confirm-unlisted")
    assert refused.status_code == 400
    assert "I confirm desensitization" in text_of(refused.get_data(as_text=True))
    assert planner.draft(sid, draft_id)["unlisted_confirmed"] is False

    assert planner.post(sid, draft_id, action="confirm-unlisted", confirm_unlisted="yes").status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert "Confirmed: desensitization for a drug the allergy list does not record." in text_of(html)
    assert '<button type="submit">Sign and send orders</button>' in html
    assert planner.draft(sid, draft_id)["unlisted_confirmed"] is True
    assert planner.writes() == []


def test_sjs_patient_is_blocked_until_an_expert_override(planner: Planner) -> None:
    sid = planner.launch("sjs-sulfonamide")
    draft_id = planner.create(sid, target_dose="800", dose_unit="mg")
    html = planner.page(sid, draft_id).get_data(as_text=True)
    block = re.search(r'<div class="message danger contraindication" role="alert">(.*?)</div>', html, re.S)
    assert block is not None
    assert text_of(block.group(1)).startswith("Desensitization is contraindicated")
    assert "Stevens-Johnson syndrome" in text_of(block.group(1))
    assert 'id="steps"' not in html and 'id="worksheet-heading"' not in html
    assert "Sign and send orders" not in html
    assert '<label for="override_reason">Override reason</label>' in html
    assert re.search(r'<button type="submit" class="danger">Override the contraindication</button>', html)

    before = planner.draft(sid, draft_id)
    edit = planner.post(sid, draft_id, action="insert", insert_before="2")
    assert edit.status_code == 400, "no edits while contraindicated"
    assert "desensitization is contraindicated" in text_of(edit.get_data(as_text=True))
    reason = "Sole effective PJP prophylaxis; allergist and transplant team agree after review."
    for meaningless, says in (
        ("because", "is only 7 characters long"),
        ("xxxxxxxxxxxxxxxxxxxxxxxxx", "is mostly one repeated character"),
        ("asdf asdf asdf asdf asdf asdf", "has fewer than 3 different words"),
    ):
        refused = planner.post(sid, draft_id, action="override", override_reason=meaningless)
        assert refused.status_code == 400
        assert f"Override reason: {says}" in text_of(refused.get_data(as_text=True))
    not_allergist = planner.post(sid, draft_id, action="override", override_reason=reason)
    assert not_allergist.status_code == 400, "OVERRIDE-1: the signed-in user is not an allergist"
    assert "only an allergist may override" in text_of(not_allergist.get_data(as_text=True))
    assert planner.draft(sid, draft_id) == before
    assert "Sign and send orders" not in planner.page(sid, draft_id).get_data(as_text=True)
    assert planner.writes() == []


ALLERGIST = {
    "resourceType": "Practitioner",
    "id": "7",
    "name": [{"family": "Okoro", "given": ["Amara"], "prefix": ["Dr."]}],
    "qualification": [{"code": {"text": "Board certification: Allergy and Immunology"}}],
}


def test_an_allergist_overrides_and_the_contraindication_is_named_everywhere(planner: Planner) -> None:
    planner.ehr.add_resource(ALLERGIST)  # the fake EHR's signed-in user is Practitioner/7
    sid = planner.launch("sjs-sulfonamide")
    draft_id = planner.create(sid, target_dose="800", dose_unit="mg")
    reason = "Sole effective PJP prophylaxis; allergist and transplant team agree after review."
    assert planner.post(sid, draft_id, action="override", override_reason=reason).status_code == 303
    draft = planner.draft(sid, draft_id)
    assert draft["override_reason"] == reason
    assert draft["overridden"].startswith("Stevens-Johnson syndrome")
    assert "allergist" in draft["override_authority"]
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert "Contraindication overridden: Stevens-Johnson syndrome" in text_of(html) and reason in text_of(
        html
    )
    assert "Desensitization is contraindicated" in text_of(html), "the contraindication stays visible"
    assert 'id="steps"' in html
    for sheet in ("print", "pharmacy"):
        printed = planner.client.get(f"/s/{sid}/plan/{draft_id}/{sheet}").get_data(as_text=True)
        assert "Contraindication overridden: Stevens-Johnson syndrome" in text_of(printed), sheet
        assert reason in text_of(printed)
    assert planner.writes() == []


def test_read_only_grant_disables_signing_with_the_reason(planner: Planner, ehr: FakeEhr) -> None:
    ehr.withhold_scopes = {"patient/RequestGroup.crus"}
    sid = planner.launch("carboplatin-ovarian")
    html = planner.page(sid, planner.create(sid)).get_data(as_text=True)
    assert re.search(r"<button type=\"submit\" disabled[^>]*>Sign and send orders</button>", html)
    assert "did not grant this app permission to write orders" in text_of(html)
    assert "Open the worksheet" in html


# --- mg/m2 ------------------------------------------------------------------------------------------


def test_dose_per_m2_uses_the_chart_height_and_weight(planner: Planner) -> None:
    sid = planner.launch("paclitaxel-high-risk")
    html = planner.start_form(sid).get_data(as_text=True)
    height, weight = input_value(html, "height_cm"), input_value(html, "weight_kg")
    draft_id = planner.create(sid, target_dose="80", dose_unit="mg/m2")
    draft = planner.draft(sid, draft_id)
    from fhir_desens.protocol.bsa import body_surface_area, rounded_dose_for_bsa

    expected = rounded_dose_for_bsa(
        Quantity(Decimal(80), "mg/m2"), body_surface_area(Decimal(height), Decimal(weight))
    )
    assert draft["target"] == str(expected.dose) and expected.dose.value == expected.dose.value.to_integral()
    assert draft["dose_per_m2"] == "80 mg/m²"
    page = text_of(planner.page(sid, draft_id).get_data(as_text=True))
    assert expected.text in page and "Mosteller formula" in page
    assert f"height {height} cm and weight {weight} kg" in page
    assert f"Target dose {dose_text(expected.dose.value)} mg" in page


def test_a_per_m2_dose_is_checkable_by_calculator_on_the_page_and_worksheet(planner: Planner) -> None:
    """375 mg/m² at 182 cm / 91 kg: BSA 2.1408... is used as 2.14 m², 802.5 mg is rounded to 803 mg before
    planning; the page and the printed worksheet show the calculation (the signed note: test_sign_orders)."""
    sid = planner.launch("rituximab-lymphoma")
    draft_id = planner.create(sid, target_dose="375", dose_unit="mg/m2", height_cm="182", weight_kg="91")
    calculation = "375 mg/m² × 2.14 m² = 802.5 mg → 803 mg (rounded half-up to 1 mg)"
    assert planner.draft(sid, draft_id)["target"] == "803 mg"
    page = text_of(planner.page(sid, draft_id).get_data(as_text=True))
    assert calculation in page and "BSA 2.14 m² by the Mosteller formula" in page
    assert "804.33" not in page and "Rituximab 803 mg" in page
    printed = text_of(planner.client.get(f"/s/{sid}/plan/{draft_id}/print").get_data(as_text=True))
    assert calculation in printed


# --- drafts are scoped to their session ------------------------------------------------------------


# --- drafts are scoped to their session ------------------------------------------------------------


def test_a_draft_of_another_session_is_not_found(planner: Planner) -> None:
    first = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(first)
    second = planner.launch("carboplatin-ovarian")
    assert planner.page(second, draft_id).status_code == 404
    assert planner.client.get(f"/s/{second}/plan/{draft_id}/print").status_code == 404
    assert planner.post(second, draft_id, action="insert", insert_before="3").status_code == 404
    assert planner.draft(first, draft_id)["insert_before"] == []
    assert planner.page(first, "A" * 22).status_code == 404
    assert planner.page(first, "short").status_code == 404


def test_posts_without_the_csrf_token_are_refused(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    defaults = planner.start_defaults(sid)
    assert planner.client.post(f"/s/{sid}/plan/new", data=defaults).status_code == 400
    response = planner.client.post(
        f"/s/{sid}/plan/{draft_id}", data={"action": "insert", "insert_before": "3"}
    )
    assert response.status_code == 400
    forged = {"csrf_token": "x" * 43, "action": "insert", "insert_before": "3"}
    assert planner.client.post(f"/s/{sid}/plan/{draft_id}", data=forged).status_code == 400
    assert planner.draft(sid, draft_id)["insert_before"] == []


# --- print pages, timeline, layout ------------------------------------------------------------------


def test_print_worksheet_has_identifiers_and_signature_lines(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    planner.recalculate(sid, draft_id, final_rate="75")
    page = planner.page(sid, draft_id).get_data(as_text=True)
    assert f'href="/s/{sid}/plan/{draft_id}/print">Open the worksheet</a>' in page
    assert f'href="/s/{sid}/plan/{draft_id}/pharmacy">Open the pharmacy sheet</a>' in page
    # one set of sheet controls: one Print button, one page link and one PDF per sheet
    assert page.count(">Print the worksheet</button>") == 1 and page.count(">Open the worksheet</a>") == 1
    assert page.count(">Print the pharmacy sheet</button>") == 1 and page.count("/pharmacy.pdf") == 1
    assert page.count("/worksheet.pdf") == 1 and "Print worksheet" not in page
    response = planner.client.get(f"/s/{sid}/plan/{draft_id}/print")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    text = text_of(html)
    for needle in (
        "Eleanor",
        "Birth date",
        "MRN MRN-1001",
        "Prescriber",
        "Date and time",
        "https://fhir-desens.org/fhir/PlanDefinition/iv-12-step-3-bag|1.0.0",
        "Drug Carboplatin",
        "Target dose 400 mg",
        "Prescriber signature",
        "Pharmacist check",
        "Nurse check",
    ):
        assert needle in text, needle
    assert len(table_rows(html, "steps")) == 12
    assert "Remove inserted step" not in html and "<form" not in html.split("</nav>", 1)[1]


def test_pharmacy_sheet_lists_what_to_prepare(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    planner.recalculate(sid, draft_id, final_rate="75", diluent="d5w")
    html = planner.client.get(f"/s/{sid}/plan/{draft_id}/pharmacy").get_data(as_text=True)
    rows = table_rows(html, "preparation")
    assert [r[1] for r in rows] == ["4 mg", "40 mg", "397 mg"]
    assert all(r[2] == "5% dextrose (D5W)" and r[3] == "250 mL" for r in rows)
    assert [r[4] for r in rows] == ["0.016 mg/mL", "0.16 mg/mL", "1.588 mg/mL"]
    text = text_of(html)
    assert text.count("Prepared by") == 3 and "MRN MRN-1001" in text
    assert (
        "Pharmacist check" in text
        and "https://fhir-desens.org/fhir/PlanDefinition/iv-12-step-3-bag|1.0.0" in text
    )


def test_timeline_svg_is_well_formed_and_labelled(planner: Planner) -> None:
    sid = planner.launch("carboplatin-ovarian")
    html = planner.page(sid, planner.create(sid)).get_data(as_text=True)
    markup = re.search(r"<svg.*?</svg>", html, re.S)
    assert markup is not None
    svg = ET.fromstring(markup.group(0))  # noqa: S314 - the app's own markup, no entities
    assert svg.tag == f"{SVG}svg" and svg.get("role") == "img"
    title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
    assert title is not None and desc is not None
    assert svg.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert "Carboplatin 400 mg" in (title.text or "")
    assert "12 steps" in (desc.text or "") and "400 mg" in (desc.text or "")
    assert 'aria-labelledby="timeline-heading"' in html


def test_pages_fit_a_1024_px_frame() -> None:
    css = CSS.read_text("utf-8")
    widths = [int(n) for n in re.findall(r"(?:^|[;{\s])(?:min-|max-)?width:\s*(\d+)px", css)]
    assert widths and max(widths) <= 1000
    assert "@media print" in css and "@page" in css


# --- imported protocol libraries -----------------------------------------------------------------


@pytest.fixture
def library_file(tmp_path: Path) -> Path:
    imported = replace(
        builtin_protocols()["iv-12-step-3-bag"],
        id="hospital-12-step",
        title="Hospital 12-step (imported)",
        url=None,
        version="2.0.0",
    )
    path = tmp_path / "library.json"
    path.write_bytes(write_resource(library_bundle([imported]), "json"))
    return path


def test_imported_protocols_are_offered(make_app: AppFactory, ehr: FakeEhr, library_file: Path) -> None:
    app = make_app(PROTOCOL_LIBRARY=str(library_file))
    planner = Planner(Launcher(https_client(app), ehr), ehr, app)
    sid = planner.launch("carboplatin-ovarian")
    draft_id = planner.create(sid)
    assert planner.recalculate(sid, draft_id, protocol="hospital-12-step").status_code == 303
    html = planner.page(sid, draft_id).get_data(as_text=True)
    assert selected_text(html, "protocol").startswith("Hospital 12-step (imported)")
    assert "hospital-12-step</code> 2.0.0" in html


def test_a_bad_library_stops_the_app(make_app: AppFactory, tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [')
    with pytest.raises(ConfigurationError, match=r"FHIR_DESENS_PROTOCOL_LIBRARY: .*broken\.json"):
        make_app(PROTOCOL_LIBRARY=str(bad))
    empty = tmp_path / "empty.json"
    empty.write_text('{"resourceType": "Bundle", "type": "collection", "entry": []}')
    with pytest.raises(ConfigurationError, match=r"empty\.json: no protocol"):
        make_app(PROTOCOL_LIBRARY=str(empty))
    with pytest.raises(ConfigurationError, match="does not exist"):
        make_app(PROTOCOL_LIBRARY=str(tmp_path / "missing.json"))


def test_an_imported_id_may_not_shadow_a_built_in(make_app: AppFactory, tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_bytes(write_resource(library_bundle([builtin_protocols()["iv-8-step-2-bag"]]), "json"))
    with pytest.raises(ConfigurationError, match="already in the library"):
        make_app(PROTOCOL_LIBRARY=str(path))


# --- copy a signed plan ------------------------------------------------------------------------------


def _sign_in_fake_ehr(ehr: FakeEhr, patient: str, *, parameters: bool = True, **options: Any) -> str:
    """Store the resources of a signed plan (as $apply writes them) in the fake EHR; the RequestGroup id.

    ``parameters=False`` drops the recorded plan parameters (a plan signed by an older version).
    """
    plan = engine_plan("iv-12-step-3-bag", "400 mg", **options)
    rxnorm = {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "40048"}
    bundle = apply_plan(plan, ApplyContext(patient=f"Patient/{patient}", drug_codes=(rxnorm,)))
    ids = {e["fullUrl"]: f"{e['resource']['resourceType']}/{uuid.uuid4().hex[:12]}" for e in bundle["entry"]}
    for entry in bundle["entry"]:
        text = dumps(entry["resource"])  # Decimals as JSON numbers
        for urn, ref in ids.items():
            text = text.replace(urn, ref)
        resource = json.loads(text)
        resource["id"] = ids[entry["fullUrl"]].split("/")[1]
        if resource["resourceType"] == "RequestGroup" and not parameters:
            resource["extension"] = [e for e in resource["extension"] if "plan-parameters" not in e["url"]]
        if resource["resourceType"] in ("RequestGroup", "MedicationRequest", "Medication"):
            ehr.add_resource(resource)
    return next(ref.split("/")[1] for ref in ids.values() if ref.startswith("RequestGroup/"))


def test_copy_this_plan_carries_the_protocol_settings(planner: Planner, ehr: FakeEhr) -> None:
    sid = planner.launch("carboplatin-ovarian")
    group = _sign_in_fake_ehr(
        ehr,
        "carboplatin-ovarian",
        final_rate_ml_h=Decimal(75),
        bag_volume_ml=Decimal(100),
        insert_before=(12,),
    )
    html = planner.start_form(sid, f"?copy={group}").get_data(as_text=True)
    assert f"(signed plan {group})" in text_of(html)
    # the date it was signed, written for people in the site's zone ("2 Dec 2026 19:50 CET")
    assert re.search(r"Copying the plan signed on \d{1,2} [A-Z][a-z]{2} 20\d\d \d\d:\d\d", text_of(html))
    assert "Everything it recorded is carried over" in text_of(html)
    assert "signed without a record" not in text_of(html)
    assert f'<input type="hidden" name="copy" value="{group}">' in html
    assert selected_text(html, "drug") == "Carboplatin"
    assert input_value(html, "target_dose") == "400", "the current order's dose"
    draft_id = planner.create(sid, copy=group)
    draft = planner.draft(sid, draft_id)
    assert draft["copied_from"] == group
    assert (draft["protocol_id"], draft["final_rate_ml_h"], draft["bag_volume_ml"]) == (
        "iv-12-step-3-bag",
        "75",
        "100",
    )
    assert draft["insert_before"] == [12]
    page = planner.page(sid, draft_id).get_data(as_text=True)
    assert "Copied from signed plan" in text_of(page)
    assert len(table_rows(page, "steps")) == 13


def test_copy_of_a_plan_without_recorded_parameters(planner: Planner, ehr: FakeEhr) -> None:
    """Read back from the RequestGroup and its orders: protocol, closing, final rate, bag volume."""
    sid = planner.launch("carboplatin-ovarian")
    group = _sign_in_fake_ehr(
        ehr, "carboplatin-ovarian", parameters=False, final_rate_ml_h=Decimal(70), bag_volume_ml=Decimal(200)
    )
    form = text_of(planner.start_form(sid, f"?copy={group}").get_data(as_text=True))
    assert "signed without a record of its settings" in form and "could not be read back" in form
    draft = planner.draft(sid, planner.create(sid, copy=group))
    assert (draft["protocol_id"], draft["final_rate_ml_h"], draft["bag_volume_ml"], draft["closing"]) == (
        "iv-12-step-3-bag",
        "70",
        "200",
        "reduced-final-bag",
    )


def test_copying_another_patients_plan_is_not_found(planner: Planner, ehr: FakeEhr) -> None:
    ehr.load_fixture("nka")
    group = _sign_in_fake_ehr(ehr, "nka")
    sid = planner.launch("carboplatin-ovarian")
    assert planner.start_form(sid, f"?copy={group}").status_code == 404
    assert planner.start_form(sid, "?copy=not%20an%20id").status_code == 400
