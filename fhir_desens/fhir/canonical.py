"""Canonical URLs of the fhir-desens implementation guide: the one place they are defined.

Everything we publish (profiles, extensions, code systems, protocols) lives under ``CANONICAL_BASE``.
Change it here (and regenerate ``profiles/``) to publish under another base.
"""

from __future__ import annotations

CANONICAL_BASE = "https://fhir-desens.org/fhir"
IG_PACKAGE_NAME = "fhir-desens.ig"
IG_VERSION = "0.1.0"
FHIR_VERSION = "4.0.1"


def structure_definition(name: str) -> str:
    return f"{CANONICAL_BASE}/StructureDefinition/{name}"


def code_system(name: str) -> str:
    return f"{CANONICAL_BASE}/CodeSystem/{name}"


def value_set(name: str) -> str:
    return f"{CANONICAL_BASE}/ValueSet/{name}"


def plan_definition(protocol_id: str) -> str:
    return f"{CANONICAL_BASE}/PlanDefinition/{protocol_id}"


def activity_definition(activity_id: str) -> str:
    return f"{CANONICAL_BASE}/ActivityDefinition/{activity_id}"


# Profiles
PROFILE_PROTOCOL = structure_definition("desens-protocol")  # PlanDefinition, type clinical-protocol
PROFILE_STEP_ACTIVITY = structure_definition(
    "desens-step-activity"
)  # ActivityDefinition, kind MedicationRequest
PROFILE_STEP_ORDER = structure_definition("desens-step-order")  # MedicationRequest, one per step
PROFILE_SESSION = structure_definition("desens-session")  # RequestGroup, intent order
PROFILE_BEDSIDE_REACTION = structure_definition("desens-bedside-reaction")  # AdverseEvent at the bedside

# Extensions (what core R4 cannot say)
EXT_SOLUTION = structure_definition("desens-solution")  # PlanDefinition: a bag/solution (complex)
EXT_PROTOCOL_SETTINGS = structure_definition(
    "desens-protocol-settings"
)  # PlanDefinition: kind, defaults (complex)
EXT_CLOSING_METHOD = structure_definition(
    "desens-closing-method"
)  # PlanDefinition (allowed) / RequestGroup (used)
EXT_STEP = structure_definition(
    "desens-step"
)  # PlanDefinition.action: solution, rate or rate fraction, ... (complex)
EXT_PREMEDICATION = structure_definition("desens-premedication")  # PlanDefinition: premedication (complex)
EXT_PLAN_PARAMETERS = structure_definition(
    "desens-plan-parameters"
)  # RequestGroup: what the session's plan was computed from (complex)
EXT_REACTION_MANIFESTATION = structure_definition(
    "desens-reaction-manifestation"
)  # AdverseEvent (bedside reaction): a symptom seen (R4 AdverseEvent has no manifestation)
EXT_REACTION_PHENOTYPE = structure_definition(
    "desens-reaction-phenotype"
)  # AdverseEvent (bedside reaction): type-i | cytokine-release | mixed

# Code systems and value sets
CS_CLOSING_METHOD = code_system("closing-method")
CS_PROTOCOL_KIND = code_system("protocol-kind")
CS_TARGET_KIND = code_system("target-kind")
CS_EVIDENCE = code_system("protocol-evidence")
CS_REACTION_RULE = code_system("reaction-rule")
CS_REACTION_GRADE = code_system("reaction-grade-brown")  # mild, moderate, severe (Brown 2004)
CS_REACTION_PHENOTYPE = code_system("reaction-phenotype")  # type-i, cytokine-release, mixed, delayed
VS_CLOSING_METHOD = value_set("closing-method")
VS_PROTOCOL_KIND = value_set("protocol-kind")
VS_REACTION_GRADE = value_set("reaction-grade-brown")
VS_REACTION_PHENOTYPE = value_set("reaction-phenotype")

# Business identifier systems (idempotent writes)
ID_SESSION = (
    f"{CANONICAL_BASE}/identifier/session"  # RequestGroup.identifier, MedicationRequest.groupIdentifier
)
ID_STEP_ORDER = f"{CANONICAL_BASE}/identifier/step-order"  # MedicationRequest.identifier: <session>-<step>
ID_SOLUTION = f"{CANONICAL_BASE}/identifier/solution"  # Medication.identifier: <session>-<solution>
ID_PROVENANCE = f"{CANONICAL_BASE}/identifier/provenance"
ID_BEDSIDE_ITEM = f"{CANONICAL_BASE}/identifier/bedside-item"  # bedside resources: <session>/<item key>
ID_OUTCOME = (
    f"{CANONICAL_BASE}/identifier/outcome"  # a session's outcome written to the chart (note, allergy)
)

# External terminologies
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PLAN_DEFINITION_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
