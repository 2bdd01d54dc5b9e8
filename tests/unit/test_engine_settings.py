"""The engine resolves a request's settings (everything but the target) once per protocol object and
settings (``bags.infusion_settings``); a plan must never be computed with another request's settings."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from fhir_desens.protocol import bags
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.display import grouped
from fhir_desens.protocol.infusion import checked_infusion
from fhir_desens.protocol.invariants import violations
from fhir_desens.protocol.library import get_protocol
from fhir_desens.protocol.quantity import Quantity

PROTOCOL = get_protocol("iv-12-step-3-bag")


def plan_text(request: PlanRequest) -> list[str]:
    plan = compute_plan(request)
    return [f"{s.rate_ml_h} {s.minutes} {s.volume_ml} {s.dose.value}" for s in plan.steps]


def test_equal_but_differently_written_settings_are_not_confused() -> None:
    """75 and 75.0 mL/h are equal Decimals but give differently written numbers: each gets its own."""
    dose = Quantity(Decimal(400), "mg")
    first = plan_text(PlanRequest(PROTOCOL, "x", dose, final_rate_ml_h=Decimal("75")))
    second = plan_text(PlanRequest(PROTOCOL, "x", dose, final_rate_ml_h=Decimal("75.0")))
    bags._SETTINGS.clear()
    assert second == plan_text(PlanRequest(PROTOCOL, "x", dose, final_rate_ml_h=Decimal("75.0")))
    assert first == plan_text(PlanRequest(PROTOCOL, "x", dose, final_rate_ml_h=Decimal("75")))
    assert first != second


def test_an_edited_protocol_is_planned_with_its_own_definition() -> None:
    dose = Quantity(Decimal(400), "mg")
    compute_plan(PlanRequest(PROTOCOL, "x", dose))
    shorter = dataclasses.replace(PROTOCOL, steps=PROTOCOL.steps[:-2] + PROTOCOL.steps[-1:])
    shorter = dataclasses.replace(
        shorter, steps=tuple(dataclasses.replace(s, number=i + 1) for i, s in enumerate(shorter.steps))
    )
    assert len(compute_plan(PlanRequest(shorter, "x", dose)).steps) == len(PROTOCOL.steps) - 1
    assert len(compute_plan(PlanRequest(PROTOCOL, "x", dose)).steps) == len(PROTOCOL.steps)


def test_the_resolved_settings_stay_bounded() -> None:
    dose = Quantity(Decimal(400), "mg")
    for tenth in range(bags._SETTINGS_MAX + 10):
        compute_plan(PlanRequest(PROTOCOL, "x", dose, final_rate_ml_h=Decimal(600 + tenth).scaleb(-1)))
    assert len(bags._SETTINGS) <= bags._SETTINGS_MAX


def test_grouped_writes_what_fixed_point_formatting_writes() -> None:
    cases = ["0", "-0", "-0.00", "1E+3", "1.0E+2", "1E-7", "0.000001", "1234567.8900", "-1234.5", "999.90"]
    for text in cases:
        value = Decimal(text)
        whole, _, fraction = format(value, "f").lstrip("-").partition(".")
        expected = f"{int(whole):,}" + (f".{fraction.rstrip('0')}" if fraction.rstrip("0") else "")
        expected = "0" if expected == "0" else ("-" if value.is_signed() else "") + expected
        assert grouped(value) == expected, text


def test_the_step_loop_s_check_fails_settings_whose_timed_steps_break_a_rule() -> None:
    """The timed steps' rates, minutes and volumes are checked once with the settings
    (``InfusionSettings.timed_steps_pass``): a timed step above the pump maximum fails the engine's
    own check, so the full check names it, in every plan made with those settings."""
    escalation = get_protocol("iv-one-solution-rate-escalation")  # 5, 10, 25, 50, 75, then 100 mL/h
    closing_slower = (dataclasses.replace(escalation.steps[-1], rate_ml_h=Decimal(40)),)
    protocol = dataclasses.replace(escalation, steps=escalation.steps[:-1] + closing_slower)
    request = PlanRequest(protocol, "x", Quantity(Decimal(100), "mg"), pump_max_ml_h=Decimal(50))
    for _ in range(2):  # resolved, then reused
        plan, passes = checked_infusion(request)
        assert not passes  # only step 5 (75 mL/h, timed) is above the pump
        assert [(v.invariant_id, v.detail.split(":")[0]) for v in violations(plan)] == [("INV-06", "step 5")]
    assert bags.infusion_settings(dataclasses.replace(request, pump_max_ml_h=Decimal(75))).timed_steps_pass


PARTLY_USED = (
    "Solution 1 is dispensed as 250 mL but only 9.3 mL are infused. Keep the bag at the bedside until the "
    "session ends (a step back after a reaction may need it), then discard the remaining 240.8 mL. The total "
    "volume and dose dispensed are more than the target dose."
)


def test_a_partly_used_bag_s_warning_reads_alike_however_its_volume_was_written() -> None:
    """The warning is written once per bag and volumes (``bags.partly_used_bag_warning``): each plan
    reads the display policy's text, whichever equal volume (250 or 250.0 mL) was planned first."""
    dose = Quantity(Decimal(400), "mg")
    for written in ("250.0", "250", "250.00"):
        plan = compute_plan(PlanRequest(PROTOCOL, "x", dose, bag_volume_ml=Decimal(written)))
        assert plan.warnings[0] == PARTLY_USED
    bags._PARTLY_USED.clear()
    assert bags.partly_used_bag_warning(1, Decimal(250), Decimal("9.2500")) == PARTLY_USED
    assert bags.partly_used_bag_warning(1, Decimal("250.0"), Decimal("9.25")) == PARTLY_USED
