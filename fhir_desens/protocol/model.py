"""Protocol definitions: what a desensitization protocol says, independent of any patient.

A protocol is data (``templates/*.json``, or a FHIR PlanDefinition mapped by ``fhir_desens.fhir``).
Two kinds exist:

* ``infusion``: pump-rate steps from one or more solutions (bags); doses follow from
  rate x minutes x concentration, and a *closing method* decides how the total lands on the target.
* ``discrete``: separate doses (oral, or IV syringe) at fixed intervals; each dose is a volume of a
  solution of known concentration, or a solid dose form.
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from functools import cached_property

from fhir_desens.protocol.quantity import Dimension, Quantity
from fhir_desens.protocol.record import field, record


class ProtocolKind(Enum):
    INFUSION = "infusion"
    DISCRETE = "discrete"


class ClosingMethod(Enum):
    """The four published ways of making the total equal the target (clinical.md 1.3)."""

    REDUCED_FINAL_BAG = "reduced-final-bag"  # A: last bag = (target - earlier bags) / V, fully infused
    TRUNCATED_FINAL_STEP = "truncated-final-step"  # B: last bag at full strength, last step stops at target
    REMAINDER_STEP = "remainder-step"  # C: fixed-concentration solutions, last step carries the remainder
    FRACTION_BAGS = "fraction-bags"  # D: each bag holds a fraction of the target and is fully infused

    @classmethod
    def parse(cls, text: str) -> ClosingMethod:
        for method in cls:
            if method.value == text:
                return method
        from fhir_desens.errors import InputError

        raise InputError("--closing", f"unknown closing method '{text}'", ", ".join(m.value for m in cls))


class TargetKind(Enum):
    CUMULATIVE = "cumulative"  # the doses add up to the target (IV bags, penicillin)
    FINAL_DOSE = "final-dose"  # the last dose is the target dose (aspirin 325 mg, TMP-SMX DS tablet)


class ReactionRule(Enum):
    STANDARD = "standard"  # resume same step, step back, insert a step, or stop
    REPEAT_PROVOKING_DOSE = "repeat-provoking-dose"  # aspirin/AERD: repeat the provoking dose, then continue


class Evidence(Enum):
    PUBLISHED_TABLE = "published-table"  # reproduces a published table
    PUBLISHED_STRUCTURE = "published-structure"  # structure published; numbers derived by the same rules
    STRUCTURALLY_DERIVED = "structurally-derived"  # no primary table read: derived from a related protocol
    INSTITUTIONAL_TABLE = (
        "institutional-table"  # a hospital's own table (fhir-desens author), not a publication
    )


@record
class Source:
    citation: str
    url: str | None = None


#: Plausibility bound on a stated overfill: a bag holds at most a quarter more than its label
#: (manufacturers' overfill is typically 5-10%, e.g. about 110 mL in a 100 mL bag).
MAX_OVERFILL_FRACTION = Decimal("0.25")


@record
class Preparation:
    """How the pharmacy makes a solution, as the protocol states it (INV-22, INV-23).

    E.g. "remove 13 mL from a 100 mL bag, inject 150 mg in 3 mL": ``bag_volume_ml`` 100,
    ``removed_ml`` 13, ``drug_amount`` 150 mg, ``drug_volume_ml`` 3. Where the recipe relies on the
    bag holding more than its label (about 110 mL in a 100 mL bag), ``overfill_ml`` says how much;
    the concentration is then ``drug_amount / (bag + overfill - removed + drug volume)``.
    """

    bag_volume_ml: Decimal  # the bag's labelled (nominal) volume
    drug_amount: Quantity  # drug added, in a dose unit
    drug_volume_ml: Decimal = Decimal(0)  # volume the drug is added in
    removed_ml: Decimal = Decimal(0)  # diluent withdrawn before the drug is added
    overfill_ml: Decimal = Decimal(0)  # what the bag holds beyond its label, when the recipe counts it

    @property
    def final_volume_ml(self) -> Decimal:
        from fhir_desens.protocol.quantity import add, sub

        return add(sub(add(self.bag_volume_ml, self.overfill_ml), self.removed_ml), self.drug_volume_ml)

    def concentration(self) -> Quantity:
        """Exact concentration in the canonical unit per mL of the drug's dimension."""
        from fhir_desens.protocol.quantity import CANONICAL_CONCENTRATION, div

        amount = self.drug_amount.canonical()
        code = CANONICAL_CONCENTRATION[amount.dimension].code
        return Quantity(div(amount.value, self.final_volume_ml), code)

    @property
    def text(self) -> str:
        """The recipe in words, for the pharmacy sheet."""
        from fhir_desens.protocol.quantity import plain

        bag = f"a {plain(self.bag_volume_ml)} mL bag"
        if self.overfill_ml:
            bag += f" (which holds {plain(self.bag_volume_ml + self.overfill_ml)} mL with its overfill)"
        steps = [f"remove {plain(self.removed_ml)} mL from {bag}"] if self.removed_ml else [f"take {bag}"]
        added = f"inject {self.drug_amount}"
        if self.drug_volume_ml:
            added += f" in {plain(self.drug_volume_ml)} mL"
        steps.append(added)
        return ", ".join(steps) + f": {plain(self.final_volume_ml)} mL"


