"""What the printed sheets add to the worksheet: status line, labels, pharmacy preparation (display text).

Every number comes from the engine (:mod:`fhir_desens.protocol.preparation` for what to draw and
remove) and is written by the display policy (:mod:`fhir_desens.protocol.display`). A label has to
stand alone at the bedside: patient identifiers, drug and product, concentration, amount, one named
diluent, route, the rates it runs at, "infuse only X mL" where less than the bag is given, the stock
volume drawn, the beyond-use time and who prepared and checked it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_desens.drugs.checks import solution_diluent_label
from fhir_desens.drugs.monograph import Product
from fhir_desens.drugs.products import PlanProducts, resolve_products
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.calculate import Plan, PlannedSolution
from fhir_desens.protocol.model import ClosingMethod, ProtocolKind
from fhir_desens.protocol.preparation import (
    DEFAULT_MIN_DRAW_ML,
    DEFAULT_OVERFILL_ML,
    BagPreparation,
    DilutionStep,
    bag_preparations,
    serial_dilutions,
)
from fhir_desens.protocol.quantity import div, mul
from fhir_desens.protocol.report import is_oral, rate_text
from fhir_desens.protocol.syringes import Fill, syringe_for

DRAFT_TEXT = "DRAFT - not an order"
#: The largest oral syringe commonly at the bedside; larger oral doses are measured in a medicine cup.
ORAL_SYRINGE_ML = Decimal(10)
#: What happens to the rest of a container, as the worksheet's warnings say (a step back after a reaction
#: may need it): kept at the bedside until the session ends, then discarded.
KEEP_UNTIL_THE_END = (
    "keep it at the bedside until the session ends (a step back may need it), then discard the remainder."
)
TABLETS_BEYOND_USE = "Beyond use: the expiry date on the manufacturer's package (tablets given as supplied; a split tablet on the day)."


@dataclass(frozen=True)
class SheetStatus:
    draft: bool
    text: str  # "DRAFT - not an order" or "Signed by Dr A at 2027-01-15 09:02 CET · order <id>"


def draft_status() -> SheetStatus:
    return SheetStatus(True, DRAFT_TEXT)


_APP_ORDER_ID = re.compile(r"[0-9a-f]{32}")


def order_reference(order_id: str) -> str:
    """The order as people read it aloud and compare it at the bedside: the first 8 of the 32 hex digits
    this app writes, in two groups ("order 22C3-A57C", not "order 22c3a57cb9cfd96082490d8a199ad6e7"); the
    full identifier is on the signed plan's page and in the EHR. Another identifier is shown as it is."""
    if _APP_ORDER_ID.fullmatch(order_id):
        return f"{order_id[:4]}-{order_id[4:8]}".upper()
    return order_id


#: the signer of orders that name them only by a reference this app may not read (another user's
#: Practitioner, without a scope for it): said in words, since "Practitioner/7" is no one to call
UNREADABLE_SIGNER = "name not readable from the EHR: see the order in the EHR"


@dataclass(frozen=True)
class SignerWords:
    """Who signed, for the sheets and the signed plan's page: a name, or why there is none."""

    name: str | None  # the person's name
    reference: str | None  # the orders' reference to them ("Practitioner/7"), for the support team only

    @property
    def recorded(self) -> bool:
        return self.name is not None or self.reference is not None

    def __str__(self) -> str:
        """The Prescriber field: the name, the words of :data:`UNREADABLE_SIGNER`, or nothing (not recorded)."""
        if self.name:
            return self.name
        return UNREADABLE_SIGNER if self.reference else ""


def signer_words(name: str | None, reference: str | None) -> SignerWords:
    return SignerWords(name or None, reference or None)


def signed_status(signer: SignerWords, authored: str, order_id: str, zone_of: datetime) -> SheetStatus:
    """'Signed by <name> at <time in the site zone> · order <reference>' (:func:`order_reference`); a
    signer the EHR does not name to this app is said in words."""
    when = authored  # shown as recorded when it is not a date-time (the EHR should send one)
    with contextlib.suppress(ValueError):
        when = shown.moment_text(datetime.fromisoformat(authored), zone_of.tzinfo)
    order = f"order {order_reference(order_id)}"
    if signer.name:
        return SheetStatus(False, f"Signed by {signer.name} at {when.strip()} · {order}")
    if signer.reference:
        who = "a prescriber whose name is not readable from the EHR (see the order in the EHR)"
        return SheetStatus(False, f"Signed by {who} at {when.strip()} · {order}")
    return SheetStatus(False, f"Signed by an unrecorded prescriber at {when.strip()} · {order}")


