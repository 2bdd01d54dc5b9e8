"""The product follows the protocol (DRUG-PROD-1) and must fit its route and form (DRUG-PROD-2)."""

from __future__ import annotations

import pytest

from fhir_desens.drugs.findings import Severity
from fhir_desens.drugs.monograph import monograph, monographs
from fhir_desens.drugs.products import plan_products
from fhir_desens.protocol.library import builtin_protocols

PROTOCOLS = builtin_protocols()


@pytest.mark.invariant("DRUG-PROD-1")
def test_oral_penicillin_v_protocol_gives_coded_penicillin_v_before_benzathine() -> None:
    products, findings = plan_products(
        PROTOCOLS["penicillin-v-oral-wendel"], monograph("penicillin-g-benzathine")
    )
    assert not findings and products is not None
    assert {s.product.id for s in products.solutions} == {"penicillin-v-potassium-oral-solution"}
    assert [c.code for c in products.product(1).codes] == ["7984"]
    assert not products.follows_order
    note = products.therapeutic_note
    assert note is not None and "penicillin G benzathine" in note and "after the desensitization" in note


@pytest.mark.invariant("DRUG-PROD-1")
def test_tmp_smx_protocol_gives_suspension_then_the_ds_tablet() -> None:
    products, _ = plan_products(PROTOCOLS["tmp-smx-oral-hourly"], monograph("sulfamethoxazole-trimethoprim"))
    assert products is not None and products.follows_order
    ids = [s.product.id for s in products.solutions]
    assert ids[:5] == ["smx-tmp-40-8-mg-ml-oral-suspension"] * 5
    assert ids[5] == "smx-tmp-800-160-mg-tablet"
    assert [c.code for c in products.product(6).codes] == ["198335", "10831"]


@pytest.mark.invariant("DRUG-PROD-1")
@pytest.mark.parametrize("drug_id", sorted(m.id for m in monographs().values() if m.infusion is not None))
def test_an_iv_protocol_gives_the_ordered_drugs_injection(drug_id: str) -> None:
    products, findings = plan_products(PROTOCOLS["iv-12-step-3-bag"], monograph(drug_id))
    assert not findings and products is not None
    assert products.follows_order and products.therapeutic_note is None
    assert all(s.product.route == "intravenous" for s in products.solutions)


@pytest.mark.invariant("DRUG-PROD-2")
@pytest.mark.parametrize(
    ("protocol", "drug_id", "words"),
    [
        ("iv-12-step-3-bag", "penicillin-g-benzathine", "no intravenous product"),
        ("iv-12-step-3-bag", "aspirin", "no intravenous product"),
        ("penicillin-v-oral-wendel", "carboplatin", "not written for carboplatin"),
        ("aspirin-aerd-90-min", "carboplatin", "not written for carboplatin"),
    ],
)
def test_a_protocol_route_or_form_the_product_does_not_have_is_refused(
    protocol: str, drug_id: str, words: str
) -> None:
    products, findings = plan_products(PROTOCOLS[protocol], monograph(drug_id))
    assert products is None
    [finding] = findings
    assert finding.severity is Severity.REFUSE and finding.check == "DRUG-PROD-2"
    assert words in finding.message


def test_an_uncoded_drug_with_a_generic_protocol_has_no_products_and_no_finding() -> None:
    assert plan_products(PROTOCOLS["iv-12-step-3-bag"], None) == (None, ())


def test_every_builtin_protocol_with_declared_products_covers_every_solution() -> None:
    for protocol_id in ("penicillin-v-oral-wendel", "tmp-smx-oral-hourly", "aspirin-aerd-90-min"):
        products, findings = plan_products(PROTOCOLS[protocol_id], None)
        assert not findings and products is not None
        assert [s.solution for s in products.solutions] == [
            s.number for s in PROTOCOLS[protocol_id].solutions
        ]
