"""Authoring, part 3: the differentials of our profiles, written as FHIR ``ElementDefinition`` JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.profiles.elements import (
    MS,
    el,
    extension_slice,
    extension_slicing,
    identifier_slice,
    required,
)
from fhir_desens.fhir.profiles.terminology import HL7_SD, VS_STEP_RELATIONSHIP, VS_UNITS_OF_TIME


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