@dataclass(frozen=True)
class Label:
    heading: str  # "Bag 1 of 3" / "Oral solution 2 of 3"
    product: str
    concentration: str
    amount: str  # "4 mg in 250 mL"
    diluent: str | None
    route: str
    rates: (
        str | None
    )  # "Rates: 1.9, 4.7, 9.4, 18.8 mL/h (steps 1-4)" / "Give by mouth: 0.1, 0.2 mL (steps 1-2)"
    infuse_only: str | None  # "Infuse only 8.7 mL; discard the remainder." / "Give only 12.7 mL in all; ..."
    stock: (
        str | None
    )  # "Stock drawn: 0.4 mL of 10 mg/mL" / "Made from 2 mL of solution 2 made up to 20 mL ..."
    steps: str
    beyond_use: str = ""  # from the monograph, or the line the pharmacy fills in


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
    drug_text: str | None = None  # the drug given when it is not the one ordered (see :func:`_drug_text`)


def _drug_text(products: PlanProducts | None) -> str | None:
    """'Penicillin V (given for the order of Penicillin G benzathine)' when the protocol gives another
    drug than the order: the pharmacist prepares what the sheet names, never the ordered product."""
    return products.given_for_the_order if products is not None else None


def _products(plan: Plan, rxnorm: tuple[str, ...]) -> PlanProducts | None:
    try:
        products, _ = resolve_products(plan.protocol, plan.drug, rxnorm)
    except Exception:
        return None
    return products


def ordered_drug_follows(plan: Plan, rxnorm: tuple[str, ...] = ()) -> str | None:
    """The ordered drug's name when the protocol gives another drug for its order (oral penicillin V for
    an order of penicillin G benzathine): that order follows the desensitization without a break in
    dosing. None when the plan gives the ordered drug itself."""
    products = _products(plan, rxnorm)
    if products is None or products.ordered is None or products.follows_order:
        return None
    return products.ordered.name


def drug_given(plan: Plan, rxnorm: tuple[str, ...] = ()) -> str | None:
    """What is given when the protocol gives another drug than the order (None: the drug planned)."""
    return _drug_text(_products(plan, rxnorm))


AS_SUPPLIED = "none: the product as supplied"


@dataclass(frozen=True)
class MadeSolution:
    """What the pharmacy makes of one oral solution, as both sheets state it (one truth)."""

    prepared: str  # "10 mL": the volume made (what the doses take, the next dilution's draw, spare)
    diluent: str  # "water", or AS_SUPPLIED for the commercial product used undiluted


def made_solutions(plan: Plan, rxnorm: tuple[str, ...] = ()) -> dict[int, MadeSolution]:
    """Per oral solution, the volume made and its diluent from the serial dilutions of the pharmacy
    sheet (empty when the product's concentration is not known or the plan is not oral)."""
    return {
        number: MadeSolution(shown.volume_text(step.final_ml), "water" if step.diluent_ml else AS_SUPPLIED)
        for number, step in _dilutions(plan, _products(plan, rxnorm)).items()
    }


def _stock_product(plan: Plan, products: PlanProducts | None) -> Product | None:
    liquids = [s for s in plan.solutions if s.concentration is not None]
    return _product(products, liquids[0].number) if liquids else None


def _dilutions(plan: Plan, products: PlanProducts | None) -> dict[int, DilutionStep]:
    """The serial dilutions of an oral plan from its product (empty: not oral, or no stock known)."""
    stock_product = _stock_product(plan, products)
    stock = stock_product.stock_concentration if stock_product is not None else None
    if not is_oral(plan) or stock is None or not any(s.concentration is not None for s in plan.solutions):
        return {}
    return {step.solution: step for step in serial_dilutions(plan, stock)}


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
    return f"Rates: {text} mL/h ({_range(_steps(plan, number))})"


