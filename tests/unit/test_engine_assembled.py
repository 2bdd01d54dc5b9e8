"""The engine assembles its frozen results without their generated ``__init__`` (``protocol/assembled.py``,
for speed): every object of a plan must be exactly what the ``__init__`` would have built (every field,
in order, a Decimal where a Quantity's value is, a known unit) and just as frozen."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings

from fhir_desens.errors import DesensError
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.model import ProtocolKind
from fhir_desens.protocol.quantity import Quantity
from tests.unit.test_invariants_property import infusion_requests


def field_values(instance: Any) -> list[Any]:
    return [getattr(instance, f.name) for f in dataclasses.fields(instance)]


def assert_as_built_by_init(instance: Any) -> None:
    rebuilt = dataclasses.replace(instance)  # the generated __init__ (and Quantity's unit check)
    assert rebuilt == instance
    assert len(instance) == len(dataclasses.fields(instance))  # every field, none extra (a tuple record)
    assert all(type(a) is type(b) for a, b in zip(field_values(rebuilt), field_values(instance), strict=True))
    name = dataclasses.fields(instance)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instance, name, getattr(instance, name))


def assert_plan_as_built_by_init(request: PlanRequest) -> None:
    plan = compute_plan(request)
    assert_as_built_by_init(plan)
    assert_as_built_by_init(plan.target_dose)
    for step in plan.steps:
        assert_as_built_by_init(step)
        assert_as_built_by_init(step.dose)
        assert_as_built_by_init(step.cumulative_dose)
        assert isinstance(step.dose.value, Decimal) and isinstance(step.cumulative_dose.value, Decimal)
    for solution in plan.solutions:
        assert_as_built_by_init(solution)
        for value in (solution.concentration, solution.drug_amount):
            if value is not None:
                assert_as_built_by_init(value)


@pytest.mark.parametrize("unit", ["mg", "[iU]", "g", "ug"])
def test_every_library_infusion_plan_is_made_of_objects_its_init_would_build(unit: str) -> None:
    for protocol in builtin_protocols().values():
        if protocol.kind is not ProtocolKind.INFUSION or protocol.fixed_table:
            continue
        request = PlanRequest(
            protocol, "carboplatin", Quantity(Decimal("437.5"), unit), bag_volume_ml=Decimal(250)
        )
        try:
            assert_plan_as_built_by_init(request)
        except DesensError:
            continue  # a unit or dose this protocol refuses: nothing assembled


@given(infusion_requests())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_infusion_plans_are_made_of_objects_their_init_would_build(request: PlanRequest) -> None:
    try:
        assert_plan_as_built_by_init(request)
    except DesensError:
        assume(False)
