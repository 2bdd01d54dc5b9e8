"""Pharmacy preparation of a plan's solutions, exact (pure): what to draw, remove and dilute.

IV bags: from the stock concentration, the volume of stock that holds the bag's drug amount, and the
diluent to take out of a commercial bag first so the bag ends at its planned volume. A bag holds more
than its label (overfill); how much is a site setting per bag size (:data:`DEFAULT_OVERFILL_ML`), since
it differs by manufacturer. Every volume drawn for a bag is measured exactly on syringe marks and is at
least the site's minimum draw (INV-26): a stock volume that is smaller or finer than the marks (0.04 mL
of carboplatin 10 mg/mL for the 1:1000 bag of 400 mg) is drawn from an intermediate dilution (1 mL of
stock made up to 10 mL: 0.4 mL of 1 mg/mL). When no exact measurable preparation exists (the last bag
of a reduced final bag holds the target minus what the bags before delivered, to 8 digits) the nearest
measurable one is given with the difference stated, never silently. Oral solutions: serial dilutions, the strongest made from the commercial
product, each weaker one from the next stronger (e.g. penicillin V 80,000 -> 10,000 -> 1,000 units/mL).
Every value is exact; the sheets round them by the display policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from fhir_desens.errors import DesensError
from fhir_desens.protocol import display
from fhir_desens.protocol.calculate import Plan, PlannedSolution
from fhir_desens.protocol.quantity import Quantity, add, div, mul, sub
from fhir_desens.protocol.syringes import (
    SYRINGES,
    Fill,
    measurable_volume,
    on_marks,
    syringe_fills,
    syringe_for,
)

#: Overfill by labelled bag size (mL -> mL), as commonly stated (e.g. PharmacyDoc: 100 mL bags hold
#: about 110 mL, 250 mL bags about 275 mL). A site overrides it with what its bags really hold.
DEFAULT_OVERFILL_ML: Mapping[Decimal, Decimal] = {
    Decimal(50): Decimal(5),
    Decimal(100): Decimal(10),
    Decimal(250): Decimal(25),
    Decimal(500): Decimal(30),
    Decimal(1000): Decimal(50),
}
#: The smallest volume the pharmacy sheet asks to be drawn into a syringe for an IV bag (mL; the site's
#: setting ``FHIR_DESENS_MIN_DRAW_ML``). 0.1 mL is a judgement, not a published standard: it is ten marks
#: of a 1 mL syringe (0.01 mL marks), so a reading off by half a mark stays within 5 %; at 0.04 mL the
#: same half mark is 12.5 %. PharmacyDoc2018 (clinical.md, prior art) rounds draws to syringe marks and
#: uses an intermediate dilution for the same reason.
DEFAULT_MIN_DRAW_ML = Decimal("0.1")
#: Intermediate dilutions tried, the weakest first: stock 1 in 10, then 1 in 100.
DILUTION_FACTORS = (Decimal(10), Decimal(100))
#: An intermediate dilution is made up in a syringe to its full-capacity mark (mL), the smallest that
#: holds what the bag takes with ORAL_SPARE to spare.
INTERMEDIATE_SYRINGES_ML = tuple(s.capacity_ml for s in SYRINGES if s.capacity_ml >= 10)
#: the places a volume is rounded to (half-up) when no exact measurable preparation exists
_NEAREST_PLACES = (Decimal("0.01"), Decimal("0.1"), Decimal(1))

#: Oral solutions are made with at least this much to spare over what the doses and the next
#: dilution take, rounded up to whole 5 mL (spills, the dead volume of an oral syringe).
ORAL_SPARE = Decimal("1.2")
ORAL_ROUND_ML = Decimal(5)


@dataclass(frozen=True)
class IntermediateDilution:
    """Stock diluted in a syringe before it goes into a bag: ``stock`` (fills of stock) made up to
    ``final_ml`` (the syringe's full mark) with the bag's diluent gives ``concentration``."""

    factor: Decimal  # 10: 1 in 10
    stock: tuple[Fill, ...]
    final_ml: Decimal
    concentration: Quantity


@dataclass(frozen=True)
class BagPreparation:
    """One IV bag: take a ``bag_ml`` bag (holding ``bag_ml + overfill_ml``), remove ``remove_ml``, add
    ``added`` (fills of stock, or of ``intermediate`` when there is one): ``final_ml`` at the planned
    concentration, holding ``prepared_amount`` (= ``drug_amount`` unless ``exact`` is False)."""

    solution: int
    bag_ml: Decimal
    overfill_ml: Decimal
    stock_ml: Decimal | None  # the exact stock volume for the plan's amount; None: stock not known
    remove_ml: Decimal | None  # on its syringe's marks; None when unknown; 0 when nothing is removed
    final_ml: Decimal
    drug_amount: Quantity  # the plan's (and the orders')
    infuse_only_ml: Decimal | None  # set when less than the bag is infused ("infuse only X mL")
    added: tuple[Fill, ...] = ()  # what goes into the bag, fill by fill (empty: stock not known)
    intermediate: IntermediateDilution | None = None
    prepared_amount: Quantity | None = None  # what the fills put in the bag; None: stock not known
    minimum_ml: Decimal = DEFAULT_MIN_DRAW_ML

    @property
    def added_ml(self) -> Decimal:
        return sum((f.volume_ml for f in self.added), Decimal(0))

    @property
    def exact(self) -> bool:
        """Whether what is drawn holds exactly the plan's amount (INV-26); False only when no
        measurable preparation does, and then the sheet states the difference."""
        return self.prepared_amount is None or self.prepared_amount.value == self.drug_amount.value


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
    plan: Plan,
    stock: Quantity | None,
    overfill_ml: Mapping[Decimal, Decimal] = DEFAULT_OVERFILL_ML,
    minimum_ml: Decimal = DEFAULT_MIN_DRAW_ML,
) -> tuple[BagPreparation, ...]:
    """Per IV bag: what to draw (fills of stock, or of an intermediate dilution), each fill on its
    syringe's marks and at least ``minimum_ml`` (INV-26), and the diluent to remove for the overfill."""
    result = []
    for solution in plan.solutions:
        if solution.concentration is None or solution.volume_ml is None:
            continue
        bag = solution.volume_ml
        overfill = overfill_ml.get(bag, Decimal(0))
        stock_ml = _stock_volume(solution, stock)
        infused = solution.volume_infused_ml
        preparation = BagPreparation(
            solution=solution.number,
            bag_ml=bag,
            overfill_ml=overfill,
            stock_ml=stock_ml,
            remove_ml=None,
            final_ml=bag,
            drug_amount=solution.drug_amount,
            infuse_only_ml=infused if infused is not None and infused < bag else None,
            minimum_ml=minimum_ml,
        )
        if stock_ml is not None and stock is not None:
            preparation = _measured(preparation, stock.to(solution.concentration.unit))
        result.append(preparation)
    return tuple(result)


def _measured(bag: BagPreparation, stock: Quantity) -> BagPreparation:
    """``bag`` with what to draw: the stock itself when syringes measure its volume exactly, else an
    intermediate dilution whose volume they do, else (stated as such) the nearest measurable draw."""
    assert bag.stock_ml is not None
    found = _exact_draw(bag.stock_ml, stock, bag.minimum_ml) or _nearest_draw(
        bag.stock_ml, stock, bag.minimum_ml
    )
    if found is None:  # not even a rounded draw fits a syringe (a volume beyond every limit): by hand
        return bag
    added, intermediate = found
    strength = stock.value if intermediate is None else intermediate.concentration.value
    added_ml = sum((f.volume_ml for f in added), Decimal(0))
    removed = add(bag.overfill_ml, added_ml)
    return replace(
        bag,
        added=added,
        intermediate=intermediate,
        prepared_amount=Quantity(mul(strength, added_ml), bag.drug_amount.unit),
        remove_ml=measurable_volume(removed)[0] if removed > 0 else Decimal(0),
    )


Draw = tuple[tuple[Fill, ...], IntermediateDilution | None]


def _exact_draw(volume: Decimal, stock: Quantity, minimum: Decimal) -> Draw | None:
    direct = syringe_fills(volume, minimum)
    if direct is not None:
        return direct, None
    for factor in DILUTION_FACTORS:
        fills = syringe_fills(mul(volume, factor), minimum)
        intermediate = _intermediate(factor, mul(volume, factor), stock, minimum)
        if fills is not None and intermediate is not None:
            return fills, intermediate
    return None


def _nearest_draw(volume: Decimal, stock: Quantity, minimum: Decimal) -> Draw | None:
    """The measurable draw whose amount is nearest the exact one (stock itself before a dilution on a
    tie); the sheet states the difference."""
    best: tuple[Decimal, Draw] | None = None
    for factor in (Decimal(1), *DILUTION_FACTORS):
        for places in _NEAREST_PLACES:
            wanted = mul(volume, factor).quantize(places, rounding=ROUND_HALF_UP)
            fills = syringe_fills(wanted, minimum) if wanted > 0 else None
            intermediate = None if factor == 1 else _intermediate(factor, wanted, stock, minimum)
            if fills is None or (factor != 1 and intermediate is None):
                continue
            off = abs(sub(div(wanted, factor), volume))
            if best is None or off < best[0]:
                best = off, (fills, intermediate)
            break  # coarser places of the same factor are never nearer
    return None if best is None else best[1]


def _intermediate(
    factor: Decimal, taken: Decimal, stock: Quantity, minimum: Decimal
) -> IntermediateDilution | None:
    """Stock diluted ``factor`` times in the smallest syringe that holds ``taken`` mL with some to spare,
    made up to its full mark, from a stock draw a syringe measures (None: no syringe does)."""
    for final in INTERMEDIATE_SYRINGES_ML:
        if final < mul(taken, ORAL_SPARE):
            continue
        fills = syringe_fills(div(final, factor), minimum)
        if fills is not None and len(fills) == 1:
            return IntermediateDilution(factor, fills, final, Quantity(div(stock.value, factor), stock.unit))
    return None


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
    """Whether the syringe that holds ``volume_ml`` measures it on its marks, exactly as the sheet prints
    it (display policy: 0.01 mL below 1 mL, else 0.1 mL): "draw 1.875 mL" would print 1.9 and make the
    solution 1.3 % too strong; 4.5 mL is printed as it is but a 5 mL syringe reads 0.2 mL marks."""
    printed = display.volume_number(volume_ml).replace(",", "") == format(volume_ml.normalize(), "f")
    return printed and on_marks(volume_ml, syringe_for(volume_ml))


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
