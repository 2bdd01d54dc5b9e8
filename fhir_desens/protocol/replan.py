"""Re-planning after a reaction (clinical.md 1.7).

When a step is interrupted, the allergist chooses how to resume: the same step, one or two steps
back (lower rate), an inserted intermediate step, or stop. For AERD aspirin the provoking dose is
repeated before continuing. Whatever the choice, the re-plan never takes the total above the target
and, when completed, reaches it exactly: every timed step is capped at what is left, and the
closing step carries exactly the remainder (INV-10).
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum

from fhir_desens.errors import DesensError, InputError, SafetyViolation
from fhir_desens.protocol.calculate import SIXTY, Plan, PlannedStep, programmable_rate
from fhir_desens.protocol.display import dose_text
from fhir_desens.protocol.model import ProtocolKind, ReactionRule, TargetKind
from fhir_desens.protocol.quantity import Quantity, add, div, mul, plain, sub
from fhir_desens.protocol.record import record


class ResumeOption(Enum):
    RESUME_SAME_STEP = "resume-same-step"
    BACK_ONE_STEP = "back-one-step"
    BACK_TWO_STEPS = "back-two-steps"
    INSERT_INTERMEDIATE_STEP = "insert-intermediate-step"
    REPEAT_PROVOKING_DOSE = "repeat-provoking-dose"
    STOP = "stop"

    @classmethod
    def parse(cls, text: str) -> ResumeOption:
        for option in cls:
            if option.value == text:
                return option
        raise InputError("resume option", f"unknown option '{text}'", ", ".join(o.value for o in cls))


@record
class Interruption:
    """Where the reaction stopped the plan: in plan step ``step`` after ``minutes`` of it.

    For discrete doses the dose of ``step`` was taken and ``minutes`` is ignored.
    """

    step: int
    minutes: Decimal = Decimal(0)


@record
class Replan:
    option: ResumeOption
    interruption: Interruption
    delivered: Quantity  # before resuming
    steps: tuple[PlannedStep, ...]  # what remains; cumulative_dose continues from `delivered`
    total_minutes: Decimal
    reaches_target: bool
    warnings: tuple[str, ...] = ()


@record
class _Segment:
    solution: int
    rate_ml_h: Decimal | None
    minutes: Decimal | None  # None: the closing step, carrying the remainder
    volume_ml: Decimal | None = None  # discrete liquid doses
    units: Decimal | None = None  # discrete solid doses
    inserted: bool = False
    protocol_step: int | None = None
    note: str | None = None


def options_for(plan: Plan) -> tuple[ResumeOption, ...]:
    if plan.protocol.reaction_rule is ReactionRule.REPEAT_PROVOKING_DOSE:
        return (ResumeOption.REPEAT_PROVOKING_DOSE, ResumeOption.STOP)
    return (
        ResumeOption.RESUME_SAME_STEP,
        ResumeOption.BACK_ONE_STEP,
        ResumeOption.BACK_TWO_STEPS,
        ResumeOption.INSERT_INTERMEDIATE_STEP,
        ResumeOption.STOP,
    )


def replan_all(plan: Plan, interruption: Interruption) -> dict[ResumeOption, Replan | str]:
    """Every resume option: its re-plan, or why it is not possible here."""
    result: dict[ResumeOption, Replan | str] = {}
    for option in options_for(plan):
        try:
            result[option] = replan(plan, interruption, option)
        except DesensError as error:
            result[option] = str(error)
    return result


def replan(plan: Plan, interruption: Interruption, option: ResumeOption) -> Replan:
    if option not in options_for(plan):
        accepted = ", ".join(o.value for o in options_for(plan))
        raise InputError(
            "resume option", f"'{option.value}' does not apply to protocol {plan.protocol.id}", accepted
        )
    index = interruption.step - 1
    if not 0 <= index < len(plan.steps):
        raise InputError("step", f"there is no step {interruption.step}", f"1 to {len(plan.steps)}")
    if plan.protocol.kind is ProtocolKind.INFUSION:
        delivered, drawn, segments = _infusion_segments(plan, interruption, option)
    else:
        delivered, drawn, segments = _discrete_segments(plan, interruption, option)
    return _run(plan, interruption, option, delivered, drawn, segments)


def _segment(step: PlannedStep, minutes: Decimal | None = None, closing: bool = False) -> _Segment:
    return _Segment(
        solution=step.solution,
        rate_ml_h=step.rate_ml_h,
        minutes=None if closing else (step.minutes if minutes is None else minutes),
        volume_ml=step.volume_ml if step.rate_ml_h is None else None,
        units=step.units,
        protocol_step=step.protocol_step,
        note=step.note,
    )


def _infusion_segments(
    plan: Plan, interruption: Interruption, option: ResumeOption
) -> tuple[Decimal, dict[int, Decimal], list[_Segment]]:
    steps, index = plan.steps, interruption.step - 1
    current = steps[index]
    if not 0 <= interruption.minutes <= current.minutes:
        raise InputError(
            "minutes",
            f"step {current.number} lasts {plain(current.minutes)} min",
            f"0 to {plain(current.minutes)}",
        )
    assert current.rate_ml_h is not None
    partial = div(mul(current.rate_ml_h, interruption.minutes), SIXTY)
    concentration = _concentrations(plan)
    delivered = add(
        steps[index - 1].cumulative_dose.value if index else Decimal(0),
        mul(partial, concentration[current.solution]),
    )
    drawn: dict[int, Decimal] = {}
    for step in steps[:index]:
        assert step.volume_ml is not None
        drawn[step.solution] = add(drawn.get(step.solution, Decimal(0)), step.volume_ml)
    drawn[current.solution] = add(drawn.get(current.solution, Decimal(0)), partial)

    later = [_segment(s, closing=s.closing) for s in steps[index + 1 :]]
    rest_of_current = _segment(current, sub(current.minutes, interruption.minutes), closing=current.closing)
    if option is ResumeOption.STOP:
        return delivered, drawn, []
    if option is ResumeOption.RESUME_SAME_STEP:
        return delivered, drawn, [rest_of_current, *later]
    if option is ResumeOption.INSERT_INTERMEDIATE_STEP:
        previous = steps[index - 1] if index and steps[index - 1].solution == current.solution else None
        low = previous.rate_ml_h if previous is not None and previous.rate_ml_h is not None else Decimal(0)
        minutes = plan.protocol.defaults.step_minutes
        rate = div(add(low, current.rate_ml_h), Decimal(2))
        resolution = plan.request.pump_resolution_ml_h
        inserted = _Segment(
            current.solution,
            rate if resolution is None else programmable_rate(rate, resolution),
            minutes,
            inserted=True,
            note="intermediate step inserted after a reaction",
        )
        return delivered, drawn, [inserted, rest_of_current, *later]
    back = 1 if option is ResumeOption.BACK_ONE_STEP else 2
    if index - back < 0:
        raise InputError("resume option", f"step {current.number} has no step {back} before it")
    repeated = [_segment(s) for s in steps[index - back : index]]
    whole_current = _segment(current, closing=current.closing)
    return delivered, drawn, [*repeated, whole_current, *later]


def _discrete_segments(
    plan: Plan, interruption: Interruption, option: ResumeOption
) -> tuple[Decimal, dict[int, Decimal], list[_Segment]]:
    steps, index = plan.steps, interruption.step - 1
    delivered = steps[index].cumulative_dose.value
    drawn: dict[int, Decimal] = {}
    for step in steps[: index + 1]:
        amount = step.units if step.units is not None else step.volume_ml
        assert amount is not None
        drawn[step.solution] = add(drawn.get(step.solution, Decimal(0)), amount)
    later = [_segment(s) for s in steps[index + 1 :]]
    if option is ResumeOption.STOP:
        return delivered, drawn, []
    if option in (ResumeOption.RESUME_SAME_STEP,):
        return delivered, drawn, later
    if option is ResumeOption.REPEAT_PROVOKING_DOSE:
        return delivered, drawn, [_segment(steps[index]), *later]
    if option is ResumeOption.INSERT_INTERMEDIATE_STEP:
        raise InputError("resume option", "oral and syringe doses are repeated or stepped back, not split")
    back = 1 if option is ResumeOption.BACK_ONE_STEP else 2
    if index - back + 1 < 0:
        raise InputError("resume option", f"step {interruption.step} has no step {back} before it")
    return delivered, drawn, [_segment(s) for s in steps[index - back + 1 : index + 1]] + later


def _concentrations(plan: Plan) -> dict[int, Decimal]:
    return {s.number: s.concentration.value for s in plan.solutions if s.concentration is not None}


def _run(
    plan: Plan,
    interruption: Interruption,
    option: ResumeOption,
    delivered: Decimal,
    drawn: dict[int, Decimal],
    segments: list[_Segment],
) -> Replan:
    target = plan.target_dose.value
    capped = plan.protocol.target_kind is TargetKind.CUMULATIVE
    concentration = _concentrations(plan)
    unit_doses = {s.number: s.unit_dose.value for s in plan.solutions if s.unit_dose is not None}
    prepared = {s.number: s.volume_ml if s.volume_ml is not None else s.units_used for s in plan.solutions}
    cumulative, clock = delivered, Decimal(0)
    drawn = dict(drawn)
    result: list[PlannedStep] = []
    for segment in segments:
        remaining = sub(target, cumulative)
        if capped and remaining <= 0:
            break
        rate, minutes, volume, units, dose, closing = _amounts(
            segment, concentration, unit_doses, remaining, capped
        )
        amount = units if units is not None else volume
        assert amount is not None
        drawn[segment.solution] = add(drawn.get(segment.solution, Decimal(0)), amount)
        limit = prepared.get(segment.solution)
        if (
            plan.protocol.kind is ProtocolKind.INFUSION
            and limit is not None
            and drawn[segment.solution] > limit
        ):
            raise SafetyViolation(
                "INV-03",
                f"solution {segment.solution} does not hold enough for this option",
                f"Solution {segment.solution} does not hold enough for this option: prepare a new bag first.",
            )
        cumulative = add(cumulative, dose)
        result.append(
            PlannedStep(
                number=len(result) + 1,
                solution=segment.solution,
                rate_ml_h=rate,
                minutes=minutes,
                volume_ml=volume,
                units=units,
                dose=Quantity(dose, plan.dose_unit),
                cumulative_dose=Quantity(cumulative, plan.dose_unit),
                start_minute=clock,
                closing=closing,
                inserted=segment.inserted,
                protocol_step=segment.protocol_step,
                note=segment.note,
            )
        )
        clock = add(clock, minutes)
        if closing:
            break
    reaches = (cumulative == target) if capped else bool(result) and result[-1].dose.value == target
    _check_replan(plan, delivered, result, capped)
    warnings = [] if reaches else [_undelivered(target, cumulative, plan.dose_unit)]
    if not capped and reaches:
        warnings.append(
            f"Doses repeated after the reaction add to the total ({dose_text(cumulative, plan.dose_unit)})."
        )
    return Replan(
        option=option,
        interruption=interruption,
        delivered=Quantity(delivered, plan.dose_unit),
        steps=tuple(result),
        total_minutes=clock,
        reaches_target=reaches,
        warnings=tuple(warnings),
    )


def _amounts(
    segment: _Segment,
    concentration: dict[int, Decimal],
    unit_doses: dict[int, Decimal],
    remaining: Decimal,
    capped: bool,
) -> tuple[Decimal | None, Decimal, Decimal | None, Decimal | None, Decimal, bool]:
    """(rate, minutes, volume, units, dose, closing) of one segment, capped at the remaining target."""
    if segment.rate_ml_h is None:  # a discrete dose
        if segment.units is not None:
            dose = mul(segment.units, unit_doses[segment.solution])
            if capped and dose > remaining:
                raise SafetyViolation(
                    "INV-10",
                    "a tablet dose would exceed the target",
                    "The next tablet dose would go above the target dose, and tablets are not split here: "
                    "choose another option.",
                )
            assert segment.minutes is not None
            return None, segment.minutes, None, segment.units, dose, False
        assert segment.volume_ml is not None and segment.minutes is not None
        conc = concentration[segment.solution]
        dose, volume, closing = mul(segment.volume_ml, conc), segment.volume_ml, False
        if capped and dose >= remaining:
            dose, volume, closing = remaining, div(remaining, conc), True
        return None, segment.minutes, volume, None, dose, closing
    conc, rate = concentration[segment.solution], segment.rate_ml_h
    if segment.minutes is None:
        volume = div(remaining, conc)
        return rate, div(mul(volume, SIXTY), rate), volume, None, remaining, True
    volume = div(mul(rate, segment.minutes), SIXTY)
    dose = mul(volume, conc)
    if dose >= remaining:
        volume = div(remaining, conc)
        return rate, div(mul(volume, SIXTY), rate), volume, None, remaining, True
    return rate, segment.minutes, volume, None, dose, False


def _undelivered(target: Decimal, given: Decimal, unit: str) -> str:
    """What stopping leaves undelivered, never shown as the whole target when some was given (399.96 mg
    reads "400 mg" at four significant figures)."""
    left = dose_text(sub(target, given), unit)
    if given > 0 and left == dose_text(target, unit):
        return f"Stopping leaves all but {dose_text(given, unit)} of the {left} undelivered."
    return f"Stopping leaves {left} undelivered."


def _check_replan(plan: Plan, delivered: Decimal, steps: list[PlannedStep], capped: bool) -> None:
    """INV-10: never above the target; the running total is consistent."""
    running = delivered
    for step in steps:
        running = add(running, step.dose.value)
        if running != step.cumulative_dose.value:
            raise SafetyViolation(
                "INV-10",
                f"re-plan step {step.number}: cumulative does not add up",
                f"Step {step.number} of this option does not add up to the running total: do not use it.",
            )
        if capped and running > plan.target_dose.value:
            raise SafetyViolation(
                "INV-10",
                f"re-plan step {step.number} exceeds the target",
                f"Step {step.number} of this option would take the total above the target dose: do not use it.",
            )
        if not capped and step.dose.value > plan.target_dose.value:
            raise SafetyViolation(
                "INV-10",
                f"re-plan step {step.number}: a dose above the target dose",
                f"Step {step.number} of this option would give more than the target dose at once: do not use it.",
            )
        if step.minutes <= 0:
            raise SafetyViolation(
                "INV-05",
                f"re-plan step {step.number} has no duration",
                f"Step {step.number} of this option would last no time at all: do not use it.",
            )
