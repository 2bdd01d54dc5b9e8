"""The checks drug knowledge drives on a computed plan (pure; IDs in docs/requirements.md).

* DRUG-CONC-1  a solution stronger than the product's stock concentration is refused, naming it;
* DRUG-CONC-2  a bag outside the concentration range of the label or stability data is warned: a bag
               above it, or the last (target-strength) bag below it, by name; the dilute bags
               before the last, below it by design of every desensitization, in one statement;
* DRUG-DIL-1   an incompatible diluent (oxaliplatin with chloride) is refused; one not listed as
               compatible is warned;
* DRUG-DIL-2   the default diluent is the one the order names, else the monograph's default; every
               label and order names exactly one diluent (:func:`diluent_label`);
* DRUG-DOSE-1  a target dose outside the plausible range is warned, above the absurd limit refused;
* DRUG-LAST-1  a protocol whose last dose is above the ordered dose is warned (DS tablet for a
               400 mg order);
* DRUG-COMBO-1 a combination's dose is shown with both components ("SMX/TMP 800/160 mg");
* DRUG-RATE-1  a step faster than the label's maximum dose rate is warned;
* DRUG-PREP-1  container, filter and handling requirements are listed for the pharmacy sheet.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal

from fhir_desens.drugs.findings import Finding, Severity
from fhir_desens.drugs.monograph import Diluent, InfusionFacts, Monograph, diluents
from fhir_desens.drugs.products import PlanProducts
from fhir_desens.protocol.calculate import Plan, PlannedSolution
from fhir_desens.protocol.model import TargetKind
from fhir_desens.protocol.quantity import (
    Quantity,
    concentration_base,
    display_significant,
    div,
    mul,
    plain,
    unit,
)

__all__ = [
    "check_concentrations",
    "check_diluent",
    "check_dose",
    "check_last_dose",
    "check_rates",
    "combination_text",
    "default_diluent",
    "diluent_from_text",
    "diluent_label",
    "preparation_requirements",
    "review_plan",
    "solution_diluent_label",
]


def _text(quantity: Quantity) -> str:
    return f"{display_significant(quantity.value)} {unit(quantity.unit).display}"


def _comparable(first: Quantity, second: Quantity) -> bool:
    return concentration_base(unit(first.unit)) is concentration_base(unit(second.unit))


def _bag_name(plan: Plan, solution: PlannedSolution) -> str:
    noun = "Bag" if plan.protocol.route.lower() in ("iv", "intravenous") else "Solution"
    if solution.label.lower().startswith(noun.lower()):
        return solution.label
    return f"{noun} {solution.number} ({solution.label})"


# --- concentrations ---------------------------------------------------------------------------


#: Why the dilute bags of a desensitization fall outside a label's range, and what the pharmacy does about
#: it (one statement per plan, not a warning per bag: every 3- or 4-bag plan has them).
DILUTE_BAGS_BASIS = (
    "the dilute bags of a rapid desensitization are weaker than any label's range by design; the label's "
    "stability data do not cover them (stability of dilute desensitization solutions is questioned: "
    "J Allergy Clin Immunol Pract 2016;4(5); Mathieu, Pinard et al., paclitaxel desensitization stability "
    "study, GERPAC 2025). Prepare them just before the session and use them the same day."
)


def _outside(concentration: Quantity, low: Quantity | None, high: Quantity | None) -> str | None:
    """'below' or 'above' the range (bounds in a comparable unit only), else None."""
    value = concentration.value
    if low is not None and _comparable(low, concentration) and value < low.canonical().value:
        return "below"
    if high is not None and _comparable(high, concentration) and value > high.canonical().value:
        return "above"
    return None


def check_concentrations(plan: Plan, products: PlanProducts) -> tuple[Finding, ...]:
    """DRUG-CONC-1 (above stock: refused) and DRUG-CONC-2 (outside the studied range: warned).

    A pharmacist reads a range warning when there is something to do about one bag: a bag stronger than
    the range, or the last (target-strength) bag weaker than it (a smaller bag volume fixes that). The
    dilute bags before the last are below every label's range by design of the protocol, so they get one
    statement naming them and the practice (prepare just before use), not a warning per bag."""
    found: list[Finding] = []
    infusion = products.given.infusion
    iv = plan.protocol.route.lower() in ("iv", "intravenous")
    last = max((s.number for s in plan.solutions), default=0)
    dilute: list[tuple[str, Quantity]] = []
    for solution in plan.solutions:
        if solution.concentration is None:
            continue
        name = _bag_name(plan, solution)
        stock = products.product(solution.number).stock_concentration
        concentration = solution.concentration.canonical()
        if (
            stock is not None
            and _comparable(stock, concentration)
            and concentration.value > stock.canonical().value
        ):
            found.append(
                Finding(
                    "DRUG-CONC-1",
                    Severity.REFUSE,
                    f"{name} would be {_text(concentration)}, stronger than the {products.given.name} stock "
                    f"({_text(stock)}): it cannot be prepared. Lower the dose or use a larger bag volume.",
                    name,
                )
            )
            continue
        if infusion is None or not iv:
            continue
        low, high = infusion.concentration_min, infusion.concentration_max
        side = _outside(concentration, low, high)
        if side == "below" and solution.number != last:
            dilute.append((name, concentration))
        elif side is not None:
            fix = "Use a smaller bag volume, or" if side == "below" else "Use a larger bag volume, or"
            found.append(
                Finding(
                    "DRUG-CONC-2",
                    Severity.WARN,
                    f"{name} is {_text(concentration)}, {side} the {products.given.name} concentration range "
                    f"({_band(low, high)}; {infusion.concentration_basis}). {fix} prepare it just before use "
                    "and check the local stability data.",
                    name,
                )
            )
    if dilute and infusion is not None:
        found.append(
            _dilute_bags(dilute, products.given.name, _band(infusion.concentration_min, None), infusion)
        )
    return tuple(found)


def _dilute_bags(
    dilute: Sequence[tuple[str, Quantity]], drug: str, band: str, infusion: InfusionFacts
) -> Finding:
    names = [f"{name} at {_text(concentration)}" for name, concentration in dilute]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    verb = "is" if len(names) == 1 else "are"
    return Finding(
        "DRUG-CONC-2",
        Severity.WARN,
        f"{listed} {verb} below the {drug} label's concentration range ({band}; "
        f"{infusion.concentration_basis}): {DILUTE_BAGS_BASIS}",
        "dilute bags",
    )


def _band(low: Quantity | None, high: Quantity | None) -> str:
    if low is not None and high is not None:
        return f"{_text(low)} to {_text(high)}"
    if low is not None:
        return f"at least {_text(low)}"
    return f"at most {_text(high)}" if high is not None else "no range"


# --- diluents -----------------------------------------------------------------------------------


def diluent_from_text(text: str | None) -> str | None:
    """The one diluent an order's text names ("... in 250 mL D5W IV" -> "d5w"); None if none or several.

    A name inside a longer one does not count ("5% dextrose in 0.9% sodium chloride" is D5NS, not NS
    too); two separate diluents ("NS or D5W as the drug requires") name none.
    """
    if not text:
        return None
    lowered = text.lower()
    spans: list[tuple[int, int, str]] = []
    for item in diluents().values():
        for word in item.words:
            for match in re.finditer(rf"(?<![\w.]){re.escape(word)}(?!\w)", lowered):
                spans.append((match.start(), match.end(), item.id))
    outer = [
        span
        for span in spans
        if not any(o[0] <= span[0] and span[1] <= o[1] and (o[1] - o[0]) > (span[1] - span[0]) for o in spans)
    ]
    named = {did for _, _, did in outer}
    return next(iter(named)) if len(named) == 1 else None


def default_diluent(drug: Monograph | None, order_text: str | None) -> tuple[str | None, str]:
    """DRUG-DIL-2: the order's diluent when it names one, else the monograph's default; and why."""
    from_order = diluent_from_text(order_text)
    if from_order is not None:
        return from_order, "as the therapeutic order says"
    if drug is not None and drug.infusion is not None:
        return drug.infusion.default_diluent, f"the usual diluent for {drug.name}"
    return None, ""


def diluent_label(diluent_id: str) -> str:
    """The single diluent a label and an order print."""
    return diluents()[diluent_id].label


def solution_diluent_label(text: str | None, products: PlanProducts | None) -> str | None:
    """Exactly one named diluent for a solution (DRUG-DIL-2): the one the plan names, else the drug's usual
    one, else the plan's text as written. Orders and labels print the same words."""
    named = diluent_from_text(text)
    if named is not None:
        return diluent_label(named)
    infusion = products.given.infusion if products is not None else None
    if text and infusion is not None and text.strip().lower() != "water":
        return diluent_label(infusion.default_diluent)
    return text


