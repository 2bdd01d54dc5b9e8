"""Checks of a plan request's inputs shared by infusion and discrete plans, and the plausibility limits."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from fhir_desens.errors import InputError
from fhir_desens.protocol.assembled import quantity
from fhir_desens.protocol.model import Protocol
from fhir_desens.protocol.plan import Plan
from fhir_desens.protocol.quantity import (
    ACCEPTED_DOSE_UNITS,
    CANONICAL_DOSE,
    EXACT,
    Dimension,
    Quantity,
    div,
    mul,
    plain,
)

#: Above these a dose is refused as absurd rather than computed (100 g; 100 million units).
MAX_TARGET = {Dimension.MASS: Decimal(100_000), Dimension.ACTIVITY: Decimal(100_000_000)}
#: The smallest plausible target (1 microgram, 1 unit): below it the first steps are beyond any balance.
MIN_TARGET = {Dimension.MASS: Decimal("0.001"), Dimension.ACTIVITY: Decimal(1)}
#: The smallest step dose a plan may hold, in the target's canonical unit (0.5 ng, 0.0000005 units):
#: smaller steps would be shown as "0 mg" at the six decimals doses are displayed with.
MIN_STEP_DOSE = Decimal("0.0000005")
MAX_BAG_VOLUME_ML = Decimal(1000)


def check_measurable_steps(plan: Plan) -> None:
    """Refuse a plan whose smallest step dose nobody could prepare (a tiny target, or a tampered one)."""
    canonical_unit = plan.target_dose.canonical().unit
    for step in plan.steps:
        dose = step.dose.value if step.dose.unit == canonical_unit else step.dose.to(canonical_unit).value
        if dose < MIN_STEP_DOSE:
            raise InputError(
                "--dose",
                f"step {step.number} would be {dose:.1E} {canonical_unit}, too small to prepare",
                f"a target dose whose smallest step is at least {plain(MIN_STEP_DOSE)} {canonical_unit}",
            )


# --- shared input checks ------------------------------------------------------------------------


def checked_target(protocol: Protocol, target: Quantity | None) -> Quantity:
    if target is None:
        raise InputError("--dose", "a target dose is required", ACCEPTED_DOSE_UNITS)
    if target.dimension not in protocol.dose_dimensions:
        accepted = " or ".join(CANONICAL_DOSE[d].display for d in protocol.dose_dimensions)
        raise InputError(
            "--dose",
            f"protocol {protocol.id} doses in {accepted}, not {target.dimension.value} ({target})",
            accepted,
        )
    canonical = _canonical_dose(target)
    limit = MAX_TARGET[canonical.dimension]
    if canonical.value <= 0:
        raise InputError("--dose", f"the target dose must be above zero, got {target}")
    floor = MIN_TARGET[canonical.dimension]
    if canonical.value < floor:
        raise InputError(
            "--dose",
            f"{target} is below the smallest plausible target dose",
            f"from {plain(floor)} {canonical.unit} up to {plain(limit)} {canonical.unit}",
        )
    if canonical.value > limit:
        raise InputError(
            "--dose", f"{target} is not a plausible single dose", f"up to {plain(limit)} {canonical.unit}"
        )
    return canonical


def _canonical_dose(target: Quantity) -> Quantity:
    """``target.canonical()`` (the same value, digits and exponent), without its unit checks and
    conversion when the target is already in its canonical unit (mg, units: the usual case)."""
    canonical = CANONICAL_DOSE[target.dimension]
    if target.unit != canonical.code:
        return target.canonical()
    one = canonical.factor  # what Quantity.to multiplies and divides by
    return quantity(EXACT.divide(EXACT.multiply(target.value, one), one), canonical.code)


def positive(value: Decimal, field: str, upper: Decimal | None = None, unit: str = "") -> Decimal:
    if value <= 0 or (upper is not None and value > upper):
        accepted = f"above 0 and at most {plain(upper)} {unit}".strip() if upper is not None else "above 0"
        raise InputError(field, f"{plain(value)} {unit} is out of range".replace("  ", " "), accepted)
    return value


def pump_resolution(resolution: Decimal | None, pump_max: Decimal) -> Decimal | None:
    if resolution is None:
        return None
    return positive(resolution, "--pump-resolution", min(Decimal(10), pump_max), "mL/h")


def programmable_rate(rate: Decimal, resolution: Decimal) -> Decimal:
    """``rate`` rounded half-up to a whole number of pump steps, at least one step (a running pump)."""
    steps = max(Decimal(1), div(rate, resolution).to_integral_value(rounding=ROUND_HALF_UP))
    return mul(steps, resolution)
