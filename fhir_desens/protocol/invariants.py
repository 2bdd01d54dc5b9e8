"""Safety invariants of a plan, each with an ID traced in docs/requirements.md.

``violations`` lists every broken invariant (used by validation of imported protocols and plans);
``check_plan`` raises on the first one (used before any plan is shown, printed or ordered).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from fhir_desens.errors import SafetyViolation
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.model import ProtocolKind, SolutionDefinition, TargetKind
from fhir_desens.protocol.plan import Plan, PlannedSolution, PlannedStep
from fhir_desens.protocol.quantity import CANONICAL_DOSE, EXACT, plain
from fhir_desens.protocol.record import record
from fhir_desens.protocol.syringes import syringe_for

#: Relative tolerance for "volume x concentration = dose": the 50-digit context loses far less.
CONSISTENCY_TOLERANCE = Decimal("1e-30")
ZERO = Decimal(0)
SIXTY = Decimal(60)
CANONICAL_DOSE_UNITS = frozenset(u.code for u in CANONICAL_DOSE.values())


@record
class Invariant:
    id: str
    statement: str


INVARIANTS: dict[str, Invariant] = {
    i.id: i
    for i in (
        Invariant(
            "INV-01", "The plan delivers the target exactly: cumulative dose = target (final dose = target)."
        ),
        Invariant("INV-02", "No step takes the cumulative dose above the target (no single dose above it)."),
        Invariant("INV-03", "Each step's volume fits in what is left of its solution."),
        Invariant("INV-04", "Step doses never decrease unless the protocol allows it."),
        Invariant("INV-05", "Every step has a duration (or interval) above zero."),
        Invariant("INV-06", "Every rate is above zero and within the pump maximum."),
        Invariant("INV-07", "Every dose carries the target's unit; every concentration its unit per mL."),
        Invariant("INV-08", "Each step's dose equals its volume times its solution's concentration."),
        Invariant(
            "INV-09", "Each solution's drug amount equals concentration x volume; infused <= prepared."
        ),
        Invariant(
            "INV-10", "A re-plan after a reaction never exceeds the target and reaches it when completed."
        ),
        Invariant("INV-11", "With a pump resolution, every rate is a whole number of pump steps."),
        Invariant(
            "INV-21",
            "Discrete doses drawn by syringe from one prepared solution (a bag shared between steps) "
            "never draw more than its prepared volume.",
        ),
        Invariant(
            "INV-22",
            "A stated preparation makes exactly the solution's concentration and volume: drug added / "
            "(bag + overfill - removed + drug volume).",
        ),
        Invariant(
            "INV-23",
            "A concentration that relies on a bag's overfill is never silent: every plan names the bag "
            "and the overfill it assumes.",
        ),
        Invariant(
            "INV-24",
            "A fixed-dose table is planned only at its exact total; any other target is refused naming it.",
        ),
        Invariant(
            "INV-25",
            "With syringe-measurable volumes, every discrete liquid dose is on the marks of the syringe "
            "that measures it, and its dose is computed exactly from that volume.",
        ),
    )
}


@record
class Violation:
    invariant_id: str
    detail: str  # technical, for logs and JSON
    message: str = ""  # plain words for people: what is wrong and what to change

    @property
    def for_people(self) -> str:
        return self.message or f"This plan is not safe to use: {self.detail}."


def nearly_equal(a: Decimal, b: Decimal) -> bool:
    """Equal within :data:`CONSISTENCY_TOLERANCE` (relative): what INV-05, INV-08 and INV-09 allow."""
    if a == b:  # the usual case, and much cheaper than the scaled comparison
        return True
    scale = max(abs(a), abs(b), Decimal(1))
    return abs(EXACT.subtract(a, b)) <= EXACT.multiply(scale, CONSISTENCY_TOLERANCE)


def violations(plan: Plan, steps: Sequence[PlannedStep] | None = None) -> list[Violation]:
    """Every invariant the plan breaks (empty when safe)."""
    steps = list(plan.steps if steps is None else steps)
    found: list[Violation] = []
    target = plan.target_dose.value
    final_dose = plan.protocol.target_kind is TargetKind.FINAL_DOSE

    def broken(invariant_id: str, detail: str, message: str = "") -> None:
        found.append(Violation(invariant_id, detail, message))

    if not steps:
        broken("INV-01", "the plan has no steps")
        return found
    total = steps[-1].cumulative_dose.value
    if final_dose:
        if steps[-1].dose.value != target:
            broken("INV-01", f"the final dose is {plain(steps[-1].dose.value)}, target {plain(target)}")
    elif total != target:
        broken("INV-01", f"cumulative {plain(total)} != target {plain(target)} {plan.dose_unit}")

    running = ZERO
    previous_dose: Decimal | None = None
    solutions = {s.number: s for s in plan.solutions}
    drawn: dict[int, Decimal] = {}
    request, protocol, dose_unit = plan.request, plan.protocol, plan.dose_unit
    pump_max, resolution = request.pump_max_ml_h, request.pump_resolution_ml_h
    discrete = protocol.kind is ProtocolKind.DISCRETE
    on_syringe_marks = request.syringe_volumes and discrete
    allow_decrease = protocol.allow_dose_decrease
    add, multiply, divide = EXACT.add, EXACT.multiply, EXACT.divide
    for step in steps:
        # Texts are written only for a broken invariant: the loop itself is plain Decimal comparisons.
        dose, cumulative, rate, volume = (
            step.dose.value,
            step.cumulative_dose.value,
            step.rate_ml_h,
            step.volume_ml,
        )
        running = add(running, dose)
        if running != cumulative:
            broken(
                "INV-01",
                f"step {step.number}: cumulative {plain(cumulative)} != running sum {plain(running)}",
            )
        if final_dose and dose > target:
            broken(
                "INV-02", f"step {step.number}: dose {plain(dose)} is above the target dose {plain(target)}"
            )
        if not final_dose and running > target:
            broken(
                "INV-02",
                f"step {step.number}: cumulative {plain(running)} exceeds the target {plain(target)}",
            )
        if step.dose.unit != dose_unit or step.cumulative_dose.unit != dose_unit:
            broken("INV-07", f"step {step.number}: dose unit {step.dose.unit}, plan unit {dose_unit}")
        if dose <= 0:
            broken("INV-04", f"step {step.number}: dose {plain(dose)} is not above zero")
        # Inserted steps sit between rates on purpose; the protocol's own steps must never go down.
        if not step.inserted:
            if previous_dose is not None and dose < previous_dose and not allow_decrease:
                broken("INV-04", *_decreased(step, previous_dose, dose_unit))
            previous_dose = dose
        if step.minutes <= 0:
            broken("INV-05", f"step {step.number}: duration {plain(step.minutes)} min")
        if rate is not None:
            if not 0 < rate <= pump_max:
                broken("INV-06", *_above_pump(step, rate, pump_max))
            if resolution is not None and rate % resolution != 0:
                broken(
                    "INV-11",
                    f"step {step.number}: rate {plain(rate)} mL/h is not a multiple of {plain(resolution)}",
                )
        if on_syringe_marks and volume is not None and volume % syringe_for(volume).graduation_ml != 0:
            broken(
                "INV-25",
                f"step {step.number}: {plain(volume)} mL is not on the marks of a {syringe_for(volume).text}",
            )
        solution = solutions.get(step.solution)
        if solution is None:
            broken(
                "INV-03",
                f"step {step.number}: uses solution {step.solution}, which the plan does not prepare",
            )
            continue
        if volume is None:
            continue
        in_solution = drawn[step.solution] = add(drawn.get(step.solution, ZERO), volume)
        if solution.volume_ml is not None and in_solution > solution.volume_ml:
            broken(
                "INV-21" if discrete else "INV-03",
                f"step {step.number}: {plain(in_solution)} mL drawn from solution {step.solution} "
                f"of {plain(solution.volume_ml)} mL",
                _too_small(solution.number, solution.volume_ml, steps, step, in_solution),
            )
        if solution.concentration is not None:
            expected = multiply(volume, solution.concentration.value)
            if expected != dose and not nearly_equal(expected, dose):
                broken(
                    "INV-08",
                    f"step {step.number}: volume x concentration = {plain(expected)}, dose {plain(dose)}",
                )
        if rate is not None:
            expected_minutes = divide(multiply(volume, SIXTY), rate)
            if expected_minutes != step.minutes and not nearly_equal(expected_minutes, step.minutes):
                broken(
                    "INV-05", f"step {step.number}: {plain(step.minutes)} min does not match volume / rate"
                )
    for solution in plan.solutions:
        if solution.concentration is not None and solution.volume_ml is not None:
            if solution.concentration.unit != plan.dose_unit + "/mL":
                broken(
                    "INV-07", f"solution {solution.number}: concentration unit {solution.concentration.unit}"
                )
            expected = EXACT.multiply(solution.concentration.value, solution.volume_ml)
            if expected != solution.drug_amount.value and not nearly_equal(
                expected, solution.drug_amount.value
            ):
                broken(
                    "INV-09",
                    f"solution {solution.number}: amount {plain(solution.drug_amount.value)} != c x V",
                )
            infused = solution.volume_infused_ml or Decimal(0)
            if infused > solution.volume_ml:
                broken("INV-09", f"solution {solution.number}: infused {plain(infused)} > prepared")
        for invariant_id, detail in _preparation_violations(plan, solution):
            broken(invariant_id, detail)
    return found


def _decreased(step: PlannedStep, previous_dose: Decimal, dose_unit: str) -> tuple[str, str]:
    """INV-04's detail and words for people: a protocol step whose dose is below the one before."""
    dose = step.dose.value
    return (
        f"step {step.number}: dose {plain(dose)} < previous {plain(previous_dose)}",
        f"Step {step.number} would give {shown.dose_text(dose, dose_unit)}, less than "
        f"the step before ({shown.dose_text(previous_dose, dose_unit)}); "
        "this protocol's doses must not go down: check the bag fractions, volumes and rates.",
    )


