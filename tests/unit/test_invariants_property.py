"""Property-based tests of the safety invariants over thousands of generated plans.

The property: for any input, the engine either returns a plan that satisfies every invariant, or
refuses with a DesensError (bad input or a named safety violation). It never returns an unsafe plan.
The invariants are also checked here independently of ``invariants.violations``.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fhir_desens.errors import DesensError, SafetyViolation
from fhir_desens.protocol.calculate import Plan, PlanRequest, compute_plan
from fhir_desens.protocol.infusion import checked_infusion
from fhir_desens.protocol.inputs import check_measurable_steps
from fhir_desens.protocol.invariants import violations
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.model import ClosingMethod, ProtocolKind, TargetKind
from fhir_desens.protocol.quantity import EXACT, Quantity
from fhir_desens.protocol.tables import at_table_total

INFUSION = [p for p in builtin_protocols().values() if p.kind is ProtocolKind.INFUSION]
PROPERTY = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decimals(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(Decimal(low), Decimal(high), places=places, allow_nan=False, allow_infinity=False)


@st.composite
def infusion_requests(draw: st.DrawFn) -> PlanRequest:
    protocol = draw(st.sampled_from(INFUSION))
    closing = draw(st.sampled_from(protocol.closing_methods))
    n = len(protocol.solutions)
    fractions = None
    needs_fractions = protocol.defaults.bag_fractions is None and all(
        s.dose_fraction is None for s in protocol.solutions
    )
    if closing is ClosingMethod.FRACTION_BAGS and needs_fractions:
        # ratios of 10 between bags keep doses rising; the last bag takes the remainder
        first = draw(decimals("0.0001", "0.005", 4))
        head = [first * Decimal(10) ** i for i in range(n - 1)]
        fractions = (*head, Decimal(1) - sum(head))
    concentrations = None
    if closing is ClosingMethod.REMAINDER_STEP:
        base = draw(decimals("0.001", "20", 3))
        concentrations = tuple(base * Decimal(10) ** (i - n + 1) for i in range(n))
    return PlanRequest(
        protocol=protocol,
        drug="drug",
        target=Quantity(draw(decimals("0.01", "20000", 3)), draw(st.sampled_from(["mg", "[iU]"]))),
        final_rate_ml_h=draw(decimals("1", "300", 1)) if protocol.uses_final_rate else None,
        bag_volume_ml=draw(st.sampled_from([Decimal(v) for v in (50, 100, 250, 500, 1000)])),
        closing=closing,
        bag_fractions=fractions,
        concentrations=concentrations,
        pump_max_ml_h=draw(st.sampled_from([Decimal(300), Decimal(999)])),
        insert_before=tuple(draw(st.sets(st.integers(1, len(protocol.steps)), max_size=2))),
    )


def assert_invariants(plan: Plan) -> None:
    """The invariants, re-stated without the engine's own checker."""
    assert violations(plan) == []
    target = plan.target_dose.value
    steps = plan.steps
    total = Decimal(0)
    drawn: dict[int, Decimal] = {}
    prepared = {s.number: s.volume_ml for s in plan.solutions}
    for step in steps:
        total = EXACT.add(total, step.dose.value)
        assert step.cumulative_dose.value == total
        assert total <= target  # INV-02
        assert step.minutes > 0  # INV-05
        assert 0 < step.rate_ml_h <= plan.request.pump_max_ml_h  # INV-06
        assert step.dose.unit == plan.target_dose.unit  # INV-07
        drawn[step.solution] = EXACT.add(drawn.get(step.solution, Decimal(0)), step.volume_ml)
        assert drawn[step.solution] <= prepared[step.solution]  # INV-03
    assert total == target  # INV-01: exact, no tolerance
    if not plan.protocol.allow_dose_decrease:
        doses = [s.dose.value for s in steps if not s.inserted]
        assert doses == sorted(doses)  # INV-04


