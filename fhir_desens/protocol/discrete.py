"""Discrete-dose plans: oral or syringe doses at fixed intervals, from the protocol's table."""

from __future__ import annotations

from decimal import Decimal

from fhir_desens.errors import InputError
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.bags import preparation_warnings
from fhir_desens.protocol.inputs import checked_target
from fhir_desens.protocol.model import Protocol, SolutionDefinition, StepDefinition, TargetKind
from fhir_desens.protocol.plan import Plan, PlannedSolution, PlannedStep, PlanRequest
from fhir_desens.protocol.quantity import CANONICAL_DOSE, Quantity, add, mul, plain
from fhir_desens.protocol.record import replace
from fhir_desens.protocol.schedule import with_insertions
from fhir_desens.protocol.syringes import SYRINGE_TABLE_SOURCE, measurable_volume
from fhir_desens.protocol.tables import check_fixed_target


def plan_discrete(request: PlanRequest) -> Plan:
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
        with_insertions(protocol, request.insert_before, protocol.defaults.step_minutes)
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
        check_fixed_target(protocol, checked_target(protocol, request.target), table)
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
    warnings += preparation_warnings(solutions)
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
