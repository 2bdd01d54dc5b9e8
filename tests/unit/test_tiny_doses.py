"""Tiny doses (issue 11): a lower plausibility bound on the target, and no step too small to prepare."""

from decimal import Decimal

import pytest

from fhir_desens.errors import InputError
from fhir_desens.protocol.calculate import MIN_STEP_DOSE, PlanRequest, compute_plan
from fhir_desens.protocol.library import get_protocol
from fhir_desens.protocol.quantity import Quantity


def request(dose: str, unit: str = "mg") -> PlanRequest:
    return PlanRequest(
        protocol=get_protocol("iv-16-step-4-bag"), drug="carboplatin", target=Quantity(Decimal(dose), unit)
    )


@pytest.mark.parametrize("dose", ["0.0000001", "1e-30", "0.0009"])
def test_tiny_doses_a_target_below_one_microgram_is_refused(dose):
    with pytest.raises(InputError, match=r"^--dose: .*below the smallest plausible target dose"):
        compute_plan(request(dose))


def test_tiny_doses_no_step_of_a_plan_is_below_what_can_be_prepared():
    plan = compute_plan(request("400"))
    assert min(step.dose.value for step in plan.steps) >= MIN_STEP_DOSE


def test_tiny_doses_a_plausible_target_whose_first_step_is_unmeasurable_is_refused_naming_the_step():
    with pytest.raises(InputError, match=r"^--dose: step 1 would be .* too small to prepare"):
        compute_plan(request("0.001"))
