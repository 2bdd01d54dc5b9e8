"""From a protocol and a patient's target dose to an exact plan.

The arithmetic follows the published worksheets (clinical.md 1.2-1.3): volume = rate x minutes / 60,
dose = volume x concentration, and the closing method decides how the last step lands exactly on
the target. All values are Decimal; the closing dose is always computed as target - delivered, so
the cumulative total equals the target by construction, and ``invariants.check_plan`` proves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from fhir_desens.errors import InputError
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.model import (
    ClosingMethod,
    Evidence,
    Premedication,
    Preparation,
    Protocol,
    ProtocolKind,
    SolutionDefinition,
    StepDefinition,
    TargetKind,
)
from fhir_desens.protocol.quantity import (
    ACCEPTED_DOSE_UNITS,
    CANONICAL_CONCENTRATION,
    CANONICAL_DOSE,
    Dimension,
    Quantity,
    add,
    div,
    mul,
    plain,
    sub,
)
from fhir_desens.protocol.syringes import SYRINGE_TABLE_SOURCE, measurable_volume

SIXTY = Decimal(60)
DEFAULT_PUMP_MAX_ML_H = Decimal(999)
#: Above these a dose is refused as absurd rather than computed (100 g; 100 million units).
MAX_TARGET = {Dimension.MASS: Decimal(100_000), Dimension.ACTIVITY: Decimal(100_000_000)}
#: The smallest plausible target (1 microgram, 1 unit): below it the first steps are beyond any balance.
MIN_TARGET = {Dimension.MASS: Decimal("0.001"), Dimension.ACTIVITY: Decimal(1)}
#: The smallest step dose a plan may hold, in the target's canonical unit (0.5 ng, 0.0000005 units):
#: smaller steps would be shown as "0 mg" at the six decimals doses are displayed with.
MIN_STEP_DOSE = Decimal("0.0000005")
MAX_BAG_VOLUME_ML = Decimal(1000)
LONG_STEP_MINUTES = Decimal(360)


@dataclass(frozen=True)
class PlanRequest:
    """Everything a plan depends on. ``None`` means: the protocol's default."""

    protocol: Protocol
    drug: str
    target: Quantity | None = None
    final_rate_ml_h: Decimal | None = None
    bag_volume_ml: Decimal | None = None
    bag_volumes_ml: tuple[Decimal, ...] | None = None
    closing: ClosingMethod | None = None
    bag_fractions: tuple[Decimal, ...] | None = None
    concentrations: tuple[Decimal, ...] | None = None  # fixed, in the target's unit per mL
    pump_max_ml_h: Decimal = DEFAULT_PUMP_MAX_ML_H
    insert_before: tuple[int, ...] = ()  # protocol step numbers to insert an intermediate step before
    #: The steps (mL/h) the pump is programmed in, e.g. 0.1; None = exact rates. With a resolution,
    #: every rate is rounded half-up to it (never below one step) *before* anything else is
    #: computed, so every volume, dose and duration follows exactly from the programmed rates.
    pump_resolution_ml_h: Decimal | None = None
    #: Discrete liquid doses: round each volume half-up to the marks of the syringe that measures it
    #: (``protocol/syringes.py``) and compute the dose exactly from that volume (INV-25).
    syringe_volumes: bool = False


@dataclass(frozen=True)
class PlannedSolution:
    number: int
    label: str
    strength: str  # how the strength is defined ("1:100 of target concentration", "1% of target dose")
    concentration: Quantity | None  # None for solid forms
    volume_ml: Decimal | None  # prepared volume; None for solid forms
    drug_amount: Quantity  # drug in what is prepared
    volume_infused_ml: Decimal | None
    diluent: str | None = None
    unit_dose: Quantity | None = None  # solid forms
    units_used: Decimal | None = None  # solid forms: tablets taken
    preparation: Preparation | None = None  # the protocol's stated recipe, for the pharmacy sheet
    unit_name: str = "tablet"  # solid forms: what one unit is called


