"""``urn:uuid`` references inside a Bundle: resolved ones are not reported, unresolved ones are errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fhir_desens.exchange.load import Loaded, load_bytes
from fhir_desens.exchange.validate import validate_loaded
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.io.formats import write_resource
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity

CONTEXT = ApplyContext("Patient/p1", "Practitioner/d1", authored=datetime(2026, 12, 2, 9, tzinfo=UTC))


def apply_bundle() -> dict[str, Any]:
    plan = compute_plan(
        PlanRequest(builtin_protocols()["iv-12-step-3-bag"], "carboplatin", Quantity(Decimal(400), "mg"))
    )
    return apply_plan(plan, CONTEXT)


def medplum_like(resources: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    """What Medplum's validator says about every urn:uuid reference (the noise of issue 14)."""
    outcomes = []
    for resource in resources:
        issues = []
        for key in ("basedOn", "medicationReference", "target"):
            value = resource.get(key)
            refs = value if isinstance(value, list) else [value] if value else []
            for ref in refs:
                if isinstance(ref, Mapping) and str(ref.get("reference", "")).startswith("urn:uuid:"):
                    text = f'Invalid reference: got "{ref["reference"]}", expected "http://..."'
                    issues.append({"severity": "warning", "code": "structure", "details": {"text": text}})
        outcomes.append({"resourceType": "OperationOutcome", "issue": issues})
    return outcomes


def test_references_that_resolve_inside_the_bundle_are_not_reported() -> None:
    loaded = load_bytes(write_resource(apply_bundle()), "apply.json")
    report = validate_loaded(loaded, structural=medplum_like)
    assert report.issues == [] and report.valid
    assert all(item.full_url and item.full_url.startswith("urn:uuid:") for item in loaded)


def test_a_reference_to_no_entry_is_an_error_where_it_is() -> None:
    bundle = apply_bundle()
    order = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
    )
    order["medicationReference"]["reference"] = "urn:uuid:00000000-0000-4000-8000-000000000000"
    report = validate_loaded(load_bytes(write_resource(bundle), "apply.json"), structural=medplum_like)
    [issue] = [i for i in report.errors() if i.rule == "urn-reference"]
    assert issue.expression == "MedicationRequest.medicationReference.reference"
    assert "names no entry of its Bundle" in issue.message and issue.rule == "urn-reference"
    assert report.count("warning") == 0


def test_a_urn_reference_outside_any_bundle_is_an_error() -> None:
    order = {"resourceType": "MedicationRequest", "basedOn": [{"reference": "urn:uuid:1"}]}
    report = validate_loaded([Loaded("alone.json", order)], structural=None)
    assert [i.expression for i in report.errors()] == ["MedicationRequest.basedOn[0].reference"]
    assert "not in a Bundle" in report.errors()[0].message


def test_a_reference_to_a_type_its_element_does_not_allow_is_an_error() -> None:
    """R4 MedicationRequest.basedOn cannot name a RequestGroup: Medplum stored it, HAPI refused it."""
    bundle = apply_bundle()
    group_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "RequestGroup")
    order = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
    )
    order["basedOn"] = [{"reference": group_url}]
    order["recorder"] = {"reference": "Patient/p1"}
    report = validate_loaded(load_bytes(write_resource(bundle), "apply.json"), structural=None)
    assert sorted((i.expression, i.message.split(" (")[0]) for i in report.errors()) == [
        ("MedicationRequest.basedOn[0]", "MedicationRequest.basedOn may not name a RequestGroup"),
        ("MedicationRequest.recorder", "MedicationRequest.recorder may not name a Patient"),
    ]
