"""$apply: the transaction Bundle of orders for one patient."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from fhir_desens.errors import InputError
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.fhir.models import try_parse
from fhir_desens.io import json as fjson
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import EXACT, Quantity

AUTHORED = datetime(2026, 11, 22, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
CONTEXT = ApplyContext("Patient/carboplatin-1", "Practitioner/allergist-1", "Encounter/e1", AUTHORED)


def plan_for(protocol_id: str, dose: str | None = "400"):
    protocol = builtin_protocols()[protocol_id]
    target = None if protocol.kind.value == "discrete" else Quantity(Decimal(dose), "mg")
    return compute_plan(PlanRequest(protocol, "carboplatin", target))


def resources(bundle, kind):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


@pytest.mark.invariant("INV-01")
@pytest.mark.parametrize("protocol_id", list(builtin_protocols()))
def test_bundle_orders_every_step_and_sums_to_the_target(protocol_id):
    plan = plan_for(protocol_id)
    bundle = apply_plan(plan, CONTEXT)
    assert bundle["type"] == "transaction"
    requests = resources(bundle, "MedicationRequest")
    assert len(requests) == len(plan.steps)
    total = Decimal(0)
    for request in requests:
        total = EXACT.add(total, request["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"])
    if plan.protocol.target_kind.value == "cumulative":
        assert total == plan.target_dose.value
    (group,) = resources(bundle, "RequestGroup")
    assert group["intent"] == "order"
    assert group["instantiatesCanonical"] == [f"{c.plan_definition(protocol_id)}|1.0.0"]
    assert len(group["action"]) == len(plan.steps)
    assert len(resources(bundle, "Medication")) == len(plan.solutions)
    assert len(resources(bundle, "Provenance")) == 1
    for resource in (e["resource"] for e in bundle["entry"]):
        model, issues = try_parse(fjson.loads(fjson.dumps(resource)))
        assert model is not None, issues


def test_every_entry_is_idempotent_and_every_reference_resolves():
    bundle = apply_plan(plan_for("iv-12-step-3-bag"), CONTEXT)
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    assert all(u.startswith("urn:uuid:") for u in full_urls)
    for entry in bundle["entry"]:
        request = entry["request"]
        if request["method"] == "POST":
            system, value = request["ifNoneExist"].removeprefix("identifier=").split("|")
            assert {"system": system, "value": value} in entry["resource"]["identifier"]
        else:
            assert request == {"method": "PUT", "url": f"Provenance/{entry['resource']['id']}"}
    text = fjson.dumps(bundle)
    for reference in {r for r in _references(bundle) if r.startswith("urn:uuid:")}:
        assert reference in full_urls, reference
    assert "subjectCanonical" not in text


def _references(value):
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference":
                yield item
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def test_same_plan_gives_the_same_bundle_and_another_patient_another():
    plan = plan_for("iv-12-step-3-bag")
    assert apply_plan(plan, CONTEXT) == apply_plan(plan, CONTEXT)
    other = ApplyContext("Patient/someone-else", authored=AUTHORED)
    ids = {
        e["resource"]["identifier"][0]["value"]
        for e in apply_plan(plan, other)["entry"]
        if "identifier" in e["resource"]
    }
    mine = {
        e["resource"]["identifier"][0]["value"]
        for e in apply_plan(plan, CONTEXT)["entry"]
        if "identifier" in e["resource"]
    }
    assert not ids & mine


def test_step_orders_carry_rate_duration_dose_route_and_group():
    bundle = apply_plan(plan_for("iv-12-step-3-bag"), CONTEXT)
    first = resources(bundle, "MedicationRequest")[0]
    dosage = first["dosageInstruction"][0]
    assert dosage["timing"]["repeat"] == {"count": 1, "duration": Decimal(15), "durationUnit": "min"}
    assert dosage["doseAndRate"][0]["rateQuantity"]["code"] == "mL/h"
    assert dosage["route"]["coding"][0]["code"] == "47625008"
    assert first["groupIdentifier"]["system"] == c.ID_SESSION
    assert first["requester"] == {"reference": "Practitioner/allergist-1"}
    medication = resources(bundle, "Medication")[0]
    strength = medication["ingredient"][0]["strength"]
    assert (strength["numerator"]["code"], strength["denominator"]["code"]) == ("mg", "mL")


@pytest.mark.parametrize("patient", ["carboplatin-1", "Patient/", "Practitioner/x", "Patient/a/b"])
def test_bad_references_are_input_errors(patient):
    with pytest.raises(InputError):
        apply_plan(plan_for("iv-12-step-3-bag"), ApplyContext(patient, authored=AUTHORED))
