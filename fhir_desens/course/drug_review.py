"""Drug knowledge applied to a draft and its plan (no Flask, no network).

The typed name is resolved against the monographs (DRUG-NAME-1) and allergy matching uses the
resolved drug (:func:`drug_ref_for`); the products the protocol gives are chosen (DRUG-PROD-1/2);
the plan's bags are checked against the drug (DRUG-CONC, DRUG-DIL, DRUG-DOSE, DRUG-LAST, DRUG-RATE);
the diluent is the one chosen, else the order's, else the drug's usual one (DRUG-DIL-2). What is
refused, and an unresolved name not confirmed as uncoded (DRUG-NAME-2), blocks signing
(:meth:`DrugReview.blockers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from fhir_desens.drugs.checks import (
    combination_text,
    default_diluent,
    diluent_from_text,
    preparation_requirements,
    review_plan,
)
from fhir_desens.drugs.findings import Finding, refusals, warnings
from fhir_desens.drugs.monograph import Monograph, diluents, tablet_strength
from fhir_desens.drugs.names import NameResolution, resolve_name
from fhir_desens.drugs.products import PlanProducts, plan_products
from fhir_desens.errors import DesensError
from fhir_desens.protocol.bsa import DOSE_ROUNDING_STEP
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.crossreactivity import DrugRef
from fhir_desens.protocol.model import Protocol
from fhir_desens.protocol.quantity import Quantity, parse_quantity, plain, unit

__all__ = [
    "DILUENT_CHOICES",
    "DrugReview",
    "dose_rounding_for",
    "drug_ref_for",
    "plan_diluent",
    "resolution_for",
    "review_draft",
]

#: The diluents a person may choose for a bag (water is for oral dilutions only).
DILUENT_CHOICES: dict[str, str] = {d.id: d.label for d in diluents().values() if d.id != "water"}


def resolution_for(drug: str, rxnorm: tuple[str, ...]) -> NameResolution:
    return resolve_name(drug, rxnorm)


def drug_ref_for(drug: str, rxnorm: tuple[str, ...]) -> DrugRef:
    """What allergy matching runs on: the resolved drug's name and verified codes, plus the typed codes."""
    monograph = resolution_for(drug, rxnorm).monograph
    if monograph is None:
        return DrugRef(drug, rxnorm)
    codes = tuple(dict.fromkeys((*rxnorm, *(c.code for c in monograph.codes))))
    return DrugRef(monograph.name, codes)


def dose_rounding_for(drug: str, rxnorm: tuple[str, ...], dose_unit: str) -> tuple[Decimal, str | None]:
    """The step a per-m² dose of this drug is rounded to, in ``dose_unit`` (the absolute dose's unit), and
    where it comes from: the monograph's rule when it states one (e.g. a vial size), else 1 (mg, mcg,
    unit; ``protocol.bsa.DOSE_ROUNDING_STEP``)."""
    found = resolution_for(drug, rxnorm).monograph
    rule = found.dose_rounding if found is not None else None
    if found is None or rule is None or unit(rule.step.unit).dimension is not unit(dose_unit).dimension:
        return DOSE_ROUNDING_STEP, None
    return rule.step.to(dose_unit).value, f"{rule.basis} ({found.name} monograph)"


def plan_diluent(
    chosen: str | None, drug: str, rxnorm: tuple[str, ...], order_text: str | None
) -> tuple[str | None, str]:
    """The diluent a plan's bags use, and why: chosen on the plan page, else the order's, else the drug's."""
    if chosen:
        return chosen, "chosen on the plan page"
    return default_diluent(resolution_for(drug, rxnorm).monograph, order_text)


@dataclass(frozen=True)
class DrugReview:
    resolution: NameResolution
    products: PlanProducts | None
    findings: tuple[Finding, ...]
    diluent_id: str | None
    diluent_why: str
    preparation: tuple[str, ...]
    ambiguous_diluent: bool  # a bag names no single diluent
    combination_note: str | None = None  # which component the doses are, and the last dose in full

    @property
    def refusals(self) -> tuple[Finding, ...]:
        return refusals(self.findings)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return warnings(self.findings)

    def blockers(self, uncoded_confirmed: bool) -> list[str]:
        """Why the plan may not be signed, as far as the drug is concerned."""
        reasons = [finding.message for finding in self.refusals]
        if not self.resolution.resolved and not uncoded_confirmed:
            reasons.append(f"{self.resolution.message} Confirm below that it is planned as an uncoded drug.")
        if self.ambiguous_diluent:
            reasons.append("Choose the diluent: every bag label and order must name exactly one diluent.")
        return reasons


def _ordered(ordered_dose: str | None) -> Quantity | None:
    if not ordered_dose:
        return None
    try:
        return parse_quantity(ordered_dose, "ordered_dose")
    except DesensError:
        return None


def _tablet_strength(monograph: Monograph, rxnorm: tuple[str, ...]) -> Quantity | None:
    """The strength of the tablet an order names by its product code (an order for "1 tablet" of SMX/TMP
    SS is 400 mg of sulfamethoxazole)."""
    return tablet_strength(monograph.products, rxnorm)


def review_draft(
    plan: Plan,
    protocol: Protocol,
    *,
    drug: str,
    rxnorm: tuple[str, ...],
    diluent: str | None,
    order_text: str | None,
    ordered_dose: str | None,
) -> DrugReview:
    """Every drug check of a draft's plan (pure)."""
    resolution = resolution_for(drug, rxnorm)
    products, product_findings = plan_products(protocol, resolution.monograph)
    diluent_id, why = plan_diluent(diluent, drug, rxnorm, order_text)
    findings: tuple[Finding, ...] = product_findings
    if products is not None:
        ordered = _ordered(ordered_dose)
        if ordered is None and order_text and resolution.monograph is not None:
            ordered = _tablet_strength(resolution.monograph, rxnorm)
        findings = (*findings, *review_plan(plan, products, diluent_id=diluent_id, ordered_dose=ordered))
    ambiguous = any(
        s.concentration is not None
        and s.diluent
        and diluent_from_text(s.diluent) is None
        and s.diluent != "water"
        for s in plan.solutions
    )
    given = products.given if products is not None else resolution.monograph
    combination = given.combination if given is not None else None
    note = None
    if given is not None and combination is not None and plan.steps:
        note = (
            f"Doses on this plan are of {combination.dose_component} ({combination.abbreviation} "
            f"{':'.join(plain(c.parts) for c in combination.components)}); the last dose is "
            f"{combination_text(given, plan.steps[-1].dose)}."
        )
    return DrugReview(
        resolution=resolution,
        products=products,
        findings=tuple(sorted(findings, key=lambda f: not f.refused)),
        diluent_id=diluent_id,
        diluent_why=why,
        preparation=preparation_requirements(given) if given is not None else (),
        ambiguous_diluent=ambiguous,
        combination_note=note,
    )