def beyond_use_text(products: PlanProducts | None, *, diluted_oral: bool = False) -> str:
    """The label's beyond-use line: the given drug's monograph fact with its source, or a line to fill in.
    An oral dilution made for the session has no stability data: made on the day, discarded at its end."""
    fill = " Prepared at ________ Discard after ________"
    if diluted_oral:
        return (
            "Beyond use: no stability data for this dilution: make it on the day and discard it when the session ends."
            + fill
        )
    fact = products.given.beyond_use if products is not None else None
    if fact is None:
        return "Beyond use: no stability fact in the drug data: per the pharmacy's policy." + fill
    limits = []
    if fact.room_temperature_hours is not None:
        limits.append(f"{_hours(fact.room_temperature_hours)} at room temperature")
    if fact.refrigerated_hours is not None:
        limits.append(f"{_hours(fact.refrigerated_hours)} refrigerated (2-8 °C)")
    source = products.given.source(fact.source) if products is not None else None
    cited = f"; {source.kind.replace('-', ' ')} {source.date}" if source is not None else ""
    unverified = "" if fact.verified else " Not re-read at the source: check the pharmacy's stability policy."
    return (
        f"Beyond use: {' or '.join(limits)} after preparation ({fact.applies_to}{cited}).{unverified}" + fill
    )


def _hours(hours: Decimal) -> str:
    if hours >= 48 and hours % 24 == 0:
        return f"{shown.grouped(hours / 24)} days"
    return f"{shown.grouped(hours)} h"


def _given_name(plan: Plan, products: PlanProducts | None) -> str:
    """The drug the container holds: the protocol's product (penicillin V, not the ordered penicillin G),
    with both components of a combination."""
    if products is None:
        return plan.drug
    given = products.given
    if given.combination is not None:
        return f"{given.name} ({given.combination.abbreviation})"
    return given.name[:1].upper() + given.name[1:]


def both_components(value: Decimal, unit_code: str, products: PlanProducts | None) -> str:
    """An amount or concentration of the dose component; for a combination product every component in its
    ratio ("sulfamethoxazole 40 mg/mL + trimethoprim 8 mg/mL")."""
    combination = products.given.combination if products is not None else None
    if combination is None:
        return shown.dose_text(value, unit_code)
    dose_parts = next(c.parts for c in combination.components if c.name == combination.dose_component)
    return " + ".join(
        f"{c.name} {shown.dose_text(div(mul(value, c.parts), dose_parts), unit_code)}"
        for c in combination.components
    )


def _oral_doses(plan: Plan, number: int, how: str = "by mouth with an oral syringe") -> str | None:
    volumes = [s.volume_ml for s in plan.steps if s.solution == number and s.volume_ml is not None]
    if not volumes:
        return None
    text = ", ".join(shown.volume_number(v) for v in volumes)
    if how.endswith("oral syringe") and max(volumes) > ORAL_SYRINGE_ML:
        how += f" (a medicine cup for doses over {shown.grouped(ORAL_SYRINGE_ML)} mL)"
    return f"Give {how}: {text} mL ({_range(_steps(plan, number))}), one dose per step"


