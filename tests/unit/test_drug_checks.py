"""Checks driven by drug knowledge on computed plans (DRUG-* in docs/requirements.md)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_desens.drugs.checks import (
    check_concentrations,
    check_diluent,
    check_dose,
    check_last_dose,
    check_rates,
    combination_text,
    default_diluent,
    diluent_from_text,
    diluent_label,
    preparation_requirements,
    review_plan,
)
from fhir_desens.drugs.findings import Severity, refusals
from fhir_desens.drugs.monograph import diluents, monograph, monographs
from fhir_desens.drugs.products import plan_products
from fhir_desens.protocol.calculate import Plan, PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity

PROTOCOLS = builtin_protocols()
IV_DRUGS = sorted(m.id for m in monographs().values() if m.infusion is not None and m.dose.unit == "mg")


def mg(value: str) -> Quantity:
    return Quantity(Decimal(value), "mg")


def iv_plan(
    drug_id: str, dose: Quantity, protocol: str = "iv-12-step-3-bag", bag_ml: str | None = None
) -> Plan:
    return compute_plan(
        PlanRequest(
            protocol=PROTOCOLS[protocol],
            drug=monograph(drug_id).name,
            target=dose,
            bag_volume_ml=None if bag_ml is None else Decimal(bag_ml),
        )
    )


def products_for(drug_id: str, protocol: str = "iv-12-step-3-bag"):
    products, findings = plan_products(PROTOCOLS[protocol], monograph(drug_id))
    assert products is not None and not findings
    return products


@pytest.mark.invariant("DRUG-CONC-1")
def test_ten_times_the_carboplatin_dose_is_refused_naming_the_bag() -> None:
    plan = iv_plan("carboplatin", mg("4000"))
    found = review_plan(plan, products_for("carboplatin"), diluent_id="d5w", ordered_dose=mg("400"))
    refused = refusals(found)
    assert {f.check for f in refused} == {"DRUG-CONC-1", "DRUG-DOSE-1"}
    conc = next(f for f in refused if f.check == "DRUG-CONC-1")
    assert conc.subject == "Bag 3 (target)"
    assert "15.87 mg/mL" in conc.message and "10 mg/mL" in conc.message
    assert found[0].severity is Severity.REFUSE  # refusals come first


@pytest.mark.invariant("DRUG-CONC-1")
@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(IV_DRUGS),
    st.integers(min_value=1, max_value=50_000),
    st.sampled_from(["100", "250", "500"]),
)
def test_a_bag_is_refused_exactly_when_it_is_stronger_than_the_stock(
    drug_id: str, dose_mg: int, bag_ml: str
) -> None:
    plan = iv_plan(drug_id, mg(str(dose_mg)), bag_ml=bag_ml)
    products = products_for(drug_id)
    stock = products.product(1).stock_concentration
    assert stock is not None
    refused = {f.subject for f in check_concentrations(plan, products) if f.check == "DRUG-CONC-1"}
    too_strong = {
        s.label
        for s in plan.solutions
        if s.concentration is not None and s.concentration.canonical().value > stock.canonical().value
    }
    assert refused == too_strong


@pytest.mark.invariant("DRUG-CONC-2")
@settings(max_examples=100, deadline=None)
@given(st.sampled_from(IV_DRUGS), st.integers(min_value=1, max_value=5_000))
def test_every_bag_outside_the_range_is_warned_by_name_and_no_other(drug_id: str, dose_mg: int) -> None:
    """A bag above the range, or the last bag below it, is warned by name; the dilute bags before the last
    that are below it (by design) are named together in one statement; nothing else is warned."""
    plan = iv_plan(drug_id, mg(str(dose_mg)))
    products = products_for(drug_id)
    infusion = products.given.infusion
    assert infusion is not None
    stock = products.product(1).stock_concentration
    assert stock is not None
    findings = [f for f in check_concentrations(plan, products) if f.check == "DRUG-CONC-2"]
    warned = {f.subject for f in findings if f.subject != "dilute bags"}
    together = [f for f in findings if f.subject == "dilute bags"]
    expected, dilute = set(), []
    last = plan.solutions[-1].number
    for s in plan.solutions:
        c = s.concentration.canonical().value  # type: ignore[union-attr]
        if c > stock.canonical().value:
            continue
        low = infusion.concentration_min.canonical().value if infusion.concentration_min else None
        high = infusion.concentration_max.canonical().value if infusion.concentration_max else None
        if low is not None and c < low and s.number != last:
            dilute.append(s.label)
        elif (low is not None and c < low) or (high is not None and c > high):
            expected.add(s.label)
    assert warned == expected
    assert len(together) == (1 if dilute else 0)
    for label in dilute:
        assert label in together[0].message and "by design" in together[0].message
        assert "Prepare them just before the session" in together[0].message


def test_a_standard_carboplatin_plan_warns_only_about_its_dilute_bags() -> None:
    found = review_plan(
        iv_plan("carboplatin", mg("400")),
        products_for("carboplatin"),
        diluent_id="d5w",
        ordered_dose=mg("400"),
    )
    assert not refusals(found)
    [finding] = found  # one statement for both dilute bags, not a warning per bag
    assert finding.subject == "dilute bags"
    assert finding.message.startswith("Bag 1 (1:100) at 0.016 mg/mL and Bag 2 (1:10) at 0.16 mg/mL are below")


def test_a_last_bag_too_dilute_for_the_label_is_warned_by_name_with_the_fix() -> None:
    """Rituximab 100 mg in 250 mL bags: the last bag, 0.4 mg/mL, is below the label's 1-4 mg/mL; a smaller
    bag fixes it, so it is warned on its own."""
    found = check_concentrations(iv_plan("rituximab", mg("100")), products_for("rituximab"))
    named = [f for f in found if f.subject != "dilute bags"]
    assert [f.subject for f in named] == ["Bag 3 (target)"]
    assert "Use a smaller bag volume" in named[0].message


@pytest.mark.invariant("DRUG-DIL-1")
def test_oxaliplatin_in_sodium_chloride_is_refused() -> None:
    [finding] = check_diluent(monograph("oxaliplatin"), "ns")
    assert finding.severity is Severity.REFUSE
    assert "chloride" in finding.message and "5% dextrose (D5W)" in finding.message
    assert check_diluent(monograph("oxaliplatin"), "d5w") == ()


@pytest.mark.invariant("DRUG-DIL-1")
@given(st.sampled_from(sorted(monographs())), st.sampled_from(sorted(diluents())))
def test_diluent_verdicts_follow_the_monograph(drug_id: str, diluent_id: str) -> None:
    drug = monograph(drug_id)
    found = check_diluent(drug, diluent_id)
    if drug.infusion is None:
        assert found == ()
    elif drug.infusion.incompatibility(diluent_id):
        assert [f.severity for f in found] == [Severity.REFUSE]
    elif diluent_id in drug.infusion.compatible_diluents:
        assert found == ()
    else:
        assert [f.severity for f in found] == [Severity.WARN]


def test_cisplatin_without_chloride_is_refused() -> None:
    assert refusals(check_diluent(monograph("cisplatin"), "d5w"))


@pytest.mark.invariant("DRUG-DIL-2")
@pytest.mark.parametrize(
    ("drug_id", "order_text", "expected"),
    [
        ("carboplatin", "Carboplatin 400 mg (AUC 5) in 250 mL D5W IV", "d5w"),
        ("paclitaxel", "Paclitaxel 141 mg (80 mg/m2) in 250 mL 0.9% sodium chloride IV", "ns"),
        ("oxaliplatin", "Oxaliplatin 173 mg", "d5w"),  # the order names none: the monograph's default
        (
            "carboplatin",
            "carboplatin NS or D5W as the drug requires",
            "d5w",
        ),  # two named: none from the order
    ],
)
def test_the_default_diluent_comes_from_the_order(drug_id: str, order_text: str, expected: str) -> None:
    assert default_diluent(monograph(drug_id), order_text)[0] == expected


def test_a_label_names_exactly_one_diluent() -> None:
    for diluent_id in diluents():
        label = diluent_label(diluent_id)
        assert " or " not in label
        assert diluent_from_text(label) == diluent_id


@pytest.mark.invariant("DRUG-DOSE-1")
@given(
    st.sampled_from(sorted(monographs())),
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10**8), places=3),
)
def test_dose_verdicts_follow_the_plausible_range(drug_id: str, value: Decimal) -> None:
    drug = monograph(drug_id)
    found = check_dose(drug, Quantity(value, drug.dose.unit))
    if value > drug.dose.refuse_above:
        assert [f.severity for f in found] == [Severity.REFUSE]
    elif drug.dose.plausible_min <= value <= drug.dose.plausible_max:
        assert found == ()
    else:
        assert [f.severity for f in found] == [Severity.WARN]


def test_a_dose_in_units_is_not_compared_with_a_range_in_mg() -> None:
    assert check_dose(monograph("carboplatin"), Quantity(Decimal(400), "[iU]")) == ()


def test_grams_are_converted_before_comparing() -> None:
    assert refusals(check_dose(monograph("carboplatin"), Quantity(Decimal(4), "g")))
    assert check_dose(monograph("carboplatin"), Quantity(Decimal("0.4"), "g")) == ()


@pytest.mark.invariant("DRUG-LAST-1")
def test_tmp_smx_protocol_ending_with_a_ds_tablet_for_a_400_mg_order_is_warned() -> None:
    plan = compute_plan(
        PlanRequest(protocol=PROTOCOLS["tmp-smx-oral-hourly"], drug="sulfamethoxazole / trimethoprim")
    )
    products = products_for("sulfamethoxazole-trimethoprim", "tmp-smx-oral-hourly")
    [finding] = check_last_dose(plan, products, mg("400"))
    assert "SMX/TMP 800/160 mg" in finding.message and "SMX/TMP 400/80 mg" in finding.message
    assert check_last_dose(plan, products, mg("800")) == ()


def test_cumulative_protocols_are_not_checked_for_their_last_dose() -> None:
    plan = iv_plan("carboplatin", mg("400"))
    assert check_last_dose(plan, products_for("carboplatin"), mg("100")) == ()


@pytest.mark.invariant("DRUG-COMBO-1")
@given(st.decimals(min_value=Decimal("0.001"), max_value=Decimal(5000), places=3))
def test_combination_doses_show_both_components_in_ratio(value: Decimal) -> None:
    text = combination_text(monograph("sulfamethoxazole-trimethoprim"), Quantity(value, "mg"))
    assert text.startswith("SMX/TMP ") and text.endswith(" mg")
    smx, tmp = (Decimal(x) for x in text.split()[1].split("/"))
    assert smx > 0 and tmp > 0
    assert abs(smx - 5 * tmp) <= smx / 100  # display rounding only


def test_a_single_drug_dose_is_shown_plainly() -> None:
    assert combination_text(monograph("carboplatin"), mg("400")) == "400 mg"
    assert combination_text(monograph("sulfamethoxazole-trimethoprim"), mg("800")) == "SMX/TMP 800/160 mg"


@pytest.mark.invariant("DRUG-RATE-1")
def test_a_step_faster_than_the_rituximab_maximum_is_warned() -> None:
    plan = compute_plan(
        PlanRequest(
            protocol=PROTOCOLS["iv-12-step-3-bag"],
            drug="rituximab",
            target=mg("1000"),
            final_rate_ml_h=Decimal(150),
        )
    )
    found = check_rates(plan, products_for("rituximab"))
    assert found and all(f.check == "DRUG-RATE-1" for f in found)
    assert check_rates(iv_plan("rituximab", mg("800")), products_for("rituximab")) == ()


@pytest.mark.invariant("DRUG-PREP-1")
def test_paclitaxel_preparation_names_the_container_and_filter() -> None:
    lines = preparation_requirements(monograph("paclitaxel"))
    assert any("Non-PVC" in line for line in lines)
    assert any("0.22 micron" in line for line in lines)
    assert preparation_requirements(monograph("aspirin")) == ()