def check_diluent(drug: Monograph, diluent_id: str) -> tuple[Finding, ...]:
    """DRUG-DIL-1: incompatible diluents are refused, unlisted ones warned."""
    infusion = drug.infusion
    known: Diluent | None = diluents().get(diluent_id)
    if infusion is None or known is None:
        return ()
    bad = infusion.incompatibility(diluent_id)
    if bad is not None:
        allowed = ", ".join(diluents()[d].label for d in infusion.compatible_diluents)
        return (
            Finding(
                "DRUG-DIL-1",
                Severity.REFUSE,
                f"{drug.name} must not be diluted in {known.label}: {bad.reason}. Use {allowed}.",
                "diluent",
            ),
        )
    if diluent_id not in infusion.compatible_diluents:
        allowed = ", ".join(diluents()[d].label for d in infusion.compatible_diluents)
        return (
            Finding(
                "DRUG-DIL-1",
                Severity.WARN,
                f"{known.label} is not a diluent the {drug.name} label lists ({allowed}): check compatibility.",
                "diluent",
            ),
        )
    return ()


# --- doses ----------------------------------------------------------------------------------------


def check_dose(drug: Monograph, dose: Quantity, what: str = "target dose") -> tuple[Finding, ...]:
    """DRUG-DOSE-1: outside the plausible range warned; above the absurd limit refused."""
    limits = drug.dose
    limit_unit = unit(limits.unit)
    if unit(dose.unit).dimension is not limit_unit.dimension:
        return ()
    value = dose.to(limits.unit).value
    shown = f"{plain(limits.plausible_min)} to {plain(limits.plausible_max)} {limit_unit.display}"
    if value > limits.refuse_above:
        return (
            Finding(
                "DRUG-DOSE-1",
                Severity.REFUSE,
                f"The {what} {_text(dose)} of {drug.name} is far above any usual dose ({shown}; refused above "
                f"{plain(limits.refuse_above)} {limit_unit.display}). Check for a decimal or unit slip.",
                what,
            ),
        )
    if value < limits.plausible_min or value > limits.plausible_max:
        return (
            Finding(
                "DRUG-DOSE-1",
                Severity.WARN,
                f"The {what} {_text(dose)} of {drug.name} is outside the usual range ({shown}: {limits.basis}). "
                "Confirm it with the prescriber.",
                what,
            ),
        )
    return ()


