"""The FHIR R4 Patient compartment, as the sandbox gateway enforces it for ``patient/`` scopes.

The table below is the R4 (4.0.1) CompartmentDefinition ``patient``: for each resource type, the element
paths whose references put a resource in a patient's compartment (``.where(resolve() is Patient)`` is read
as "a reference to Patient/<id>"), and the search parameter the gateway adds to searches to keep them
inside the compartment. Resource types absent from the table are not patient data (Medication,
Practitioner, Organization, PlanDefinition ...).

Provenance is special: R4 puts it in the compartment only when a ``target`` is the Patient itself, but a
Provenance about the patient's AllergyIntolerance is plainly the patient's data. The gateway therefore
also resolves Provenance targets (one level) and accepts a target that is in the compartment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

JsonObject = Mapping[str, Any]
Resolver = Callable[[str], JsonObject | None]

#: resource type -> (member element paths, search parameter that constrains a search to one patient)
PATIENT_COMPARTMENT: dict[str, tuple[tuple[str, ...], str]] = {
    "Account": (("subject",), "patient"),
    "AdverseEvent": (("subject",), "subject"),
    "AllergyIntolerance": (("patient", "recorder", "asserter"), "patient"),
    "Appointment": (("participant.actor",), "patient"),
    "AppointmentResponse": (("actor",), "patient"),
    "AuditEvent": (("agent.who", "entity.what"), "patient"),
    "Basic": (("subject", "author"), "patient"),
    "BodyStructure": (("patient",), "patient"),
    "CarePlan": (("subject", "activity.detail.performer"), "patient"),
    "CareTeam": (("subject", "participant.member"), "patient"),
    "ChargeItem": (("subject",), "patient"),
    "Claim": (("patient", "payee.party"), "patient"),
    "ClaimResponse": (("patient",), "patient"),
    "ClinicalImpression": (("subject",), "patient"),
    "Communication": (("subject", "sender", "recipient"), "patient"),
    "CommunicationRequest": (("subject", "sender", "recipient", "requester"), "patient"),
    "Composition": (("subject", "author", "attester.party"), "patient"),
    "Condition": (("subject", "asserter"), "patient"),
    "Consent": (("patient",), "patient"),
    "Coverage": (("policyHolder", "subscriber", "beneficiary", "payor"), "patient"),
    "CoverageEligibilityRequest": (("patient",), "patient"),
    "CoverageEligibilityResponse": (("patient",), "patient"),
    "DetectedIssue": (("patient",), "patient"),
    "DeviceRequest": (("subject", "performer"), "patient"),
    "DeviceUseStatement": (("subject",), "patient"),
    "DiagnosticReport": (("subject",), "patient"),
    "DocumentManifest": (("subject", "author", "recipient"), "patient"),
    "DocumentReference": (("subject", "author"), "patient"),
    "Encounter": (("subject",), "patient"),
    "EnrollmentRequest": (("candidate",), "patient"),
    "EpisodeOfCare": (("patient",), "patient"),
    "ExplanationOfBenefit": (("patient", "payee.party"), "patient"),
    "FamilyMemberHistory": (("patient",), "patient"),
    "Flag": (("subject",), "patient"),
    "Goal": (("subject",), "patient"),
    "Group": (("member.entity",), "member"),
    "ImagingStudy": (("subject",), "patient"),
    "Immunization": (("patient",), "patient"),
    "ImmunizationEvaluation": (("patient",), "patient"),
    "ImmunizationRecommendation": (("patient",), "patient"),
    "Invoice": (("subject", "recipient"), "patient"),
    "List": (("subject", "source"), "patient"),
    "MeasureReport": (("subject",), "patient"),
    "Media": (("subject",), "patient"),
    "MedicationAdministration": (("subject", "performer.actor"), "patient"),
    "MedicationDispense": (("subject", "receiver"), "patient"),
    "MedicationRequest": (("subject",), "patient"),
    "MedicationStatement": (("subject",), "patient"),
    "MolecularSequence": (("patient",), "patient"),
    "NutritionOrder": (("patient",), "patient"),
    "Observation": (("subject", "performer"), "patient"),
    "Person": (("link.target",), "patient"),
    "Procedure": (("subject", "performer.actor"), "patient"),
    "Provenance": (("target",), "patient"),
    "QuestionnaireResponse": (("subject", "author"), "patient"),
    "RelatedPerson": (("patient",), "patient"),
    "RequestGroup": (("subject", "action.participant"), "patient"),
    "ResearchSubject": (("individual",), "patient"),
    "RiskAssessment": (("subject",), "patient"),
    "Schedule": (("actor",), "actor"),
    "ServiceRequest": (("subject", "performer"), "patient"),
    "Specimen": (("subject",), "patient"),
    "SupplyDelivery": (("patient",), "patient"),
    "SupplyRequest": (("deliverTo",), "subject"),
    "Task": (("for",), "patient"),
    "VisionPrescription": (("patient",), "patient"),
}

#: Types whose membership the gateway decides by resolving their targets (see the module docstring).
RESOLVED_TARGETS: dict[str, str] = {"Provenance": "target"}


def is_patient_data(resource_type: str) -> bool:
    """Whether resources of this type can belong to a patient (Patient itself included)."""
    return resource_type == "Patient" or resource_type in PATIENT_COMPARTMENT


def search_parameter(resource_type: str) -> str | None:
    """The search parameter the gateway sets to ``Patient/<id>`` to keep a search in the compartment."""
    if resource_type == "Patient":
        return "_id"
    entry = PATIENT_COMPARTMENT.get(resource_type)
    return entry[1] if entry else None


def _values(node: Any, path: list[str]) -> Iterator[Any]:
    if not path:
        yield node
        return
    if isinstance(node, list):
        for item in node:
            yield from _values(item, path)
        return
    if isinstance(node, Mapping):
        child = node.get(path[0])
        if child is not None:
            yield from _values(child, path[1:])


def references(resource: JsonObject, path: str) -> list[str]:
    """The ``reference`` strings found at a dotted element path (lists are traversed)."""
    found: list[str] = []
    for value in _values(resource, path.split(".")):
        if isinstance(value, list):
            items: list[Any] = value
        else:
            items = [value]
        for item in items:
            if isinstance(item, Mapping) and isinstance(item.get("reference"), str):
                found.append(item["reference"])
    return found


def reference_id(reference: str, resource_type: str) -> str | None:
    """``Patient/1``, ``http://x/fhir/Patient/1`` or ``Patient/1/_history/2`` -> ``1`` (for Patient)."""
    parts = reference.split("?")[0].rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == resource_type and parts[-1]:
        return parts[-1]
    return None


