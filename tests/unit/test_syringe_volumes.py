"""Syringe-measurable volumes for discrete doses (INV-25): every liquid dose is on the marks of the syringe
that measures it, its dose computed exactly from that volume, and every other invariant still holds."""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fhir_desens.authoring.build import AuthorOptions, author_protocol
from fhir_desens.authoring.table import TableRow
from fhir_desens.errors import SafetyViolation
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.invariants import violations
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.model import ProtocolKind
from fhir_desens.protocol.quantity import EXACT, Quantity, mul
from fhir_desens.protocol.syringes import SYRINGES, measurable_volume, syringe_for


@pytest.mark.parametrize(
    ("volume", "measured", "capacity"),
    [
        ("0.333", "0.33", "1"),  # 1 mL syringe, 0.01 mL marks
        ("0.004", "0.01", "1"),  # never below one mark
        ("0.995", "1", "1"),
        ("1.05", "1.1", "3"),  # 3 mL syringe, 0.1 mL marks (half-up)
        ("3.33", "3.4", "5"),  # 5 mL syringe, 0.2 mL marks
        ("12.3", "12", "20"),  # 20 mL syringe, 1 mL marks
        ("6.4", "6.4", "10"),  # already on a mark: unchanged
    ],
)
def test_a_volume_is_rounded_to_the_marks_of_the_syringe_that_holds_it(
    volume: str, measured: str, capacity: str
) -> None:
    value, syringe = measurable_volume(Decimal(volume))
    assert value == Decimal(measured) and syringe.capacity_ml == Decimal(capacity)


def test_the_syringe_table_never_makes_a_larger_volume_smaller() -> None:
    """Each graduation divides the larger syringes' graduations and each capacity is on the next syringe's
    marks, so rounding is monotone across syringe sizes (doses never go down because of it)."""
    for small, large in pairwise(SYRINGES):
        assert large.graduation_ml % small.graduation_ml == 0
        assert small.capacity_ml % large.graduation_ml == 0


def _rows(volumes: list[Decimal], concentration: Decimal) -> list[TableRow]:
    return [
        TableRow(n + 2, n + 1, "A", concentration=Quantity(concentration, "mg/mL"), volume_ml=v)
        for n, v in enumerate(volumes)
    ]


def _protocol(rows: list[TableRow], route: str = "oral"):  # type: ignore[no-untyped-def]
    return author_protocol(rows, AuthorOptions("generated", "Generated", "drug", route, Decimal(30))).protocol


@pytest.mark.invariant("INV-25")
def test_an_unmeasurable_volume_is_measured_and_its_dose_follows_and_is_shown() -> None:
    protocol = _protocol(_rows([Decimal("0.333"), Decimal("3.33")], Decimal(3)))
    exact = compute_plan(PlanRequest(protocol, "drug"))
    measured = compute_plan(PlanRequest(protocol, "drug", syringe_volumes=True))
    assert [s.volume_ml for s in exact.steps] == [Decimal("0.333"), Decimal("3.33")]
    assert [s.volume_ml for s in measured.steps] == [Decimal("0.33"), Decimal("3.4")]
    assert [s.dose.value for s in measured.steps] == [Decimal("0.99"), Decimal("10.2")]
    assert measured.target_dose == Quantity(Decimal("11.19"), "mg")
    assert (
        measured.steps[1].note
        == "Volume rounded to the syringe's marks (5 mL syringe, 0.2 mL marks): 3.4 mL gives 10.2 mg"
    )
    # the table's own total is still the target a person may type for it (INV-24)
    assert (
        compute_plan(PlanRequest(protocol, "drug", exact.target_dose, syringe_volumes=True)).steps
        == measured.steps
    )


@pytest.mark.invariant("INV-25")
def test_the_built_in_oral_tables_are_already_measurable() -> None:
    for protocol in builtin_protocols().values():
        if protocol.kind is ProtocolKind.DISCRETE:
            exact = compute_plan(PlanRequest(protocol, "drug"))
            measured = compute_plan(PlanRequest(protocol, "drug", syringe_volumes=True))
            assert [s.dose for s in measured.steps] == [s.dose for s in exact.steps], protocol.id


@pytest.mark.invariant("INV-25")
def test_a_volume_off_the_marks_is_a_named_violation() -> None:
    from dataclasses import replace

    plan = compute_plan(
        PlanRequest(_protocol(_rows([Decimal("0.33")], Decimal(3))), "drug", syringe_volumes=True)
    )
    off = replace(plan.steps[0], volume_ml=Decimal("0.333"), dose=Quantity(Decimal("0.999"), "mg"))
    assert "INV-25" in {v.invariant_id for v in violations(replace(plan, steps=(off,)))}


def decimals(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(Decimal(low), Decimal(high), places=places, allow_nan=False, allow_infinity=False)


@st.composite
def discrete_tables(draw: st.DrawFn) -> list[TableRow]:
    """1-3 solutions, each 1-5 rising volumes of 0.001-40 mL (most off any syringe mark); doses rising."""
    rows: list[TableRow] = []
    previous = Decimal(0)
    for index, label in enumerate(["A", "B", "C"][: draw(st.integers(1, 3))]):
        concentration = Quantity(draw(decimals("0.01", "5", 3)) * Decimal(10) ** index, "mg/mL")
        for volume in sorted(draw(st.lists(decimals("0.001", "40", 3), min_size=1, max_size=5))):
            dose = mul(volume, concentration.value)
            assume(dose >= previous)
            previous = dose
            rows.append(
                TableRow(len(rows) + 2, len(rows) + 1, label, concentration=concentration, volume_ml=volume)
            )
    assume(sum((mul(r.volume_ml, r.concentration.value) for r in rows), Decimal(0)) >= Decimal("0.01"))  # type: ignore[arg-type,union-attr]
    return rows


@pytest.mark.invariant("INV-25")
@pytest.mark.invariant("INV-01")
@pytest.mark.invariant("INV-04")
@pytest.mark.invariant("INV-08")
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(discrete_tables(), st.sampled_from(["oral", "iv"]))
def test_measured_plans_keep_every_invariant(rows: list[TableRow], route: str) -> None:
    protocol = _protocol(rows, route)
    refused: SafetyViolation | None = None
    try:
        plan = compute_plan(PlanRequest(protocol, "drug", syringe_volumes=True))
    except SafetyViolation as error:  # never silently unsafe: only a dose that rounding made smaller
        refused = error
    if refused is not None:
        assert refused.invariant_id == "INV-04"
        return
    assert violations(plan) == []
    cumulative = Decimal(0)
    for step, row in zip(plan.steps, rows, strict=True):
        assert step.volume_ml is not None and row.volume_ml is not None and row.concentration is not None
        syringe = syringe_for(row.volume_ml)
        assert step.volume_ml % syringe_for(step.volume_ml).graduation_ml == 0  # on the marks
        assert abs(step.volume_ml - row.volume_ml) <= max(
            syringe.graduation_ml / 2, syringe.graduation_ml - row.volume_ml
        )
        assert step.dose.value == mul(
            step.volume_ml, row.concentration.value
        )  # exact from the measured volume
        cumulative = EXACT.add(cumulative, step.dose.value)
        assert step.cumulative_dose.value == cumulative
    assert plan.target_dose.value == cumulative  # INV-01 on the measured doses
