"""Fixed tables (INV-24): protocols whose own doses are the doses, planned at their exact total only."""

from __future__ import annotations

from decimal import Decimal

from fhir_desens.errors import InputError
from fhir_desens.protocol.inputs import checked_target
from fhir_desens.protocol.model import ClosingMethod, Protocol, TargetKind
from fhir_desens.protocol.plan import PlanRequest
from fhir_desens.protocol.quantity import Quantity, add, div, mul, sub
from fhir_desens.protocol.record import replace

SIXTY = Decimal(60)


def fixed_table_total(protocol: Protocol) -> Quantity:
    """The exact total of a fixed infusion table: rate x minutes x concentration, the last step
    running the rest of its bag when its minutes are open."""
    total, used = Decimal(0), dict.fromkeys((s.number for s in protocol.solutions), Decimal(0))
    unit_code = ""
    for step in protocol.steps:
        solution = protocol.solution(step.solution)
        assert solution.concentration is not None and step.rate_ml_h is not None
        if step.minutes is not None:
            volume = div(mul(step.rate_ml_h, step.minutes), SIXTY)
        else:
            assert solution.volume_ml is not None
            volume = sub(solution.volume_ml, used[step.solution])
        used[step.solution] = add(used[step.solution], volume)
        total = add(total, mul(volume, solution.concentration.value))
        unit_code = solution.concentration.unit.removesuffix("/mL")
    return Quantity(total, unit_code)


def at_table_total(request: PlanRequest) -> PlanRequest:
    """INV-24 for infusion tables: the plan's target is the table's exact total, nothing else."""
    protocol = request.protocol
    for name, value in (
        ("--closing", request.closing),
        ("--concentrations", request.concentrations),
        ("--insert-before", request.insert_before or None),
    ):
        if value is not None and not (name == "--closing" and value is ClosingMethod.REMAINDER_STEP):
            raise InputError(name, f"protocol {protocol.id} is a fixed table; {name} does not apply")
    total = fixed_table_total(protocol)
    if request.target is not None:
        check_fixed_target(protocol, checked_target(protocol, request.target), total)
    return replace(request, target=total)


def check_fixed_target(protocol: Protocol, given: Quantity, total: Quantity) -> None:
    """INV-24: a fixed-dose protocol (a table's own doses) is planned at its exact total only."""
    if given.value == total.value:
        return
    if protocol.target_kind is TargetKind.CUMULATIVE:
        what = f"the table's doses sum to {total}"
    else:
        what = f"its final dose is {total}"
    raise InputError(
        "--dose",
        f"protocol {protocol.id} has fixed doses: {what}, not {given}",
        f"omit --dose, or give {total}",
    )
