"""The planning pages over HTTP (Flask test client + the in-process fake EHR, charts from fixtures/):
patient page and start form, the worksheet and its editing, mg/m2, drafts scoped to their session."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import pytest

from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.display import moment_text
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity
from fhir_desens.protocol.report import dose_text
from tests.app.fake_ehr import FakeEhr
from tests.app.planner import Planner, engine_plan
from tests.html import input_value, selected_text, table_rows, text_of

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
    assert "From the chart: 165 cm on 18 Nov 2026" in text_of(html)
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
    assert f"Clock times if started now ({moment_text(start)}; the site's time zone)" in text_of(html)


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