def check_last_dose(plan: Plan, products: PlanProducts, ordered_dose: Quantity | None) -> tuple[Finding, ...]:
    """DRUG-LAST-1: a final-dose protocol whose last dose is above the ordered dose (same drug only)."""
    if ordered_dose is None or not plan.steps or not products.follows_order:
        return ()
    if plan.protocol.target_kind is not TargetKind.FINAL_DOSE:
        return ()
    last = plan.steps[-1].dose
    if unit(last.unit).dimension is not unit(ordered_dose.unit).dimension:
        return ()
    if last.canonical().value <= ordered_dose.canonical().value:
        return ()
    product = products.product(plan.steps[-1].solution)
    return (
        Finding(
            "DRUG-LAST-1",
            Severity.WARN,
            f"The last dose of this protocol ({combination_text(products.given, last)}, {product.display}) is "
            f"above the ordered dose ({combination_text(products.given, ordered_dose)}). Confirm with the "
            "prescriber that the higher dose is intended, or choose a protocol that ends at the ordered dose.",
            f"step {plan.steps[-1].number}",
        ),
    )


def combination_text(drug: Monograph, dose: Quantity) -> str:
    """DRUG-COMBO-1: "SMX/TMP 800/160 mg" for a combination, "400 mg" otherwise."""
    combo = drug.combination
    if combo is None:
        return _text(dose)
    base = next(c for c in combo.components if c.name == combo.dose_component)
    amounts = [div(mul(dose.value, c.parts), base.parts) for c in combo.components]
    numbers = "/".join(display_significant(a) for a in amounts)
    return f"{combo.abbreviation} {numbers} {unit(dose.unit).display}"


