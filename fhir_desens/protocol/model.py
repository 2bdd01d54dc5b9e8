"""Protocol definitions: what a desensitization protocol says, independent of any patient.

A protocol is data (``templates/*.json``, or a FHIR PlanDefinition mapped by ``fhir_desens.fhir``).
Two kinds exist:

* ``infusion``: pump-rate steps from one or more solutions (bags); doses follow from
  rate x minutes x concentration, and a *closing method* decides how the total lands on the target.
* ``discrete``: separate doses (oral, or IV syringe) at fixed intervals; each dose is a volume of a
  solution of known concentration, or a solid dose form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from fhir_desens.protocol.quantity import Dimension, Quantity


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


@dataclass(frozen=True)
class Source:
    citation: str
    url: str | None = None


@dataclass(frozen=True)
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

    @property
    def strength_text(self) -> str:
        from fhir_desens.protocol.quantity import plain

        if self.solid and self.unit_dose is not None:
            return f"{self.unit_dose} per unit"
        if self.dilution is not None:
            if self.dilution == 1:
                return "target concentration"
            return f"1:{plain(1 / self.dilution)} of target concentration"
        if self.dose_fraction is not None:
            return f"{plain(self.dose_fraction * 100)}% of target dose"
        return f"fixed {self.concentration}"


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Premedication:
    drug: str
    dose: str  # as written for people, e.g. "25 mg IV"; premedications are ordered, not calculated
    route: str
    offset_minutes: Decimal | None  # relative to the start of step 1; None when timing is in `timing`
    timing: str  # e.g. "20 min before step 1", "night before and morning of"
    condition: str | None = None  # e.g. "if flushing in the index reaction"


@dataclass(frozen=True)
class ProtocolDefaults:
    bag_volume_ml: Decimal | None = None
    final_rate_ml_h: Decimal | None = None
    closing: ClosingMethod | None = None
    step_minutes: Decimal = Decimal(15)
    bag_fractions: tuple[Decimal, ...] | None = None


@dataclass(frozen=True)
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

    @property
    def uses_final_rate(self) -> bool:
        return any(step.rate_fraction is not None for step in self.steps)

    @property
    def fixed_doses(self) -> bool:
        """True when no dose depends on the target (discrete protocols with fixed concentrations)."""
        return all(s.concentration is not None or s.solid for s in self.solutions)
