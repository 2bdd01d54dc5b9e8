"""What a plan is: the request it answers and the exact steps and solutions it holds (data only)."""

from __future__ import annotations

from decimal import Decimal

from fhir_desens.protocol.model import ClosingMethod, Premedication, Preparation, Protocol
from fhir_desens.protocol.quantity import Quantity
from fhir_desens.protocol.tuple_record import tuple_record

DEFAULT_PUMP_MAX_ML_H = Decimal(999)


@tuple_record
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


@tuple_record
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


@tuple_record
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


@tuple_record
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
    nursing_instructions: tuple[str, ...] = ()

    @property
    def dose_unit(self) -> str:
        return self.target_dose.unit

    @property
    def delivered(self) -> Decimal:
        return self.steps[-1].cumulative_dose.value if self.steps else Decimal(0)