# --- rates and preparation --------------------------------------------------------------------------


def check_rates(plan: Plan, products: PlanProducts) -> tuple[Finding, ...]:
    """DRUG-RATE-1: a step delivering drug faster than the label's maximum dose rate."""
    infusion = products.given.infusion
    if infusion is None or infusion.max_dose_rate is None:
        return ()
    limit = infusion.max_dose_rate
    per_hour_limit = div(mul(limit.amount.canonical().value, Decimal(60)), limit.per_minutes)
    found: list[Finding] = []
    for step in plan.steps:
        solution = next(s for s in plan.solutions if s.number == step.solution)
        if step.rate_ml_h is None or solution.concentration is None:
            continue
        if unit(limit.amount.unit).dimension is not concentration_base(unit(solution.concentration.unit)):
            continue
        per_hour = mul(solution.concentration.canonical().value, step.rate_ml_h)
        if per_hour > per_hour_limit:
            found.append(
                Finding(
                    "DRUG-RATE-1",
                    Severity.WARN,
                    f"Step {step.number} gives {display_significant(per_hour)} {unit(limit.amount.unit).display}/h of "
                    f"{products.given.name}, above the label maximum ({limit.basis}).",
                    f"step {step.number}",
                )
            )
    return tuple(found)


def preparation_requirements(drug: Monograph) -> tuple[str, ...]:
    """DRUG-PREP-1: what the pharmacy and the nurse must use (container, filter, handling)."""
    infusion = drug.infusion
    if infusion is None:
        return ()
    lines = [f"Container: {infusion.container}."] if infusion.container else []
    if infusion.filter:
        lines.append(f"Filter: {infusion.filter}.")
    lines.extend(infusion.handling)
    return tuple(lines)


def review_plan(
    plan: Plan,
    products: PlanProducts,
    *,
    diluent_id: str | None,
    ordered_dose: Quantity | None,
) -> tuple[Finding, ...]:
    """Every drug check of a computed plan, refusals first."""
    found: list[Finding] = []
    found.extend(check_concentrations(plan, products))
    if diluent_id is not None and plan.protocol.route.lower() in ("iv", "intravenous"):
        found.extend(check_diluent(products.given, diluent_id))
    # The dose typed for the plan when the protocol is computed for it, else the ordered dose (fixed-dose
    # protocols such as oral penicillin give their own doses; the ordered dose is the therapeutic one).
    dose = plan.target_dose if plan.request.target is not None else ordered_dose
    if dose is not None and products.ordered is not None:
        found.extend(check_dose(products.ordered, dose))
    found.extend(check_last_dose(plan, products, ordered_dose))
    found.extend(check_rates(plan, products))
    return tuple(sorted(found, key=lambda f: f.severity is not Severity.REFUSE))


def findings_text(findings: Sequence[Finding]) -> tuple[str, ...]:
    return tuple(f.message for f in findings)