def _label(
    plan: Plan,
    solution: PlannedSolution,
    products: PlanProducts | None,
    bag: BagPreparation | None,
    count: int,
    dilution: DilutionStep | None = None,
) -> Label:
    product = _product(products, solution.number)
    oral = is_oral(plan)
    infusion = plan.protocol.kind is ProtocolKind.INFUSION
    kind = "Oral solution" if oral else ("Bag" if infusion else "Syringe")
    if solution.unit_dose is not None:
        kind = "Tablets"
    name = _given_name(plan, products)
    diluent = None if solution.unit_dose is not None else solution_diluent_label(solution.diluent, products)
    rates = _rates(plan, solution.number)
    infuse_only = None
    stock = None
    if solution.concentration is None:
        assert solution.unit_dose is not None
        strength = both_components(solution.unit_dose.value, solution.unit_dose.unit, products)
        amount = f"{shown.count_text(solution.units_used or Decimal(0), 'tablet')} of {strength}"
        concentration = f"{strength} per tablet"
        units = [s.units for s in plan.steps if s.solution == solution.number and s.units is not None]
        rates = (
            f"Give by mouth: {', '.join(shown.count_text(u, 'tablet').split()[0] for u in units)} tablet(s) "
            f"({_range(_steps(plan, solution.number))}), one dose per step"
        )
    else:
        volume = solution.volume_ml or Decimal(0)
        concentration = both_components(solution.concentration.value, solution.concentration.unit, products)
        if oral:
            made = dilution.final_ml if dilution is not None else volume
            held = both_components(mul(made, solution.concentration.value), plan.dose_unit, products)
            amount = f"{held} in {shown.volume_text(made)}"
            rates = _oral_doses(plan, solution.number)
            if made > volume:
                infuse_only = f"Give only {shown.volume_text(volume)} in all; {KEEP_UNTIL_THE_END}"
            if dilution is not None:
                if dilution.diluent_ml == 0:
                    diluent = None
                    supplied = f": {product.display}" if product is not None else ""
                    stock = f"The commercial product as supplied, not diluted{supplied}."
                else:
                    stock = (
                        f"Made from {shown.volume_text(dilution.source_ml)} of {dilution.source} "
                        f"({shown.quantity_text(dilution.source_concentration)}) made up to "
                        f"{shown.volume_text(dilution.final_ml)} with water."
                    )
        else:
            held = both_components(solution.drug_amount.value, solution.drug_amount.unit, products)
            amount = f"{held} in {shown.volume_text(volume)}"
            if not infusion:  # discrete doses drawn into syringes (an imported protocol): no rates
                rates = _oral_doses(plan, solution.number, f"{plan.protocol.route}, one syringe per dose")
            if bag is not None and bag.infuse_only_ml is not None:
                infuse_only = f"Infuse only {shown.volume_text(bag.infuse_only_ml)}; {KEEP_UNTIL_THE_END}"
            if bag is not None and bag.added and product is not None and product.stock_concentration:
                stock = _label_stock(bag, product)
    return Label(
        heading=f"{kind} {solution.number} of {count}"
        + ("" if solution.label.startswith(kind) else f": {solution.label}"),
        product=name,
        concentration=concentration,
        amount=amount,
        diluent=diluent,
        route="by mouth" if oral else plan.protocol.route,
        rates=rates,
        infuse_only=infuse_only,
        stock=stock,
        steps=_range(_steps(plan, solution.number)),
        beyond_use=TABLETS_BEYOND_USE
        if solution.unit_dose is not None
        else beyond_use_text(products, diluted_oral=oral and (dilution is None or dilution.diluent_ml > 0)),
    )


def _fills_text(fills: tuple[Fill, ...]) -> str:
    """'0.4 mL (1 mL syringe)'; '6.12 mL (6 mL in a 10 mL syringe + 0.12 mL in a 1 mL syringe)'."""
    if len(fills) == 1:
        return f"{shown.grouped(fills[0].volume_ml)} mL ({shown.grouped(fills[0].syringe.capacity_ml)} mL syringe)"
    counted: list[list[Any]] = []
    for fill in fills:
        if counted and counted[-1][0] == fill:
            counted[-1][1] += 1
        else:
            counted.append([fill, 1])
    parts = " + ".join(
        f"{f'{count} × ' if count > 1 else ''}{shown.grouped(fill.volume_ml)} mL in a "
        f"{shown.grouped(fill.syringe.capacity_ml)} mL syringe"
        for fill, count in counted
    )
    total = sum((f.volume_ml for f in fills), Decimal(0))
    digits = format(total.normalize(), "f").replace(".", "").lstrip("0")
    if len(digits) > shown.SIGNIFICANT_FIGURES:  # the parts say it; a 5-figure total is not read
        return parts
    return f"{shown.grouped(total)} mL ({parts})"


def _difference(bag: BagPreparation) -> str:
    """'0.0372 mg less than the orders (0.0094 %)': what is drawn against the plan's amount."""
    assert bag.prepared_amount is not None
    difference = bag.prepared_amount.value - bag.drug_amount.value
    percent = abs(difference) / bag.drug_amount.value * 100
    return (
        f"{shown.dose_text(abs(difference), bag.drug_amount.unit)} {'more' if difference > 0 else 'less'} "
        f"than the orders ({shown.significant(percent, 2)} %)"
    )


def _not_exact(bag: BagPreparation, plan: Plan) -> str:
    """The difference between what is drawn and the plan's amount, said (never silent, INV-26)."""
    text = (
        " Not exact: no syringe measures the stock for the plan's amount of this bag to its last digit; "
        f"what is drawn holds {_difference(bag)}."
    )
    if (
        plan.closing is ClosingMethod.REDUCED_FINAL_BAG
        and ClosingMethod.TRUNCATED_FINAL_STEP in plan.protocol.closing_methods
    ):
        text += (
            " With the closing 'Truncated final step' the last bag is made at the target's concentration "
            "and its draw is usually exact."
        )
    return text


