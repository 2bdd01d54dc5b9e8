"""Building the engine's frozen results fast, without changing what they are.

A plan's records (``Plan``, ``PlannedStep``, ``PlannedSolution``, ``Quantity``) are tuple records
(``protocol/tuple_record.py``): their ``__init__``-equivalent checks what it is given (``Quantity``
its unit) and maps keywords to fields. The engine computes its numbers as plain Decimals in units it
has already checked, and builds each result once, here, as the tuple of its fields (one C call). The
object is the same frozen record (equality, hashing, ``repr``, ``dataclasses.replace`` and
immutability unchanged); ``tests/unit/test_engine_assembled.py`` proves every object of every
library plan equals the one its constructor builds. Use it only for values the engine computed.
"""

from __future__ import annotations

from decimal import Decimal

from fhir_desens.protocol.model import ClosingMethod, Premedication, Preparation, Protocol
from fhir_desens.protocol.plan import Plan, PlannedSolution, PlannedStep, PlanRequest
from fhir_desens.protocol.quantity import Quantity
from fhir_desens.protocol.tuple_record import built


def plan(
    request: PlanRequest,
    protocol: Protocol,
    drug: str,
    target_dose: Quantity,
    closing: ClosingMethod | None,
    final_rate_ml_h: Decimal | None,
    solutions: tuple[PlannedSolution, ...],
    steps: tuple[PlannedStep, ...],
    total_minutes: Decimal,
    premedications: tuple[Premedication, ...],
    warnings: tuple[str, ...],
    nursing_instructions: tuple[str, ...],
) -> Plan:
    """A Plan, its fields in declaration order (positional: a call with a dozen keywords costs more
    than building the record)."""
    return built(
        Plan,
        (
            request,
            protocol,
            drug,
            target_dose,
            closing,
            final_rate_ml_h,
            solutions,
            steps,
            total_minutes,
            premedications,
            warnings,
            nursing_instructions,
        ),
    )


def planned_solution(
    number: int,
    label: str,
    strength: str,
    concentration: Decimal,
    conc_unit: str,
    volume_ml: Decimal,
    drug_amount: Decimal,
    dose_unit: str,
    volume_infused_ml: Decimal,
    diluent: str | None,
    preparation: Preparation | None,
) -> PlannedSolution:
    """A PlannedSolution of an infusion bag (no solid units); its concentration and drug amount are
    given as Decimals in ``conc_unit`` and ``dose_unit``."""
    return built(
        PlannedSolution,
        (
            number,
            label,
            strength,
            built(Quantity, (concentration, conc_unit)),
            volume_ml,
            built(Quantity, (drug_amount, dose_unit)),
            volume_infused_ml,
            diluent,
            None,  # unit_dose: solid forms only
            None,  # units_used: solid forms only
            preparation,
            "tablet",  # unit_name: the declared default (solid forms only)
        ),
    )


def planned_step(
    number: int,
    solution: int,
    rate_ml_h: Decimal | None,
    minutes: Decimal,
    volume_ml: Decimal | None,
    dose: Decimal,
    cumulative_dose: Decimal,
    dose_unit: str,
    start_minute: Decimal,
    closing: bool,
    inserted: bool,
    protocol_step: int | None,
    note: str | None,
) -> PlannedStep:
    """A PlannedStep of an infusion (no solid units), its fields in declaration order; the dose and the
    cumulative dose are given as Decimals in ``dose_unit`` (the plan's checked target unit)."""
    return built(
        PlannedStep,
        (
            number,
            solution,
            rate_ml_h,
            minutes,
            volume_ml,
            built(Quantity, (dose, dose_unit)),
            built(Quantity, (cumulative_dose, dose_unit)),
            start_minute,
            None,  # units: solid forms only
            closing,
            inserted,
            protocol_step,
            note,
        ),
    )


def quantity(value: Decimal, unit_code: str) -> Quantity:
    """A Quantity of a Decimal the engine computed, in a unit code it has already checked (its target's)."""
    return built(Quantity, (value, unit_code))
