"""The step loop of an infusion plan and its closing methods: how each step's rate, minutes, volume and
dose follow from the bags, and how the last step lands exactly on the target (clinical.md 1.2-1.3)."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from fhir_desens.errors import InputError
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.bags import SIXTY, InfusionSetup, overfill_warnings
from fhir_desens.protocol.model import ClosingMethod, Evidence, StepDefinition
from fhir_desens.protocol.plan import Plan, PlannedSolution, PlannedStep, PlanRequest
from fhir_desens.protocol.quantity import Quantity, add, div, mul, sub

LONG_STEP_MINUTES = Decimal(360)


def plan_infusion(request: PlanRequest) -> Plan:
    """The plan of an infusion protocol (unchecked: ``calculate.compute_plan`` checks it)."""
    return _InfusionPlanner(request).plan()


class _InfusionPlanner(InfusionSetup):
    """One plan computation for an infusion protocol."""

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
                concentrations[step.solution] = self.concentration(solution, cumulative)
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
        solutions = self.planned_solutions(concentrations, used)
        self.warnings += overfill_warnings(solutions)
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
                rate = self.programmable(div(mul(volume, SIXTY), step.minutes))
            dose = remaining_target if is_last else mul(volume, conc)
            return rate, div(mul(volume, SIXTY), rate), volume, dose, is_last
        assert rate is not None
        if is_last:  # truncated-final-step / remainder-step: the last step carries what is left
            volume = div(remaining_target, conc)
            return rate, div(mul(volume, SIXTY), rate), volume, remaining_target, True
        assert step.minutes is not None
        volume = div(mul(rate, step.minutes), SIXTY)
        return rate, step.minutes, volume, mul(volume, conc), False

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
