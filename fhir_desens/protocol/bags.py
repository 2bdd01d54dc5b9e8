"""Bag preparation for an infusion plan: the resolved inputs (closing method, final rate, pump), each
solution's volume and concentration by the closing method, and the planned solutions with their recipes."""

from __future__ import annotations

from decimal import Decimal

from fhir_desens.errors import InputError
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.assembled import planned_solution
from fhir_desens.protocol.inputs import (
    MAX_BAG_VOLUME_ML,
    checked_target,
    positive,
    programmable_rate,
    pump_resolution,
)
from fhir_desens.protocol.model import (
    ClosingMethod,
    Preparation,
    Protocol,
    SolutionDefinition,
    StepDefinition,
)
from fhir_desens.protocol.plan import PlannedSolution, PlanRequest
from fhir_desens.protocol.quantity import CANONICAL_CONCENTRATION, EXACT, add, div, mul, plain, sub
from fhir_desens.protocol.schedule import with_insertions

SIXTY = Decimal(60)
ZERO = Decimal(0)

#: One step of the schedule the step loop reads, with what depends on the settings only: (step, rate or
#: None, empties its solution, is the last step, volume of a timed step (rate x minutes / 60) or None,
#: solution number, inserted, the protocol's own step number (None when inserted), note, and for a
#: timed step all of whose predecessors are timed: the minute it ends and the volume its solution has
#: infused when it ends (else None, None); the loop takes these instead of adding them up each plan
#: while no step before was computed or changed in the loop).
ScheduledStep = tuple[
    StepDefinition,
    Decimal | None,
    bool,
    bool,
    Decimal | None,
    int,
    bool,
    int | None,
    str | None,
    Decimal | None,
    Decimal | None,
]


class InfusionSettings:
    """What an infusion plan's steps are computed from, apart from the target: the closing method, pump,
    final rate, step schedule with each step's rate, and the bag volumes and fractions. It depends on
    the protocol and the request's settings only, so :func:`infusion_settings` resolves it once for
    every plan made with the same ones (read-only once built)."""

    def __init__(self, request: PlanRequest) -> None:
        self.request = request
        self.protocol = request.protocol
        self.closing = self._closing()
        self.pump_max = positive(request.pump_max_ml_h, "--pump-max", Decimal(10_000), "mL/h")
        self.resolution = pump_resolution(request.pump_resolution_ml_h, self.pump_max)
        self.final_rate = self._final_rate()
        self.steps = with_insertions(
            self.protocol, request.insert_before, self.protocol.defaults.step_minutes
        )
        self.rates: dict[int, Decimal | None] = {}
        schedule: list[ScheduledStep] = []
        last = self.steps[-1].number
        protocol_number = 0  # the protocol's own numbering (inserted steps have none)
        all_timed, clock = True, ZERO  # every step so far is timed; the minute they end
        infused: dict[int, Decimal] = {}  # by solution, what those timed steps infuse
        for step in self.steps:
            rate = self.rates[step.number] = self._rate(step)
            is_last = step.number == last
            empties = self._empties(step, is_last)
            timed_volume = None
            if not (empties or is_last) and rate is not None and step.minutes is not None:
                timed_volume = EXACT.divide(EXACT.multiply(rate, step.minutes), SIXTY)
            if not step.inserted:
                protocol_number += 1
            end_minute = infused_after = None
            all_timed = all_timed and timed_volume is not None
            if all_timed:
                assert timed_volume is not None and step.minutes is not None
                end_minute = clock = EXACT.add(clock, step.minutes)
                infused_after = infused[step.solution] = EXACT.add(
                    infused.get(step.solution, ZERO), timed_volume
                )
            schedule.append(
                (
                    step,
                    rate,
                    empties,
                    is_last,
                    timed_volume,
                    step.solution,
                    step.inserted,
                    None if step.inserted else protocol_number,
                    step.note,
                    end_minute,
                    infused_after,
                )
            )
        self.schedule = tuple(schedule)
        self.volumes = self._volumes()
        self.fractions = self._fractions()
        self.solutions = {s.number: s for s in self.protocol.solutions}
        self.last_solution = len(self.protocol.solutions)
        self.timed_steps_pass = self._timed_steps_pass()

    def _timed_steps_pass(self) -> bool:
        """INV-05, INV-06 and INV-11 on the timed steps' rates, minutes and volumes, which depend on the
        settings only (the step loop checks any step whose numbers it computes or changes itself);
        False sends every plan made with these settings to the full check."""
        for step, rate, _empties, _is_last, volume, *_ in self.schedule:
            if volume is None:
                continue
            assert rate is not None and step.minutes is not None
            if not (step.minutes > ZERO and volume > ZERO and ZERO < rate <= self.pump_max):
                return False
            if self.resolution is not None and rate % self.resolution != 0:
                return False
        return True

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
        return positive(rate, "--final-rate", self.pump_max, "mL/h")

    def _rate(self, step: StepDefinition) -> Decimal | None:
        if step.rate_ml_h is not None:
            rate = step.rate_ml_h
        elif step.rate_fraction is not None:
            assert self.final_rate is not None
            rate = EXACT.multiply(step.rate_fraction, self.final_rate)
        else:
            return None  # derived from the solution's remaining volume and the step's minutes
        return rate if self.resolution is None else programmable_rate(rate, self.resolution)

    def _empties(self, step: StepDefinition, is_last: bool) -> bool:
        if step.empties_solution:
            return True
        if is_last:
            return self.closing in (ClosingMethod.REDUCED_FINAL_BAG, ClosingMethod.FRACTION_BAGS)
        if self.closing is ClosingMethod.FRACTION_BAGS:
            later = [s for s in self.steps if s.solution == step.solution and s.number > step.number]
            return not later
        return False

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
            volumes[solution.number] = positive(volume, field_name, MAX_BAG_VOLUME_ML, "mL")
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


