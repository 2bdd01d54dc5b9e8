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


CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VERIFICATION_STATUS = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _verification(code: str) -> dict[str, Any]:
    return {"coding": [{"system": VERIFICATION_STATUS, "code": code}]}


def _confirmed_drug_allergy(
    id_: str, rxnorm: str, display: str, reaction: dict[str, Any], **more: Any
) -> dict[str, Any]:
    """An active, confirmed medication allergy of Patient/p1 to an RxNorm-coded drug, with one reaction
    (``more``: further elements, e.g. criticality)."""
    return {
        "resourceType": "AllergyIntolerance",
        "id": id_,
        "clinicalStatus": {"coding": [{"system": CLINICAL_STATUS, "code": "active"}]},
        "verificationStatus": _verification("confirmed"),
        "category": ["medication"],
        **more,
        "code": {"coding": [{"system": RXNORM, "code": rxnorm, "display": display}]},
        "patient": {"reference": "Patient/p1"},
        "reaction": [reaction],
    }


SJS = {"system": "http://snomed.info/sct", "code": "73442001", "display": "Stevens-Johnson syndrome"}
ALLERGY_PENICILLIN_SJS = _confirmed_drug_allergy(
    "pen-sjs",
    "7980",
    "Penicillin G",
    {"manifestation": [{"coding": [SJS]}], "severity": "severe"},
    criticality="high",
)
ALLERGY_CARBOPLATIN_HIVES = _confirmed_drug_allergy(
    "carbo", "40048", "Carboplatin", {"manifestation": [{"text": "Hives"}], "severity": "moderate"}
)

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
    "verificationStatus": _verification("entered-in-error"),
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
