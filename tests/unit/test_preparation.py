"""Pharmacy preparation: stock to draw, diluent to remove (overfill), serial oral dilutions (exact)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from fhir_desens.protocol import display
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.preparation import bag_preparations, serial_dilutions
from fhir_desens.protocol.quantity import EXACT, Quantity


def test_carboplatin_bags_from_10_mg_per_ml_stock():
    plan = compute_plan(
        PlanRequest(
            builtin_protocols()["iv-12-step-3-bag"],
            "carboplatin",
            Quantity(Decimal(400), "mg"),
            final_rate_ml_h=Decimal(75),
        )
    )
    bags = bag_preparations(plan, Quantity(Decimal(10), "mg/mL"))
    first = bags[0]
    assert first.stock_ml == Decimal("0.4")  # 4 mg of 10 mg/mL
    assert first.overfill_ml == Decimal(25)  # a 250 mL bag holds about 275 mL
    assert first.remove_ml == Decimal("25.4")
    assert first.infuse_only_ml is not None and first.infuse_only_ml < 250
    assert bags[2].infuse_only_ml is None  # the last bag runs empty
    assert bag_preparations(plan, None)[0].stock_ml is None


def test_penicillin_v_serial_dilutions_from_the_commercial_suspension():
    plan = compute_plan(PlanRequest(builtin_protocols()["penicillin-v-oral-wendel"], "penicillin V"))
    steps = serial_dilutions(plan, Quantity(Decimal(80000), "[iU]/mL"))
    assert [s.concentration.value for s in steps] == [Decimal(80000), Decimal(10000), Decimal(1000)]
    assert steps[0].source == "the commercial product" and steps[0].diluent_ml == 0
    assert steps[1].source == "solution 3" and steps[2].source == "solution 2"
    for step in steps:
        made = EXACT.divide(EXACT.multiply(step.source_ml, step.source_concentration.value), step.final_ml)
        assert made == step.concentration.value
    by_number = {s.solution: s for s in steps}
    # each solution holds its own doses plus what the next weaker one draws from it
    assert by_number[3].final_ml >= Decimal(15) + by_number[2].source_ml
    assert by_number[2].final_ml >= Decimal("8.4") + by_number[1].source_ml


@given(st.decimals(Decimal(1), Decimal(3000), places=1), st.sampled_from([Decimal(100), Decimal(250)]))
def test_stock_drawn_holds_exactly_the_bag_amount(dose: Decimal, bag: Decimal):
    plan = compute_plan(
        PlanRequest(builtin_protocols()["iv-12-step-3-bag"], "x", Quantity(dose, "mg"), bag_volume_ml=bag)
    )
    for prep, solution in zip(
        bag_preparations(plan, Quantity(Decimal(10), "mg/mL")), plan.solutions, strict=True
    ):
        assert prep.stock_ml is not None
        assert EXACT.multiply(prep.stock_ml, Decimal(10)) == solution.drug_amount.value


def test_every_oral_draw_is_what_a_syringe_measures_as_printed() -> None:
    """The sheet said "Measure 1.9 mL of solution 3 ... 15 mL of 10,000 units/mL" (the exact draw was 1.875 mL:
    measured as printed, the solution is 1.3 % too strong). The final volume grows until the draw is measurable."""
    for protocol, stock in (
        ("penicillin-v-oral-wendel", Quantity(Decimal(80000), "[iU]/mL")),
        ("tmp-smx-oral-hourly", Quantity(Decimal(40), "mg/mL")),
    ):
        plan = compute_plan(PlanRequest(builtin_protocols()[protocol], "x"))
        for step in serial_dilutions(plan, stock):
            printed = Decimal(display.volume_number(step.source_ml).replace(",", ""))
            assert printed == step.source_ml, (protocol, step)
            assert display.volume_number(step.diluent_ml).replace(",", "") == format(
                step.diluent_ml.normalize(), "f"
            )
    pen = compute_plan(PlanRequest(builtin_protocols()["penicillin-v-oral-wendel"], "penicillin V"))
    by_number = {s.solution: s for s in serial_dilutions(pen, Quantity(Decimal(80000), "[iU]/mL"))}
    assert (by_number[2].source_ml, by_number[2].final_ml) == (Decimal("2.5"), Decimal(20))
