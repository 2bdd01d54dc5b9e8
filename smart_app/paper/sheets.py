"""What the printed sheets add to the worksheet: status line, labels, pharmacy preparation (display text).

Every number comes from the engine (:mod:`fhir_desens.protocol.preparation` for what to draw and
remove) and is written by the display policy (:mod:`fhir_desens.protocol.display`). A label has to
stand alone at the bedside: patient identifiers, drug and product, concentration, amount, one named
diluent, route, the rates it runs at, "infuse only X mL" where less than the bag is given, the stock
volume drawn, the beyond-use time and who prepared and checked it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from fhir_desens.drugs.checks import solution_diluent_label
from fhir_desens.drugs.monograph import Product
from fhir_desens.drugs.products import PlanProducts, resolve_products
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.calculate import Plan, PlannedSolution
from fhir_desens.protocol.preparation import (
    DEFAULT_OVERFILL_ML,
    BagPreparation,
    DilutionStep,
    bag_preparations,
    serial_dilutions,
)
from fhir_desens.protocol.report import is_oral, rate_text

DRAFT_TEXT = "DRAFT - not an order"


@dataclass(frozen=True)
class SheetStatus:
    draft: bool
    text: str  # "DRAFT - not an order" or "Signed by Dr A at 2027-01-15 09:02 CET · order <id>"


def draft_status() -> SheetStatus:
    return SheetStatus(True, DRAFT_TEXT)


def signed_status(signer: str | None, authored: str, order_id: str, zone_of: datetime) -> SheetStatus:
    """'Signed by <name> at <time in the site zone> · order <identifier>'."""
    when = authored  # shown as recorded when it is not a date-time (the EHR should send one)
    with contextlib.suppress(ValueError):
        when = datetime.fromisoformat(authored).astimezone(zone_of.tzinfo).strftime("%Y-%m-%d %H:%M %Z")
    return SheetStatus(
        False, f"Signed by {signer or 'an unrecorded prescriber'} at {when.strip()} · order {order_id}"
    )


@dataclass(frozen=True)
class Label:
    heading: str  # "Bag 1 of 3" / "Oral solution 2 of 3"
    product: str
    concentration: str
    amount: str  # "4 mg in 250 mL"
    diluent: str | None
    route: str
    rates: str | None  # "1.9, 4.7, 9.4, 18.8 mL/h (steps 1-4)"
    infuse_only: str | None  # "Infuse only 8.7 mL; discard the remainder."
    stock: str | None  # "Stock drawn: 0.4 mL of 10 mg/mL"
    steps: str


@dataclass(frozen=True)
class PreparationLine:
    solution: int
    text: str


@dataclass(frozen=True)
class Paper:
    """The labels and preparation steps of one plan."""

    labels: tuple[Label, ...]
    preparation: tuple[PreparationLine, ...]
    preparation_note: str


def _products(plan: Plan, rxnorm: tuple[str, ...]) -> PlanProducts | None:
    try:
        products, _ = resolve_products(plan.protocol, plan.drug, rxnorm)
    except Exception:
        return None
    return products


def _product(products: PlanProducts | None, number: int) -> Product | None:
    if products is None:
        return None
    try:
        return products.product(number)
    except KeyError:
        return None


def _steps(plan: Plan, number: int) -> list[int]:
    return [s.number for s in plan.steps if s.solution == number]


def _range(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    return f"step {numbers[0]}" if len(numbers) == 1 else f"steps {numbers[0]}-{numbers[-1]}"


def _rates(plan: Plan, number: int) -> str | None:
    rates = [s.rate_ml_h for s in plan.steps if s.solution == number and s.rate_ml_h is not None]
    if not rates:
        return None
    text = ", ".join(dict.fromkeys(rate_text(plan, r) for r in rates))
    return f"{text} mL/h ({_range(_steps(plan, number))})"


def _label(
    plan: Plan,
    solution: PlannedSolution,
    products: PlanProducts | None,
    bag: BagPreparation | None,
    count: int,
) -> Label:
    product = _product(products, solution.number)
    oral = is_oral(plan)
    kind = "Oral solution" if oral else "Bag"
    if solution.unit_dose is not None:
        kind = "Tablets"
    name = plan.drug
    if products is not None and products.given.combination is not None:
        name = f"{products.given.name} ({products.given.combination.abbreviation})"
    if solution.concentration is None:
        assert solution.unit_dose is not None
        amount = f"{shown.count_text(solution.units_used or Decimal(0), 'tablet')} of {shown.quantity_text(solution.unit_dose)}"
        concentration = f"{shown.quantity_text(solution.unit_dose)} per tablet"
    else:
        volume = solution.volume_ml or Decimal(0)
        amount = f"{shown.dose_text(solution.drug_amount.value, solution.drug_amount.unit)} in {shown.volume_text(volume)}"
        concentration = shown.quantity_text(solution.concentration)
    infuse_only = None
    if bag is not None and bag.infuse_only_ml is not None:
        infuse_only = f"Infuse only {shown.volume_text(bag.infuse_only_ml)}; discard the remainder."
    stock = None
    if bag is not None and bag.stock_ml is not None and product is not None and product.stock_concentration:
        stock = (
            f"Stock drawn: {shown.volume_text(bag.stock_ml)} of {shown.quantity_text(product.stock_concentration)}"
            f" ({product.display})"
        )
    return Label(
        heading=f"{kind} {solution.number} of {count}"
        + ("" if solution.label.startswith(kind) else f": {solution.label}"),
        product=name,
        concentration=concentration,
        amount=amount,
        diluent=None
        if solution.unit_dose is not None
        else solution_diluent_label(solution.diluent, products),
        route="by mouth" if oral else plan.protocol.route,
        rates=_rates(plan, solution.number),
        infuse_only=infuse_only,
        stock=stock,
        steps=_range(_steps(plan, solution.number)),
    )


def _bag_line(bag: BagPreparation, diluent: str | None, stock: Product | None) -> str:
    holds = shown.volume_text(bag.bag_ml + bag.overfill_ml)
    text = f"Take a {shown.volume_text(bag.bag_ml)} bag of {diluent or 'diluent'} (holds about {holds} with its overfill)"
    if bag.stock_ml is None or stock is None or stock.stock_concentration is None:
        return (
            text
            + f"; add {shown.dose_text(bag.drug_amount.value, bag.drug_amount.unit)} (stock concentration not known: calculate the volume by hand)."
        )
    return (
        f"{text}; remove {shown.volume_text(bag.remove_ml or Decimal(0))}; draw {shown.volume_text(bag.stock_ml)} "
        f"of {shown.quantity_text(stock.stock_concentration)} stock "
        f"({shown.dose_text(bag.drug_amount.value, bag.drug_amount.unit)}) and add it: "
        f"{shown.volume_text(bag.final_ml)} in the bag."
    )


def _dilution_line(step: DilutionStep) -> str:
    source = f"{shown.volume_text(step.source_ml)} of {step.source} ({shown.quantity_text(step.source_concentration)})"
    if step.diluent_ml == 0:
        return f"Use the commercial product as it is: {shown.volume_text(step.final_ml)} of {shown.quantity_text(step.concentration)}."
    return (
        f"Measure {source}, add {shown.volume_text(step.diluent_ml)} of water: "
        f"{shown.volume_text(step.final_ml)} of {shown.quantity_text(step.concentration)}."
    )


def paper_for(
    plan: Plan, rxnorm: tuple[str, ...] = (), overfill_ml: Mapping[Decimal, Decimal] = DEFAULT_OVERFILL_ML
) -> Paper:
    """Labels and preparation for a plan (products from the drug knowledge where known); bag overfill per
    labelled size from the site's setting (``FHIR_DESENS_BAG_OVERFILL_ML``)."""
    products = _products(plan, rxnorm)
    liquids = [s for s in plan.solutions if s.concentration is not None]
    stock_product = _product(products, liquids[0].number) if liquids else None
    stock = stock_product.stock_concentration if stock_product is not None else None
    lines: list[PreparationLine] = []
    bags: dict[int, BagPreparation] = {}
    if is_oral(plan):
        note = "Serial dilutions: make the strongest first; each weaker solution is made from the next stronger one."
        if stock is not None and liquids:
            for step in serial_dilutions(plan, stock):
                lines.append(PreparationLine(step.solution, _dilution_line(step)))
        note += (
            ""
            if stock is not None
            else " The commercial product's concentration is not known: dilute by hand."
        )
    else:
        sizes = sorted({s.volume_ml for s in liquids if s.volume_ml is not None})
        overfill = "; ".join(
            f"{shown.volume_text(size)} bags hold {shown.volume_text(overfill_ml.get(size, Decimal(0)))} more"
            + ("" if size in overfill_ml else " (no overfill set for this size)")
            for size in sizes
        )
        note = (
            f"Overfill assumed (the site's setting): {overfill}. If your bags hold a different amount, "
            "remove that much more or less."
        )
        for bag in bag_preparations(plan, stock, overfill_ml):
            bags[bag.solution] = bag
            solution = next(s for s in plan.solutions if s.number == bag.solution)
            diluent = solution_diluent_label(solution.diluent, products)
            lines.append(PreparationLine(bag.solution, _bag_line(bag, diluent, stock_product)))
    labels = tuple(_label(plan, s, products, bags.get(s.number), len(plan.solutions)) for s in plan.solutions)
    return Paper(labels=labels, preparation=tuple(lines), preparation_note=note)