@dataclass(frozen=True)
class PlannedStep:
    number: int
    solution: int
    rate_ml_h: Decimal | None  # None for discrete doses
    minutes: Decimal  # duration (infusion) or interval after the dose (discrete)
    volume_ml: Decimal | None  # None for solid forms
    dose: Quantity
    cumulative_dose: Quantity
    start_minute: Decimal
    units: Decimal | None = None  # solid forms
    closing: bool = False  # the step whose amount the closing method computed
    inserted: bool = False
    protocol_step: int | None = None  # the protocol's step number; None for inserted steps
    note: str | None = None


@dataclass(frozen=True)
class Plan:
    request: PlanRequest
    protocol: Protocol
    drug: str
    target_dose: Quantity
    closing: ClosingMethod | None
    final_rate_ml_h: Decimal | None
    solutions: tuple[PlannedSolution, ...]
    steps: tuple[PlannedStep, ...]
    total_minutes: Decimal
    premedications: tuple[Premedication, ...]
    warnings: tuple[str, ...]
    nursing_instructions: tuple[str, ...] = field(default=())

    @property
    def dose_unit(self) -> str:
        return self.target_dose.unit

    @property
    def delivered(self) -> Decimal:
        return self.steps[-1].cumulative_dose.value if self.steps else Decimal(0)


def compute_plan(request: PlanRequest) -> Plan:
    """Compute and check a plan; raises InputError for bad input and SafetyViolation if unsafe."""
    from fhir_desens.protocol.invariants import check_plan

    if not request.drug or not request.drug.strip():
        raise InputError("--drug", "a drug name is required", "e.g. carboplatin")
    if request.protocol.kind is ProtocolKind.INFUSION:
        if request.protocol.fixed_table:
            request = _at_table_total(request)
        plan = _InfusionPlanner(request).plan()
    else:
        plan = _plan_discrete(request)
    _check_measurable_steps(plan)
    check_plan(plan)
    return plan


def _check_measurable_steps(plan: Plan) -> None:
    """Refuse a plan whose smallest step dose nobody could prepare (a tiny target, or a tampered one)."""
    canonical_unit = plan.target_dose.canonical().unit
    for step in plan.steps:
        dose = step.dose.to(canonical_unit).value
        if dose < MIN_STEP_DOSE:
            raise InputError(
                "--dose",
                f"step {step.number} would be {dose:.1E} {canonical_unit}, too small to prepare",
                f"a target dose whose smallest step is at least {plain(MIN_STEP_DOSE)} {canonical_unit}",
            )


# --- shared input checks ------------------------------------------------------------------------


def _checked_target(protocol: Protocol, target: Quantity | None) -> Quantity:
    if target is None:
        raise InputError("--dose", "a target dose is required", ACCEPTED_DOSE_UNITS)
    if target.dimension not in protocol.dose_dimensions:
        accepted = " or ".join(CANONICAL_DOSE[d].display for d in protocol.dose_dimensions)
        raise InputError(
            "--dose",
            f"protocol {protocol.id} doses in {accepted}, not {target.dimension.value} ({target})",
            accepted,
        )
    canonical = target.canonical()
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


def _positive(value: Decimal, field: str, upper: Decimal | None = None, unit: str = "") -> Decimal:
    if value <= 0 or (upper is not None and value > upper):
        accepted = f"above 0 and at most {plain(upper)} {unit}".strip() if upper is not None else "above 0"
        raise InputError(field, f"{plain(value)} {unit} is out of range".replace("  ", " "), accepted)
    return value


# --- infusion ---------------------------------------------------------------------------------


