"""Resume options after a reaction: the engine's re-plan (fhir_desens.protocol.replan), based on what
was actually given.

The engine re-plans from the *planned* amounts up to the interruption. At the bedside the steps ran for
their actual times at their actual rates, so each option is rebased on the dose actually delivered: the
rows keep the engine's bags, rates and order; the row that reaches the target is cut to exactly what
remains, and when the engine's plan reaches the target, the last row is lengthened or shortened so the
session ends exactly on it (never above: INV-10).

Bags: a step back runs from an earlier bag again. The worksheet tells the nurse to keep every bag at the
bedside until the session ends (see the plan's solution warnings), and each option that re-uses an
earlier bag says so; when the bag no longer holds enough the engine refuses the option (INV-03).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from fhir_desens.protocol import display as shown
from fhir_desens.protocol.calculate import SIXTY, Plan, PlannedStep
from fhir_desens.protocol.model import ProtocolKind, TargetKind
from fhir_desens.protocol.quantity import Quantity, add, div, mul, sub, total
from fhir_desens.protocol.replan import Interruption, Replan, replan_all

if TYPE_CHECKING:  # state imports this module
    from fhir_desens.course.bedside.state import Reaction, SessionState

KEEP_BAGS = "Keep every bag at the bedside until the session ends: a step back after a reaction may need it."


@dataclass(frozen=True)
class Row:
    """One line of the session's schedule: a planned step, or a step of a re-plan after a reaction."""

    number: int
    step: PlannedStep
    label: str

    @property
    def solution(self) -> int:
        return self.step.solution


@dataclass(frozen=True)
class ResumeChoice:
    option: str
    rows: list[Row]  # what follows the interrupted row
    total: Decimal  # the session's total when these rows are all given
    reaches_target: bool
    minutes: Decimal
    notes: tuple[str, ...]


def plan_rows(plan: Plan) -> list[Row]:
    return [Row(step.number, step, f"Step {step.number}") for step in plan.steps]


def _as_plan(state: SessionState) -> Plan:
    """The schedule so far as an engine Plan (rows renumbered, planned cumulative doses recomputed)."""
    steps, cumulative, clock = [], Decimal(0), Decimal(0)
    for row in state.rows:
        cumulative = add(cumulative, row.step.dose.value)
        steps.append(
            dataclasses.replace(
                row.step,
                number=row.number,
                cumulative_dose=Quantity(cumulative, row.step.cumulative_dose.unit),
                start_minute=clock,
            )
        )
        clock = add(clock, row.step.minutes)
    return dataclasses.replace(state.plan, steps=tuple(steps))


def _minutes_run(state: SessionState, reaction: Reaction) -> Decimal:

    total = Decimal(0)
    for segment in state.segments:
        if segment.row.number == reaction.row.number and segment.ended_at is not None:
            total = add(
                total, div(Decimal(int((segment.ended_at - segment.started_at).total_seconds())), SIXTY)
            )
    return min(total, reaction.row.step.minutes)


def resume_choices(state: SessionState, reaction: Reaction) -> dict[str, ResumeChoice | str]:
    """Every resume option: the rows it would run, or why it is not possible here."""
    plan = _as_plan(state)
    minutes = Decimal(0) if plan.protocol.kind is ProtocolKind.DISCRETE else _minutes_run(state, reaction)
    result: dict[str, ResumeChoice | str] = {}
    for option, outcome in replan_all(plan, Interruption(reaction.row.number, minutes)).items():
        if isinstance(outcome, str):
            result[option.value] = outcome
        else:
            result[option.value] = _rebased(state, reaction, outcome)
    return result


def _rebased(state: SessionState, reaction: Reaction, replan: Replan) -> ResumeChoice:
    capped = state.plan.protocol.target_kind is TargetKind.CUMULATIVE
    target, running = state.target, state.delivered
    steps = list(replan.steps)
    rows: list[Row] = []
    for index, step in enumerate(steps):
        last = index == len(steps) - 1
        remaining = sub(target, running)
        if capped and remaining <= 0:
            break
        if capped and (step.dose.value >= remaining or (last and replan.reaches_target)):
            step = _exactly(state, step, remaining)
        running = add(running, step.dose.value)
        rows.append(Row(reaction.row.number + len(rows) + 1, step, _label(state.plan, step, reaction)))
        if capped and running == target:
            break
    notes = list(replan.warnings)
    earlier_bags = sorted({r.solution for r in rows if r.solution < reaction.row.solution})
    for bag in earlier_bags:
        notes.append(f"Runs from bag {bag} again. {KEEP_BAGS}")
    return ResumeChoice(
        option=replan.option.value,
        rows=rows,
        total=running,
        reaches_target=(running == target) if capped else replan.reaches_target,
        minutes=total(r.step.minutes for r in rows),
        notes=tuple(notes),
    )


def _exactly(state: SessionState, step: PlannedStep, remaining: Decimal) -> PlannedStep:
    """``step`` resized to deliver exactly ``remaining`` (same bag and rate)."""
    concentration = state.concentration(step.solution)
    if step.rate_ml_h is None or concentration is None:
        return (
            step
            if step.dose.value <= remaining
            else dataclasses.replace(step, dose=Quantity(remaining, step.dose.unit))
        )
    volume = div(remaining, concentration)
    return dataclasses.replace(
        step,
        volume_ml=volume,
        minutes=div(mul(volume, SIXTY), step.rate_ml_h),
        dose=Quantity(remaining, step.dose.unit),
        closing=True,
    )


def _label(plan: Plan, step: PlannedStep, reaction: Reaction) -> str:
    """The re-planned step named by its number on the worksheet and the flowsheet ("Step 10 (resumed after
    a reaction)"), which counts the steps inserted at planning: the engine's re-plan carries the protocol's
    own number, which does not (with a step inserted before step 9, the paused step 10 read "Step 9")."""
    if step.inserted:
        return "Intermediate step (after a reaction)"
    number = worksheet_number(plan, step)
    base = f"Step {number}" if number is not None else "Inserted step"
    original = worksheet_number(plan, reaction.row.step)
    if original is not None and number is not None and number < original:
        return f"{base} again (stepped back after a reaction)"
    if number is not None and number == original:
        return f"{base} (resumed after a reaction)"
    return base


def worksheet_number(plan: Plan, step: PlannedStep) -> int | None:
    """The number on the worksheet of the planned step that ``step`` is or runs again (None: a step of
    its own, such as the intermediate step a re-plan adds)."""
    if any(planned is step for planned in plan.steps):
        return step.number
    if step.protocol_step is not None:
        return next((p.number for p in plan.steps if p.protocol_step == step.protocol_step), None)
    if step.inserted:
        return None
    # a step inserted at planning, run again: the engine's re-plan keeps its bag and rate, not its number
    same = [
        p.number
        for p in plan.steps
        if p.inserted and (p.solution, p.rate_ml_h) == (step.solution, step.rate_ml_h)
    ]
    return same[0] if len(same) == 1 else None


def describe(choice: ResumeChoice, unit: str) -> str:
    """One line for the resume form."""
    ending = "reaches the target" if choice.reaches_target else "stops short of the target"
    steps = "1 step" if len(choice.rows) == 1 else f"{len(choice.rows)} steps"
    return (
        f"{steps}, {shown.clock_text(choice.minutes)}, total {shown.dose_text(choice.total, unit)}: {ending}"
    )


__all__ = ["KEEP_BAGS", "ResumeChoice", "Row", "describe", "plan_rows", "resume_choices"]
