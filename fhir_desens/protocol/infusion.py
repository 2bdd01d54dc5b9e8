"""The step loop of an infusion plan and its closing methods: how each step's rate, minutes, volume and
dose follow from the bags, and how the last step lands exactly on the target (clinical.md 1.2-1.3)."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, localcontext

from fhir_desens.errors import InputError
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.assembled import plan as assembled_plan
from fhir_desens.protocol.assembled import planned_step
from fhir_desens.protocol.bags import SIXTY, InfusionSetup, overfill_warnings, partly_used_bag_warning
from fhir_desens.protocol.inputs import MIN_STEP_DOSE
from fhir_desens.protocol.invariants import CANONICAL_DOSE_UNITS, nearly_equal
from fhir_desens.protocol.model import Evidence, StepDefinition, TargetKind
from fhir_desens.protocol.plan import Plan, PlannedStep, PlanRequest
from fhir_desens.protocol.quantity import EXACT, div, mul, sub

LONG_STEP_MINUTES = Decimal(360)
ZERO = Decimal(0)


def checked_infusion(request: PlanRequest) -> tuple[Plan, bool]:
    """The plan of an infusion protocol, and True when the step loop's own checks found it safe
    (see :meth:`_InfusionPlanner.plan`); on False the caller runs the full ``check_plan``."""
    return _InfusionPlanner(request).plan()


class _InfusionPlanner(InfusionSetup):
    """One plan computation for an infusion protocol."""

    def plan(self) -> tuple[Plan, bool]:
        """The plan, and whether it passed the checks made while computing it (``checked_infusion``).

        The step loop computes on plain Decimals with the operators, inside a copy of ``EXACT`` (the
        same numbers as ``EXACT``'s methods, at a fraction of their call's cost); each result object
        is assembled once. It checks, as comparisons of the numbers it holds, every invariant that
        does not hold by construction (``invariants.check_plan`` would evaluate the very expressions
        the loop evaluated for the running sum, INV-08 on timed steps and the solutions' amounts):
        INV-01's total, INV-02 (doses above zero rise to the last cumulative, which must be the
        target), INV-03 (what each bag infuses fits in it), INV-04, INV-05's durations, INV-06 and
        INV-11 (the timed steps' rates, minutes and volumes once with the settings, see
        ``bags.InfusionSettings``, any other step here), INV-08 on a step whose dose is the remainder,
        INV-09's infused volumes, and no step dose below ``MIN_STEP_DOSE``. A plan keeping a stated
        recipe (INV-22, INV-23) is always left to the full check. Anything suspect returns False,
        and ``compute_plan`` runs the full check, which reports it with its rule and words.
        """
        settings = self.settings
        with localcontext(EXACT):
            planned, concentrations, used, clock, passes, computed_rates = self._steps()
        resolution = self.resolution
        if resolution is not None:  # in the caller's context, as check_plan computes it
            passes = passes and all(rate % resolution == 0 for rate in computed_rates)
        solutions = self.planned_solutions(concentrations, used)
        passes = passes and settings.timed_steps_pass and not self.recipe_kept
        volumes = self.volumes
        for number in concentrations:
            if used[number] > volumes[number]:
                passes = False
        self.warnings += overfill_warnings(solutions)
        self._add_warnings(concentrations, used)
        plan = assembled_plan(
            self.request,
            self.protocol,
            self.request.drug.strip(),
            self.target,
            self.closing,
            self.final_rate,
            solutions,
            tuple(planned),
            clock,
            self.protocol.premedications,
            tuple(self.warnings),
            self.protocol.nursing_instructions,
        )
        return plan, passes

    def _steps(
        self,
    ) -> tuple[list[PlannedStep], dict[int, Decimal], dict[int, Decimal], Decimal, bool, list[Decimal]]:
        """(steps, concentrations and volumes used by solution, total minutes, the loop's checks passed,
        the rates it computed itself); run inside the exact context (the operators compute as EXACT)."""
        target, dose_unit, resolution = self.target.value, self.dose_unit, self.resolution
        protocol = self.protocol
        final_dose = protocol.target_kind is TargetKind.FINAL_DOSE
        keep_rising = not protocol.allow_dose_decrease
        pump_max = self.settings.pump_max
        passes = dose_unit in CANONICAL_DOSE_UNITS and self.conc_unit == dose_unit + "/mL"
        self.long_steps: list[tuple[int, Decimal]] = []  # (step number, minutes) above LONG_STEP_MINUTES
        computed_rates: list[Decimal] = []  # rates the loop computed or changed: INV-11 is checked after
        concentrations: dict[int, Decimal] = {}
        used = dict.fromkeys(self.volumes, ZERO)
        planned: list[PlannedStep] = []
        cumulative = clock = previous_dose = dose = ZERO
        as_scheduled = True  # no step so far computed or changed here: the schedule's sums hold
        for (
            step,
            rate,
            empties,
            is_last,
            volume,
            number,
            inserted,
            protocol_step,
            note,
            end_minute,
            infused_after,
        ) in self.schedule:
            conc = concentrations.get(number)
            if conc is None:
                conc = concentrations[number] = self.concentration(number, cumulative)
            remaining = target - cumulative
            computed = empties or is_last
            if computed:
                rate, minutes, volume, dose, closing = self._closing_amounts(
                    step, rate, conc, used, remaining, empties, is_last
                )
            else:  # a timed step: volume = rate x minutes / 60 (with the settings), dose = volume x conc
                assert rate is not None and step.minutes is not None and volume is not None
                minutes, closing = step.minutes, False
                dose = volume * conc
                if resolution is not None and not inserted and dose < previous_dose:
                    rate, volume, dose = self._not_below(previous_dose, rate, minutes, conc)
                    computed = True
            if dose > remaining and not closing:
                # A timed step would overshoot: it becomes the closing step, truncated at the target.
                dose = remaining
                volume = dose / conc
                minutes = volume * SIXTY / rate
                closing = computed = True
                self.warnings.append(
                    f"Step {len(planned) + 1} reaches the target before the protocol's last step; "
                    "the plan stops there."
                )
            cumulative = cumulative + dose
            if as_scheduled and not computed and infused_after is not None:
                used[number] = infused_after
            else:
                as_scheduled = False
                used[number] = used[number] + volume
            if not inserted:
                if keep_rising and dose < previous_dose:
                    passes = False  # INV-04
                previous_dose = dose
            if dose < MIN_STEP_DOSE or (final_dose and dose > target):
                passes = False
            if computed:
                computed_rates.append(rate)
                if not (minutes > ZERO and volume > ZERO and ZERO < rate <= pump_max):
                    passes = False  # INV-05, INV-03 (drawn volumes only grow), INV-06
                if closing and volume * conc != dose and not nearly_equal(volume * conc, dose):
                    passes = False  # INV-08 on the step whose dose is the remainder
            planned.append(
                planned_step(
                    len(planned) + 1,
                    number,
                    rate,
                    minutes,
                    volume,
                    dose,
                    cumulative,
                    dose_unit,
                    clock,
                    closing,
                    inserted,
                    protocol_step,
                    note,
                )
            )
            if minutes > LONG_STEP_MINUTES:
                self.long_steps.append((len(planned), minutes))
            if closing:
                clock = clock + minutes
                break
            clock = clock + minutes if end_minute is None else end_minute  # timed minutes never change
        delivered = dose if final_dose else cumulative
        if not planned or delivered != target:
            passes = False  # INV-01
        return planned, concentrations, used, clock, passes, computed_rates

    def _not_below(
        self, previous_dose: Decimal, rate: Decimal, minutes: Decimal, conc: Decimal
    ) -> tuple[Decimal, Decimal, Decimal]:
        """(rate, volume, dose) raised by whole pump steps when rounding put a dose below the last one.

        Exact rates give equal doses where a protocol moves to the next bag (20 mL/h of 1:100 =
        2 mL/h of 1:10); rounded rates can break the tie downwards, which INV-04 forbids.
        """
        assert self.resolution is not None
        needed = div(mul(previous_dose, SIXTY), mul(minutes, conc))
        steps = div(needed, self.resolution).to_integral_value(rounding=ROUND_CEILING)
        rate = mul(steps, self.resolution)
        volume = div(mul(rate, minutes), SIXTY)
        return rate, volume, mul(volume, conc)

    def _closing_amounts(
        self,
        step: StepDefinition,
        rate: Decimal | None,
        conc: Decimal,
        used: dict[int, Decimal],
        remaining: Decimal,
        empties: bool,
        is_last: bool,
    ) -> tuple[Decimal, Decimal, Decimal, Decimal, bool]:
        """(rate, minutes, volume, dose, is_closing) of a step that empties its solution or is the last."""
        if empties:
            volume = sub(self.volumes[step.solution], used[step.solution])
            if volume <= 0:
                raise InputError(
                    "--bag-volume",
                    f"the steps before step {step.number} use the whole of solution {step.solution}",
                    "a larger bag volume or a lower final rate",
                )
            if rate is None:
                assert step.minutes is not None
                rate = self.programmable(div(mul(volume, SIXTY), step.minutes))
            dose = remaining if is_last else mul(volume, conc)
            return rate, div(mul(volume, SIXTY), rate), volume, dose, is_last
        # truncated-final-step / remainder-step: the last step carries what is left
        assert rate is not None
        volume = div(remaining, conc)
        return rate, div(mul(volume, SIXTY), rate), volume, remaining, True

    def _add_warnings(self, concentrations: dict[int, Decimal], used: dict[int, Decimal]) -> None:
        volumes = self.volumes
        for number in self.settings.solutions:  # the planned solutions, in the protocol's order
            if number in concentrations and used[number] != volumes[number]:
                self.warnings.append(partly_used_bag_warning(number, volumes[number], used[number]))
        for number, minutes in self.long_steps:
            self.warnings.append(
                f"Step {number} lasts {shown.minutes_text(minutes)}; check the bag volume and rate."
            )
        if self.protocol.evidence is Evidence.STRUCTURALLY_DERIVED:
            self.warnings.append(
                f"Protocol {self.protocol.id} is structurally derived (no primary table was read); "
                "confirm it against your institution's protocol."
            )
