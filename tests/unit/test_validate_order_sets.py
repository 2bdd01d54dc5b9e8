"""`validate` recognises order sets and recomputes them through the engine (issue 14, part 1)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fhir_desens.errors import ValidationFailed
from fhir_desens.exchange.load import Loaded, load_bytes, load_path
from fhir_desens.exchange.validate import ValidationReport, validate_loaded
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.io.formats import write_resource
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity, plain

CONTEXT = ApplyContext("Patient/p1", "Practitioner/d1", authored=datetime(2026, 12, 2, 9, tzinfo=UTC))


def order_bundle(protocol_id: str = "iv-12-step-3-bag") -> dict[str, Any]:
    protocol = builtin_protocols()[protocol_id]
    target = None if protocol.kind.value == "discrete" else Quantity(Decimal(400), "mg")
    drug = (protocol.drugs or ("carboplatin",))[0]
    return apply_plan(compute_plan(PlanRequest(protocol, drug, target)), CONTEXT)


def check(bundle: dict[str, Any]) -> ValidationReport:
    return validate_loaded(load_bytes(write_resource(bundle), "orders.json"), structural=None)


def orders(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]


def dosage(bundle: dict[str, Any], step: int) -> dict[str, Any]:
    result: dict[str, Any] = orders(bundle)[step - 1]["dosageInstruction"][0]
    return result


@pytest.mark.parametrize("protocol_id", ["iv-12-step-3-bag", "iv-16-step-4-bag", "aspirin-aerd-90-min"])
def test_an_order_set_from_apply_is_recomputed_and_valid(protocol_id: str) -> None:
    report = check(order_bundle(protocol_id))
    assert report.valid, report.text_lines()
    assert report.order_sets == 1 and "1 order set(s) recomputed" in report.summary()


def test_a_tampered_dose_is_an_error_per_step_with_expected_and_stated() -> None:
    bundle = order_bundle()
    quantity = dosage(bundle, 1)["doseAndRate"][0]["doseQuantity"]
    signed = quantity["value"]
    quantity["value"] = signed * 3  # the text still states the signed dose
    report = check(bundle)
    assert report.exit_code == 1
    messages = [i.message for i in report.errors()]
    assert f"step 1: dose is {plain(signed * 3)}, the engine gives {plain(signed)}" in messages
    assert any(m.startswith("the order set: total dose is") for m in messages)
    assert any("step 1: the dosage text states dose" in m for m in messages)
    step_one = next(i for i in report.errors() if i.message.startswith("step 1: dose is"))
    assert step_one.expression == "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity.value"
    assert step_one.entry is not None and step_one.rule == "order-set"


def test_text_that_disagrees_with_the_structured_values_is_an_error() -> None:
    bundle = order_bundle()
    text = dosage(bundle, 3)["text"]
    dosage(bundle, 3)["text"] = text.replace("for 15 min", "for 25 min")
    errors = check(bundle).errors()
    assert [i.message for i in errors] == [
        "step 3: minutes in the text is 25 min, the engine gives 15 min",
        "step 3: the dosage text states minutes 25 min, the order itself 15 min",
    ]


def test_a_wrong_sum_is_an_error_even_when_each_step_was_rescaled() -> None:
    bundle = order_bundle()
    for order in orders(bundle):  # every dose and its text scaled: the set no longer sums to the target
        quantity = order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
        quantity["value"] = quantity["value"] * 2
    messages = [i.message for i in check(bundle).errors()]
    assert "the order set: total dose is 800 mg, the engine gives 400 mg" in messages


def test_a_solution_concentration_that_disagrees_is_an_error() -> None:
    bundle = order_bundle()
    medication = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Medication")
    medication["ingredient"][0]["strength"]["numerator"]["value"] = Decimal("0.16")
    messages = [i.message for i in check(bundle).errors()]
    assert any("concentration is 0.16" in m for m in messages)


def test_orders_given_as_separate_files_are_found_by_id(tmp_path: Path) -> None:
    bundle = order_bundle()
    ids = {e["fullUrl"]: f"{e['resource']['resourceType']}/x{n}" for n, e in enumerate(bundle["entry"])}
    for n, entry in enumerate(bundle["entry"]):
        resource = copy.deepcopy(entry["resource"])
        resource["id"] = f"x{n}"
        text = write_resource(resource).decode()
        for full_url, ref in ids.items():
            text = text.replace(full_url, ref)
        (tmp_path / f"{n:02d}.json").write_text(text)
    report = validate_loaded(load_path(tmp_path), structural=None)
    assert report.valid and report.order_sets == 1


def test_a_group_without_its_orders_is_a_warning_not_a_pass() -> None:
    group = next(
        e["resource"] for e in order_bundle()["entry"] if e["resource"]["resourceType"] == "RequestGroup"
    )
    report = validate_loaded([Loaded("group.json", group)], structural=None)
    assert report.order_sets == 0
    assert any("not recomputed" in i.message for i in report.issues if i.severity == "warning")


def test_import_refuses_a_tampered_order_set_and_sends_nothing() -> None:
    from fhir_desens.client.fhir_rest import FhirClient
    from fhir_desens.exchange.importer import NOT_ATTEMPTED, import_resources

    bundle = order_bundle()
    dosage(bundle, 2)["doseAndRate"][0]["rateQuantity"]["value"] = Decimal("50")
    loaded = load_bytes(write_resource(bundle), "orders.json")
    with FhirClient("http://127.0.0.1:9/fhir") as nowhere:  # nothing listens there: no request may be sent
        report = import_resources(nowhere, loaded, structural=None)
    assert isinstance(report.error, ValidationFailed) and report.exit_code == 1
    assert any("step 2: rate is 50" in i.message for i in report.validation.errors())
    assert all(item.status == NOT_ATTEMPTED for item in report.items)
