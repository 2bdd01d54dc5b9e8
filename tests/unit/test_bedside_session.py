"""The bedside session domain: a whole session, reactions and re-plans, and every refusal naming its field."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_desens.course.draft import plan_for
from fhir_desens.errors import ConflictError, InputError
from fhir_desens.protocol.library import builtin_protocols
from tests.bedside_session import ALLERGIST, VITALS, Bedside, carboplatin_draft


def test_a_whole_session_with_a_reaction_at_step_11_reaches_the_target_exactly() -> None:
    bedside = Bedside()
    bedside.reaction_at_step_11()
    state = bedside.state
    assert state.phase == "completed"
    assert state.delivered == Decimal(400)
    [reaction] = state.reactions
    assert reaction.row.number == 11 and reaction.minutes_into_step == 6
    # 6 minutes at 40 mL/h of 1.587408 mg/mL: 4 mL, 6.349632 mg on top of steps 1-10
    assert reaction.volume_so_far == Decimal(4)
    assert reaction.dose_so_far == Decimal("15.0535600000") + Decimal("6.3496320")
    statuses = [s.status for s in state.segments]
    assert statuses.count("stopped") == 1 and statuses[10] == "stopped"
    assert [s.row.step.protocol_step for s in state.segments[11:]] == [10, 11, 12]
    assert state.rows[11].label == "Step 10 again (stepped back after a reaction)"
    running = Decimal(0)
    for segment in state.segments:
        running += segment.dose
        assert segment.cumulative == running
    assert state.completion is not None and state.completion["next_dose"] == "re-desensitize"


def test_resume_options_come_from_the_engine_and_never_exceed_the_target() -> None:
    bedside = Bedside()
    bedside.start()
    bedside.mild_reaction_during(11, 6)
    options = bedside.state.resume_options()
    assert set(options) >= {"resume-same-step", "back-one-step", "back-two-steps", "stop"}
    for option, choice in options.items():
        assert not isinstance(choice, str), option
        assert choice.total <= Decimal(400)
        if option != "stop":
            assert choice.reaches_target
    back_two = options["back-two-steps"]
    assert not isinstance(back_two, str)
    assert not any("Runs from bag" in n for n in back_two.notes)  # steps 9-10 are bag 3 too
    stop = options["stop"]
    assert not isinstance(stop, str) and stop.rows == [] and not stop.reaches_target


def test_stepping_back_into_an_earlier_bag_says_to_keep_it() -> None:
    bedside = Bedside()
    bedside.start()
    bedside.mild_reaction_during(9, 5)
    choice = bedside.state.resume_options()["back-one-step"]
    assert not isinstance(choice, str)
    assert choice.rows[0].solution == 2
    assert any("Runs from bag 2 again" in note and "Keep every bag" in note for note in choice.notes)


def test_a_longer_step_is_taken_into_account_when_resuming() -> None:
    """Step 10 ran 3 minutes over: the re-plan ends exactly on the target all the same."""
    bedside = Bedside()
    bedside.start()
    for row in range(1, 10):
        bedside.run_row(row)
    bedside.run_row(10, 18)
    bedside.run_row(11, 4, stop=False)
    bedside.record("reaction", symptoms=["itching"], grade="mild", phenotype="type-i")
    state = bedside.state
    assert state.delivered > Decimal("15.0535600000") + Decimal("4") * Decimal("1.587408") * Decimal(
        "40"
    ) / 60 / Decimal("1.587408") * Decimal("0")  # ran longer than planned
    for option in ("resume-same-step", "back-one-step"):
        choice = state.resume_options()[option]
        assert not isinstance(choice, str)
        assert choice.total == Decimal(400)


def test_moderate_reaction_needs_the_allergist_to_resume() -> None:
    bedside = Bedside()
    bedside.start()
    bedside.run_row(1)
    bedside.run_row(2, 5, stop=False)
    bedside.record("reaction", symptoms=["wheezing"], grade="moderate", phenotype="type-i")
    bedside.advance(10)
    bedside.record("resolved")
    with pytest.raises(InputError) as refused:
        bedside.record("resume", option="resume-same-step")
    assert refused.value.field == "allergist"
    bedside.record("resume", author=ALLERGIST, option="resume-same-step", allergist="Dr A. Allergist")
    assert bedside.state.phase == "between-steps"


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        ("vitals", {**VITALS, "heart_rate": "400"}, "heart_rate"),
        ("vitals", {**VITALS, "diastolic": "130"}, "diastolic"),
        ("vitals", {**VITALS, "spo2": ""}, "spo2"),
        ("step-start", {"row": 1, "rate_ml_h": "50"}, "rate_ml_h"),
        ("step-start", {"row": 99}, "row"),
        ("reaction", {"symptoms": ["itching"], "grade": "terrible", "phenotype": "type-i"}, "grade"),
        ("checklist", {"item": "coffee"}, "item"),
    ],
)
def test_bad_input_is_refused_with_the_field_named(kind: str, data: dict[str, object], field: str) -> None:
    bedside = Bedside()
    bedside.start()
    if kind == "reaction":
        bedside.run_row(1, 5, stop=False)
    with pytest.raises(InputError) as refused:
        bedside.record(kind, **data)
    assert refused.value.field == field


def test_times_out_of_order_are_refused() -> None:
    bedside = Bedside()
    bedside.start()
    bedside.record("step-start", row=1)
    with pytest.raises(InputError) as refused:
        bedside.record("step-stop", row=1, at=(bedside.now - timedelta(minutes=1)).isoformat())
    assert refused.value.field == "at"
    with pytest.raises(InputError, match="future"):
        bedside.record("step-stop", row=1, at=(bedside.now + timedelta(hours=1)).isoformat())


def test_completing_short_of_the_target_says_how_much_was_given_as_the_flowsheet_does() -> None:
    """The refusal wrote the exact record ("0.005866666666666666666666666666666666666666666666667 of 400
    mg"): now each amount by the display policy, with its unit."""
    bedside = Bedside()
    bedside.start()
    bedside.advance(20)
    bedside.run_row(1, 11)  # stopped after 11 of 15 minutes
    bedside.advance(30)
    bedside.record("vitals", **VITALS)
    with pytest.raises(InputError) as refused:
        bedside.record(
            "complete", outcome="completed", observation_end=bedside.at(), next_dose="re-desensitize"
        )
    assert refused.value.field == "outcome"
    assert refused.value.problem == "only 0.005867 mg of 400 mg was given"


def test_a_stop_time_that_would_exceed_the_target_is_refused() -> None:
    bedside = Bedside()
    bedside.start()
    for row in range(1, 12):
        bedside.run_row(row)
    bedside.record("step-start", row=12)
    bedside.advance(200)  # the last step needs 174.375 min: the pump stopped at its volume
    with pytest.raises(InputError) as refused:
        bedside.record("step-stop", row=12, volume_ml="240")
    assert refused.value.field == "volume_ml" and "above the target" in str(refused.value)
    bedside.record("step-stop", row=12)
    assert bedside.state.delivered == Decimal(400)


def test_the_checklist_must_be_complete_before_step_1() -> None:
    bedside = Bedside()
    bedside.record("session-start", patient="Patient/p1")
    bedside.record("checklist", item="consent")
    with pytest.raises(InputError) as refused:
        bedside.record("step-start", row=1)
    assert refused.value.field == "checklist"
    assert "IV access" in str(refused.value) and "baseline vital signs" in str(refused.value)
    assert "iv-access" not in str(refused.value)  # the nurse reads words, not the record's codes


def test_the_last_step_after_a_step_back_in_the_16_step_protocol_can_be_stopped() -> None:
    """Walked at the bedside: after a reaction at step 11 of the 16-step protocol and one step back, the
    pump stopped at its volume and "Stop step 16" was refused ("would make the total
    400.00000000000000000000000000000000000000000000001 mg"): remaining / concentration × concentration
    missed the remainder by 1e-47. The pump's last volume now gives exactly what remained."""
    draft = dataclasses.replace(carboplatin_draft(), protocol_id="iv-16-step-4-bag")
    bedside = Bedside(plan=plan_for(draft, builtin_protocols()), draft=draft)
    bedside.start(step_requests={n: f"MedicationRequest/mr{n}" for n in range(1, 17)})
    bedside.advance(20)
    bedside.mild_reaction_during(11, 6)
    bedside.advance(20)
    bedside.record("resolved")
    bedside.record("resume", option="back-one-step")
    for row in bedside.state.rows[11:]:
        bedside.run_row(row.number)
    assert bedside.state.delivered == Decimal(400) and bedside.state.phase == "observation"
    # a typed pump volume above what remained is refused, saying by how much (not with 50 digits)
    running = Bedside(bedside.plan, bedside.session_id, bedside.now, bedside.entries[:-2], draft=draft)
    with pytest.raises(InputError) as refused:
        running.record("step-stop", row=bedside.state.rows[-1].number, volume_ml="260")
    assert "above the target 400 mg" in str(refused.value) and "0000" not in str(refused.value)


def test_two_screens_cannot_start_the_same_step_twice() -> None:
    bedside = Bedside()
    bedside.start()
    bedside.record("step-start", row=1)
    with pytest.raises(ConflictError):
        bedside.record("step-start", row=1)


def test_corrections_void_an_entry_without_changing_it() -> None:
    bedside = Bedside()
    bedside.start()
    wrong = bedside.record("vitals", **{**VITALS, "heart_rate": "150"})
    bedside.record("entered-in-error", target=wrong.entry_id, reason="typed the wrong patient's value")
    state = bedside.state
    assert wrong.entry_id in state.voided
    assert all(v.entry_id != wrong.entry_id for v in state.vitals)
    assert any(e.entry_id == wrong.entry_id for e in bedside.entries)  # still in the log


def test_the_baseline_cannot_be_voided_once_step_1_ran_on_it() -> None:
    bedside = Bedside()
    bedside.start()
    baseline = bedside.state.vitals[0].entry_id
    bedside.run_row(1)
    with pytest.raises(InputError) as refused:
        bedside.record("entered-in-error", target=baseline, reason="wrong")
    assert refused.value.field == "target"


@settings(max_examples=25, deadline=None)
@given(
    row=st.integers(min_value=2, max_value=12),
    minutes=st.integers(min_value=1, max_value=14),
    extra=st.integers(0, 4),
)
def test_every_resume_option_stays_within_the_target(row: int, minutes: int, extra: int) -> None:
    """INV-10 at the bedside: whatever step and minute the reaction came, and however long earlier steps
    ran, no option goes above the target and every continuing option reaches it exactly."""
    bedside = Bedside()
    bedside.start()
    for number in range(1, row):
        bedside.run_row(number, 15 - extra if number == row - 1 else None)
    bedside.run_row(row, minutes, stop=False)
    bedside.record("reaction", symptoms=["itching"], grade="mild", phenotype="type-i")
    for option, choice in bedside.state.resume_options().items():
        if isinstance(choice, str):
            continue
        assert choice.total <= Decimal(400), option
        if option != "stop":
            assert choice.total == Decimal(400), option


TAMPERED_NUMBERS = ["1e-400", "1e-30", "1e300", "NaN", "Infinity", "-Infinity", "1" * 50]


@pytest.mark.parametrize("value", TAMPERED_NUMBERS)
def test_tampered_bedside_numbers_are_refused_with_the_field_named(value: str) -> None:
    """Issue 11 "Tampered form numbers": a rate, a pump volume or a vital sign of 1e-400, NaN or 50 digits
    never reaches the record; the refusal names the field and what is accepted."""
    bedside = Bedside()
    bedside.start()
    with pytest.raises(InputError) as refused:
        bedside.record("vitals", **{**VITALS, "heart_rate": value})
    assert refused.value.field == "heart_rate"
    with pytest.raises(InputError) as refused:
        bedside.record("step-start", row=1, rate_ml_h=value)
    assert refused.value.field == "rate_ml_h" and refused.value.accepted
    bedside.record("step-start", row=1)
    bedside.advance(15)
    with pytest.raises(InputError) as refused:
        bedside.record("step-stop", row=1, volume_ml=value)
    assert refused.value.field == "volume_ml" and refused.value.accepted
    bedside.record("step-stop", row=1)
    assert [s.status for s in bedside.state.segments] == ["completed"]


@pytest.mark.requirement("BED-3")
def test_the_last_step_shows_its_planned_volume_until_it_is_next() -> None:
    """Before the session reaches it, the last row's volume is the plan's, not the whole target less what
    was given so far (carboplatin's step 12 read 251.9 mL at the start, penicillin V's 16.2 mL for 8 mL);
    once it is next it carries exactly what remains of the target."""
    bedside = Bedside()
    bedside.start()
    state = bedside.state
    last = state.rows[-1]
    assert state.to_deliver(last) == last.step.volume_ml
    for row in state.rows[:-1]:
        bedside.run_row(row.number)
    state = bedside.state
    assert state.next_row() is state.rows[-1]
    concentration = state.concentration(last.solution)
    assert concentration is not None
    assert state.to_deliver(state.rows[-1]) == (state.target - state.delivered) / concentration


def _final_step_stopped_after(minutes: float) -> Bedside:
    """Steps 1-11 as planned, then the nurse stops the final step ``minutes`` in."""
    bedside = Bedside()
    bedside.start()
    for row in range(1, 12):
        bedside.run_row(row)
    bedside.run_row(12, minutes)
    return bedside


def test_a_last_step_stopped_short_is_offered_again_for_the_rest_of_the_dose() -> None:
    """The nurse stops the final step 15 min into its 174 (or the pump shows less than its volume to be
    infused): the same row is next again with exactly what remains, never "all steps given"; full dose
    is then reached exactly and the session completes as given."""
    bedside = _final_step_stopped_after(15)
    state = bedside.state
    last = state.rows[-1]
    assert state.delivered < Decimal(400)
    assert state.phase == "between-steps"
    assert state.final_row_short() is last and state.next_row() is last
    concentration = state.concentration(last.solution)
    assert concentration is not None
    assert state.to_deliver(last) == (Decimal(400) - state.delivered) / concentration
    with pytest.raises(InputError) as refused:
        bedside.record(
            "complete", outcome="completed", observation_end=bedside.at(), next_dose="re-desensitize"
        )
    assert refused.value.field == "outcome"
    bedside.run_row(12)  # the rest: the pump stops at its volume to be infused
    state = bedside.state
    assert state.delivered == Decimal(400)
    assert state.final_row_short() is None and state.phase == "observation"
    assert [s.row.number for s in state.segments[-2:]] == [12, 12]
    bedside.advance(30)
    bedside.record("vitals", **VITALS)
    bedside.record("complete", outcome="completed", observation_end=bedside.at(), next_dose="re-desensitize")
    assert bedside.state.phase == "completed"


def test_a_last_step_stopped_short_can_still_end_the_session_as_stopped() -> None:
    bedside = _final_step_stopped_after(15)
    bedside.advance(30)
    bedside.record("vitals", **VITALS)
    bedside.record(
        "complete", outcome="stopped", reason="the patient asked to stop", observation_end=bedside.at(),
        next_dose="re-desensitize",
    )  # fmt: skip
    assert bedside.state.phase == "stopped"


def test_resume_options_name_steps_as_the_worksheet_does_when_a_step_was_inserted_at_planning() -> None:
    """Walk 9: with a step inserted before step 9, the paused step 10 (9.4 mL/h) was offered back as
    "Step 9 (resumed after a reaction)" and the inserted step as a bare "Step": the flowsheet's step 9
    is the inserted one, given already."""
    draft = dataclasses.replace(carboplatin_draft(), insert_before=(9,))
    plan = plan_for(draft, builtin_protocols())
    assert [s.number for s in plan.steps if s.inserted] == [9]
    bedside = Bedside(plan=plan, draft=draft)
    bedside.start()
    bedside.mild_reaction_during(10, 6)
    options = bedside.state.resume_options()
    labels = {
        option: [row.label for row in choice.rows]
        for option, choice in options.items()
        if not isinstance(choice, str)
    }
    assert labels["resume-same-step"][:2] == ["Step 10 (resumed after a reaction)", "Step 11"]
    assert labels["back-one-step"][:2] == [
        "Step 9 again (stepped back after a reaction)",
        "Step 10 (resumed after a reaction)",
    ]
    assert labels["back-two-steps"][0] == "Step 8 again (stepped back after a reaction)"
    assert labels["insert-intermediate-step"][:2] == [
        "Intermediate step (after a reaction)",
        "Step 10 (resumed after a reaction)",
    ]
    assert labels["resume-same-step"][-1] == "Step 13"
