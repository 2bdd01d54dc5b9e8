"""Plans at the pump's resolution: every rate programmable, every invariant still exact (INV-11)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_desens.cli import main
from fhir_desens.errors import DesensError, InputError
from fhir_desens.protocol.calculate import PlanRequest, compute_plan, programmable_rate
from fhir_desens.protocol.invariants import violations
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity
from fhir_desens.protocol.replan import Interruption, ResumeOption, replan
from tests.unit.test_invariants_property import (
    PROPERTY,
    assert_invariants,
    infusion_requests,
    realistic_requests,
)

RESOLUTIONS = st.sampled_from([Decimal("0.1"), Decimal("0.5"), Decimal(1), Decimal("0.01")])


def _assert_programmable(plan, resolution: Decimal) -> None:
    for step in plan.steps:
        assert step.rate_ml_h % resolution == 0, (step.number, step.rate_ml_h)


@pytest.mark.invariant("INV-11")
@pytest.mark.invariant("INV-01")
@pytest.mark.invariant("INV-03")
@pytest.mark.invariant("INV-08")
@PROPERTY
@given(infusion_requests(), RESOLUTIONS)
def test_every_plan_at_a_pump_resolution_is_safe_or_refused(request: PlanRequest, resolution: Decimal):
    try:
        plan = compute_plan(dataclasses.replace(request, pump_resolution_ml_h=resolution))
    except DesensError:
        return
    assert_invariants(plan)
    _assert_programmable(plan, resolution)


@pytest.mark.invariant("INV-11")
@PROPERTY
@given(realistic_requests())
def test_realistic_inputs_at_0_1_ml_h_always_give_a_safe_plan(request: PlanRequest):
    plan = compute_plan(dataclasses.replace(request, pump_resolution_ml_h=Decimal("0.1")))
    assert_invariants(plan)
    _assert_programmable(plan, Decimal("0.1"))


def test_rates_round_half_up_and_never_to_zero():
    assert programmable_rate(Decimal("4.6875"), Decimal("0.1")) == Decimal("4.7")
    assert programmable_rate(Decimal("1.875"), Decimal("0.1")) == Decimal("1.9")
    assert programmable_rate(Decimal("0.01"), Decimal("0.1")) == Decimal("0.1")
    assert programmable_rate(Decimal(75), Decimal("0.1")) == Decimal(75)


def test_doses_follow_exactly_from_the_programmed_rates():
    protocol = builtin_protocols()["iv-12-step-3-bag"]
    plan = compute_plan(
        PlanRequest(
            protocol,
            "carboplatin",
            Quantity(Decimal(400), "mg"),
            final_rate_ml_h=Decimal(75),
            pump_resolution_ml_h=Decimal("0.1"),
        )
    )
    first = plan.steps[0]
    assert first.rate_ml_h == Decimal("1.9")  # 75/40 = 1.875 -> 1.9 mL/h as programmed
    assert first.volume_ml == Decimal("1.9") * first.minutes / 60
    assert plan.delivered == 400
    assert violations(plan) == []


@pytest.mark.invariant("INV-10")
@pytest.mark.invariant("INV-11")
def test_a_replan_keeps_the_pump_resolution():
    protocol = builtin_protocols()["iv-12-step-3-bag"]
    plan = compute_plan(
        PlanRequest(
            protocol,
            "carboplatin",
            Quantity(Decimal(400), "mg"),
            final_rate_ml_h=Decimal(75),
            pump_resolution_ml_h=Decimal("0.1"),
        )
    )
    result = replan(plan, Interruption(step=6, minutes=Decimal(7)), ResumeOption.INSERT_INTERMEDIATE_STEP)
    assert all(s.rate_ml_h % Decimal("0.1") == 0 for s in result.steps if s.rate_ml_h is not None)
    assert result.steps[-1].cumulative_dose.value == 400


def test_a_resolution_out_of_range_names_the_option():
    protocol = builtin_protocols()["iv-12-step-3-bag"]
    with pytest.raises(InputError) as error:
        compute_plan(
            PlanRequest(protocol, "x", Quantity(Decimal(400), "mg"), pump_resolution_ml_h=Decimal(0))
        )
    assert error.value.field == "--pump-resolution"


def test_the_cli_takes_a_pump_resolution(capsys):
    args = ["plan", "--protocol", "iv-12-step-3-bag", "--drug", "carboplatin", "--dose", "400mg"]
    assert main([*args, "--final-rate", "75", "--pump-resolution", "0.1", "--format", "json"]) == 0
    assert '"rate_ml_h": "1.9"' in capsys.readouterr().out
    assert main([*args, "--pump-resolution", "none"]) == 2
    assert "--pump-resolution" in capsys.readouterr().err
