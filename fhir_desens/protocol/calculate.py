"""From a protocol and a patient's target dose to an exact plan: the public entry of the engine.

The arithmetic follows the published worksheets (clinical.md 1.2-1.3): volume = rate x minutes / 60,
dose = volume x concentration, and the closing method decides how the last step lands exactly on
the target. All values are Decimal; the closing dose is always computed as target - delivered, so
the cumulative total equals the target by construction, and ``invariants.check_plan`` proves it.

Where each part lives:

* ``plan.py``: what a plan is (the request, the planned steps and solutions);
* ``inputs.py``: input checks shared by every plan, and the plausibility limits;
* ``schedule.py``: the step schedule (intermediate steps inserted on request);
* ``bags.py``: bag preparation (volumes, concentrations by closing method, recipes);
* ``infusion.py``: the step loop of an infusion and its closing methods;
* ``discrete.py``: oral and syringe doses from a table;
* ``tables.py``: fixed infusion tables, planned at their exact total only (INV-24);
* ``assembled.py``: the results built once each from the computed Decimals, as tuple records
  (``tuple_record.py``: frozen records stored as the tuple of their fields, one C call to build).
"""

from __future__ import annotations

from fhir_desens.errors import InputError
from fhir_desens.protocol.bags import SIXTY
from fhir_desens.protocol.discrete import plan_discrete
from fhir_desens.protocol.infusion import LONG_STEP_MINUTES, checked_infusion
from fhir_desens.protocol.inputs import (
    MAX_BAG_VOLUME_ML,
    MAX_TARGET,
    MIN_STEP_DOSE,
    MIN_TARGET,
    check_measurable_steps,
    programmable_rate,
)
from fhir_desens.protocol.invariants import check_plan
from fhir_desens.protocol.model import ProtocolKind
from fhir_desens.protocol.plan import DEFAULT_PUMP_MAX_ML_H, Plan, PlannedSolution, PlannedStep, PlanRequest
from fhir_desens.protocol.tables import at_table_total, fixed_table_total

__all__ = [
    "DEFAULT_PUMP_MAX_ML_H",
    "LONG_STEP_MINUTES",
    "MAX_BAG_VOLUME_ML",
    "MAX_TARGET",
    "MIN_STEP_DOSE",
    "MIN_TARGET",
    "SIXTY",
    "Plan",
    "PlanRequest",
    "PlannedSolution",
    "PlannedStep",
    "compute_plan",
    "fixed_table_total",
    "programmable_rate",
]


def compute_plan(request: PlanRequest) -> Plan:
    """Compute and check a plan; raises InputError for bad input and SafetyViolation if unsafe."""
    if not request.drug or not request.drug.strip():
        raise InputError("--drug", "a drug name is required", "e.g. carboplatin")
    if request.protocol.kind is ProtocolKind.INFUSION:
        if request.protocol.fixed_table:
            request = at_table_total(request)
        plan, passes = checked_infusion(request)  # the step loop's own checks (see infusion.py)
        if passes:
            return plan
        check_measurable_steps(plan)
        check_plan(plan)
    else:
        plan = plan_discrete(request)
        check_measurable_steps(plan)
        check_plan(plan)
    return plan