#: Settings resolved for recent (protocol, settings) pairs: a clinic plans patient after patient with
#: the same protocol, final rate and bags, and the app recomputes a plan on every change of a draft.
#: Bounded; emptied when full. Protocols are held by identity (they hold a dict, so are unhashable).
_SETTINGS: dict[tuple[object, ...], tuple[Protocol, InfusionSettings]] = {}
_SETTINGS_MAX = 256


def _text(value: Decimal | None) -> str | None:
    """A key part that tells 75 from 75.0 (equal Decimals, but not the same numbers in a plan)."""
    return None if value is None else str(value)


def _texts(values: tuple[Decimal, ...] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(map(str, values))


def infusion_settings(request: PlanRequest) -> InfusionSettings:
    """The request's :class:`InfusionSettings`, resolved once per protocol object and settings."""
    protocol = request.protocol
    key = (
        id(protocol),
        _text(request.final_rate_ml_h),
        _text(request.bag_volume_ml),
        _texts(request.bag_volumes_ml),
        request.closing,
        _texts(request.bag_fractions),
        _texts(request.concentrations),
        _text(request.pump_max_ml_h),
        request.insert_before,
        _text(request.pump_resolution_ml_h),
    )
    known = _SETTINGS.get(key)
    if known is not None and known[0] is protocol:
        return known[1]
    settings = InfusionSettings(request)
    if len(_SETTINGS) >= _SETTINGS_MAX:
        _SETTINGS.clear()
    _SETTINGS[key] = (protocol, settings)  # the protocol is held, so its id is not reused meanwhile
    return settings


class InfusionSetup:
    """One infusion plan's inputs: the checked target and the resolved settings it is computed with."""

    def __init__(self, request: PlanRequest) -> None:
        self.request = request
        self.protocol = request.protocol
        self.target = checked_target(self.protocol, request.target)
        self.dose_unit = self.target.unit
        self.conc_unit = CANONICAL_CONCENTRATION[self.target.dimension].code
        self.settings = settings = infusion_settings(request)
        self.closing, self.final_rate, self.resolution = (
            settings.closing,
            settings.final_rate,
            settings.resolution,
        )
        self.schedule, self.volumes, self.fractions = settings.schedule, settings.volumes, settings.fractions
        self.warnings: list[str] = []
        self.recipe_kept = False  # a planned solution keeps its stated recipe (INV-22, INV-23)

    def programmable(self, rate: Decimal) -> Decimal:
        """The rate the pump can be set to (unchanged without a pump resolution)."""
        return rate if self.resolution is None else programmable_rate(rate, self.resolution)

    def concentration(self, number: int, delivered: Decimal) -> Decimal:
        """Concentration of solution ``number``, in the target's unit per mL. Computed with Decimal's
        operators: called inside the step loop's exact context (``EXACT``), where they compute what
        ``EXACT.multiply``/``divide``/``subtract`` compute."""
        target, settings = self.target.value, self.settings
        if self.fractions is not None:
            return self.fractions[number - 1] * target / self.volumes[number]
        solution = settings.solutions[number]
        if self.closing is ClosingMethod.REMAINDER_STEP:
            return self._fixed_concentration(solution)
        last = settings.last_solution
        if number == last and self.closing is ClosingMethod.REDUCED_FINAL_BAG:
            remaining = target - delivered
            if remaining <= 0:
                raise InputError(
                    "--final-rate",
                    "the bags before the last would already deliver the whole target",
                    "a lower final rate or larger bag volumes",
                )
            return remaining / self.volumes[number]
        nominal = target / self.volumes[last]
        if solution.dilution is not None:
            return nominal * solution.dilution
        if solution.dose_fraction is not None:
            return solution.dose_fraction * target / self.volumes[number]
        return self._fixed_concentration(solution)

    def _fixed_concentration(self, solution: SolutionDefinition) -> Decimal:
        given = self.request.concentrations
        if given is not None:
            if len(given) != len(self.protocol.solutions):
                raise InputError("--concentrations", "give one concentration per solution", self.conc_unit)
            return positive(given[solution.number - 1], "--concentrations", None, self.conc_unit)
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

    def planned_solutions(
        self, concentrations: dict[int, Decimal], used: dict[int, Decimal]
    ) -> tuple[PlannedSolution, ...]:
        result = []
        for solution in self.protocol.solutions:
            if solution.number not in concentrations:
                continue  # never reached (the plan stopped early)
            conc, volume = concentrations[solution.number], self.volumes[solution.number]
            result.append(
                planned_solution(
                    solution.number,
                    solution.label,
                    solution.strength_text,
                    conc,
                    self.conc_unit,
                    volume,
                    EXACT.multiply(conc, volume),
                    self.dose_unit,
                    used[solution.number],
                    solution.diluent,
                    self._recipe(solution, conc, volume),
                )
            )
        return tuple(result)

    def _recipe(self, solution: SolutionDefinition, conc: Decimal, volume: Decimal) -> Preparation | None:
        """The stated recipe while the plan uses what it makes (INV-22); otherwise it is dropped, saying so."""
        prep = solution.preparation
        if prep is None:
            return None
        if prep.concentration().value == conc and prep.final_volume_ml == volume:
            self.recipe_kept = True
            return prep
        self.warnings.append(
            f"Solution {solution.number}: the protocol's recipe ({prep.text}) does not make this plan's "
            "concentration and volume; prepare it as the plan says."
        )
        return None


def overfill_warnings(solutions: tuple[PlannedSolution, ...]) -> list[str]:
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


#: Texts of partly used bags by (solution, dispensed, infused written exactly): the same bags and rates
#: give the same text, and a clinic plans patient after patient with them. Keyed by the exact text of
#: the volumes, not the Decimals: hashing a new non-integer Decimal costs more than writing it.
#: Bounded; emptied when full.
_PARTLY_USED: dict[tuple[int, str, str], str] = {}


def partly_used_bag_warning(number: int, dispensed_ml: Decimal, infused_ml: Decimal) -> str:
    """A bag dispensed fuller than it is infused: keep it at the bedside, then discard the rest. Its
    volumes are written by the display policy (made once per bag and volumes)."""
    key = (number, str(dispensed_ml), str(infused_ml))
    text = _PARTLY_USED.get(key)
    if text is None:
        if len(_PARTLY_USED) >= 256:
            _PARTLY_USED.clear()
        text = _PARTLY_USED[key] = (
            f"Solution {number} is dispensed as {shown.volume_text(dispensed_ml)} but only "
            f"{shown.volume_text(infused_ml)} are infused. Keep the bag at the bedside until "
            f"the session ends (a step back after a reaction may need it), then discard the remaining "
            f"{shown.volume_text(sub(dispensed_ml, infused_ml))}. The total volume and dose dispensed are "
            "more than the target dose."
        )
    return text


def preparation_warnings(solutions: tuple[PlannedSolution, ...]) -> list[str]:
    """Overfill (INV-23) and what is left in a bag the syringe doses are drawn from (INV-21)."""
    warnings = overfill_warnings(solutions)
    for solution in solutions:
        volume, drawn = solution.volume_ml, solution.volume_infused_ml
        if volume is not None and drawn is not None and drawn < volume:
            warnings.append(
                f"Solution {solution.number} is prepared as {shown.volume_text(volume)}; the doses draw "
                f"{shown.volume_text(drawn)}; discard the remaining {shown.volume_text(sub(volume, drawn))}."
            )
    return warnings