@pytest.mark.invariant("INV-01")
@pytest.mark.invariant("INV-02")
@pytest.mark.invariant("INV-03")
@pytest.mark.invariant("INV-04")
@pytest.mark.invariant("INV-05")
@pytest.mark.invariant("INV-06")
@pytest.mark.invariant("INV-07")
@pytest.mark.invariant("INV-08")
@pytest.mark.invariant("INV-09")
@PROPERTY
@given(infusion_requests())
def test_every_infusion_plan_is_safe_or_refused(request: PlanRequest):
    try:
        plan = compute_plan(request)
    except DesensError:
        return  # refused with a clear error: acceptable (bad or unsafe input)
    assert_invariants(plan)


@pytest.mark.invariant("INV-01")
@pytest.mark.invariant("INV-03")
@pytest.mark.invariant("INV-05")
@pytest.mark.invariant("INV-08")
@pytest.mark.invariant("INV-09")
@PROPERTY
@given(infusion_requests())
def test_the_engine_s_own_check_passes_only_plans_the_full_check_passes(request: PlanRequest):
    """compute_plan checks its infusion plans in the step loop, without recomputing what the loop
    computed (``infusion.checked_infusion``); whatever that passes, the full, independent check passes."""
    try:
        plan, passes = checked_infusion(at_table_total(request) if request.protocol.fixed_table else request)
    except DesensError:
        return
    if passes:
        assert violations(plan) == []
        check_measurable_steps(plan)  # raises nothing


@st.composite
def realistic_requests(draw: st.DrawFn) -> PlanRequest:
    """Inputs a pharmacist would really enter: these must all give a plan."""
    protocol = draw(
        st.sampled_from([p for p in INFUSION if ClosingMethod.REDUCED_FINAL_BAG in p.closing_methods])
    )
    closing = draw(st.sampled_from([ClosingMethod.REDUCED_FINAL_BAG, ClosingMethod.TRUNCATED_FINAL_STEP]))
    assume(closing in protocol.closing_methods)
    return PlanRequest(
        protocol=protocol,
        drug="drug",
        target=Quantity(draw(decimals("1", "5000", 2)), "mg"),
        final_rate_ml_h=draw(decimals("40", "120", 0)) if protocol.uses_final_rate else None,
        bag_volume_ml=draw(st.sampled_from([Decimal(100), Decimal(250), Decimal(500)])),
        closing=closing,
    )


@pytest.mark.invariant("INV-01")
@pytest.mark.invariant("INV-02")
@PROPERTY
@given(realistic_requests())
def test_realistic_inputs_always_give_a_safe_plan(request: PlanRequest):
    plan = compute_plan(request)
    assert_invariants(plan)
    if all(s.preparation is None for s in plan.solutions):  # a stated recipe always gets the full check
        assert checked_infusion(request)[1]  # the engine's own check is not vacuous


def test_discrete_protocols_satisfy_their_target_kind():
    for protocol in builtin_protocols().values():
        if protocol.kind is not ProtocolKind.DISCRETE:
            continue
        plan = compute_plan(PlanRequest(protocol, "drug"))
        assert violations(plan) == []
        if protocol.target_kind is TargetKind.FINAL_DOSE:
            assert plan.steps[-1].dose == plan.target_dose
            assert all(s.dose.value <= plan.target_dose.value for s in plan.steps)
        else:
            assert plan.steps[-1].cumulative_dose == plan.target_dose


@pytest.mark.invariant("INV-06")
def test_rate_above_pump_maximum_is_a_named_violation():
    protocol = builtin_protocols()["iv-one-solution-rate-escalation"]
    with pytest.raises(SafetyViolation) as error:
        compute_plan(PlanRequest(protocol, "drug", Quantity(Decimal(100), "mg"), pump_max_ml_h=Decimal(50)))
    assert error.value.invariant_id == "INV-06"


