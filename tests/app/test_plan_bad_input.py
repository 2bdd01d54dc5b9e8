"""Every form of the planning pages refuses bad input: HTTP 400 (422 for a safety invariant), a message
naming the field by its label and what is accepted, the user's values kept, the draft unchanged and
nothing written to the chart."""

from __future__ import annotations

import re
from typing import Any

import pytest

from fhir_desens.course import draft as course_draft
from fhir_desens.errors import SafetyViolation
from fhir_desens.protocol import calculate
from smart_app.planning import drafts
from tests.app.planner import Planner
from tests.html import input_value, table_rows, text_of


def alert_text(html: str) -> str:
    found = re.search(r'<div class="message error error-summary" role="alert"[^>]*>(.*?)</div>', html, re.S)
    assert found is not None, "no error summary"
    return text_of(found.group(1))


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every draft saved during the test."""
    calls: list[Any] = []
    original = drafts.save_draft

    def spy(sid: str, draft: Any) -> None:
        calls.append(draft)
        original(sid, draft)

    monkeypatch.setattr(drafts, "save_draft", spy)
    return calls


# --- the start form --------------------------------------------------------------------------------

START_CASES = [
    ({"target_dose": ""}, "Target dose: is empty"),
    ({"target_dose": "-5"}, "Target dose: -5 is out of range (accepted: a number above 0"),
    ({"target_dose": "0"}, "Target dose: 0 is out of range"),
    ({"target_dose": "abc"}, "Target dose: 'abc' is not a number"),
    ({"target_dose": "1,5"}, "Target dose: '1,5' contains a comma"),
    ({"target_dose": "NaN"}, "Target dose"),
    ({"target_dose": "Infinity"}, "Target dose"),
    ({"target_dose": "1" * 50}, "Target dose: 50 characters is too long for a number"),
    ({"target_dose": "10000000"}, "Target dose: 10000000 mg is not a plausible single dose"),  # 10 kg
    ({"target_dose": "10", "dose_unit": "kg"}, "Dose unit: is not one of the offered choices"),
    ({"dose_unit": ""}, "Dose unit"),
    ({"drug": "c-0000000000000000"}, "Drug: is not one of the offered choices"),
    ({"drug": "<script>alert(1)</script>"}, "Drug: is not one of the offered choices"),
    ({"drug": "other", "other_drug": ""}, "Other drug: is required"),
    ({"drug": "other", "other_drug": "x" * 201}, "Other drug: 201 characters is too long"),
    ({"indication": "y" * 501}, "Indication: 501 characters is too long"),
    ({"grade": "4"}, "Severity of the index reaction: is not one of the offered choices"),
    (
        {"hypotension_or_hypoxia": "maybe"},
        "Hypotension or hypoxia during the index reaction: 'maybe' is not an answer",
    ),
    ({"dose_unit": "mg/m2", "target_dose": "80", "height_cm": ""}, "Height (cm): is empty"),
    (
        {"dose_unit": "mg/m2", "target_dose": "80", "height_cm": "10"},
        "Height (cm): 10 cm is not a plausible height",
    ),
    (
        {"dose_unit": "mg/m2", "target_dose": "80", "weight_kg": "1000"},
        "Weight (kg): 1000 kg is not a plausible weight",
    ),
    ({"dose_unit": "mg/m2", "target_dose": "80", "weight_kg": "-62"}, "Weight (kg): -62 kg is out of range"),
    ({"copy": "not an id!"}, "Copy of a signed plan: is not a FHIR resource id"),
]


@pytest.mark.parametrize(
    ("fields", "message"),
    START_CASES,
    ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(START_CASES)],
)
def test_start_form_refuses(planner: Planner, saved: list[Any], fields: dict[str, str], message: str) -> None:
    sid = planner.launch("carboplatin-ovarian")
    form = planner.start_defaults(sid)
    form.update(fields)
    response = planner.start(sid, **form)
    assert response.status_code == 400
    assert "Location" not in response.headers
    html = response.get_data(as_text=True)
    assert message in alert_text(html)
    assert saved == [] and planner.writes() == []
    field = next(iter(fields))
    if field in ("target_dose", "indication", "other_drug", "height_cm", "weight_kg") and fields[field]:
        assert input_value(html, field) == fields[field], "the user's value is kept"
    assert 'aria-invalid="true"' in html or field in ("copy", "drug")


def test_the_start_form_reports_every_problem_at_once(planner: Planner, saved: list[Any]) -> None:
    sid = planner.launch("carboplatin-ovarian")
    form = planner.start_defaults(sid, target_dose="-1", grade="9", indication="z" * 600)
    text = alert_text(planner.start(sid, **form).get_data(as_text=True))
    assert "Target dose" in text and "Severity of the index reaction" in text and "Indication" in text
    assert saved == []


def test_a_fixed_dose_oral_protocol_refuses_a_target_of_another_kind(
    planner: Planner, saved: list[Any]
) -> None:
    sid = planner.launch("penicillin-pregnancy")
    # The order is intramuscular penicillin G benzathine; the oral penicillin protocol doses in units.
    response = planner.start(sid, **planner.start_defaults(sid, target_dose="2", dose_unit="g"))
    assert response.status_code == 400
    assert "Protocol: protocol penicillin-v-oral-wendel gives fixed doses in activity" in alert_text(
        response.get_data(as_text=True)
    )
    assert saved == []


# --- the plan page ----------------------------------------------------------------------------------


@pytest.fixture
def carboplatin(planner: Planner) -> tuple[str, str]:
    sid = planner.launch("carboplatin-ovarian")
    return sid, planner.create(sid)


PLAN_CASES = [
    (
        {"action": "recalculate", "protocol": "no-such-protocol"},
        "Protocol: is not one of the offered choices",
    ),
    ({"action": "recalculate", "protocol": ""}, "Protocol: is not one of the offered choices"),
    ({"action": "recalculate", "final_rate": ""}, "Final rate (mL/h): is empty"),
    ({"action": "recalculate", "final_rate": "-1"}, "Final rate (mL/h): -1 mL/h is out of range"),
    ({"action": "recalculate", "final_rate": "0"}, "Final rate (mL/h): 0 mL/h is out of range"),
    ({"action": "recalculate", "final_rate": "abc"}, "Final rate (mL/h): 'abc' is not a number"),
    ({"action": "recalculate", "final_rate": "5000"}, "Final rate (mL/h): 5000 mL/h is out of range"),
    ({"action": "recalculate", "bag_volume": ""}, "Bag volume (mL): is empty"),
    ({"action": "recalculate", "bag_volume": "0"}, "Bag volume (mL): 0 mL is out of range"),
    ({"action": "recalculate", "bag_volume": "-250"}, "Bag volume (mL): -250 mL is out of range"),
    ({"action": "recalculate", "bag_volume": "5000"}, "Bag volume (mL): 5000 mL is out of range"),
    ({"action": "recalculate", "bag_volume": "1e3000"}, "Bag volume (mL)"),
    ({"action": "recalculate", "diluent": "water"}, "Diluent: is not one of the offered choices"),
    ({"action": "recalculate", "closing": "magic"}, "Closing method: is not one of the offered choices"),
    ({"action": "insert", "insert_before": ""}, "Insert a step before step: is empty"),
    (
        {"action": "insert", "insert_before": "0"},
        "Insert a step before step: there is no step 0 in this plan",
    ),
    (
        {"action": "insert", "insert_before": "13"},
        "Insert a step before step: there is no step 13 in this plan",
    ),
    ({"action": "insert", "insert_before": "-1"}, "Insert a step before step: '-1' is not a step number"),
    ({"action": "insert", "insert_before": "2.5"}, "Insert a step before step: '2.5' is not a step number"),
    ({"action": "insert", "insert_before": "abc"}, "Insert a step before step: 'abc' is not a step number"),
    (
        {"action": "insert", "insert_before": "99999"},
        "Insert a step before step: '99999' is not a step number",
    ),
    ({"action": "remove", "remove": "5"}, "Remove inserted step: step 5 is not an inserted step"),
    ({"action": "remove", "remove": "99"}, "Remove inserted step: there is no step 99 in this plan"),
    ({"action": "remove", "remove": ""}, "Remove inserted step: is empty"),
    ({"action": "delete-everything"}, "Action: unknown action"),
    ({"action": ""}, "Action: unknown action"),
    (
        {"action": "confirm-unlisted", "confirm_unlisted": "yes"},
        "the drug is on the allergy list; there is nothing to confirm",
    ),
    ({"action": "override", "override_reason": "x" * 40}, "Override reason: no contraindication was found"),
]


@pytest.mark.parametrize(
    ("fields", "message"), PLAN_CASES, ids=[f"{i}-{m.split(':')[0]}" for i, (_, m) in enumerate(PLAN_CASES)]
)
def test_plan_page_refuses(
    planner: Planner, carboplatin: tuple[str, str], saved: list[Any], fields: dict[str, str], message: str
) -> None:
    sid, draft_id = carboplatin
    before = planner.draft(sid, draft_id)
    if fields["action"] == "recalculate":
        response = planner.recalculate(sid, draft_id, **{k: v for k, v in fields.items() if k != "action"})
    else:
        response = planner.post(sid, draft_id, **fields)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in alert_text(html)
    assert "The plan below is unchanged." in alert_text(html)
    assert planner.draft(sid, draft_id) == before
    assert saved == [] and planner.writes() == []
    assert len(table_rows(html, "steps")) == 12, "the stored plan is still shown"
    if fields["action"] == "recalculate" and "final_rate" in fields:
        assert input_value(html, "final_rate") == fields["final_rate"], "the user's value is kept"


def test_a_safety_violation_is_refused_with_422(
    planner: Planner, carboplatin: tuple[str, str], saved: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sid, draft_id = carboplatin
    before = planner.draft(sid, draft_id)
    original = calculate.compute_plan

    def unsafe_at_70(request: calculate.PlanRequest) -> calculate.Plan:
        if request.final_rate_ml_h == 70:
            raise SafetyViolation("INV-02", "step 12: cumulative 400.1 exceeds the target 400")
        return original(request)

    monkeypatch.setattr(course_draft, "compute_plan", unsafe_at_70)
    response = planner.recalculate(sid, draft_id, final_rate="70")
    assert response.status_code == 422
    text = alert_text(response.get_data(as_text=True))
    assert "unsafe plan" in text and "exceeds the target 400" in text
    assert "INV-" not in text  # invariant ids go to the log, not to people
    assert planner.draft(sid, draft_id) == before and saved == []


def test_a_bag_too_small_for_its_steps_is_refused_by_the_invariants(
    planner: Planner, carboplatin: tuple[str, str], saved: list[Any]
) -> None:
    sid, draft_id = carboplatin
    before = planner.draft(sid, draft_id)
    response = planner.recalculate(sid, draft_id, bag_volume="2", final_rate="900")
    assert response.status_code == 422
    text = alert_text(response.get_data(as_text=True))
    assert text.startswith("The change was not made Bag volume (mL): this change would make an unsafe plan")
    assert "Solution 1 (2 mL) is too small: step 1 needs 5.6 mL" in text and "INV-" not in text
    assert planner.draft(sid, draft_id) == before and saved == [] and planner.writes() == []


def test_removing_a_step_that_is_no_longer_inserted(planner: Planner, carboplatin: tuple[str, str]) -> None:
    """A stale page (the insertion removed in another tab) cannot remove a protocol step."""
    sid, draft_id = carboplatin
    planner.post(sid, draft_id, action="insert", insert_before="4")
    assert planner.post(sid, draft_id, action="remove", remove="4").status_code == 303
    stale = planner.post(sid, draft_id, action="remove", remove="4")
    assert stale.status_code == 400
    assert planner.draft(sid, draft_id)["insert_before"] == []


def test_inserting_twice_before_the_same_step(planner: Planner, carboplatin: tuple[str, str]) -> None:
    sid, draft_id = carboplatin
    assert planner.post(sid, draft_id, action="insert", insert_before="6").status_code == 303
    again = planner.post(sid, draft_id, action="insert", insert_before="7")  # step 6 is now step 7
    assert again.status_code == 400
    assert "a step is already inserted before step 7" in alert_text(again.get_data(as_text=True))
    inserted = planner.post(sid, draft_id, action="insert", insert_before="6")
    assert inserted.status_code == 400
    assert "step 6 is an inserted step" in alert_text(inserted.get_data(as_text=True))


def test_override_reason_must_be_long_enough(planner: Planner, saved: list[Any]) -> None:
    sid = planner.launch("sjs-sulfonamide")
    draft_id = planner.create(sid, target_dose="800", dose_unit="mg")
    saved.clear()
    for reason, message in (
        ("", "Override reason: is empty"),
        ("too short, really", "is only 17 characters"),
    ):
        response = planner.post(sid, draft_id, action="override", override_reason=reason)
        assert response.status_code == 400
        assert message in alert_text(response.get_data(as_text=True))
    assert saved == [] and planner.draft(sid, draft_id)["override_reason"] is None


# --- issue 11: tampered numbers and spoofed text never reach a draft ------------------------------

TAMPERED_NUMBERS = ["1e-400", "1e-30", "1e300", "NaN", "Infinity", "1" * 50]
START_NUMBER_FIELDS = {"target_dose": "Target dose", "height_cm": "Height (cm)", "weight_kg": "Weight (kg)"}


@pytest.mark.parametrize("value", TAMPERED_NUMBERS)
@pytest.mark.parametrize("field", list(START_NUMBER_FIELDS))
def test_tampered_form_numbers_are_refused_on_the_start_form(
    planner: Planner, saved: list[Any], field: str, value: str
) -> None:
    sid = planner.launch("carboplatin-ovarian")
    form = planner.start_defaults(sid, dose_unit="mg/m2", target_dose="80")
    form[field] = value
    response = planner.start(sid, **form)
    assert response.status_code == 400
    text = alert_text(response.get_data(as_text=True))
    assert f"{START_NUMBER_FIELDS[field]}: " in text and "accepted: " in text
    assert len(text) < 400, "the refusal does not echo hundreds of digits"
    assert saved == [] and planner.writes() == []


@pytest.mark.parametrize("value", TAMPERED_NUMBERS)
@pytest.mark.parametrize(
    ("field", "label"), [("final_rate", "Final rate (mL/h)"), ("bag_volume", "Bag volume (mL)")]
)
def test_tampered_form_numbers_are_refused_on_the_plan_page_and_the_draft_still_opens(
    planner: Planner, carboplatin: tuple[str, str], saved: list[Any], field: str, label: str, value: str
) -> None:
    sid, draft_id = carboplatin
    before = planner.draft(sid, draft_id)
    response = planner.recalculate(sid, draft_id, **{field: value})
    assert response.status_code == 400
    text = alert_text(response.get_data(as_text=True))
    assert f"{label}: " in text and "accepted: " in text
    assert planner.draft(sid, draft_id) == before and saved == []
    assert planner.page(sid, draft_id).status_code == 200


SPOOFED_TEXT = {
    "right-to-left override": "\u202enillicinep",
    "zero-width space": "penic\u200billin",
    "zero-width joiner": "carbo\u200dplatin",
    "byte order mark": "\ufeffcarboplatin",
    "control character": "carbo\x07platin",
}


@pytest.mark.parametrize("text", SPOOFED_TEXT.values(), ids=list(SPOOFED_TEXT))
@pytest.mark.parametrize(("field", "label"), [("other_drug", "Other drug"), ("indication", "Indication")])
def test_spoofed_names_are_refused_in_typed_text(
    planner: Planner, saved: list[Any], field: str, label: str, text: str
) -> None:
    """Issue 11 "Spoofed names": what the clinician reads is what is checked, so text that would be shown
    reversed or with hidden characters is refused with the field named."""
    sid = planner.launch("carboplatin-ovarian")
    form = planner.start_defaults(sid, drug="other", other_drug="carboplatin", accept_name="yes")
    form[field] = text
    response = planner.start(sid, **form)
    assert response.status_code == 400
    message = alert_text(response.get_data(as_text=True))
    assert f"{label}: contains invisible, direction-changing or control characters (U+" in message
    assert saved == [] and planner.writes() == []


def test_a_spoofed_override_reason_is_refused(planner: Planner, saved: list[Any]) -> None:
    sid = planner.launch("sjs-sulfonamide")
    draft_id = planner.create(sid, target_dose="800", dose_unit="mg")
    saved.clear()
    reason = "Allergist agreed: no alternative \u202eexists for this infection, benefit outweighs risk"
    response = planner.post(sid, draft_id, action="override", override_reason=reason)
    assert response.status_code == 400
    assert "Override reason: contains invisible, direction-changing" in alert_text(
        response.get_data(as_text=True)
    )
    assert saved == [] and planner.draft(sid, draft_id)["override_reason"] is None
