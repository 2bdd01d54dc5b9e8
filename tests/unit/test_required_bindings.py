"""Every required binding of R4 on the resources and data types we read or write is checked.

The list of bindings is read here from the R4 definitions themselves (not from the checker), and for
each one a resource with a code outside its value set must be reported as an error at that element.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from fhir_desens.errors import ValidationFailed
from fhir_desens.exchange.load import Loaded, load_bytes
from fhir_desens.exchange.validate import validate_loaded
from fhir_desens.fhir.bindings import r4_bindings
from fhir_desens.fhir.profiles import default_definitions_dir
from fhir_desens.io import json as fhir_json
from fhir_desens.io.formats import write_resource

#: The resource types fhir-desens reads or writes (protocols, orders, chart, bedside, allergy, guide).
OUR_RESOURCES = (
    "PlanDefinition", "ActivityDefinition", "RequestGroup", "MedicationRequest", "Medication",
    "Provenance", "AllergyIntolerance", "Patient", "Practitioner", "Encounter", "Bundle",
    "MedicationAdministration", "Procedure", "Observation", "AdverseEvent", "DocumentReference",
    "Task", "Condition", "CarePlan", "CodeSystem", "ValueSet", "StructureDefinition",
    "ImplementationGuide", "OperationOutcome",
)  # fmt: skip
#: The data types inside them that carry required bindings of their own.
OUR_DATA_TYPES = (
    "Dosage", "Timing", "Quantity", "Duration", "Identifier", "HumanName", "ContactPoint", "Address",
    "Narrative", "Attachment", "RelatedArtifact", "ContactDetail", "UsageContext", "Expression",
    "TriggerDefinition", "DataRequirement", "ParameterDefinition", "Annotation", "Period", "Reference",
)  # fmt: skip
#: Value sets no offline expansion can list; the HL7 engine (validate --engine hl7) checks them.
UNEXPANDABLE = {"Attachment.contentType": "http://hl7.org/fhir/ValueSet/mimetypes|4.0.1"}
NOT_A_CODE = "not-a-code"


@cache
def definitions() -> dict[str, dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {}
    for name in ("profiles-resources.json", "profiles-types.json"):
        bundle = json.loads((default_definitions_dir() / name).read_text("utf-8"))
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource.get("resourceType") == "StructureDefinition" and resource.get("snapshot"):
                by_id[resource["id"]] = resource
    return by_id


def required(type_id: str) -> list[dict[str, Any]]:
    elements = definitions()[type_id]["snapshot"]["element"]
    return [e for e in elements if (e.get("binding") or {}).get("strength") == "required"]


def cases(type_ids: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(t, e["path"]) for t in type_ids for e in required(t)]


def element(type_id: str, path: str) -> dict[str, Any]:
    return next(e for e in definitions()[type_id]["snapshot"]["element"] if e["path"] == path)


def bad_value(type_code: str) -> Any:
    if type_code == "CodeableConcept":
        return {"coding": [{"system": "http://example.org/not-r4", "code": NOT_A_CODE}]}
    if type_code == "Coding":
        return {"system": "http://example.org/not-r4", "code": NOT_A_CODE}
    return NOT_A_CODE


def instance_with_bad_code(type_id: str, path: str) -> tuple[dict[str, Any], str]:
    """A value of ``type_id`` with a bad code at ``path``, and the expression of that code."""
    root, *names = path.split(".")
    value: dict[str, Any] = {}
    node, expression, prefix = value, root, root
    for position, name in enumerate(names):
        prefix = f"{prefix}.{name}"
        definition = element(type_id, prefix)
        repeats = definition["max"] != "1"
        last = position == len(names) - 1
        child = bad_value(definition["type"][0]["code"]) if last else {}
        node[name] = [child] if repeats else child
        expression += f".{name}" + ("[0]" if repeats else "")
        node = child if isinstance(child, dict) else node
    return value, expression


def test_our_types_carry_the_bindings_we_expect_and_none_hide_in_choice_elements() -> None:
    bindings = cases(OUR_RESOURCES) + cases(OUR_DATA_TYPES)
    assert len(bindings) > 80  # status, intent, priority, criticality, relationship, units ...
    assert not [path for _, path in bindings if "[x]" in path]
    paths = {path for _, path in bindings}
    for path in (
        "PlanDefinition.status", "MedicationRequest.intent", "AllergyIntolerance.criticality",
        "AllergyIntolerance.clinicalStatus", "AllergyIntolerance.verificationStatus",
        "PlanDefinition.action.relatedAction.relationship", "Timing.repeat.durationUnit",
        "Quantity.comparator", "RequestGroup.priority",
    ):  # fmt: skip
        assert path in paths


@pytest.mark.parametrize(("type_id", "path"), cases(OUR_RESOURCES))
def test_each_required_binding_of_our_resources_is_checked(type_id: str, path: str) -> None:
    if path in UNEXPANDABLE:
        pytest.fail("a resource-level binding that cannot be expanded offline: list it with its engine")
    value, expression = instance_with_bad_code(type_id, path)
    resource = {"resourceType": type_id, **value}
    report = validate_loaded([Loaded("bad.json", resource)], structural=None)
    found = [i for i in report.errors() if i.expression == expression and i.code == "code-invalid"]
    assert found, f"{path}: no error at {expression}; got {[i.line() for i in report.issues]}"
    assert NOT_A_CODE in found[0].message and path in found[0].message


@pytest.mark.parametrize(("type_id", "path"), cases(OUR_DATA_TYPES))
def test_each_required_binding_of_our_data_types_is_checked(type_id: str, path: str) -> None:
    if path in UNEXPANDABLE:
        assert r4_bindings().codes(UNEXPANDABLE[path]) is None
        return
    value, expression = instance_with_bad_code(type_id, path)
    issues = r4_bindings().check_value(value, type_id, type_id)
    assert [i["expression"] for i in issues] == [[expression]], path


def test_only_the_listed_bindings_cannot_be_expanded_offline() -> None:
    unexpandable = {
        b.path: b.value_set for t in OUR_RESOURCES + OUR_DATA_TYPES for b in r4_bindings().unexpandable(t)
    }
    assert unexpandable == UNEXPANDABLE


def test_valid_codes_pass_and_nested_actions_bundles_and_contained_resources_are_walked() -> None:
    group = {
        "resourceType": "RequestGroup",
        "status": "active",
        "intent": "order",
        "contained": [{"resourceType": "Medication", "id": "m", "status": "unknown-status"}],
        "action": [{"action": [{"relatedAction": [{"actionId": "a", "relationship": "afterwards"}]}]}],
    }
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": group}]}
    issues = r4_bindings().check_resource(bundle)
    assert sorted(i["expression"][0] for i in issues) == [
        "Bundle.entry[0].resource.action[0].action[0].relatedAction[0].relationship",
        "Bundle.entry[0].resource.contained[0].status",
    ]
    allergy = {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "criticality": "high",
        "category": ["medication"],
    }
    assert r4_bindings().check_resource(allergy) == []
    allergy["clinicalStatus"] = {"text": "active"}
    [issue] = r4_bindings().check_resource(allergy)
    assert "a code is required" in issue["details"]["text"]


# --- the cases of issue 14: import refuses each and writes nothing -------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "examples"


def _example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = fhir_json.loads((EXAMPLES / name).read_bytes())
    return data


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("PlanDefinition-aspirin-aerd-90-min.json", "status", "not-a-status"),
        ("ActivityDefinition-aspirin-aerd-90-min-step-1.json", "intent", "instruction"),
        ("MedicationRequest-example-session-1-step-1.json", "intent", "prescription"),
        ("RequestGroup-example-session-1.json", "status", "signed"),
    ],
)
def test_import_refuses_an_invalid_code_and_sends_nothing(name: str, field: str, value: str) -> None:
    from fhir_desens.client.fhir_rest import FhirClient
    from fhir_desens.exchange.importer import NOT_ATTEMPTED, import_resources

    resource = copy.deepcopy(_example(name))
    resource[field] = value
    loaded = load_bytes(write_resource(resource), name)
    with FhirClient("http://127.0.0.1:9/fhir") as nowhere:  # nothing listens there: no request may be sent
        report = import_resources(nowhere, loaded, structural=None)
    assert isinstance(report.error, ValidationFailed) and report.exit_code == 1
    assert any(i.expression == f"{resource['resourceType']}.{field}" for i in report.validation.errors())
    assert all(item.status == NOT_ATTEMPTED for item in report.items)


def test_an_allergy_with_an_invalid_criticality_is_invalid() -> None:
    allergy = {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": "Patient/p"},
        "criticality": "extreme",
    }
    report = validate_loaded([Loaded("a.json", allergy)], structural=None)
    assert [i.expression for i in report.errors()] == ["AllergyIntolerance.criticality"]
