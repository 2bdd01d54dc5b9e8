"""Patient-compartment membership and the gateway's request classification."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_desens.sandbox.compartment import (
    in_compartment,
    is_patient_data,
    reference_id,
    search_parameter,
    writable_by,
)
from fhir_desens.sandbox.interactions import Denied, classify


def test_reference_id_understands_relative_absolute_and_versioned_references() -> None:
    assert reference_id("Patient/1", "Patient") == "1"
    assert reference_id("http://ehr.example/fhir/Patient/1", "Patient") == "1"
    assert reference_id("Patient/1/_history/3", "Patient") == "1"
    assert reference_id("Practitioner/1", "Patient") is None
    assert reference_id("urn:uuid:0b9e", "Patient") is None


def test_membership_follows_the_compartment_paths() -> None:
    allergy = {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p1"}}
    assert in_compartment(allergy, "p1")
    assert not in_compartment(allergy, "p2")
    administration = {
        "resourceType": "MedicationAdministration",
        "subject": {"reference": "Patient/p2"},
        "performer": [{"actor": {"reference": "Patient/p1"}}],
    }
    assert in_compartment(administration, "p1")  # performer.actor is a compartment path
    assert in_compartment({"resourceType": "Patient", "id": "p1"}, "p1")
    assert not in_compartment({"resourceType": "Patient", "id": "p2"}, "p1")
    assert not in_compartment({"resourceType": "Medication", "id": "m"}, "p1")


def test_writes_must_not_name_another_patient() -> None:
    administration = {
        "resourceType": "MedicationAdministration",
        "subject": {"reference": "Patient/p2"},
        "performer": [{"actor": {"reference": "Patient/p1"}}],
    }
    assert not writable_by(administration, "p1")
    own = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/p1"},
        "contained": [{"resourceType": "Observation", "subject": {"reference": "Patient/p2"}}],
    }
    assert not writable_by(own, "p1")
    own.pop("contained")
    assert writable_by(own, "p1")


def test_provenance_belongs_to_the_patient_of_its_targets() -> None:
    store: dict[str, dict[str, Any]] = {
        "AllergyIntolerance/a1": {
            "resourceType": "AllergyIntolerance",
            "patient": {"reference": "Patient/p1"},
        },
    }
    provenance = {"resourceType": "Provenance", "target": [{"reference": "AllergyIntolerance/a1/_history/2"}]}

    def resolve(reference: str) -> dict[str, Any] | None:
        return store.get("/".join(reference.split("/")[:2]))

    assert in_compartment(provenance, "p1", resolve)
    assert not in_compartment(provenance, "p2", resolve)
    assert not in_compartment(provenance, "p1")  # without resolving, R4's rule: a target must be the Patient


def test_search_parameters_and_patient_data() -> None:
    assert search_parameter("AllergyIntolerance") == "patient"
    assert search_parameter("AdverseEvent") == "subject"
    assert search_parameter("Patient") == "_id"
    assert search_parameter("Medication") is None
    assert is_patient_data("MedicationAdministration")
    assert not is_patient_data("PlanDefinition")


@pytest.mark.parametrize(
    ("method", "path", "kind", "resource_type", "resource_id"),
    [
        ("GET", "AllergyIntolerance/1", "read", "AllergyIntolerance", "1"),
        ("HEAD", "AllergyIntolerance/1", "read", "AllergyIntolerance", "1"),
        ("GET", "AllergyIntolerance/1/_history/2", "vread", "AllergyIntolerance", "1"),
        ("GET", "AllergyIntolerance/1/_history", "history-instance", "AllergyIntolerance", "1"),
        ("GET", "AllergyIntolerance/_history", "history-type", "AllergyIntolerance", None),
        ("GET", "AllergyIntolerance", "search-type", "AllergyIntolerance", None),
        ("POST", "AllergyIntolerance/_search", "search-type", "AllergyIntolerance", None),
        ("POST", "AllergyIntolerance", "create", "AllergyIntolerance", None),
        ("PUT", "AllergyIntolerance/1", "update", "AllergyIntolerance", "1"),
        ("PUT", "AllergyIntolerance", "update", "AllergyIntolerance", None),
        ("PATCH", "AllergyIntolerance/1", "patch", "AllergyIntolerance", "1"),
        ("DELETE", "AllergyIntolerance/1", "delete", "AllergyIntolerance", "1"),
        ("POST", "", "bundle", None, None),
        ("GET", "", "search-system", None, None),
        ("POST", "AllergyIntolerance/$validate", "operation", "AllergyIntolerance", None),
    ],
)
def test_classify(
    method: str, path: str, kind: str, resource_type: str | None, resource_id: str | None
) -> None:
    interaction = classify(method, path)
    assert (interaction.kind, interaction.resource_type, interaction.resource_id) == (
        kind,
        resource_type,
        resource_id,
    )


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "AllergyIntolerance/1"), ("GET", "a/b/c/d/e"), ("GET", "lower")]
)
def test_classify_refuses_what_it_does_not_understand(method: str, path: str) -> None:
    with pytest.raises(Denied):
        classify(method, path)
