"""The step schedule of an infusion: the protocol's steps with intermediate-rate steps inserted on request."""

from __future__ import annotations

from decimal import Decimal

from fhir_desens.errors import InputError
from fhir_desens.protocol.model import Protocol, ProtocolKind, StepDefinition
from fhir_desens.protocol.quantity import add, div
from fhir_desens.protocol.record import replace


def with_insertions(
    protocol: Protocol, before: tuple[int, ...], minutes: Decimal
) -> tuple[StepDefinition, ...]:
    """The protocol's steps with an intermediate-rate step inserted before each requested step."""
    if not before:
        return protocol.steps
    if protocol.kind is not ProtocolKind.INFUSION:
        raise InputError("--insert-before", "steps can be inserted in infusion protocols only")
    numbers = {s.number for s in protocol.steps}
    for number in before:
        if number not in numbers:
            raise InputError("--insert-before", f"there is no step {number}", f"1 to {len(protocol.steps)}")
    result: list[StepDefinition] = []
    for step in protocol.steps:
        if step.number in before:
            previous = result[-1] if result and result[-1].solution == step.solution else None
            result.append(_intermediate(previous, step, minutes))
        result.append(step)
    # Renumber in order; remember the protocol's numbers on the originals through `inserted`.
    return tuple(replace(s, number=i + 1) for i, s in enumerate(result))


def _intermediate(previous: StepDefinition | None, step: StepDefinition, minutes: Decimal) -> StepDefinition:
    """A step halfway between the previous rate (in the same solution) and this step's rate."""
    two = Decimal(2)
    if step.rate_fraction is not None:
        low = (
            previous.rate_fraction
            if previous is not None and previous.rate_fraction is not None
            else Decimal(0)
        )
        return StepDefinition(
            0,
            step.solution,
            minutes,
            rate_fraction=div(add(low, step.rate_fraction), two),
            inserted=True,
            note="inserted intermediate step",
        )
    if step.rate_ml_h is not None:
        low = previous.rate_ml_h if previous is not None and previous.rate_ml_h is not None else Decimal(0)
        return StepDefinition(
            0,
            step.solution,
            minutes,
            rate_ml_h=div(add(low, step.rate_ml_h), two),
            inserted=True,
            note="inserted intermediate step",
        )
    raise InputError("--insert-before", f"step {step.number} has no rate to step up to")