class _InfusionPlanner:
    """One plan computation for an infusion protocol (kept as an object to share resolved inputs)."""

    def __init__(self, request: PlanRequest) -> None:
        self.request = request
        self.protocol = request.protocol
        self.target = _checked_target(self.protocol, request.target)
        self.dose_unit = self.target.unit
        self.conc_unit = CANONICAL_CONCENTRATION[self.target.dimension].code
        self.closing = self._closing()
        self.pump_max = _positive(request.pump_max_ml_h, "--pump-max", Decimal(10_000), "mL/h")
        self.resolution = _resolution(request.pump_resolution_ml_h, self.pump_max)
        self.final_rate = self._final_rate()
        self.steps = _with_insertions(
            self.protocol, request.insert_before, self.protocol.defaults.step_minutes
        )
        self.rates = {s.number: self._rate(s) for s in self.steps}
        self.volumes = self._volumes()
        self.fractions = self._fractions()
        self.warnings: list[str] = []

    def _closing(self) -> ClosingMethod:
        closing = self.request.closing or self.protocol.defaults.closing
        if closing not in self.protocol.closing_methods:
            accepted = ", ".join(c.value for c in self.protocol.closing_methods)
            raise InputError(
                "--closing", f"protocol {self.protocol.id} cannot close with '{closing}'", accepted
            )
        assert closing is not None
        return closing

    def _final_rate(self) -> Decimal | None:
        given = self.request.final_rate_ml_h
        if not self.protocol.uses_final_rate:
            if given is not None:
                raise InputError(
                    "--final-rate",
                    f"protocol {self.protocol.id} uses fixed rates; the final rate cannot be set",
                )
            return None
        rate = given if given is not None else self.protocol.defaults.final_rate_ml_h
        if rate is None:
            raise InputError("--final-rate", "this protocol needs a final rate", "a rate in mL/h, e.g. 80")
        return _positive(rate, "--final-rate", self.pump_max, "mL/h")

    def _rate(self, step: StepDefinition) -> Decimal | None:
        if step.rate_ml_h is not None:
            return self._programmable(step.rate_ml_h)
        if step.rate_fraction is not None:
            assert self.final_rate is not None
            return self._programmable(mul(step.rate_fraction, self.final_rate))
        return None  # derived from the solution's remaining volume and the step's minutes

    def _programmable(self, rate: Decimal) -> Decimal:
        """The rate the pump can be set to (unchanged without a pump resolution)."""
        return rate if self.resolution is None else programmable_rate(rate, self.resolution)

    def _volumes(self) -> dict[int, Decimal]:
        solutions = self.protocol.solutions
        given = self.request.bag_volumes_ml
        if given is not None and len(given) != len(solutions):
            raise InputError(
                "--bag-volumes",
                f"{len(given)} volumes for {len(solutions)} solutions",
                "one volume per solution",
            )
        common = self.request.bag_volume_ml
        volumes: dict[int, Decimal] = {}
        for index, solution in enumerate(solutions):
            if given is not None:
                volume, field_name = given[index], "--bag-volumes"
            elif self.closing is ClosingMethod.FRACTION_BAGS and self._prepared_as_infused(solution):
                volume, field_name = self._timed_volume(solution.number), "--bag-volumes"
            else:
                volume = common or solution.volume_ml or self.protocol.defaults.bag_volume_ml or Decimal(0)
                field_name = "--bag-volume"
            volumes[solution.number] = _positive(volume, field_name, MAX_BAG_VOLUME_ML, "mL")
        return volumes

    def _prepared_as_infused(self, solution: SolutionDefinition) -> bool:
        """Fraction bags before the last, whose steps are all timed, hold exactly what they infuse."""
        if solution.number == len(self.protocol.solutions) or self.request.bag_volumes_ml is not None:
            return False
        steps = [s for s in self.steps if s.solution == solution.number]
        return all(s.minutes is not None and self.rates[s.number] is not None for s in steps)

    def _timed_volume(self, solution: int) -> Decimal:
        total = Decimal(0)
        for step in self.steps:
            if step.solution == solution:
                rate, minutes = self.rates[step.number], step.minutes
                assert rate is not None and minutes is not None
                total = add(total, div(mul(rate, minutes), SIXTY))
        return total

    def _fractions(self) -> tuple[Decimal, ...] | None:
        if self.closing is not ClosingMethod.FRACTION_BAGS:
            return None
        fractions = self.request.bag_fractions
        if fractions is None:
            declared = [s.dose_fraction for s in self.protocol.solutions]
            if all(f is not None for f in declared):
                fractions = tuple(f for f in declared if f is not None)
            else:
                fractions = self.protocol.defaults.bag_fractions
        if fractions is None:
            raise InputError(
                "--bag-fractions",
                f"fraction-bags needs the fraction of the dose in each of the {len(self.protocol.solutions)} bags",
                "fractions summing to 1, e.g. 0.01,0.025,0.965",
            )
        if len(fractions) != len(self.protocol.solutions) or any(f <= 0 for f in fractions):
            raise InputError("--bag-fractions", "give one fraction above 0 per bag", "e.g. 0.01,0.025,0.965")
        if sum(fractions) != 1:
            raise InputError(
                "--bag-fractions",
                f"the fractions sum to {plain(sum(fractions, Decimal(0)))}",
                "a sum of exactly 1",
            )
        return fractions

    def _concentration(self, solution: SolutionDefinition, delivered: Decimal) -> Decimal:
        """Concentration of a solution, in the target's unit per mL."""
        number, target = solution.number, self.target.value
        last = number == len(self.protocol.solutions)
        if self.fractions is not None:
            return div(mul(self.fractions[number - 1], target), self.volumes[number])
        if self.closing is ClosingMethod.REMAINDER_STEP:
            return self._fixed_concentration(solution)
        if last and self.closing is ClosingMethod.REDUCED_FINAL_BAG:
            remaining = sub(target, delivered)
            if remaining <= 0:
                raise InputError(
                    "--final-rate",
                    "the bags before the last would already deliver the whole target",
                    "a lower final rate or larger bag volumes",
                )
            return div(remaining, self.volumes[number])
        nominal = div(target, self.volumes[len(self.protocol.solutions)])
        if solution.dilution is not None:
            return mul(nominal, solution.dilution)
        if solution.dose_fraction is not None:
            return div(mul(solution.dose_fraction, target), self.volumes[number])
        return self._fixed_concentration(solution)

    def _fixed_concentration(self, solution: SolutionDefinition) -> Decimal:
        given = self.request.concentrations
        if given is not None:
            if len(given) != len(self.protocol.solutions):
                raise InputError("--concentrations", "give one concentration per solution", self.conc_unit)
            return _positive(given[solution.number - 1], "--concentrations", None, self.conc_unit)
        if solution.concentration is not None:
            if solution.concentration.unit != self.conc_unit:
                raise InputError(
                    "--dose",
                    f"solution {solution.number} is {solution.concentration}",
                    f"a dose in {self.dose_unit}",
                )
            return solution.concentration.value
        raise InputError(
            "--concentrations",
            "remainder-step prepares every solution at a fixed concentration; none is defined",
            f"one concentration per solution in {self.conc_unit}, e.g. 0.016,0.16,1.6",
        )

    def plan(self) -> Plan:
        concentrations: dict[int, Decimal] = {}
        used = {number: Decimal(0) for number in self.volumes}
        planned: list[PlannedStep] = []
        cumulative, clock = Decimal(0), Decimal(0)
        last_number = self.steps[-1].number
        protocol_numbers = iter(range(1, len(self.steps) + 1))  # the protocol's own numbering
        previous_dose = Decimal(0)
        for step in self.steps:
            solution = self.protocol.solution(step.solution)
            if step.solution not in concentrations:
                concentrations[step.solution] = self._concentration(solution, cumulative)
            conc = concentrations[step.solution]
            rate, minutes, volume, dose, closing = self._step_amounts(
                step, conc, used, cumulative, last_number
            )
            if self.resolution is not None and not (closing or step.inserted or self._empties(step, False)):
                rate, volume, dose = self._not_below(previous_dose, rate, minutes, conc)
            if dose > sub(self.target.value, cumulative) and not closing:
                # A timed step would overshoot: it becomes the closing step, truncated at the target.
                dose = sub(self.target.value, cumulative)
                volume = div(dose, conc)
                minutes = div(mul(volume, SIXTY), rate)
                closing = True
                self.warnings.append(
                    f"Step {len(planned) + 1} reaches the target before the protocol's last step; "
                    "the plan stops there."
                )
            cumulative = add(cumulative, dose)
            used[step.solution] = add(used[step.solution], volume)
            planned.append(
                PlannedStep(
                    number=len(planned) + 1,
                    solution=step.solution,
                    rate_ml_h=rate,
                    minutes=minutes,
                    volume_ml=volume,
                    dose=Quantity(dose, self.dose_unit),
                    cumulative_dose=Quantity(cumulative, self.dose_unit),
                    start_minute=clock,
                    closing=closing,
                    inserted=step.inserted,
                    protocol_step=None if step.inserted else next(protocol_numbers),
                    note=step.note,
                )
            )
            clock = add(clock, minutes)
            if not step.inserted:
                previous_dose = dose
            if closing:
                break
        solutions = self._planned_solutions(concentrations, used)
        self.warnings += _overfill_warnings(solutions)
        self._add_warnings(solutions, planned)
        return Plan(
            request=self.request,
            protocol=self.protocol,
            drug=self.request.drug.strip(),
            target_dose=self.target,
            closing=self.closing,
            final_rate_ml_h=self.final_rate,
            solutions=solutions,
            steps=tuple(planned),
            total_minutes=clock,
            premedications=self.protocol.premedications,
            warnings=tuple(self.warnings),
            nursing_instructions=self.protocol.nursing_instructions,
        )

    def _not_below(
        self, previous_dose: Decimal, rate: Decimal, minutes: Decimal, conc: Decimal
    ) -> tuple[Decimal, Decimal, Decimal]:
        """(rate, volume, dose) raised by whole pump steps when rounding put a dose below the last one.

        Exact rates give equal doses where a protocol moves to the next bag (20 mL/h of 1:100 =
        2 mL/h of 1:10); rounded rates can break the tie downwards, which INV-04 forbids.
        """
        volume = div(mul(rate, minutes), SIXTY)
        dose = mul(volume, conc)
        if dose >= previous_dose:
            return rate, volume, dose
        assert self.resolution is not None
        needed = div(mul(previous_dose, SIXTY), mul(minutes, conc))
        steps = div(needed, self.resolution).to_integral_value(rounding=ROUND_CEILING)
        rate = mul(steps, self.resolution)
        volume = div(mul(rate, minutes), SIXTY)
        return rate, volume, mul(volume, conc)

    def _empties(self, step: StepDefinition, is_last: bool) -> bool:
        if step.empties_solution:
            return True
        if is_last:
            return self.closing in (ClosingMethod.REDUCED_FINAL_BAG, ClosingMethod.FRACTION_BAGS)
        if self.closing is ClosingMethod.FRACTION_BAGS:
            later = [s for s in self.steps if s.solution == step.solution and s.number > step.number]
            return not later
        return False

    def _step_amounts(
        self,
        step: StepDefinition,
        conc: Decimal,
        used: dict[int, Decimal],
        cumulative: Decimal,
        last_number: int,
    ) -> tuple[Decimal, Decimal, Decimal, Decimal, bool]:
        """(rate, minutes, volume, dose, is_closing) for one step."""
        is_last = step.number == last_number
        rate = self.rates[step.number]
        remaining_target = sub(self.target.value, cumulative)
        if self._empties(step, is_last):
            volume = sub(self.volumes[step.solution], used[step.solution])
            if volume <= 0:
                raise InputError(
                    "--bag-volume",
                    f"the steps before step {step.number} use the whole of solution {step.solution}",
                    "a larger bag volume or a lower final rate",
                )
            if rate is None:
                assert step.minutes is not None
                rate = self._programmable(div(mul(volume, SIXTY), step.minutes))
            dose = remaining_target if is_last else mul(volume, conc)
            return rate, div(mul(volume, SIXTY), rate), volume, dose, is_last
        assert rate is not None
        if is_last:  # truncated-final-step / remainder-step: the last step carries what is left
            volume = div(remaining_target, conc)
            return rate, div(mul(volume, SIXTY), rate), volume, remaining_target, True
        assert step.minutes is not None
        volume = div(mul(rate, step.minutes), SIXTY)
        return rate, step.minutes, volume, mul(volume, conc), False

    def _planned_solutions(
        self, concentrations: dict[int, Decimal], used: dict[int, Decimal]
    ) -> tuple[PlannedSolution, ...]:
        result = []
        for solution in self.protocol.solutions:
            if solution.number not in concentrations:
                continue  # never reached (the plan stopped early)
            conc, volume = concentrations[solution.number], self.volumes[solution.number]
            result.append(
                PlannedSolution(
                    number=solution.number,
                    label=solution.label,
                    strength=solution.strength_text,
                    concentration=Quantity(conc, self.conc_unit),
                    volume_ml=volume,
                    drug_amount=Quantity(mul(conc, volume), self.dose_unit),
                    volume_infused_ml=used[solution.number],
                    diluent=solution.diluent,
                    preparation=self._recipe(solution, conc, volume),
                )
            )
        return tuple(result)

    def _recipe(self, solution: SolutionDefinition, conc: Decimal, volume: Decimal) -> Preparation | None:
        """The stated recipe while the plan uses what it makes (INV-22); otherwise it is dropped, saying so."""
        prep = solution.preparation
        if prep is None:
            return None
        if prep.concentration().value == conc and prep.final_volume_ml == volume:
            return prep
        self.warnings.append(
            f"Solution {solution.number}: the protocol's recipe ({prep.text}) does not make this plan's "
            "concentration and volume; prepare it as the plan says."
        )
        return None

    def _add_warnings(self, solutions: tuple[PlannedSolution, ...], steps: list[PlannedStep]) -> None:
        partial = [
            s for s in solutions if s.volume_infused_ml is not None and s.volume_ml != s.volume_infused_ml
        ]
        for solution in partial:
            assert solution.volume_ml is not None and solution.volume_infused_ml is not None
            left = sub(solution.volume_ml, solution.volume_infused_ml)
            self.warnings.append(
                f"Solution {solution.number} is dispensed as {shown.volume_text(solution.volume_ml)} but only "
                f"{shown.volume_text(solution.volume_infused_ml)} are infused. Keep the bag at the bedside until "
                f"the session ends (a step back after a reaction may need it), then discard the remaining "
                f"{shown.volume_text(left)}. The total volume and dose dispensed are more than the target dose."
            )
        for step in steps:
            if step.minutes > LONG_STEP_MINUTES:
                self.warnings.append(
                    f"Step {step.number} lasts {shown.minutes_text(step.minutes)}; check the bag volume and rate."
                )
        if self.protocol.evidence is Evidence.STRUCTURALLY_DERIVED:
            self.warnings.append(
                f"Protocol {self.protocol.id} is structurally derived (no primary table was read); "
                "confirm it against your institution's protocol."
            )


