"""The engine resolves a request's settings (everything but the target) once per protocol object and
settings (``bags.infusion_settings``); a plan must never be computed with another request's settings."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from fhir_desens.protocol import bags
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.display import grouped
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