def bag_notes(
    plan: Plan, rxnorm: tuple[str, ...] = (), minimum_ml: Decimal = DEFAULT_MIN_DRAW_ML
) -> dict[int, str]:
    """What the worksheet and the plan page say of a bag's preparation, as the pharmacy sheet makes it:
    an intermediate dilution, and a drawn amount that differs from the orders (INV-26)."""
    stock_product = _stock_product(plan, _products(plan, rxnorm))
    if is_oral(plan) or stock_product is None or stock_product.stock_concentration is None:
        return {}
    notes = {}
    for bag in bag_preparations(plan, stock_product.stock_concentration, DEFAULT_OVERFILL_ML, minimum_ml):
        parts = []
        if bag.intermediate is not None:
            parts.append(
                f"made with {shown.grouped(bag.added_ml)} mL of a "
                f"{shown.quantity_text(bag.intermediate.concentration)} dilution of the stock"
            )
        if not bag.exact:
            parts.append(f"syringes cannot draw its amount exactly: it holds {_difference(bag)}")
        if parts:
            notes[bag.solution] = "; ".join(parts)
    return notes


def _label_stock(bag: BagPreparation, product: Product) -> str:
    """'Stock drawn: 0.4 mL of 10 mg/mL (product)', or the intermediate dilution it was made with."""
    assert product.stock_concentration is not None
    stock = f"{shown.quantity_text(product.stock_concentration)} ({product.display})"
    added = shown.grouped(bag.added_ml)
    dilution = bag.intermediate
    if dilution is None:
        return f"Stock drawn: {added} mL of {stock}"
    made = shown.grouped(sum((f.volume_ml for f in dilution.stock), Decimal(0)))
    return (
        f"Made with {added} mL of a {shown.quantity_text(dilution.concentration)} dilution "
        f"({made} mL of {stock} made up to {shown.grouped(dilution.final_ml)} mL)"
    )


def _bag_line(bag: BagPreparation, diluent: str | None, stock: Product | None, plan: Plan) -> str:
    holds = shown.volume_text(bag.bag_ml + bag.overfill_ml)
    diluent = diluent or "diluent"
    text = f"Take a {shown.volume_text(bag.bag_ml)} bag of {diluent} (holds about {holds} with its overfill)"
    amount = shown.dose_text(bag.drug_amount.value, bag.drug_amount.unit)
    if bag.stock_ml is None or stock is None or stock.stock_concentration is None:
        return text + f"; add {amount} (stock concentration not known: calculate the volume by hand)."
    if not bag.added:
        return (
            text
            + f"; add {amount}: its {shown.significant(bag.stock_ml)} mL of stock is below what a syringe "
            "measures even from a 1 in 100 dilution: prepare it by hand with a further dilution."
        )
    stock_text = shown.quantity_text(stock.stock_concentration)
    prepared = bag.prepared_amount or bag.drug_amount
    held = shown.dose_text(prepared.value, prepared.unit)
    removal = f"; remove {shown.volume_text(bag.remove_ml or Decimal(0))}" if bag.remove_ml else ""
    tail = f": {held}, about {shown.volume_text(bag.final_ml)} in the bag."
    dilution = bag.intermediate
    if dilution is None:
        line = f"{text}{removal}; draw {_fills_text(bag.added)} of {stock_text} stock and add it{tail}"
    else:
        why = (
            f"below the {shown.grouped(bag.minimum_ml)} mL minimum draw"
            if bag.stock_ml < bag.minimum_ml
            else "finer than syringe marks"
        )
        strength = shown.quantity_text(dilution.concentration)
        line = (
            f"First dilute 1 in {shown.grouped(dilution.factor)} (the {shown.significant(bag.stock_ml)} mL of "
            f"stock this bag needs is {why}): draw {_fills_text(dilution.stock)} of {stock_text} stock into a "
            f"{shown.grouped(dilution.final_ml)} mL syringe and draw {diluent} up to its "
            f"{shown.grouped(dilution.final_ml)} mL mark: {strength}; label it. Then {text[:1].lower()}{text[1:]}"
            f"{removal}; add {_fills_text(bag.added)} of the {strength} dilution{tail} Discard the rest of the "
            "dilution."
        )
    return line + ("" if bag.exact else _not_exact(bag, plan))


