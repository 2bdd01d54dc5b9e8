"""Re-planning after a reaction: never above the target, and reaching it when completed (INV-10)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_desens.errors import DesensError, InputError
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.display import dose_text
from fhir_desens.protocol.library import builtin_protocols, get_protocol
from fhir_desens.protocol.model import ProtocolKind, TargetKind
from fhir_desens.protocol.quantity import EXACT, Quantity
from fhir_desens.protocol.replan import Interruption, ResumeOption, replan, replan_all

INFUSION = [p for p in builtin_protocols().values() if p.kind is ProtocolKind.INFUSION]


@st.composite
def interrupted_plans(draw):
    protocol = draw(st.sampled_from(INFUSION))
    plan = compute_plan(
        PlanRequest(protocol, "drug", Quantity(draw(st.decimals(Decimal(1), Decimal(3000), places=2)), "mg"))
    )
    step = draw(st.integers(1, len(plan.steps)))
    fraction = draw(st.decimals(Decimal(0), Decimal(1), places=3))
    return plan, Interruption(step, plan.steps[step - 1].minutes * fraction)


@pytest.mark.invariant("INV-10")
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interrupted_plans(), st.sampled_from(list(ResumeOption)))
def test_replan_never_exceeds_and_completes_the_target(interrupted, option):
    plan, interruption = interrupted
    try:
        result = replan(plan, interruption, option)
    except DesensError:
        return  # option impossible here (e.g. no step to go back to): refused, with a reason
    target = plan.target_dose.value
    running = result.delivered.value
    assert running <= target
    for step in result.steps:
        running = EXACT.add(running, step.dose.value)
        assert step.cumulative_dose.value == running
        assert running <= target
        assert step.minutes > 0
    if option is ResumeOption.STOP:
        assert result.steps == ()
        assert result.reaches_target == (result.delivered.value == target)
    else:
        assert running == target and result.reaches_target


def carboplatin_plan():
    protocol = get_protocol("iv-12-step-3-bag")
    return compute_plan(
        PlanRequest(protocol, "carboplatin", Quantity(Decimal(400), "mg"), final_rate_ml_h=Decimal(75))
    )


def test_reaction_in_final_step_offers_every_option():
    plan = carboplatin_plan()
    results = replan_all(plan, Interruption(12, Decimal(30)))
    assert set(results) == {o for o in ResumeOption if o is not ResumeOption.REPEAT_PROVOKING_DOSE}
    back_one = results[ResumeOption.BACK_ONE_STEP]
    assert not isinstance(back_one, str)
    assert back_one.steps[0].rate_ml_h == Decimal("37.5")  # step 11's rate, lower than 75
    inserted = results[ResumeOption.INSERT_INTERMEDIATE_STEP]
    assert not isinstance(inserted, str)
    assert inserted.steps[0].inserted and inserted.steps[0].rate_ml_h == Decimal("56.25")


def test_back_steps_at_step_one_are_refused_with_a_reason():
    results = replan_all(carboplatin_plan(), Interruption(1, Decimal(5)))
    assert isinstance(results[ResumeOption.BACK_ONE_STEP], str)
    assert "no step" in results[ResumeOption.BACK_ONE_STEP]


def test_minutes_beyond_the_step_are_refused():
    with pytest.raises(InputError):
        replan(carboplatin_plan(), Interruption(3, Decimal(16)), ResumeOption.RESUME_SAME_STEP)


def test_aspirin_repeats_the_provoking_dose_then_continues():
    protocol = get_protocol("aspirin-aerd-90-min")
    assert protocol.target_kind is TargetKind.FINAL_DOSE
    plan = compute_plan(PlanRequest(protocol, "aspirin"))
    result = replan(plan, Interruption(3), ResumeOption.REPEAT_PROVOKING_DOSE)
    assert [s.dose.value for s in result.steps] == [Decimal("162.5"), Decimal(325)]
    assert result.reaches_target
    with pytest.raises(InputError):
        replan(plan, Interruption(3), ResumeOption.BACK_TWO_STEPS)


def test_penicillin_step_back_truncates_the_last_dose_to_stay_on_target():
    plan = compute_plan(PlanRequest(get_protocol("penicillin-v-oral-wendel"), "penicillin V"))
    result = replan(plan, Interruption(10), ResumeOption.BACK_ONE_STEP)
    assert result.steps[-1].cumulative_dose == plan.target_dose
    assert result.steps[-1].dose.value < 640000  # the final dose shrinks by the repeated dose


def test_stopping_early_never_says_the_whole_target_is_undelivered():
    """The bedside walk: after 0.03867 mg of 400 mg, 'Stopping leaves 400 mg undelivered' (399.96 mg at four
    significant figures) read as if nothing had been given."""
    stopped = replan(carboplatin_plan(), Interruption(3, Decimal(5)), ResumeOption.STOP)
    assert stopped.delivered.value > 0
    assert stopped.warnings[0].startswith("Stopping leaves all but ")
    assert stopped.warnings[0].endswith(" of the 400 mg undelivered.")
    later = replan(carboplatin_plan(), Interruption(12, Decimal(30)), ResumeOption.STOP)
    assert (
        later.warnings[0]
        == f"Stopping leaves {dose_text(Decimal(400) - later.delivered.value, 'mg')} undelivered."
    )
