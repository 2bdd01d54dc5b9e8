"""The product follows the protocol (pure): which product each solution of a plan is made from.

A protocol written around its own product gives that product whatever the therapeutic order is:
the oral penicillin V protocol gives penicillin V potassium oral solution, also before benzathine
penicillin G intramuscularly, which stays the order to give afterwards (DRUG-PROD-1). Such products
say so in their monograph (``protocols``). Any other protocol gives the ordered drug's product for
the protocol's route and dosage form; a protocol whose route or form no product of the drug has
(an intravenous protocol for benzathine penicillin, a tablet step for a drug with no tablet) is
refused (DRUG-PROD-2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fhir_desens.drugs.findings import Finding, Severity
from fhir_desens.drugs.monograph import Monograph, Product, monographs
from fhir_desens.drugs.names import resolve_name
from fhir_desens.protocol.crossreactivity import DrugRef, classes_of
from fhir_desens.protocol.model import Protocol, SolutionDefinition

__all__ = ["PlanProducts", "SolutionProduct", "plan_products", "protocol_route", "resolve_products"]

_ROUTES = {
    "iv": "intravenous",
    "intravenous": "intravenous",
    "oral": "oral",
    "po": "oral",
    "im": "intramuscular",
}


def protocol_route(protocol: Protocol) -> str | None:
    return _ROUTES.get(protocol.route.strip().lower())


@dataclass(frozen=True)
class SolutionProduct:
    solution: int
    product: Product
    monograph: Monograph


@dataclass(frozen=True)
class PlanProducts:
    """The products of a plan, one per protocol solution, and how they relate to the order."""

    given: Monograph  # the drug the protocol gives
    ordered: Monograph | None  # the drug of the therapeutic order, when known
    solutions: tuple[SolutionProduct, ...]

    @property
    def follows_order(self) -> bool:
        return self.ordered is not None and self.ordered.id == self.given.id

    def product(self, solution: int) -> Product:
        for item in self.solutions:
            if item.solution == solution:
                return item.product
        raise KeyError(solution)

    @property
    def given_for_the_order(self) -> str | None:
        """'Penicillin V potassium (given for the order of penicillin G benzathine)' when the protocol gives
        another drug than the order, else None: every line naming the plan's drug and dose names what is
        given (its doses are penicillin V units, not penicillin G benzathine units)."""
        if self.ordered is None or self.follows_order:
            return None
        given = self.given.name
        return f"{given[:1].upper()}{given[1:]} (given for the order of {self.ordered.name})"

    @property
    def therapeutic_note(self) -> str | None:
        """When the protocol gives another product than the order: what happens to the order."""
        if self.ordered is None or self.follows_order:
            return None
        ordered = self.ordered.products[0] if len(self.ordered.products) == 1 else None
        what = ordered.display if ordered else self.ordered.name
        given = ", ".join(dict.fromkeys(s.product.display for s in self.solutions))
        return (
            f"This protocol gives {given}, not the ordered {self.ordered.name}. The therapeutic order "
            f"({what}) stays the order to give after the desensitization, without a break in dosing."
        )


def _matches(solution: SolutionDefinition, product: Product) -> bool:
    """Same dosage form kind (solid or liquid) and, for tablets, the same strength."""
    if solution.solid:
        return (
            product.unit_strength is not None
            and solution.unit_dose is not None
            and solution.unit_dose.dimension is product.unit_strength.dimension
            and solution.unit_dose.canonical() == product.unit_strength.canonical()
        )
    return not product.solid


def _form(solution: SolutionDefinition) -> str:
    return f"a {solution.unit_dose} tablet" if solution.solid else "a solution"


def _declared(protocol: Protocol, catalogue: Mapping[str, Monograph]) -> list[tuple[Monograph, Product]]:
    return [(m, p) for m in catalogue.values() for p in m.products if protocol.id in p.protocols]


def _refused(message: str, subject: str = "protocol") -> tuple[None, tuple[Finding, ...]]:
    return None, (Finding("DRUG-PROD-2", Severity.REFUSE, message, subject),)


def _same_family(ordered: Monograph, given: Monograph) -> bool:
    """The protocol's own drug stands in for the ordered one only within a documented class."""
    mine = {c.id for c in classes_of(DrugRef(ordered.name))}
    theirs = {c.id for c in classes_of(DrugRef(given.name))}
    return bool(mine & theirs)


def plan_products(
    protocol: Protocol, ordered: Monograph | None, catalogue: Mapping[str, Monograph] | None = None
) -> tuple[PlanProducts | None, tuple[Finding, ...]]:
    """The product of each solution, or a refusal naming the mismatch.

    ``(None, ())`` means the drug is not in the monographs (uncoded) and the protocol declares no
    product of its own: nothing can be said about products.
    """
    catalogue = catalogue or monographs()
    route = protocol_route(protocol)
    declared = _declared(protocol, catalogue)
    if declared:
        given = declared[0][0]
        if ordered is not None and ordered.id != given.id and not _same_family(ordered, given):
            return _refused(
                f"Protocol '{protocol.title}' gives {given.name}; it is not written for {ordered.name}. "
                "Choose a protocol for the ordered drug."
            )
        candidates = [p for m, p in declared if m.id == given.id]
    elif ordered is not None:
        given = ordered
        candidates = list(ordered.products_for_route(route or ""))
        if not candidates:
            routes = ", ".join(sorted({p.route for p in ordered.products}))
            return _refused(
                f"{ordered.name} has no {route or protocol.route} product (it is given {routes}); "
                f"protocol '{protocol.title}' is {protocol.route}. Choose a protocol for that route."
            )
    else:
        return None, ()
    chosen: list[SolutionProduct] = []
    for solution in protocol.solutions:
        fitting = [p for p in candidates if p.route == route and _matches(solution, p)]
        if not fitting:
            forms = "; ".join(f"{p.display} ({p.route})" for p in candidates)
            return _refused(
                f"Solution {solution.number} ({solution.label}) of protocol '{protocol.title}' is {_form(solution)} "
                f"given {protocol.route}; no product of {given.name} matches it (products: {forms}).",
                f"solution {solution.number}",
            )
        chosen.append(SolutionProduct(solution.number, fitting[0], given))
    return PlanProducts(given, ordered, tuple(chosen)), ()


def resolve_products(
    protocol: Protocol,
    drug: str,
    rxnorm: tuple[str, ...] = (),
    catalogue: Mapping[str, Monograph] | None = None,
) -> tuple[PlanProducts | None, tuple[Finding, ...]]:
    """:func:`plan_products` for a drug given by name (and codes), as a plan or an order carries it."""
    resolution = resolve_name(drug, rxnorm, catalogue)
    return plan_products(protocol, resolution.monograph, catalogue)
