"""A signed order set recomputed against the engine, step by step (fhir_desens.fhir.orderset)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_desens.errors import DesensError
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.fhir.orderset import compare_orders, verify_order_set
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity

AUTHORED = datetime(2026, 11, 22, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
CONTEXT = ApplyContext("Patient/p1", "Practitioner/a1", None, AUTHORED)
PROTOCOLS = builtin_protocols()


def signed_set(
    protocol_id: str = "iv-12-step-3-bag", request: PlanRequest | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The RequestGroup, step orders and Medications of $apply, as a server would store them
    (urn:uuid references replaced by ids); of ``request`` when given."""
    protocol = PROTOCOLS[protocol_id]
    target = None if protocol.kind.value == "discrete" else Quantity(Decimal("400"), "mg")
    # drug-specific protocols give their own drug (DRUG-PROD-1); oral penicillin V declares no drug list
    default = "penicillin V potassium" if protocol_id == "penicillin-v-oral-wendel" else "carboplatin"
    drug = (protocol.drugs or (default,))[0]
    bundle = apply_plan(compute_plan(request or PlanRequest(protocol, drug, target)), CONTEXT)
    ids = {}
    for n, entry in enumerate(bundle["entry"]):
        kind = entry["resource"]["resourceType"]
        ids[entry["fullUrl"]] = f"{kind}/{kind.lower()}-{n}"
        entry["resource"]["id"] = f"{kind.lower()}-{n}"

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return ids.get(value, value) if isinstance(value, str) else value

    resources = [resolve(e["resource"]) for e in bundle["entry"]]
    group = next(r for r in resources if r["resourceType"] == "RequestGroup")
    orders = [r for r in resources if r["resourceType"] == "MedicationRequest"]
    medications = {r["id"]: r for r in resources if r["resourceType"] == "Medication"}
    return group, orders, medications


@pytest.mark.parametrize("protocol_id", list(PROTOCOLS))
def test_an_unchanged_order_set_matches_the_engine(protocol_id: str) -> None:
    group, orders, medications = signed_set(protocol_id)
    check = verify_order_set(group, orders, medications, PROTOCOLS)
    assert check.matches, [f.describe() for f in check.findings] or check.problem
    assert check.plan is not None and len(check.plan.steps) == len(orders)


def test_a_changed_dose_is_named_with_its_step_and_both_values() -> None:
    group, orders, medications = signed_set()
    dose = orders[2]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    stated = dose["value"] * 10
    dose["value"] = stated
    check = verify_order_set(group, orders, medications, PROTOCOLS)
    assert not check.matches
    finding = next(f for f in check.findings if f.element == "dose")
    assert finding.step == 3
    assert finding.stated != finding.expected
    assert "step 3: dose is" in finding.describe()
    # the doses no longer add up, and the order's own text (still the signed dose) disagrees with it
    assert {(f.step, f.element) for f in check.findings} == {
        (3, "dose"),
        (None, "total dose"),
        (3, "dose in the text vs the order"),
    }


def test_a_tampered_dose_whose_text_was_kept_is_found_three_ways() -> None:
    """Issue 14: step 1 dose tripled while its text still states the signed dose."""
    group, orders, medications = signed_set()
    dose = orders[0]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    signed = dose["value"]
    dose["value"] = signed * 3
    findings = {
        (f.step, f.element): f for f in verify_order_set(group, orders, medications, PROTOCOLS).findings
    }
    assert Decimal(findings[(1, "dose")].expected) == signed
    assert Decimal(findings[(1, "dose")].stated) == signed * 3
    assert findings[(None, "total dose")].stated != findings[(None, "total dose")].expected
    assert (1, "dose in the text vs the order") in findings


def test_a_text_that_disagrees_with_its_structured_values_is_found() -> None:
    group, orders, medications = signed_set()
    dosage = orders[4]["dosageInstruction"][0]
    dosage["text"] = dosage["text"].replace(" mL/h", "0 mL/h", 1).replace("cumulative ", "cumulative 9")
    findings = {(f.step, f.element) for f in verify_order_set(group, orders, medications, PROTOCOLS).findings}
    assert {
        (5, "rate in the text"),
        (5, "rate in the text vs the order"),
        (5, "cumulative in the text"),
    } <= findings


def test_an_action_whose_duration_disagrees_is_found() -> None:
    group, orders, medications = signed_set()
    group["action"][6]["timingDuration"]["value"] = Decimal("5")
    [finding] = verify_order_set(group, orders, medications, PROTOCOLS).findings
    assert (finding.step, finding.element, finding.stated) == (7, "action duration", "5 min")


