"""Pharmacy preparation of a plan's solutions, exact (pure): what to draw, remove and dilute.

IV bags: from the stock concentration, the volume of stock that holds the bag's drug amount, and the
diluent to take out of a commercial bag first so the bag ends at its planned volume. A bag holds more
than its label (overfill); how much is a site setting per bag size (:data:`DEFAULT_OVERFILL_ML`), since
it differs by manufacturer. Oral solutions: serial dilutions, the strongest made from the commercial
product, each weaker one from the next stronger (e.g. penicillin V 80,000 -> 10,000 -> 1,000 units/mL).
Every value is exact; the sheets round them by the display policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from fhir_desens.errors import DesensError
from fhir_desens.protocol import display
from fhir_desens.protocol.calculate import Plan, PlannedSolution
from fhir_desens.protocol.quantity import Quantity, add, div, mul, sub

#: Overfill by labelled bag size (mL -> mL), as commonly stated (e.g. PharmacyDoc: 100 mL bags hold
#: about 110 mL, 250 mL bags about 275 mL). A site overrides it with what its bags really hold.
DEFAULT_OVERFILL_ML: Mapping[Decimal, Decimal] = {
    Decimal(50): Decimal(5),
    Decimal(100): Decimal(10),
    Decimal(250): Decimal(25),
    Decimal(500): Decimal(30),
    Decimal(1000): Decimal(50),
}
#: Oral solutions are made with at least this much to spare over what the doses and the next
#: dilution take, rounded up to whole 5 mL (spills, the dead volume of an oral syringe).
ORAL_SPARE = Decimal("1.2")
ORAL_ROUND_ML = Decimal(5)


@dataclass(frozen=True)
class BagPreparation:
    """One IV bag: take a ``bag_ml`` bag (holding ``bag_ml + overfill_ml``), remove ``remove_ml``,
    add ``stock_ml`` of stock: ``final_ml`` at the planned concentration."""

    solution: int
    bag_ml: Decimal
    overfill_ml: Decimal
    stock_ml: Decimal | None  # None when the stock concentration is not known
    remove_ml: Decimal | None  # None when unknown; 0 when nothing is removed
    final_ml: Decimal
    drug_amount: Quantity
    infuse_only_ml: Decimal | None  # set when less than the bag is infused ("infuse only X mL")


@dataclass(frozen=True)
class DilutionStep:
    """One oral solution: ``source_ml`` of ``source`` made up to ``final_ml`` with ``diluent_ml``."""

    solution: int
    final_ml: Decimal
    source: str  # "the commercial product" or "solution N"
    source_concentration: Quantity
    source_ml: Decimal
    diluent_ml: Decimal
    concentration: Quantity


def bag_preparations(
    plan: Plan, stock: Quantity | None, overfill_ml: Mapping[Decimal, Decimal] = DEFAULT_OVERFILL_ML
) -> tuple[BagPreparation, ...]:
    """Per IV bag: stock to draw and diluent to remove (exact), overfill from the bag size."""
    result = []
    for solution in plan.solutions:
        if solution.concentration is None or solution.volume_ml is None:
            continue
        bag = solution.volume_ml
        overfill = overfill_ml.get(bag, Decimal(0))
        stock_ml = _stock_volume(solution, stock)
        remove = None if stock_ml is None else max(Decimal(0), add(overfill, stock_ml))
        infused = solution.volume_infused_ml
        result.append(
            BagPreparation(
                solution=solution.number,
                bag_ml=bag,
                overfill_ml=overfill,
                stock_ml=stock_ml,
                remove_ml=remove,
                final_ml=bag,
                drug_amount=solution.drug_amount,
                infuse_only_ml=infused if infused is not None and infused < bag else None,
            )
        )
    return tuple(result)


def _stock_volume(solution: PlannedSolution, stock: Quantity | None) -> Decimal | None:
    if stock is None or solution.concentration is None:
        return None
    try:
        stock_value = stock.to(solution.concentration.unit).value
    except DesensError:  # the stock is in another kind of unit: no volume to draw from it
        return None
    return div(solution.drug_amount.value, stock_value)


#: how many larger final volumes (in ORAL_ROUND_ML steps) are tried for a draw a syringe can measure
MEASURABLE_TRIES = 8


def _measurable(volume_ml: Decimal) -> bool:
    """Whether a syringe measures ``volume_ml`` exactly as the sheet prints it (display policy: 0.01 mL
    below 1 mL, else 0.1 mL): "draw 1.875 mL" would print 1.9 and make the solution 1.3 % too strong."""
    return display.volume_number(volume_ml).replace(",", "") == format(volume_ml.normalize(), "f")


def _measurable_final(final: Decimal, concentration: Decimal, source: Decimal) -> Decimal:
    """The smallest final volume from ``final`` up whose draw from the source is measurable; ``final``
    itself when none of the next few is (the sheet then prints the draw rounded, as before)."""
    for step in range(MEASURABLE_TRIES):
        candidate = add(final, mul(ORAL_ROUND_ML, Decimal(step)))
        if source > 0 and _measurable(div(mul(concentration, candidate), source)):
            return candidate
    return final


def serial_dilutions(plan: Plan, stock: Quantity) -> tuple[DilutionStep, ...]:
    """Oral solutions from the strongest down, each from the next stronger (or the product)."""
    liquids = [s for s in plan.solutions if s.concentration is not None and s.volume_ml is not None]
    strongest_first = sorted(liquids, key=lambda s: s.concentration.value if s.concentration else Decimal(0))
    strongest_first.reverse()
    first = strongest_first[0].concentration if strongest_first else None
    stock_value = stock.to(first.unit).value if first is not None else Decimal(0)
    # Volumes from the weakest up: a solution must also hold what the next weaker one draws from it.
    finals: dict[int, Decimal] = {}
    draws: dict[int, Decimal] = {}
    drawn_by_weaker = Decimal(0)
    for index in range(len(strongest_first) - 1, -1, -1):
        solution = strongest_first[index]
        assert solution.volume_ml is not None and solution.concentration is not None
        needed = add(mul(solution.volume_ml, ORAL_SPARE), drawn_by_weaker)
        final = mul(div(needed, ORAL_ROUND_ML).to_integral_value(rounding=ROUND_CEILING), ORAL_ROUND_ML)
        source_value = (
            strongest_first[index - 1].concentration.value  # type: ignore[union-attr]
            if index > 0
            else stock_value
        )
        final = _measurable_final(final, solution.concentration.value, source_value)
        finals[solution.number] = final
        draws[solution.number] = div(mul(solution.concentration.value, final), source_value)
        drawn_by_weaker = draws[solution.number] if index > 0 else Decimal(0)
    steps = []
    for index, solution in enumerate(strongest_first):
        assert solution.concentration is not None
        source = strongest_first[index - 1] if index > 0 else None
        source_conc = source.concentration if source is not None else stock.to(solution.concentration.unit)
        assert source_conc is not None
        steps.append(
            DilutionStep(
                solution=solution.number,
                final_ml=finals[solution.number],
                source=f"solution {source.number}" if source is not None else "the commercial product",
                source_concentration=source_conc,
                source_ml=draws[solution.number],
                diluent_ml=sub(finals[solution.number], draws[solution.number]),
                concentration=solution.concentration,
            )
        )
    return tuple(steps)
