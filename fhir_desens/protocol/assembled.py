"""Building the engine's frozen results fast, without changing what they are.

A frozen dataclass's generated ``__init__`` sets every field through ``object.__setattr__`` (and
``Quantity`` checks its unit in ``__post_init__``): for the 40-odd objects of a 12-step plan that is
about as much time as all of the plan's arithmetic. The engine computes its numbers as plain Decimals
and assembles each result object once, here, by giving it its ``__dict__`` whole. The object is the same
frozen dataclass (equality, hashing, ``repr``, ``dataclasses.replace`` and immutability unchanged);
``tests/unit/test_engine_assembled.py`` proves every object of every library plan equals the one its
``__init__`` builds. Use it only for values the engine computed, with every field given by name.
"""

from __future__ import annotations

from decimal import Decimal

from fhir_desens.protocol.plan import PlannedStep
from fhir_desens.protocol.quantity import Quantity

TYPE_CHECKING = False  # mypy reads this block; typing is not imported at run time (commands start faster)
if TYPE_CHECKING:
    from typing import TypeVar

    _T = TypeVar("_T")

_new = object.__new__
_set = object.__setattr__


def assembled(cls: type[_T], **fields: object) -> _T:
    """An instance of the frozen dataclass ``cls`` holding ``fields`` (every field, in declaration order)."""
    instance = _new(cls)
    _set(instance, "__dict__", fields)
    return instance


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
    dose_quantity, cumulative_quantity = _new(Quantity), _new(Quantity)
    _set(dose_quantity, "__dict__", {"value": dose, "unit": dose_unit})
    _set(cumulative_quantity, "__dict__", {"value": cumulative_dose, "unit": dose_unit})
    instance = _new(PlannedStep)
    _set(
        instance,
        "__dict__",
        {
            "number": number,
            "solution": solution,
            "rate_ml_h": rate_ml_h,
            "minutes": minutes,
            "volume_ml": volume_ml,
            "dose": dose_quantity,
            "cumulative_dose": cumulative_quantity,
            "start_minute": start_minute,
            "units": None,
            "closing": closing,
            "inserted": inserted,
            "protocol_step": protocol_step,
            "note": note,
        },
    )
    return instance


def quantity(value: Decimal, unit_code: str) -> Quantity:
    """A Quantity of a Decimal the engine computed, in a unit code it has already checked (its target's)."""
    instance = _new(Quantity)
    _set(instance, "__dict__", {"value": value, "unit": unit_code})
    return instance
