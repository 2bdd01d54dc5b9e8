"""The fake EHR's chart (tests/app/fake_ehr.py): the fixture patients it loads, the few search rules it
applies, and the allergy records the app tests use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "patients"
PLANNING_TYPES = frozenset(
    {
        "MedicationRequest",
        "Medication",
        "Observation",
        "Condition",
        "RequestGroup",
        "MedicationAdministration",
    }
)


def rewrite_references(value: Any, ids: dict[str, str]) -> Any:
    """A deep copy with every ``reference`` to a bundle fullUrl rewritten to Type/id."""
    if isinstance(value, dict):
        return {
            k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else rewrite_references(v, ids))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [rewrite_references(item, ids) for item in value]
    return value


def in_compartment(resource: dict[str, Any], own: str) -> bool:
    if resource["resourceType"] == "Medication":
        return True  # not patient-specific
    for element in ("subject", "patient"):
        ref = resource.get(element)
        if isinstance(ref, dict):
            return ref.get("reference") == own
    return False


def identifiers_of(resource: dict[str, Any]) -> set[str]:
    return {f"{i.get('system')}|{i.get('value')}" for i in resource.get("identifier") or []}


def codes_of(resource: dict[str, Any]) -> set[str]:
    codings = (resource.get("code") or {}).get("coding") or []
    return {f"{c.get('system')}|{c.get('code')}" for c in codings}


def matches_search(resource: dict[str, Any], query: dict[str, list[str]]) -> bool:
    """The few search parameters planning uses: status, code (system|code lists), _id."""
    for name, values in query.items():
        wanted = set(",".join(values).split(","))
        if name == "status" and resource.get("status") not in wanted:
            return False
        if name == "code" and not codes_of(resource) & wanted:
            return False
        if name == "_id" and resource.get("id") not in wanted:
            return False
    return True


ALLERGY_PENICILLIN_SJS = {
    "resourceType": "AllergyIntolerance",
    "id": "pen-sjs",
    "clinicalStatus": {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}
        ]
    },
    "verificationStatus": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                "code": "confirmed",
            }
        ]
    },
    "category": ["medication"],
    "criticality": "high",
    "code": {
        "coding": [
            {
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "7980",
                "display": "Penicillin G",
            }
        ]
    },
    "patient": {"reference": "Patient/p1"},
    "reaction": [
        {
            "manifestation": [
                {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": "73442001",
                            "display": "Stevens-Johnson syndrome",
                        }
                    ]
                }
            ],
            "severity": "severe",
        }
    ],
}

ALLERGY_CARBOPLATIN_HIVES = {
    "resourceType": "AllergyIntolerance",
    "id": "carbo",
    "clinicalStatus": {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}
        ]
    },
    "verificationStatus": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                "code": "confirmed",
            }
        ]
    },
    "category": ["medication"],
    "code": {
        "coding": [
            {
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "40048",
                "display": "Carboplatin",
            }
        ]
    },
    "patient": {"reference": "Patient/p1"},
    "reaction": [{"manifestation": [{"text": "Hives"}], "severity": "moderate"}],
}

ALLERGY_PEANUT = {
    "resourceType": "AllergyIntolerance",
    "id": "peanut",
    "clinicalStatus": {"coding": [{"code": "active"}]},
    "category": ["food"],
    "code": {"text": "Peanut"},
    "patient": {"reference": "Patient/p1"},
}

ALLERGY_ERROR = {
    "resourceType": "AllergyIntolerance",
    "id": "oops",
    "verificationStatus": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                "code": "entered-in-error",
            }
        ]
    },
    "category": ["medication"],
    "code": {"text": "Amoxicillin (wrong patient)"},
    "patient": {"reference": "Patient/p1"},
}

ALLERGY_NKA = {
    "resourceType": "AllergyIntolerance",
    "id": "nka",
    "clinicalStatus": {"coding": [{"code": "active"}]},
    "verificationStatus": {"coding": [{"code": "confirmed"}]},
    "code": {
        "coding": [{"system": "http://snomed.info/sct", "code": "716186003", "display": "No known allergy"}],
        "text": "NKA",
    },
    "patient": {"reference": "Patient/p1"},
}