def test_a_changed_rate_duration_and_concentration_are_each_found() -> None:
    group, orders, medications = signed_set()
    tampered = copy.deepcopy(orders)
    tampered[0]["dosageInstruction"][0]["doseAndRate"][0]["rateQuantity"]["value"] = Decimal("999")
    tampered[1]["dosageInstruction"][0]["timing"]["repeat"]["duration"] = Decimal("1")
    medication_id = tampered[11]["medicationReference"]["reference"].split("/")[1]
    medications = copy.deepcopy(medications)
    medications[medication_id]["ingredient"][0]["strength"]["numerator"]["value"] = Decimal("15.9")
    findings = {
        (f.step, f.element)
        for f in compare_orders(verify_order_set(group, orders, None, PROTOCOLS).plan, tampered, medications)
    }  # type: ignore[arg-type]
    assert {(1, "rate"), (2, "duration"), (12, "concentration")} <= findings


def test_a_missing_step_order_is_reported_for_the_set() -> None:
    group, orders, medications = signed_set()
    check = verify_order_set(group, orders[:-1], medications, PROTOCOLS)
    assert [(f.step, f.element, f.expected, f.stated) for f in check.findings] == [
        (None, "steps", "12", "11")
    ]
    assert not check.matches


def test_what_cannot_be_recomputed_is_a_problem_not_an_exception() -> None:
    group, orders, medications = signed_set()
    bare = {k: v for k, v in group.items() if k != "extension"}
    assert verify_order_set(bare, orders, medications, PROTOCOLS).problem is not None
    assert "not in this app's library" in (verify_order_set(group, orders, medications, {}).problem or "")
    other_version = {**group, "instantiatesCanonical": [group["instantiatesCanonical"][0] + ".9"]}
    assert "version" in (verify_order_set(other_version, orders, medications, PROTOCOLS).problem or "")


@pytest.mark.invariant("INV-11")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.decimals(min_value=Decimal(1), max_value=Decimal(5000), places=2),
    st.sampled_from([Decimal("0.1"), Decimal("0.5"), Decimal(1)]),
    st.sampled_from(["iv-12-step-3-bag", "iv-16-step-4-bag"]),
    st.sampled_from([Decimal(75), Decimal(80), Decimal(125), Decimal("62.5")]),
)
def test_a_plan_signed_at_a_pump_resolution_recomputes_to_its_orders(
    dose: Decimal, resolution: Decimal, protocol_id: str, final_rate: Decimal
) -> None:
    """The signed plan records its pump resolution, so read-back and `validate` recompute the same
    programmed rates, volumes and doses (and without it they would not: the check would fail)."""
    protocol = PROTOCOLS[protocol_id]
    request = PlanRequest(
        protocol,
        "carboplatin",
        Quantity(dose, "mg"),
        final_rate_ml_h=final_rate,
        pump_resolution_ml_h=resolution,
    )
    try:
        compute_plan(request)
    except DesensError:
        return  # refused plans are never signed
    group, orders, medications = signed_set(protocol_id, request)
    check = verify_order_set(group, orders, medications, PROTOCOLS)
    assert check.matches, [f.describe() for f in check.findings] or check.problem
    assert check.plan is not None and check.plan.request.pump_resolution_ml_h == resolution
    [parameters] = [e for e in group["extension"] if e["url"].endswith("desens-plan-parameters")]
    [recorded] = [x for x in parameters["extension"] if x["url"] == "pumpResolution"]
    assert recorded["valueQuantity"]["value"] == resolution and recorded["valueQuantity"]["code"] == "mL/h"


def test_a_plan_signed_at_a_pump_resolution_does_not_match_an_exact_recomputation() -> None:
    protocol = PROTOCOLS["iv-12-step-3-bag"]
    request = PlanRequest(  # at 75 mL/h the first rates are 1.875 and 4.6875 mL/h: programmed 1.9 and 4.7
        protocol,
        "carboplatin",
        Quantity(Decimal(400), "mg"),
        final_rate_ml_h=Decimal(75),
        pump_resolution_ml_h=Decimal("0.1"),
    )
    group, orders, medications = signed_set("iv-12-step-3-bag", request)
    for parameters in group["extension"]:
        if parameters["url"].endswith("desens-plan-parameters"):
            parameters["extension"] = [x for x in parameters["extension"] if x["url"] != "pumpResolution"]
    assert not verify_order_set(group, orders, medications, PROTOCOLS).matches
