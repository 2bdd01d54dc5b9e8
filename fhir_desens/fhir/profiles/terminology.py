"""Authoring, part 1: the guide's code systems and value sets (data), and the codes they allow.

The codes of our code systems are the values of the engine's enums (``fhir_desens.protocol.model``),
so the guide and the calculator cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from fhir_desens.fhir import canonical as c
from fhir_desens.protocol.model import ClosingMethod, Evidence, ProtocolKind, ReactionRule, TargetKind
from fhir_desens.protocol.quantity import Dimension

PUBLISHER = "fhir-desens"
LICENSE = "Apache-2.0"
HL7_SD = "http://hl7.org/fhir/StructureDefinition/"
HL7_VS = "http://hl7.org/fhir/ValueSet/"
ACTION_RELATIONSHIP = "http://hl7.org/fhir/action-relationship-type"
VS_UNITS_OF_TIME = f"{HL7_VS}units-of-time"
IMPLEMENTATION_GUIDE = f"{c.CANONICAL_BASE}/ImplementationGuide/{c.IG_PACKAGE_NAME}"

# Terminology of the guide that canonical.py does not name (built with its helpers, never retyped).
CS_DOSE_DIMENSION = c.code_system("dose-dimension")
VS_DOSE_DIMENSION = c.value_set("dose-dimension")
VS_TARGET_KIND = c.value_set("target-kind")
VS_EVIDENCE = c.value_set("protocol-evidence")
VS_REACTION_RULE = c.value_set("reaction-rule")
VS_STEP_RELATIONSHIP = c.value_set("step-relationship")

# ================================================================================================
# 1. Authoring: terminology
# ================================================================================================


@dataclass(frozen=True)
class Concept:
    code: str
    display: str
    definition: str


@dataclass(frozen=True)
class CodeSystemSpec:
    url: str
    value_set: str  # the value set of all its codes
    name: str
    title: str
    description: str
    concepts: tuple[Concept, ...]

    @property
    def id(self) -> str:
        return self.url.rsplit("/", 1)[1]


@dataclass(frozen=True)
class ValueSetSpec:
    url: str
    name: str
    title: str
    description: str
    system: str
    codes: tuple[Concept, ...] = ()  # empty: every code of the system

    @property
    def id(self) -> str:
        return self.url.rsplit("/", 1)[1]


def _from_enum(enum: type[Enum], texts: Mapping[Enum, tuple[str, str]]) -> tuple[Concept, ...]:
    """Concepts whose codes are an engine enum's values, in the enum's order; every member needed."""
    if set(texts) != set(enum):
        raise ValueError(f"{enum.__name__}: the code system must define exactly the enum's members")
    return tuple(Concept(str(member.value), *texts[member]) for member in enum)


CODE_SYSTEMS: tuple[CodeSystemSpec, ...] = (
    CodeSystemSpec(
        c.CS_CLOSING_METHOD,
        c.VS_CLOSING_METHOD,
        "ClosingMethod",
        "Closing methods of infusion desensitization protocols",
        "How the cumulative dose of an infusion protocol is made equal to the target dose. The four "
        "methods are those seen in published examples of 12-step rapid drug desensitization.",
        _from_enum(
            ClosingMethod,
            {
                ClosingMethod.REDUCED_FINAL_BAG: (
                    "Reduced final bag",
                    "The final bag holds the target dose minus the drug delivered by the earlier bags, in the "
                    "standard bag volume, and is infused whole, so the cumulative dose equals the target. "
                    "Method of the Brigham and Women's Hospital 12-step worksheet (UpToDate graphics: 12-step "
                    "ceftazidime 2000 mg example; platinum desensitization example).",
                ),
                ClosingMethod.TRUNCATED_FINAL_STEP: (
                    "Truncated final step",
                    "The final bag is at the full target concentration (target dose / bag volume); the last "
                    "step runs only for the volume that brings the cumulative dose to the target, so the final "
                    "bag is not emptied. Method of the HemOnc.org example orders for rituximab desensitization.",
                ),
                ClosingMethod.REMAINDER_STEP: (
                    "Remainder step",
                    "The solutions have fixed concentrations that do not depend on the target; the last step "
                    "gives the remainder, (target - cumulative dose so far) / concentration. Method of the "
                    "logarithmic 13-step protocol of Burches et al., J Cancer Metastasis Treat 2019;5:63.",
                ),
                ClosingMethod.FRACTION_BAGS: (
                    "Fraction bags",
                    "Each bag holds a stated fraction of the target dose (for example 0.1%, 1%, 10% and the "
                    "remaining 88.9%; or 1%, 2.5% and 96.5%) and every bag is infused in full. Seen in the "
                    "PharmacyDoc2018 desensitization calculator and in the outpatient 12-step carboplatin "
                    "abstract, Int J Gynecol Cancer 2019;29(Suppl 3):A131.3.",
                ),
            },
        ),
    ),
    CodeSystemSpec(
        c.CS_PROTOCOL_KIND,
        c.VS_PROTOCOL_KIND,
        "ProtocolKind",
        "Kinds of desensitization protocol",
        "Whether a protocol is a sequence of infusion-pump steps or a sequence of separate doses.",
        _from_enum(
            ProtocolKind,
            {
                ProtocolKind.INFUSION: (
                    "Infusion",
                    "Pump-rate steps from one or more solutions (bags): each step's dose is rate x minutes x "
                    "concentration, and a closing method makes the total equal the target.",
                ),
                ProtocolKind.DISCRETE: (
                    "Discrete doses",
                    "Separate doses (oral, or IV by syringe) at fixed intervals: each dose is a volume of a "
                    "solution of known concentration, or a number of units of a solid dose form.",
                ),
            },
        ),
    ),
    CodeSystemSpec(
        c.CS_TARGET_KIND,
        VS_TARGET_KIND,
        "TargetKind",
        "Meaning of a protocol's target dose",
        "Whether the target dose is the sum of all doses or the last dose.",
        _from_enum(
            TargetKind,
            {
                TargetKind.CUMULATIVE: (
                    "Cumulative",
                    "The doses of all steps add up to the target dose (IV bag protocols, oral penicillin).",
                ),
                TargetKind.FINAL_DOSE: (
                    "Final dose",
                    "The last dose is the target dose and the earlier doses lead up to it (aspirin 325 mg in "
                    "AERD, one double-strength trimethoprim-sulfamethoxazole tablet).",
                ),
            },
        ),
    ),
    CodeSystemSpec(
        c.CS_EVIDENCE,
        VS_EVIDENCE,
        "ProtocolEvidence",
        "Evidence behind a protocol definition",
        "How closely a protocol definition follows its published source.",
        _from_enum(
            Evidence,
            {
                Evidence.PUBLISHED_TABLE: (
                    "Published table",
                    "The protocol reproduces a published table: every step and number was read in the source.",
                ),
                Evidence.PUBLISHED_STRUCTURE: (
                    "Published structure",
                    "The structure (solutions, steps, rates or fractions) is published; the numbers are derived "
                    "from it by the same rules.",
                ),
                Evidence.STRUCTURALLY_DERIVED: (
                    "Structurally derived",
                    "No primary table was read: the protocol is derived from a related published protocol and "
                    "needs review before clinical use.",
                ),
                Evidence.INSTITUTIONAL_TABLE: (
                    "Institutional table",
                    "The protocol reproduces an institution's own table (authored with fhir-desens author): every "
                    "dose recomputed and every stated value checked; its source is the institution, not a "
                    "publication.",
                ),
            },
        ),
    ),
    CodeSystemSpec(
        c.CS_REACTION_RULE,
        VS_REACTION_RULE,
        "ReactionRule",
        "What a protocol does after a breakthrough reaction",
        "The rule a protocol follows when a step provokes a reaction.",
        _from_enum(
            ReactionRule,
            {
                ReactionRule.STANDARD: (
                    "Standard",
                    "Stop the infusion and treat; once symptoms subside, resume at the same step or 1-2 steps "
                    "earlier, with or without inserted intermediate steps, or stop (Horizon Health Network "
                    "guideline, Reactions During Desensitization).",
                ),
                ReactionRule.REPEAT_PROVOKING_DOSE: (
                    "Repeat the provoking dose",
                    "Aspirin challenge and desensitization in AERD: treat, then repeat the dose that provoked "
                    "the reaction and continue; complete when the provoking dose has been repeated and a "
                    "further dose tolerated (DeGregorio et al., J Allergy Clin Immunol Pract 2019;7:1174-80).",
                ),
            },
        ),
    ),
    CodeSystemSpec(
        CS_DOSE_DIMENSION,
        VS_DOSE_DIMENSION,
        "DoseDimension",
        "Dimensions of a target dose",
        "What a protocol's doses are measured in.",
        (  # the dose dimensions of Dimension (volume, time, rate, concentration are not doses)
            Concept(Dimension.MASS.value, "Mass", "Doses are masses (UCUM mg, g, ug)."),
            Concept(Dimension.ACTIVITY.value, "Activity", "Doses are international units (UCUM [iU])."),
        ),
    ),
    CodeSystemSpec(
        c.CS_REACTION_GRADE,
        c.VS_REACTION_GRADE,
        "ReactionGradeBrown",
        "Severity grades of a hypersensitivity reaction (Brown 2004)",
        "The grading of Brown SG, Clinical features and severity grading of anaphylaxis, J Allergy Clin "
        "Immunol 2004;114(2):371-6, as used to grade breakthrough reactions during desensitization.",
        (
            Concept(
                "mild",
                "Mild (skin and subcutaneous tissue only)",
                "Skin and subcutaneous features only: urticaria, erythema, angioedema (Brown 2004).",
            ),
            Concept(
                "moderate",
                "Moderate",
                "Features suggesting respiratory, cardiovascular or gastrointestinal involvement, such as "
                "diaphoresis, vomiting, presyncope, dyspnoea, stridor, wheeze, chest or throat tightness, "
                "nausea, abdominal pain (Brown 2004).",
            ),
            Concept(
                "severe",
                "Severe",
                "Confusion, collapse, unconsciousness or incontinence, associated with hypotension or hypoxia "
                "(Brown 2004).",
            ),
        ),
    ),
    CodeSystemSpec(
        c.CS_REACTION_PHENOTYPE,
        c.VS_REACTION_PHENOTYPE,
        "ReactionPhenotype",
        "Phenotypes of hypersensitivity reactions to therapeutic monoclonal antibodies",
        "The phenotypes of Isabwe GAC et al., Hypersensitivity reactions to therapeutic monoclonal "
        "antibodies: phenotypes and endotypes, J Allergy Clin Immunol 2018;142(1):159-170.e2.",
        (
            Concept(
                "type-i",
                "Type I-like",
                "Type I-like (immediate) reaction; 63% of initial reactions in Isabwe 2018 (markers "
                "studied there: skin testing, serum tryptase, IL-6).",
            ),
            Concept(
                "cytokine-release",
                "Cytokine-release",
                "Cytokine-release reaction; 13% of initial reactions and 52% of breakthrough reactions "
                "during desensitization in Isabwe 2018, where elevated IL-6 was linked to it.",
            ),
            Concept(
                "mixed",
                "Mixed",
                "Mixed reaction with features of both the type I-like and the cytokine-release phenotypes "
                "(Isabwe 2018: 21% of initial reactions).",
            ),
            Concept(
                "delayed",
                "Delayed (type IV)",
                "Delayed, type IV hypersensitivity reaction (Isabwe 2018: 3% of initial reactions).",
            ),
        ),
    ),
)


def _all_codes_value_set(cs: CodeSystemSpec) -> ValueSetSpec:
    return ValueSetSpec(cs.value_set, cs.name, cs.title, f"All codes of {cs.url}.", cs.url)


VALUE_SETS: tuple[ValueSetSpec, ...] = (
    *(_all_codes_value_set(cs) for cs in CODE_SYSTEMS),
    ValueSetSpec(
        VS_STEP_RELATIONSHIP,
        "StepRelationship",
        "How one desensitization step relates to the previous or the next",
        "The two action relationships that sequence desensitization steps: after-end on the later step "
        "(pointing at the earlier one), or before-start on the earlier step (pointing at the later one).",
        ACTION_RELATIONSHIP,
        (
            Concept("after-end", "After End", "The step starts after the end of the related (earlier) step."),
            Concept(
                "before-start", "Before Start", "The step ends before the start of the related (later) step."
            ),
        ),
    ),
)

#: Codes of the base R4 value sets our profiles bind again (required); checked against the R4
#: definitions by the tests.
HL7_VALUE_SET_CODES: dict[str, frozenset[str]] = {
    VS_UNITS_OF_TIME: frozenset({"s", "min", "h", "d", "wk", "mo", "a"}),
}


def value_set_codes(url: str) -> frozenset[str] | None:
    """The codes a value set of ours (or a known base one) allows, or None when unknown here."""
    url = url.split("|", 1)[0]
    if url in HL7_VALUE_SET_CODES:
        return HL7_VALUE_SET_CODES[url]
    for vs in VALUE_SETS:
        if vs.url == url:
            if vs.codes:
                return frozenset(concept.code for concept in vs.codes)
            return frozenset(con.code for cs in CODE_SYSTEMS if cs.url == vs.system for con in cs.concepts)
    return None
