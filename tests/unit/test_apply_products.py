"""$apply writes the products the protocol gives, coded, with one diluent (DRUG-PROD-1/2, DRUG-DIL-2)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from fhir_desens.errors import InputError
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PROTOCOLS = builtin_protocols()
AUTHORED = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def bundle_for(protocol: str, drug: str, dose: str | None, codes: tuple[str, ...] = (), **extra):
    target = None if dose is None else Quantity(Decimal(dose), "mg")
    plan = compute_plan(PlanRequest(PROTOCOLS[protocol], drug, target))
    context = ApplyContext(
        "Patient/p1",
        authored=AUTHORED,
        drug_codes=tuple({"system": RXNORM, "code": c} for c in codes),
        **extra,
    )
    return apply_plan(plan, context)


def of_type(bundle, kind: str):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


@pytest.mark.invariant("DRUG-PROD-1")
def test_oral_penicillin_v_orders_are_penicillin_v_even_for_a_benzathine_order() -> None:
    bundle = bundle_for("penicillin-v-oral-wendel", "Penicillin G benzathine", None, ("7982",))
    for medication in of_type(bundle, "Medication"):
        assert [c["code"] for c in medication["code"]["coding"]] == ["7984"]
        assert medication["code"]["text"].startswith("penicillin V potassium for oral solution")
        assert medication["form"] == {"text": "powder for oral solution"}
        ingredient = medication["ingredient"][0]["itemCodeableConcept"]
        assert [c["code"] for c in ingredient["coding"]] == ["7984"]
    orders = str(of_type(bundle, "Medication") + of_type(bundle, "MedicationRequest"))
    assert "'7982'" not in orders  # the benzathine order's code stays in the plan parameters only
    [group] = of_type(bundle, "RequestGroup")
    assert any("stays the order to give after" in n["text"] for n in group["note"])


@pytest.mark.invariant("DRUG-COMBO-1")
def test_tmp_smx_orders_name_the_ds_tablet_and_both_components() -> None:
    bundle = bundle_for("tmp-smx-oral-hourly", "Sulfamethoxazole-trimethoprim", None, ("198334", "10831"))
    medications = of_type(bundle, "Medication")
    assert [c["code"] for c in medications[-1]["code"]["coding"]] == ["198335", "10831"]
    assert "10829" not in str(bundle)  # trimethoprim's unverified code is never emitted
    last = of_type(bundle, "MedicationRequest")[-1]
    assert "SMX/TMP 800/160 mg" in last["dosageInstruction"][0]["text"]


@pytest.mark.invariant("DRUG-DIL-2")
def test_every_bag_names_exactly_one_diluent() -> None:
    bundle = bundle_for("iv-12-step-3-bag", "carboplatin", "400", ("40048",))
    for medication in of_type(bundle, "Medication"):
        diluent = medication["ingredient"][1]["itemCodeableConcept"]["text"]
        assert diluent == "5% dextrose (D5W)"
        assert [c["code"] for c in medication["code"]["coding"]] == ["40048"]


def test_an_unverified_product_code_is_not_written() -> None:
    bundle = bundle_for("iv-12-step-3-bag", "docetaxel", "120")
    for medication in of_type(bundle, "Medication"):
        assert "coding" not in medication["code"]
        assert medication["code"]["text"].startswith("docetaxel 20 mg/mL injection")
    assert "72962" not in str(bundle)


@pytest.mark.invariant("DRUG-PROD-2")
def test_an_iv_protocol_for_benzathine_penicillin_is_refused() -> None:
    plan = compute_plan(
        PlanRequest(
            PROTOCOLS["iv-12-step-3-bag"], "penicillin G benzathine", Quantity(Decimal(2400000), "[iU]")
        )
    )
    with pytest.raises(InputError, match="no intravenous product"):
        apply_plan(plan, ApplyContext("Patient/p1", authored=AUTHORED))


def test_an_uncoded_drug_keeps_its_typed_name() -> None:
    bundle = bundle_for("iv-12-step-3-bag", "Investigational mAb XY-12", "100")
    medication = of_type(bundle, "Medication")[0]
    assert medication["code"] == {"text": "Investigational mAb XY-12: Bag 1 (1:100)"}


@pytest.mark.invariant("OVERRIDE-1")
def test_the_override_note_names_what_was_overridden_and_by_whom() -> None:
    bundle = bundle_for(
        "tmp-smx-oral-hourly",
        "Sulfamethoxazole-trimethoprim",
        None,
        override_reason="PJP prophylaxis essential; atovaquone failed; discussed with ID.",
        overridden="Stevens-Johnson syndrome, 2019",
        override_authority="Overridden by an allergist (Allergy and Immunology).",
    )
    [group] = of_type(bundle, "RequestGroup")
    [provenance] = of_type(bundle, "Provenance")
    note = next(n["text"] for n in group["note"] if "override" in n["text"].lower())
    assert "Stevens-Johnson syndrome, 2019" in note and "allergist" in note and "atovaquone" in note
    assert provenance["reason"][0]["text"] == note