def points_to_patient(reference: str, patient_id: str) -> bool:
    return reference_id(reference, "Patient") == patient_id


def patient_references(node: Any) -> Iterator[str]:
    """Every reference to a Patient anywhere in a resource (contained resources included)."""
    if isinstance(node, Mapping):
        reference = node.get("reference")
        if isinstance(reference, str) and reference_id(reference, "Patient") is not None:
            yield reference
        for value in node.values():
            yield from patient_references(value)
    elif isinstance(node, list):
        for item in node:
            yield from patient_references(item)


def writable_by(resource: JsonObject, patient_id: str, resolve: Resolver | None = None) -> bool:
    """Whether a ``patient/``-scoped token for ``patient_id`` may write ``resource``: it must be in the
    patient's compartment and must not reference any other patient anywhere."""
    if not in_compartment(resource, patient_id, resolve):
        return False
    return all(points_to_patient(ref, patient_id) for ref in patient_references(resource))


def in_compartment(resource: JsonObject, patient_id: str, resolve: Resolver | None = None) -> bool:
    """Whether ``resource`` is in the compartment of ``Patient/<patient_id>``.

    Types that are not patient data are never "in" a compartment; callers decide what that means.
    ``resolve`` fetches a referenced resource (used for Provenance targets only, one level deep).
    """
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return False
    if resource_type == "Patient":
        if resource.get("id") == patient_id:
            return True
        return any(points_to_patient(ref, patient_id) for ref in references(resource, "link.other"))
    entry = PATIENT_COMPARTMENT.get(resource_type)
    if entry is None:
        return False
    paths, _ = entry
    for path in paths:
        if any(points_to_patient(ref, patient_id) for ref in references(resource, path)):
            return True
    target_path = RESOLVED_TARGETS.get(resource_type)
    if target_path and resolve is not None:
        for ref in references(resource, target_path):
            target = resolve(ref)
            if (
                target is not None
                and target.get("resourceType") != resource_type
                and in_compartment(target, patient_id, None)
            ):
                return True
    return False
