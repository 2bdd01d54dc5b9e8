"""Authoring, part 2: our extensions (data) and the differential of each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.profiles.elements import UCUM_PATTERN, el, required, slicing
from fhir_desens.fhir.profiles.terminology import (
    VS_DOSE_DIMENSION,
    VS_EVIDENCE,
    VS_REACTION_RULE,
    VS_TARGET_KIND,
)


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
    elements.append(el("Extension.extension", slicing=slicing("url", rules="closed")))
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
