"""$apply: the transaction Bundle of orders for one patient."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from fhir_desens.errors import InputError
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.apply import OVERRIDE_NOTE, ApplyContext, PlanParameters, apply_plan, plan_parameters
from fhir_desens.fhir.models import try_parse
from fhir_desens.io import json as fjson
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import EXACT, Quantity

AUTHORED = datetime(2026, 11, 22, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
CONTEXT = ApplyContext("Patient/carboplatin-1", "Practitioner/allergist-1", "Encounter/e1", AUTHORED)


#: Drug-specific protocols give their own drug (DRUG-PROD-1); carboplatin in them is refused (DRUG-PROD-2).
OWN_DRUG = {
    "aspirin-aerd-90-min": "aspirin",
    "tmp-smx-oral-hourly": "sulfamethoxazole / trimethoprim",
    "penicillin-v-oral-wendel": "penicillin V potassium",
}


def plan_for(protocol_id: str, dose: str | None = "400"):
    protocol = builtin_protocols()[protocol_id]
    target = None if protocol.kind.value == "discrete" else Quantity(Decimal(dose), "mg")
    return compute_plan(PlanRequest(protocol, OWN_DRUG.get(protocol_id, "carboplatin"), target))


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


# --- what a signed session records for copying, the indication and an expert override ------------------

RXNORM_CARBOPLATIN = {"system": c.RXNORM, "code": "40048", "display": "carboplatin"}


def _group(bundle):
    (group,) = resources(bundle, "RequestGroup")
    return group


def test_plan_parameters_round_trip_through_json():
    protocol = builtin_protocols()["iv-12-step-3-bag"]
    plan = compute_plan(
        PlanRequest(
            protocol,
            "carboplatin",
            Quantity(Decimal("400"), "mg"),
            final_rate_ml_h=Decimal("75"),
            bag_volume_ml=Decimal("250"),
            insert_before=(9,),
        )
    )
    context = ApplyContext(
        "Patient/carboplatin-1",
        authored=AUTHORED,
        drug_codes=(RXNORM_CARBOPLATIN,),
        prescribed_dose=Quantity(Decimal("250"), "mg/m2"),
        dose_basis="250 mg/m² x BSA 1.6 m² (Mosteller)",
    )
    group = fjson.loads(fjson.dumps(_group(apply_plan(plan, context))))
    parameters = plan_parameters(group)
    assert parameters == PlanParameters(
        protocol_id="iv-12-step-3-bag",
        drug="carboplatin",
        drug_codes=(RXNORM_CARBOPLATIN,),
        target_dose=Quantity(Decimal("400"), "mg"),
        prescribed_dose=Quantity(Decimal("250"), "mg/m2"),
        dose_basis="250 mg/m² x BSA 1.6 m² (Mosteller)",
        final_rate_ml_h=Decimal("75"),
        bag_volume_ml=Decimal("250"),
        diluent=next(s.diluent for s in plan.solutions if s.diluent),
        insert_before=(9,),
    )
    assert group["extension"][0]["url"] == c.EXT_CLOSING_METHOD  # the closing method stays first


def test_protocol_defaults_are_left_out_of_the_plan_parameters():
    parameters = plan_parameters(_group(apply_plan(plan_for("iv-12-step-3-bag"), CONTEXT)))
    assert parameters is not None
    assert (parameters.final_rate_ml_h, parameters.bag_volume_ml, parameters.insert_before) == (
        None,
        None,
        (),
    )
    assert parameters.prescribed_dose is None


def _target(group):
    (parameters,) = [e for e in group["extension"] if e["url"] == c.EXT_PLAN_PARAMETERS]
    return next(s for s in parameters["extension"] if s["url"] == "targetDose")["valueQuantity"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda g: g.pop("extension"),
        lambda g: g["extension"][1]["extension"].pop(0),  # no protocolId
        lambda g: _target(g).__setitem__("code", "tablespoons"),
        lambda g: _target(g).__setitem__("value", 0.1),  # a float: precision already lost
    ],
    ids=["no extension", "no protocol", "unknown unit", "float"],
)
def test_unreadable_plan_parameters_are_none(damage):
    group = _group(apply_plan(plan_for("iv-12-step-3-bag"), CONTEXT))
    damage(group)
    assert plan_parameters(group) is None


def test_indication_and_override_reason_are_recorded():
    reason = "Allergist reviewed the SJS record: it was a different drug; benefit outweighs the risk."
    context = ApplyContext(
        "Patient/p1", authored=AUTHORED, indication="Ovarian cancer", override_reason=reason
    )
    bundle = apply_plan(plan_for("iv-12-step-3-bag"), context)
    group = _group(bundle)
    assert group["reasonCode"] == [{"text": "Ovarian cancer"}]
    assert all(
        r["reasonCode"] == [{"text": "Ovarian cancer"}] for r in resources(bundle, "MedicationRequest")
    )
    assert {"text": OVERRIDE_NOTE + reason} in group["note"]
    (provenance,) = resources(bundle, "Provenance")
    assert provenance["reason"] == [{"text": OVERRIDE_NOTE + reason}]
    plain_bundle = apply_plan(plan_for("iv-12-step-3-bag"), CONTEXT)
    assert "reason" not in resources(plain_bundle, "Provenance")[0]
    assert "reasonCode" not in _group(plain_bundle)