@record
class SolutionDefinition:
    """A solution (bag, syringe or oral dilution) the pharmacy prepares.

    Exactly one of ``dilution`` (a fraction of the target concentration, e.g. 1/100), ``dose_fraction``
    (a fraction of the target dose in the bag) or ``concentration`` (fixed, independent of the target)
    defines its strength; ``solid`` solutions are tablets or capsules with a fixed ``unit_dose``.
    """

    number: int
    label: str
    dilution: Decimal | None = None
    dose_fraction: Decimal | None = None
    concentration: Quantity | None = None
    volume_ml: Decimal | None = None  # default prepared volume; None = the plan's bag volume
    diluent: str | None = None
    solid: bool = False
    unit_dose: Quantity | None = None  # for solid forms: the dose of one tablet/capsule
    preparation: Preparation | None = None  # the stated recipe (fixed-concentration solutions)
    unit_name: str = "tablet"  # solid forms: what one unit is called ("tablet", "capsule", "prepared dose")

    @cached_property
    def strength_text(self) -> str:
        """How the strength is defined, for people (numbers by the display policy; written once per
        solution, as every plan of the protocol shows it)."""
        from fhir_desens.protocol import display as shown
        from fhir_desens.protocol.quantity import plain

        if self.solid and self.unit_dose is not None:
            return f"{shown.quantity_text(self.unit_dose)} per {self.unit_name}"
        if self.dilution is not None:
            if self.dilution == 1:
                return "target concentration"
            return f"1:{plain(1 / self.dilution)} of target concentration"
        if self.dose_fraction is not None:
            return f"{plain(self.dose_fraction * 100)}% of target dose"
        assert self.concentration is not None
        return f"fixed {shown.quantity_text(self.concentration)}"


@record
class StepDefinition:
    """One step of a protocol.

    Infusion steps have a rate (literal mL/h or a fraction of the final rate) and minutes; the last
    step of an infusion protocol usually has no minutes: the closing method computes its volume and
    its duration follows. ``empties_solution`` steps run the rest of their solution (rate from
    ``minutes`` if no rate is given). Discrete steps have a volume of a solution or a count of a
    solid form, and ``minutes`` is the interval to the next dose.
    """

    number: int
    solution: int
    minutes: Decimal | None = None
    rate_ml_h: Decimal | None = None
    rate_fraction: Decimal | None = None
    volume_ml: Decimal | None = None
    units: Decimal | None = None  # count of a solid form (tablets)
    empties_solution: bool = False
    inserted: bool = False  # added by a person (not part of the published protocol)
    note: str | None = None


@record
class Premedication:
    drug: str
    dose: str  # as written for people, e.g. "25 mg IV"; premedications are ordered, not calculated
    route: str
    offset_minutes: Decimal | None  # relative to the start of step 1; None when timing is in `timing`
    timing: str  # e.g. "20 min before step 1", "night before and morning of"
    condition: str | None = None  # e.g. "if flushing in the index reaction"


@record
class ProtocolDefaults:
    bag_volume_ml: Decimal | None = None
    final_rate_ml_h: Decimal | None = None
    closing: ClosingMethod | None = None
    step_minutes: Decimal = Decimal(15)
    bag_fractions: tuple[Decimal, ...] | None = None


@record
class Protocol:
    id: str
    version: str
    title: str
    kind: ProtocolKind
    route: str  # "IV" | "oral"
    description: str
    evidence: Evidence
    sources: tuple[Source, ...]
    dose_dimensions: tuple[Dimension, ...]
    target_kind: TargetKind
    solutions: tuple[SolutionDefinition, ...]
    steps: tuple[StepDefinition, ...]
    defaults: ProtocolDefaults
    closing_methods: tuple[ClosingMethod, ...] = ()
    reaction_rule: ReactionRule = ReactionRule.STANDARD
    allow_dose_decrease: bool = False
    fixed_table: bool = False  # infusion: the table's doses are the doses, planned at their total only
    premedications: tuple[Premedication, ...] = ()
    nursing_instructions: tuple[str, ...] = ()
    drugs: tuple[str, ...] = ()  # drugs the protocol is written for; empty = any drug
    status: str = "active"
    url: str | None = None  # canonical URL once published as a PlanDefinition
    extra: dict[str, str] = field(default_factory=dict)

    def solution(self, number: int) -> SolutionDefinition:
        for solution in self.solutions:
            if solution.number == number:
                return solution
        raise KeyError(number)

    @cached_property
    def uses_final_rate(self) -> bool:
        return any(step.rate_fraction is not None for step in self.steps)

    @property
    def self_contained_closing_methods(self) -> tuple[ClosingMethod, ...]:
        """The closing methods this protocol can be planned with from its own definition: fraction-bags
        needs every bag's fraction of the dose (declared per solution or as default bag fractions) and
        remainder-step a fixed concentration for every solution. The others need ``bag_fractions`` or
        ``concentrations`` given with the request (the CLI's --bag-fractions / --concentrations)."""

        def usable(method: ClosingMethod) -> bool:
            if method is ClosingMethod.FRACTION_BAGS:
                declared = all(s.dose_fraction is not None for s in self.solutions)
                return declared or self.defaults.bag_fractions is not None
            if method is ClosingMethod.REMAINDER_STEP:
                return all(s.concentration is not None or s.solid for s in self.solutions)
            return True

        return tuple(m for m in self.closing_methods if usable(m))

    @property
    def fixed_doses(self) -> bool:
        """True when no dose depends on the target (discrete protocols with fixed concentrations)."""
        return all(s.concentration is not None or s.solid for s in self.solutions)