def _dilution_line(step: DilutionStep) -> str:
    """Each volume measured on a syringe's marks: the source in the syringe that holds it, then water up to
    the final volume's mark (17.5 mL of water is no mark of a 20 mL syringe; its 20 mL mark is)."""
    if step.diluent_ml == 0:
        return f"Use the commercial product as it is: {shown.volume_text(step.final_ml)} of {shown.quantity_text(step.concentration)}."
    syringe = syringe_for(step.source_ml)
    return (
        f"Measure {shown.volume_text(step.source_ml)} of {step.source} "
        f"({shown.quantity_text(step.source_concentration)}; {shown.grouped(syringe.capacity_ml)} mL syringe) "
        f"and make it up to {shown.volume_text(step.final_ml)} with water: "
        f"{shown.volume_text(step.final_ml)} of {shown.quantity_text(step.concentration)}."
    )


def _tablets_note(plan: Plan) -> str:
    halves = any(step.units is not None and step.units % 1 for step in plan.steps)
    split = " (split a tablet on the day it is given)" if halves else ""
    return f"Tablets are given as supplied: count out each step's tablets{split}; nothing to dilute."


def _oral_note(plan: Plan, liquids: list[PlannedSolution], stock_known: bool) -> str:
    """How to prepare an oral plan: serial dilutions for its liquids, nothing for its tablets."""
    if not liquids:
        return _tablets_note(plan)
    note = (
        "Serial dilutions: make the strongest first; each weaker solution is made from the next stronger one."
    )
    if not stock_known:
        note += " The commercial product's concentration is not known: dilute by hand."
    if len(liquids) < len(plan.solutions):
        note += " " + _tablets_note(plan).replace("; nothing to dilute", "")
    return note


def paper_for(
    plan: Plan,
    rxnorm: tuple[str, ...] = (),
    overfill_ml: Mapping[Decimal, Decimal] = DEFAULT_OVERFILL_ML,
    minimum_ml: Decimal = DEFAULT_MIN_DRAW_ML,
) -> Paper:
    """Labels and preparation for a plan (products from the drug knowledge where known); bag overfill per
    labelled size and the smallest volume drawn from the site's settings (``FHIR_DESENS_BAG_OVERFILL_ML``,
    ``FHIR_DESENS_MIN_DRAW_ML``)."""
    products = _products(plan, rxnorm)
    liquids = [s for s in plan.solutions if s.concentration is not None]
    stock_product = _stock_product(plan, products)
    stock = stock_product.stock_concentration if stock_product is not None else None
    lines: list[PreparationLine] = []
    bags: dict[int, BagPreparation] = {}
    dilutions = _dilutions(plan, products)
    if is_oral(plan):
        note = _oral_note(plan, liquids, stock is not None)
        lines += [PreparationLine(n, _dilution_line(step)) for n, step in dilutions.items()]
    else:
        sizes = sorted({s.volume_ml for s in liquids if s.volume_ml is not None})
        overfill = "; ".join(
            f"{shown.volume_text(size)} bags hold {shown.volume_text(overfill_ml.get(size, Decimal(0)))} more"
            + ("" if size in overfill_ml else " (no overfill set for this size)")
            for size in sizes
        )
        note = (
            f"Overfill assumed (the site's setting): {overfill}. Each removal is the overfill plus the volume "
            "added, to the marks of the syringe that removes it. If your bags hold a different amount, "
            f"remove that much more or less. Every draw is at least {shown.grouped(minimum_ml)} mL (the site's "
            "minimum) and on the marks of the syringe named beside it."
        )
        for bag in bag_preparations(plan, stock, overfill_ml, minimum_ml):
            bags[bag.solution] = bag
            solution = next(s for s in plan.solutions if s.number == bag.solution)
            diluent = solution_diluent_label(solution.diluent, products)
            lines.append(PreparationLine(bag.solution, _bag_line(bag, diluent, stock_product, plan)))
    labels = tuple(
        _label(plan, s, products, bags.get(s.number), len(plan.solutions), dilutions.get(s.number))
        for s in plan.solutions
    )
    return Paper(
        labels=labels, preparation=tuple(lines), preparation_note=note, drug_text=_drug_text(products)
    )