def _resolution(resolution: Decimal | None, pump_max: Decimal) -> Decimal | None:
    if resolution is None:
        return None
    return _positive(resolution, "--pump-resolution", min(Decimal(10), pump_max), "mL/h")


def programmable_rate(rate: Decimal, resolution: Decimal) -> Decimal:
    """``rate`` rounded half-up to a whole number of pump steps, at least one step (a running pump)."""
    steps = max(Decimal(1), div(rate, resolution).to_integral_value(rounding=ROUND_HALF_UP))
    return mul(steps, resolution)


def _with_insertions(
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


# --- discrete doses -------------------------------------------------------------------------------


def _plan_discrete(request: PlanRequest) -> Plan:
    protocol = request.protocol
    for name, value in (
        ("--final-rate", request.final_rate_ml_h),
        ("--bag-volume", request.bag_volume_ml),
        ("--bag-volumes", request.bag_volumes_ml),
        ("--closing", request.closing),
        ("--bag-fractions", request.bag_fractions),
        ("--concentrations", request.concentrations),
    ):
        if value is not None:
            raise InputError(
                name, f"protocol {protocol.id} gives fixed oral/syringe doses; {name} does not apply"
            )
    if request.insert_before:
        _with_insertions(protocol, request.insert_before, protocol.defaults.step_minutes)
    dimension = protocol.dose_dimensions[0]
    dose_unit = CANONICAL_DOSE[dimension].code
    steps: list[PlannedStep] = []
    used: dict[int, Decimal] = {}
    cumulative, clock = Decimal(0), Decimal(0)
    stated = Decimal(0)  # the table's own total (INV-24 compares a typed target with it)
    remeasured: list[str] = []  # steps whose table volume no syringe can measure (INV-25)
    for step in protocol.steps:
        solution = protocol.solution(step.solution)
        dose = _discrete_dose(solution, step, dose_unit)
        stated = add(stated, dose)
        note = step.note
        if request.syringe_volumes and not solution.solid:
            table_volume = step.volume_ml
            step, dose, note = _measured(step, solution, dose_unit, note)
            if step.volume_ml != table_volume:
                remeasured.append(
                    _remeasured_text(step.number, table_volume, step.volume_ml, dose, dose_unit)
                )
        amount = step.units if solution.solid else step.volume_ml
        assert amount is not None and step.minutes is not None
        used[solution.number] = add(used.get(solution.number, Decimal(0)), amount)
        cumulative = add(cumulative, dose)
        steps.append(
            PlannedStep(
                number=step.number,
                solution=step.solution,
                rate_ml_h=None,
                minutes=step.minutes,
                volume_ml=None if solution.solid else step.volume_ml,
                units=step.units if solution.solid else None,
                dose=Quantity(dose, dose_unit),
                cumulative_dose=Quantity(cumulative, dose_unit),
                start_minute=clock,
                protocol_step=step.number,
                note=note,
            )
        )
        clock = add(clock, step.minutes)
    target_value = cumulative if protocol.target_kind is TargetKind.CUMULATIVE else steps[-1].dose.value
    target = Quantity(target_value, dose_unit)
    if request.target is not None:
        table = Quantity(stated if protocol.target_kind is TargetKind.CUMULATIVE else target_value, dose_unit)
        if request.syringe_volumes and protocol.target_kind is TargetKind.FINAL_DOSE:
            last = protocol.steps[-1]
            table = Quantity(_discrete_dose(protocol.solution(last.solution), last, dose_unit), dose_unit)
        _check_fixed_target(protocol, _checked_target(protocol, request.target), table)
    warnings = []
    if protocol.target_kind is TargetKind.FINAL_DOSE:
        warnings.append(
            f"The target is the final dose ({shown.quantity_text(target)}); the doses add up to "
            f"{shown.dose_text(cumulative, dose_unit)}."
        )
    if remeasured:
        # the pharmacist compares the plan with the hospital's table: a changed volume is never silent
        warnings.append(
            "Volumes rounded to the marks of the syringe that measures them, doses computed from them: "
            + "; ".join(remeasured)
            + f" ({SYRINGE_TABLE_SOURCE})."
        )
    solutions = _discrete_solutions(protocol, used, dose_unit)
    warnings += _preparation_warnings(solutions)
    return Plan(
        request=request,
        protocol=protocol,
        drug=request.drug.strip(),
        target_dose=target,
        closing=None,
        final_rate_ml_h=None,
        solutions=solutions,
        steps=tuple(steps),
        total_minutes=clock,
        premedications=protocol.premedications,
        warnings=tuple(warnings),
        nursing_instructions=protocol.nursing_instructions,
    )


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


def _at_table_total(request: PlanRequest) -> PlanRequest:
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
        _check_fixed_target(protocol, _checked_target(protocol, request.target), total)
    return replace(request, target=total)


def _check_fixed_target(protocol: Protocol, given: Quantity, total: Quantity) -> None:
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


def _overfill_warnings(solutions: tuple[PlannedSolution, ...]) -> list[str]:
    """INV-23: a concentration that relies on a bag's overfill is never silent."""
    warnings = []
    for solution in solutions:
        prep = solution.preparation
        if prep is not None and prep.overfill_ml and solution.concentration is not None:
            warnings.append(
                f"Solution {solution.number} ({solution.label}) is "
                f"{shown.quantity_text(solution.concentration)} only if its "
                f"{shown.volume_text(prep.bag_volume_ml)} bag holds {shown.volume_text(prep.overfill_ml)} "
                f"overfill ({shown.volume_text(prep.bag_volume_ml + prep.overfill_ml)}): check the bag, "
                "or prepare to the final volume."
            )
    return warnings


def _preparation_warnings(solutions: tuple[PlannedSolution, ...]) -> list[str]:
    """Overfill (INV-23) and what is left in a bag the syringe doses are drawn from (INV-21)."""
    warnings = _overfill_warnings(solutions)
    for solution in solutions:
        volume, drawn = solution.volume_ml, solution.volume_infused_ml
        if volume is not None and drawn is not None and drawn < volume:
            warnings.append(
                f"Solution {solution.number} is prepared as {shown.volume_text(volume)}; the doses draw "
                f"{shown.volume_text(drawn)}; discard the remaining {shown.volume_text(sub(volume, drawn))}."
            )
    return warnings


def _measured(
    step: StepDefinition, solution: SolutionDefinition, dose_unit: str, note: str | None
) -> tuple[StepDefinition, Decimal, str | None]:
    """The step at the volume its syringe can measure, its exact dose from that volume, and a note saying
    so when the volume changed (INV-25)."""
    assert step.volume_ml is not None
    measured, syringe = measurable_volume(step.volume_ml)
    if measured == step.volume_ml:
        return step, _discrete_dose(solution, step, dose_unit), note
    step = replace(step, volume_ml=measured)
    dose = _discrete_dose(solution, step, dose_unit)
    said = (
        f"Volume rounded to the syringe's marks ({syringe.text}): {shown.volume_text(measured)} gives "
        f"{shown.dose_text(dose, dose_unit)}"
    )
    return step, dose, f"{note}; {said}" if note else said


def _remeasured_text(
    number: int, table_ml: Decimal | None, measured_ml: Decimal | None, dose: Decimal, dose_unit: str
) -> str:
    assert table_ml is not None and measured_ml is not None
    return (
        f"step {number}: {shown.volume_text(measured_ml)} instead of the table's {plain(table_ml)} mL "
        f"({shown.dose_text(dose, dose_unit)})"
    )


def _discrete_dose(solution: SolutionDefinition, step: StepDefinition, dose_unit: str) -> Decimal:
    if solution.solid:
        assert solution.unit_dose is not None and step.units is not None
        return mul(step.units, solution.unit_dose.to(dose_unit).value)
    assert solution.concentration is not None and step.volume_ml is not None
    return mul(step.volume_ml, solution.concentration.value)


def _discrete_solutions(
    protocol: Protocol, used: dict[int, Decimal], dose_unit: str
) -> tuple[PlannedSolution, ...]:
    result = []
    for solution in protocol.solutions:
        amount = used.get(solution.number, Decimal(0))
        if solution.solid:
            assert solution.unit_dose is not None
            unit_dose = solution.unit_dose.to(dose_unit)
            result.append(
                PlannedSolution(
                    number=solution.number,
                    label=solution.label,
                    strength=solution.strength_text,
                    concentration=None,
                    volume_ml=None,
                    drug_amount=Quantity(mul(amount, unit_dose.value), dose_unit),
                    volume_infused_ml=None,
                    unit_dose=unit_dose,
                    units_used=amount,
                    unit_name=solution.unit_name,
                )
            )
        else:
            assert solution.concentration is not None
            # A bag the doses are drawn from is prepared whole (INV-21); otherwise what is drawn.
            prepared = solution.volume_ml if solution.volume_ml is not None else amount
            result.append(
                PlannedSolution(
                    number=solution.number,
                    label=solution.label,
                    strength=solution.strength_text,
                    concentration=solution.concentration,
                    volume_ml=prepared,
                    drug_amount=Quantity(mul(prepared, solution.concentration.value), dose_unit),
                    volume_infused_ml=amount,
                    diluent=solution.diluent,
                    preparation=solution.preparation,
                )
            )
    return tuple(result)
