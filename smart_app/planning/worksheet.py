"""The worksheet view-model: an engine plan formatted for people (every number is the engine's)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fhir_desens.fhir.plandefinition import canonical_url
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.calculate import Plan, PlannedSolution, PlannedStep
from fhir_desens.protocol.model import ProtocolKind
from fhir_desens.protocol.preparation import DEFAULT_MIN_DRAW_ML
from fhir_desens.protocol.report import is_oral, rate_text
from smart_app.paper.sheets import MadeSolution, bag_notes, drug_given, made_solutions
from smart_app.planning.forms import CLOSING_TEXT
from smart_app.planning.timeline import timeline_svg

# --- the worksheet view-model ---------------------------------------------------------------------


@dataclass(frozen=True)
class SolutionRow:
    number: int
    label: str
    strength: str
    concentration: str
    volume: str
    drug_amount: str
    infused: str
    diluent: str
    steps: str  # "1-4": the steps that use it
    preparation: str | None = None  # the protocol's stated recipe (authored tables), for the pharmacy
    tablets: bool = False  # tablets or capsules given as supplied (no volume, no diluent)
    prepared: str | None = None  # oral solutions: the volume the pharmacy makes (the pharmacy sheet's)
    pharmacy_note: str | None = None  # a bag made from an intermediate dilution, or not exactly measurable


@dataclass(frozen=True)
class StepRow:
    number: int
    solution: int
    rate: str
    minutes: str
    volume: str
    dose: str
    cumulative: str
    elapsed: str
    clock: str
    inserted: bool
    closing: bool
    note: str | None


@dataclass(frozen=True)
class PremedicationRow:
    drug: str
    dose: str
    route: str
    timing: str
    condition: str | None
    clock: str | None
    allergy: str | None = None  # the allergy list rules it out: "allergy to Aspirin" (PLAN-PREMED-1)


@dataclass(frozen=True)
class Worksheet:
    """Everything a worksheet shows, as display text (the partial ``_worksheet.html`` renders it)."""

    title: str
    protocol_id: str
    protocol_version: str
    protocol_canonical: str  # url|version
    evidence: str
    route: str
    infusion: bool
    oral: bool
    drug: str
    target: str
    dose_unit: str
    closing: str | None
    final_rate: str | None
    solutions: tuple[SolutionRow, ...]
    steps: tuple[StepRow, ...]
    total_minutes: str
    total_time: str
    started_at: str  # "2027-01-15 09:00 CET"
    ends_at: str
    premedications: tuple[PremedicationRow, ...]
    nursing_instructions: tuple[str, ...]
    warnings: tuple[str, ...]
    timeline_svg: str = field(repr=False)
    clock_basis: str = "if started now"  # or "from the planned start"
    pump_note: str | None = None  # how the rates are to be programmed
    #: the drug prepared and given when the protocol gives another than the order ("Penicillin V
    #: potassium (given for the order of Penicillin G benzathine)"); None: the plan's drug
    drug_given: str | None = None

    @property
    def oral_prepared(self) -> bool:
        """Whether the solutions table has a "Prepared" column (oral solutions made by the pharmacy)."""
        return any(s.prepared is not None for s in self.solutions)

    @property
    def step_count(self) -> int:
        return len(self.steps)

    @property
    def given_by_mouth(self) -> dict[str, str]:
        """Column headings of an oral plan that say tablets or mL as its solutions are (never "mL" for a
        tablet): ``strength``, ``contains``, ``given`` (solutions table), ``recorded`` (nurse column)."""
        forms = {s.tablets for s in self.solutions}
        if forms == {True}:
            return {
                "strength": "Strength",
                "contains": "Drug in the tablets used",
                "given": "Tablets given by mouth",
                "recorded": "Tablets given",
            }
        if forms == {False}:
            return {
                "strength": "Concentration",
                "contains": "Drug in the solution",
                "given": "Volume given by mouth",
                "recorded": "mL given",
            }
        return {
            "strength": "Concentration or strength",
            "contains": "Drug in the solution or tablets",
            "given": "Given by mouth",
            "recorded": "mL or tablets given",
        }


def _amount(value: Decimal | None, unit_code: str) -> str:
    return "—" if value is None else shown.dose_text(value, unit_code)


def _ml(value: Decimal | None) -> str:
    return "—" if value is None else shown.volume_text(value)


def _clock(start: datetime, minutes: Decimal) -> datetime:
    return start + timedelta(seconds=_seconds(minutes))


def _seconds(minutes: Decimal) -> int:
    return int((minutes * 60).to_integral_value())  # to the second, for the clock only


def _hhmm(moment: datetime) -> str:
    return f"{moment.hour:02d}:{moment.minute:02d}"  # strftime("%H:%M"), at a fraction of its cost


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "—"
    return str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}-{numbers[-1]}"


def _solution_row(
    plan: Plan, solution: PlannedSolution, made: MadeSolution | None = None, note: str | None = None
) -> SolutionRow:
    dose_unit = plan.dose_unit
    steps = [s.number for s in plan.steps if s.solution == solution.number]
    if solution.unit_dose is not None:  # tablets/capsules
        count = solution.units_used or Decimal(0)
        return SolutionRow(
            number=solution.number,
            label=solution.label,
            strength=solution.strength,
            concentration=f"{_amount(solution.unit_dose.value, dose_unit)} per tablet",
            # the strength is the concentration column; the sub-line would repeat it
            volume="—",
            drug_amount=_amount(solution.drug_amount.value, dose_unit),
            infused=shown.count_text(count, "tablet"),
            diluent="—",
            steps=_ranges(steps),
            tablets=True,
        )
    assert solution.concentration is not None
    return SolutionRow(
        number=solution.number,
        label=solution.label,
        strength="" if solution.strength.startswith("fixed ") else solution.strength,  # = the concentration
        concentration=shown.concentration_text(solution.concentration.value, solution.concentration.unit),
        volume=_ml(solution.volume_ml),
        drug_amount=_amount(solution.drug_amount.value, dose_unit),
        infused=_ml(solution.volume_infused_ml),
        diluent=made.diluent if made is not None else (solution.diluent or "—"),
        steps=_ranges(steps),
        preparation=None if solution.preparation is None else solution.preparation.text,
        prepared=None if made is None else made.prepared,
        pharmacy_note=note,
    )


def _step_row(plan: Plan, step: PlannedStep, start: datetime) -> StepRow:
    if step.units is not None:
        volume = shown.count_text(step.units, "tablet")
    elif step.volume_ml is None:
        volume = "—"
    elif plan.protocol.kind is ProtocolKind.INFUSION:
        volume = shown.volume_number(step.volume_ml)  # the column header says mL
    else:
        volume = shown.volume_text(step.volume_ml)  # discrete doses: "0.1 mL" beside "1 tablet"
    return StepRow(
        number=step.number,
        solution=step.solution,
        rate="—" if step.rate_ml_h is None else rate_text(plan, step.rate_ml_h),
        minutes=shown.minutes_text(step.minutes).removesuffix(" min"),
        volume=volume,
        dose=_amount(step.dose.value, plan.dose_unit),
        cumulative=_amount(step.cumulative_dose.value, plan.dose_unit),
        elapsed=shown.clock_text(step.start_minute),
        clock=_hhmm(_clock(start, step.start_minute)),
        inserted=step.inserted,
        closing=step.closing,
        note=step.note,
    )


def worksheet_for(
    plan: Plan,
    started_at: datetime,
    *,
    planned: bool = False,
    rxnorm: tuple[str, ...] = (),
    minimum_ml: Decimal = DEFAULT_MIN_DRAW_ML,
) -> Worksheet:
    """The worksheet of an engine plan; clock times count from ``started_at`` (timezone-aware):
    the planned start (``planned``), else "if started now". ``rxnorm``: the ordered drug's codes;
    ``minimum_ml``: the site's minimum draw (the pharmacy sheet's)."""
    return at_start(plan_sheet(plan, rxnorm, minimum_ml), plan, started_at, planned=planned)


#: the clock :func:`plan_sheet` counts from; :func:`at_start` replaces every time computed from it
_NO_CLOCK = datetime(2000, 1, 1, tzinfo=UTC)


def plan_sheet(
    plan: Plan, rxnorm: tuple[str, ...] = (), minimum_ml: Decimal = DEFAULT_MIN_DRAW_ML
) -> Worksheet:
    """Everything of the worksheet that depends on the plan alone (the step table, the timeline SVG,
    the texts), to be memoized per plan; its clock times are placeholders until :func:`at_start`.
    ``rxnorm`` (the ordered drug's codes) finds the products: the drug prepared, and what the pharmacy
    makes of each oral solution and how a bag is drawn (``minimum_ml``: the site's minimum draw), as the
    pharmacy sheet says it."""
    protocol = plan.protocol
    made = made_solutions(plan, rxnorm)
    notes = bag_notes(plan, rxnorm, minimum_ml)
    return Worksheet(
        title=protocol.title,
        protocol_id=protocol.id,
        protocol_version=protocol.version,
        protocol_canonical=f"{canonical_url(protocol)}|{protocol.version}",
        evidence=protocol.evidence.value,
        route=protocol.route,
        infusion=protocol.kind is ProtocolKind.INFUSION,
        oral=is_oral(plan),
        drug=plan.drug,
        target=_amount(plan.target_dose.value, plan.dose_unit),
        dose_unit=shown.unit_text(plan.dose_unit),
        closing=CLOSING_TEXT.get(plan.closing) if plan.closing is not None else None,
        final_rate=None if plan.final_rate_ml_h is None else f"{rate_text(plan, plan.final_rate_ml_h)} mL/h",
        solutions=tuple(
            _solution_row(plan, s, made.get(s.number), notes.get(s.number)) for s in plan.solutions
        ),
        steps=tuple(_step_row(plan, s, _NO_CLOCK) for s in plan.steps),
        total_minutes=shown.minutes_text(plan.total_minutes).removesuffix(" min"),
        total_time=shown.clock_text(plan.total_minutes),
        started_at="",
        ends_at="",
        premedications=tuple(
            PremedicationRow(
                drug=p.drug, dose=p.dose, route=p.route, timing=p.timing, condition=p.condition, clock=None
            )
            for p in plan.premedications
        ),
        nursing_instructions=plan.nursing_instructions,
        warnings=plan.warnings,
        timeline_svg=timeline_svg(plan),
        pump_note=_pump_note(plan),
        drug_given=drug_given(plan, rxnorm),
    )


@dataclass(frozen=True)
class ClockTimes:
    """The worksheet's clock times from one start: one per step, one per premedication (None: not timed)."""

    steps: tuple[str, ...]
    premedications: tuple[str | None, ...]
    started_at: str
    ends_at: str
    clock_basis: str


@dataclass(frozen=True)
class ClockOffsets:
    """When a plan's steps and timed premedications start and when it ends, in whole seconds from its
    start (:func:`_clock`'s rounding): computed once per plan, counted from each request's start."""

    steps: tuple[int, ...]
    premedications: tuple[int | None, ...]
    end: int


def clock_offsets(plan: Plan) -> ClockOffsets:
    return ClockOffsets(
        steps=tuple(_seconds(step.start_minute) for step in plan.steps),
        premedications=tuple(
            None if p.offset_minutes is None else _seconds(p.offset_minutes) for p in plan.premedications
        ),
        end=_seconds(plan.total_minutes),
    )


def clock_times(
    plan: Plan, started_at: datetime, *, planned: bool = False, offsets: ClockOffsets | None = None
) -> ClockTimes:
    """The clock times of ``plan`` counted from ``started_at`` (timezone-aware): the planned start
    (``planned``), else "if started now". ``offsets``: :func:`clock_offsets` of ``plan``, when known."""
    if started_at.tzinfo is None:
        raise ValueError("started_at needs a time zone")
    at = offsets or clock_offsets(plan)
    # the wall clock, as ``started_at + timedelta(seconds=s)`` reads it (aware datetimes add wall time;
    # whole seconds never carry the start's microseconds), without building a datetime per step
    start = started_at.hour * 3600 + started_at.minute * 60 + started_at.second
    return ClockTimes(
        steps=tuple(_hhmm_at(start + s) for s in at.steps),
        premedications=tuple(None if s is None else _hhmm_at(start + s) for s in at.premedications),
        started_at=shown.moment_text(started_at),
        ends_at=shown.moment_text(started_at + timedelta(seconds=at.end)),
        clock_basis="from the planned start" if planned else "if started now",
    )


def _hhmm_at(seconds: int) -> str:
    """The wall clock ``seconds`` after midnight as "HH:MM" (past midnight: the next day's)."""
    return f"{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}"


def with_times(sheet: Worksheet, times: ClockTimes) -> Worksheet:
    """``sheet`` (:func:`plan_sheet` of a plan) with ``times`` (:func:`clock_times` of the same plan)."""
    return replace(
        sheet,
        steps=tuple(replace(row, clock=clock) for row, clock in zip(sheet.steps, times.steps, strict=True)),
        premedications=tuple(
            replace(row, clock=clock)
            for row, clock in zip(sheet.premedications, times.premedications, strict=True)
        ),
        started_at=times.started_at,
        ends_at=times.ends_at,
        clock_basis=times.clock_basis,
    )


def with_premedication_allergies(sheet: Worksheet, ruled_out: Mapping[str, str]) -> Worksheet:
    """``sheet`` with each premedication the allergy list rules out marked with the allergy
    (:func:`fhir_desens.course.assessment.premedication_allergies`), so no one gives it from the sheet."""
    if not ruled_out:
        return sheet
    return replace(
        sheet,
        premedications=tuple(replace(row, allergy=ruled_out.get(row.drug)) for row in sheet.premedications),
    )


def at_start(sheet: Worksheet, plan: Plan, started_at: datetime, *, planned: bool = False) -> Worksheet:
    """``sheet`` (:func:`plan_sheet` of ``plan``) with its clock times counted from ``started_at``."""
    return with_times(sheet, clock_times(plan, started_at, planned=planned))


def _pump_note(plan: Plan) -> str | None:
    if plan.protocol.kind is not ProtocolKind.INFUSION:
        return None
    resolution = plan.request.pump_resolution_ml_h
    if resolution is None:
        return "Rates are exact; program them as shown (to 0.001 mL/h)."
    return f"Rates as programmed, in steps of {shown.rate_text(resolution, resolution)}; every dose follows from them."