def _above_pump(step: PlannedStep, rate: Decimal, pump_max: Decimal) -> tuple[str, str]:
    """INV-06's detail and words for people: a rate outside (0, pump maximum]."""
    return (
        f"step {step.number}: rate {plain(rate)} mL/h outside (0, {plain(pump_max)}]",
        f"Step {step.number} would run at {shown.rate_text(rate, Decimal('0.001'))}, "
        f"above the pump maximum of {shown.rate_text(pump_max, Decimal(1))}: "
        "lower the final rate or raise the pump maximum.",
    )


def _preparation_violations(plan: Plan, solution: PlannedSolution) -> list[tuple[str, str]]:
    """INV-22 and INV-23 for one planned solution with a stated preparation."""
    prep = solution.preparation
    if prep is None:
        return []
    from fhir_desens.protocol.library import preparation_problem

    found = []
    as_defined = SolutionDefinition(
        solution.number,
        solution.label,
        concentration=solution.concentration,
        volume_ml=solution.volume_ml,
        preparation=prep,
    )
    problem = preparation_problem(as_defined)
    if problem is not None:
        found.append(("INV-22", problem))
    if prep.overfill_ml and not any(
        f"Solution {solution.number} " in w and "overfill" in w for w in plan.warnings
    ):
        found.append(("INV-23", f"solution {solution.number} relies on overfill and no warning says so"))
    return found


def _too_small(
    number: int, prepared: Decimal, steps: Sequence[PlannedStep], upto: PlannedStep, needed: Decimal
) -> str:
    """'Solution 1 (5 mL) is too small: steps 1-4 need 9.3 mL; prepare a larger volume ...'."""
    using = [s.number for s in steps if s.solution == number and s.number <= upto.number]
    which = f"steps {using[0]}-{using[-1]} need" if len(using) > 1 else f"step {using[0]} needs"
    return (
        f"Solution {number} ({shown.volume_text(prepared)}) is too small: {which} "
        f"{shown.volume_text(needed)}; prepare a larger volume or lower the rates."
    )


def check_plan(plan: Plan) -> None:
    """Raise SafetyViolation for the first broken invariant (plain words for people, id for logs)."""
    found = violations(plan)
    if found:
        first = found[0]
        raise SafetyViolation(first.invariant_id, first.detail, first.for_people)
