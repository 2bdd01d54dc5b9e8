"""Property tests of the authored-protocol rules INV-21..INV-24 and of the stated-value rule.

Tables are generated (bags, concentrations, draws, preparations with and without overfill,
proportional infusion tables); each authored protocol must plan safely, reproduce its table, survive
the PlanDefinition mapping unchanged, and refuse what the rules forbid.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fhir_desens.authoring.build import AuthorOptions, StatedValuesDisagree, author_protocol
from fhir_desens.authoring.table import TableRow
from fhir_desens.errors import InputError
from fhir_desens.fhir.plandefinition import plan_definition_from_protocol, protocol_from_plan_definition
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.invariants import violations
from fhir_desens.protocol.library import preparation_problem
from fhir_desens.protocol.model import Preparation, SolutionDefinition
from fhir_desens.protocol.quantity import EXACT, Quantity, mul
from fhir_desens.protocol.stated import agrees

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def decimals(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(Decimal(low), Decimal(high), places=places, allow_nan=False, allow_infinity=False)


@st.composite
def preparations(draw: st.DrawFn) -> Preparation:
    bag = draw(st.sampled_from([Decimal(v) for v in (50, 100, 250, 500)]))
    overfill = draw(st.sampled_from([Decimal(0), bag / 10, bag / 20]))
    removed = draw(decimals("0", "20", 1))
    return Preparation(
        bag_volume_ml=bag,
        drug_amount=Quantity(draw(decimals("0.1", "2000", 2)), "mg"),
        drug_volume_ml=draw(decimals("0", "10", 1)),
        removed_ml=removed,
        overfill_ml=overfill,
    )


@st.composite
def bag_tables(draw: st.DrawFn) -> tuple[list[TableRow], dict[str, Preparation], dict[str, Decimal]]:
    """Discrete doses drawn by syringe from 1-3 bags, each bag shared by 1-5 steps; doses rising."""
    labels = ["A", "B", "C"][: draw(st.integers(1, 3))]
    rows: list[TableRow] = []
    preps: dict[str, Preparation] = {}
    volumes: dict[str, Decimal] = {}
    previous, total = Decimal(0), Decimal(0)
    for index, label in enumerate(labels):
        prepared = draw(preparations()) if draw(st.booleans()) else None
        if prepared is not None:
            preps[label] = prepared
            concentration = prepared.concentration()
        else:
            concentration = Quantity(draw(decimals("0.001", "5", 3)) * Decimal(10) ** index, "mg/mL")
        used = Decimal(0)
        for volume in sorted(draw(st.lists(decimals("0.1", "20", 2), min_size=1, max_size=5))):
            dose = mul(volume, concentration.value)
            assume(dose >= previous)
            previous, total = dose, total + dose
            used += volume
            rows.append(
                TableRow(len(rows) + 2, len(rows) + 1, label, concentration=concentration, volume_ml=volume)
            )
        if prepared is not None:
            assume(used <= prepared.final_volume_ml)
        elif draw(st.booleans()):
            volumes[label] = used + draw(decimals("0", "100", 1))
    assume(total >= Decimal("0.01"))  # smaller totals are refused as implausible targets
    return rows, preps, volumes


def options(preps: dict[str, Preparation], volumes: dict[str, Decimal], route: str = "iv") -> AuthorOptions:
    return AuthorOptions(
        "generated", "Generated", "drug", route, Decimal(30), preparations=preps, bag_volumes_ml=volumes
    )


@pytest.mark.invariant("INV-21")
@pytest.mark.invariant("INV-22")
@pytest.mark.invariant("INV-23")
@pytest.mark.invariant("INV-24")
@PROPERTY
@given(bag_tables())
def test_authored_bag_tables_plan_safely_reproduce_and_survive_the_mapping(
    table: tuple[list[TableRow], dict[str, Preparation], dict[str, Decimal]],
) -> None:
    rows, preps, volumes = table
    authored = author_protocol(rows, options(preps, volumes))
    protocol = authored.protocol
    assert protocol_from_plan_definition(plan_definition_from_protocol(protocol)) == protocol
    plan = compute_plan(PlanRequest(protocol, "drug"))
    assert violations(plan) == []
    assert plan.target_dose == authored.total
    assert [s.dose for s in plan.steps] == list(authored.step_doses)
    for solution in plan.solutions:  # INV-21: the draws fit the prepared bag, the rest is discarded
        assert solution.volume_infused_ml is not None and solution.volume_ml is not None
        assert solution.volume_infused_ml <= solution.volume_ml
        if solution.preparation is not None:  # INV-22
            assert solution.concentration == solution.preparation.concentration()
            assert solution.volume_ml == solution.preparation.final_volume_ml
            if solution.preparation.overfill_ml:  # INV-23
                assert any(f"Solution {solution.number} " in w and "overfill" in w for w in plan.warnings)
    other = Quantity(EXACT.add(authored.total.value, Decimal("0.01")), "mg")
    with pytest.raises(InputError, match="the table's doses sum to"):  # INV-24
        compute_plan(PlanRequest(protocol, "drug", other))


@pytest.mark.invariant("INV-21")
def test_a_plan_that_draws_more_than_its_bag_is_a_named_violation() -> None:
    rows = [TableRow(2, 1, "A", concentration=Quantity(Decimal(1), "mg/mL"), volume_ml=Decimal(8))]
    plan = compute_plan(PlanRequest(author_protocol(rows, options({}, {"A": Decimal(10)})).protocol, "drug"))
    small = replace(plan.solutions[0], volume_ml=Decimal(5), drug_amount=Quantity(Decimal(5), "mg"))
    found = violations(replace(plan, solutions=(small,)))
    assert found[0].invariant_id == "INV-21"


@pytest.mark.invariant("INV-22")
@PROPERTY
@given(preparations(), decimals("0.0001", "1", 4))
def test_a_preparation_makes_exactly_its_concentration_and_nothing_else(
    prep: Preparation, delta: Decimal
) -> None:
    made = prep.concentration()
    solution = SolutionDefinition(
        1, "A", concentration=made, volume_ml=prep.final_volume_ml, preparation=prep
    )
    assert preparation_problem(solution) is None
    assert mul(made.value, prep.final_volume_ml).quantize(
        Decimal("1e-20")
    ) == prep.drug_amount.value.quantize(Decimal("1e-20"))
    off = replace(solution, concentration=Quantity(made.value + delta, "mg/mL"))
    assert "the preparation makes" in (preparation_problem(off) or "")
    wrong_volume = replace(solution, volume_ml=prep.final_volume_ml + 1)
    assert "mL" in (preparation_problem(wrong_volume) or "")


@pytest.mark.invariant("INV-23")
def test_an_overfill_without_its_warning_is_a_named_violation() -> None:
    prep = Preparation(Decimal(100), Quantity(Decimal(150), "mg"), Decimal(3), Decimal(13), Decimal(10))
    rows = [TableRow(2, 1, "C", concentration=Quantity(Decimal("1.5"), "mg/mL"), volume_ml=Decimal(10))]
    plan = compute_plan(PlanRequest(author_protocol(rows, options({"C": prep}, {})).protocol, "drug"))
    assert any("overfill" in w for w in plan.warnings)
    silent = replace(plan, warnings=tuple(w for w in plan.warnings if "overfill" not in w))
    assert [v.invariant_id for v in violations(silent)] == ["INV-23"]


@st.composite
def proportional_tables(draw: st.DrawFn) -> tuple[list[TableRow], dict[str, Decimal], Decimal]:
    """Method-A infusion tables: bags at C/100, C/10, then the reduced last bag run until empty."""
    total = draw(decimals("1", "5000", 1))
    volume = draw(st.sampled_from([Decimal(v) for v in (100, 250, 500)]))
    nominal = EXACT.divide(total, volume)
    rates = [Decimal(r) for r in draw(st.lists(st.sampled_from([2, 5, 10, 20, 40]), min_size=2, max_size=4))]
    rates.sort()
    rows: list[TableRow] = []
    delivered, previous = Decimal(0), Decimal(0)
    for label, dilution in (("1", Decimal("0.01")), ("2", Decimal("0.1"))):
        conc = Quantity(nominal * dilution, "mg/mL")
        for rate in rates:
            rows.append(
                TableRow(
                    len(rows) + 2,
                    len(rows) + 1,
                    label,
                    concentration=conc,
                    rate_ml_h=rate,
                    minutes=Decimal(15),
                )
            )
            dose = EXACT.multiply(conc.value, rate / 4)
            assume(dose >= previous)  # a table whose doses fall is refused (INV-04), not generated
            delivered, previous = delivered + dose, dose
    last = Quantity(EXACT.divide(total - delivered, volume), "mg/mL")
    assume(last.value >= nominal / 2)
    rows.append(TableRow(len(rows) + 2, len(rows) + 1, "3", concentration=last, rate_ml_h=Decimal(80)))
    return rows, {"1": volume, "2": volume, "3": volume}, total


@PROPERTY
@given(proportional_tables(), decimals("0.5", "4", 2))
def test_proportional_tables_reproduce_at_their_total_and_scale_with_the_target(
    table: tuple[list[TableRow], dict[str, Decimal], Decimal], factor: Decimal
) -> None:
    rows, volumes, total = table
    authored = author_protocol(rows, AuthorOptions("p", "P", "drug", "iv", bag_volumes_ml=volumes))
    assert authored.total.value == total
    target = Quantity(EXACT.multiply(total, factor), "mg")
    plan = compute_plan(PlanRequest(authored.protocol, "drug", target))
    assert violations(plan) == [] and plan.delivered == target.value
    for step, table_dose in zip(plan.steps, authored.step_doses, strict=True):
        expected = EXACT.multiply(table_dose.value, factor)
        assert abs(step.dose.value - expected) <= Decimal("1e-30") * max(expected, Decimal(1))


@pytest.mark.invariant("INV-24")
@PROPERTY
@given(proportional_tables(), decimals("0.01", "2", 2))
def test_fixed_infusion_tables_reproduce_at_their_total_and_refuse_any_other_target(
    table: tuple[list[TableRow], dict[str, Decimal], Decimal], factor: Decimal
) -> None:
    rows, volumes, total = table
    options = AuthorOptions("f", "F", "drug", "iv", scaling="fixed", bag_volumes_ml=volumes)
    authored = author_protocol(rows, options)
    protocol = authored.protocol
    assert protocol.fixed_table
    assert protocol_from_plan_definition(plan_definition_from_protocol(protocol)) == protocol
    plan = compute_plan(PlanRequest(protocol, "drug"))
    assert violations(plan) == [] and plan.target_dose.value == total
    assert [s.dose for s in plan.steps] == list(authored.step_doses)
    other = Quantity(EXACT.multiply(total, factor), "mg")
    assume(other.value != total)
    with pytest.raises(InputError, match="the table's doses sum to"):
        compute_plan(PlanRequest(protocol, "drug", other))


@PROPERTY
@given(decimals("0.000001", "100000", 6), st.integers(0, 6))
def test_the_exact_value_rounded_to_any_precision_is_accepted_and_half_a_unit_more_is_not(
    exact: Decimal, places: int
) -> None:
    from decimal import ROUND_HALF_UP

    stated = exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    assume(not stated.is_zero())
    assert agrees(stated, exact)
    assert not agrees(stated + Decimal(1).scaleb(-places), exact)


@PROPERTY
@given(bag_tables(), st.data())
def test_a_cumulative_column_off_by_one_row_is_refused_at_every_lagging_row(
    table: tuple[list[TableRow], dict[str, Preparation], dict[str, Decimal]], data: st.DataObject
) -> None:
    rows, _, volumes = table
    assume(len(rows) >= 2)
    running, exact = Decimal(0), []
    for row in rows:
        assert row.concentration is not None and row.volume_ml is not None
        running = EXACT.add(running, mul(row.concentration.value, row.volume_ml))
        exact.append(running)
    lag_from = data.draw(st.integers(1, len(rows) - 1))
    stated = [exact[i - 1] if i >= lag_from else exact[i] for i in range(len(rows))]
    lagging = [replace(r, cumulative=Quantity(s, "mg")) for r, s in zip(rows, stated, strict=True)]
    with pytest.raises(StatedValuesDisagree) as raised:
        author_protocol(lagging, options({}, volumes))
    assert [d.step for d in raised.value.disagreements] == list(range(lag_from + 1, len(rows) + 1))


@settings(max_examples=60, deadline=None)
@given(st.permutations(["step", "solution", "concentration", "volume_ml", "cumulative"]), st.data())
def test_columns_are_read_in_any_order_and_any_case(order: list[str], data: st.DataObject) -> None:
    from fhir_desens.authoring.table import read_table

    cells = {
        "step": ["1", "2"],
        "solution": ["A", "A"],
        "concentration": ["0.5 mg/mL", "0.5 mg/mL"],
        "volume_ml": ["1", "2"],
        "cumulative": ["0.5 mg", "1.5 mg"],
    }
    header = ["".join(c.upper() if data.draw(st.booleans()) else c for c in name) for name in order]
    text = ",".join(header) + "\n" + "\n".join(",".join(cells[n][i] for n in order) for i in range(2))
    expected = read_table(
        "step,solution,concentration,volume_ml,cumulative\n1,A,0.5 mg/mL,1,0.5 mg\n2,A,0.5 mg/mL,2,1.5 mg\n"
    )
    assert read_table(text) == expected