@pytest.mark.invariant("INV-04")
def test_dose_decrease_is_refused_unless_the_protocol_allows_it():
    protocol = builtin_protocols()["iv-12-step-3-bag"]
    request = PlanRequest(
        protocol,
        "carboplatin",
        Quantity(Decimal(400), "mg"),
        closing=ClosingMethod.FRACTION_BAGS,
        bag_fractions=(Decimal("0.01"), Decimal("0.025"), Decimal("0.965")),
    )
    with pytest.raises(SafetyViolation) as error:
        compute_plan(request)
    assert error.value.invariant_id == "INV-04"
    allowed = builtin_protocols()["iv-12-step-3-bag-percent"]  # the same split, published as allowed
    assert compute_plan(PlanRequest(allowed, "carboplatin", Quantity(Decimal(400), "mg"))).delivered == 400


@pytest.mark.invariant("INV-03")
def test_small_bags_that_cannot_hold_the_steps_are_refused():
    protocol = builtin_protocols()["iv-12-step-3-bag"]
    with pytest.raises(DesensError):
        compute_plan(
            PlanRequest(
                protocol,
                "x",
                Quantity(Decimal(400), "mg"),
                final_rate_ml_h=Decimal(300),
                bag_volume_ml=Decimal(20),
            )
        )


@pytest.mark.parametrize("closing", list(ClosingMethod))
def test_every_closing_method_reaches_400mg_exactly(closing):
    protocol = builtin_protocols()["iv-12-step-3-bag"]
    request = PlanRequest(
        protocol,
        "carboplatin",
        Quantity(Decimal(400), "mg"),
        final_rate_ml_h=Decimal(75),
        closing=closing,
        bag_fractions=(Decimal("0.001"), Decimal("0.01"), Decimal("0.989"))
        if closing is ClosingMethod.FRACTION_BAGS
        else None,
        concentrations=(Decimal("0.016"), Decimal("0.16"), Decimal("1.6"))
        if closing is ClosingMethod.REMAINDER_STEP
        else None,
    )
    plan = compute_plan(request)
    assert plan.steps[-1].cumulative_dose == Quantity(Decimal(400), "mg")
    assert_invariants(plan)


def test_truncated_final_step_leaves_the_final_bag_partly_full():
    protocol = builtin_protocols()["iv-12-step-3-bag"]
    plan = compute_plan(
        PlanRequest(
            protocol, "rituximab", Quantity(Decimal(700), "mg"), closing=ClosingMethod.TRUNCATED_FINAL_STEP
        )
    )
    final_bag = plan.solutions[-1]
    assert final_bag.drug_amount.value == 700  # full strength: the whole dose is in bag 3
    assert final_bag.volume_infused_ml < final_bag.volume_ml
    assert any("Solution 3" in w and "discard" in w for w in plan.warnings)


def test_inserted_step_sits_between_its_neighbours():
    protocol = builtin_protocols()["iv-12-step-3-bag"]
    plan = compute_plan(
        PlanRequest(protocol, "carboplatin", Quantity(Decimal(400), "mg"), insert_before=(12,))
    )
    assert len(plan.steps) == 13
    inserted = plan.steps[11]
    assert inserted.inserted and inserted.protocol_step is None
    assert inserted.rate_ml_h == Decimal(60)  # halfway between 40 and 80 mL/h
    assert plan.steps[10].dose.value < inserted.dose.value < plan.steps[12].dose.value
    assert plan.steps[-1].cumulative_dose.value == 400


def test_protocol_step_numbers_survive_insertions():
    protocol = builtin_protocols()["iv-12-step-3-bag"]
    plan = compute_plan(
        PlanRequest(protocol, "carboplatin", Quantity(Decimal(400), "mg"), insert_before=(5, 9))
    )
    assert [s.number for s in plan.steps] == list(range(1, 15))
    assert [s.protocol_step for s in plan.steps] == [1, 2, 3, 4, None, 5, 6, 7, 8, None, 9, 10, 11, 12]
