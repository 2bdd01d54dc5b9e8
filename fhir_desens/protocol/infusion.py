"""The step loop of an infusion plan and its closing methods: how each step's rate, minutes, volume and
dose follow from the bags, and how the last step lands exactly on the target (clinical.md 1.2-1.3)."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from fhir_desens.errors import InputError
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.assembled import plan as assembled_plan
from fhir_desens.protocol.assembled import planned_step
from fhir_desens.protocol.bags import SIXTY, InfusionSetup, overfill_warnings
from fhir_desens.protocol.model import Evidence, StepDefinition
from fhir_desens.protocol.plan import Plan, PlannedSolution, PlannedStep, PlanRequest
from fhir_desens.protocol.quantity import EXACT, div, mul, sub

LONG_STEP_MINUTES = Decimal(360)
ZERO = Decimal(0)


def plan_infusion(request: PlanRequest) -> Plan:
    """The plan of an infusion protocol (unchecked: ``calculate.compute_plan`` checks it)."""
    return _InfusionPlanner(request).plan()


class _InfusionPlanner(InfusionSetup):
    """One plan computation for an infusion protocol."""

    def plan(self) -> Plan:
        """The steps in order, computed on plain Decimals; each result object is assembled once."""
        multiply, divide, add, subtract = EXACT.multiply, EXACT.divide, EXACT.add, EXACT.subtract
        target, dose_unit, resolution = self.target.value, self.dose_unit, self.resolution
        concentrations: dict[int, Decimal] = {}
        used = dict.fromkeys(self.volumes, ZERO)
        planned: list[PlannedStep] = []
        cumulative = clock = previous_dose = ZERO
        protocol_number = 0  # the protocol's own numbering (inserted steps have none)
        for step, rate, empties, is_last in self.schedule:
            number = step.solution
            conc = concentrations.get(number)
            if conc is None:
                conc = concentrations[number] = self.concentration(self.protocol.solution(number), cumulative)
            remaining = subtract(target, cumulative)
            if empties or is_last:
                rate, minutes, volume, dose, closing = self._closing_amounts(
                    step, rate, conc, used, remaining, empties, is_last
                )
            else:  # a timed step: volume = rate x minutes / 60, dose = volume x concentration
                assert rate is not None and step.minutes is not None
                minutes, closing = step.minutes, False
                volume = divide(multiply(rate, minutes), SIXTY)
                dose = multiply(volume, conc)
                if resolution is not None and not step.inserted and dose < previous_dose:
                    rate, volume, dose = self._not_below(previous_dose, rate, minutes, conc)
            if dose > remaining and not closing:
                # A timed step would overshoot: it becomes the closing step, truncated at the target.
                dose = remaining
                volume = divide(dose, conc)
                minutes = divide(multiply(volume, SIXTY), rate)
                closing = True
                self.warnings.append(
                    f"Step {len(planned) + 1} reaches the target before the protocol's last step; "
                    "the plan stops there."
                )
            cumulative = add(cumulative, dose)
            used[number] = add(used[number], volume)
            if not step.inserted:
                protocol_number += 1
                previous_dose = dose
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
                    step.inserted,
                    None if step.inserted else protocol_number,
                    step.note,
                )
            )
            clock = add(clock, minutes)
            if closing:
                break
        solutions = self.planned_solutions(concentrations, used)
        self.warnings += overfill_warnings(solutions)
        self._add_warnings(solutions, planned)
        return assembled_plan(
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
