"""The display policy: what a person reads for each kind of number (fhir_desens.protocol.display)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_desens.protocol import display as d
from fhir_desens.protocol.quantity import EXACT


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("804.33396359969780900596046189426578218650087912063", "804.3"),
        ("0.016086679271993956180119209237885315643730017582413", "0.01609"),
        ("3.72233203125", "3.722"),
        ("1296700", "1,296,700"),
        ("4", "4"),
        ("4.000", "4"),
        ("0.5", "0.5"),
        ("9.99996", "10"),
        ("999.96", "1,000"),
        ("1234.5", "1,235"),
        ("0.000012345", "0.00001235"),
    ],
)
def test_doses_have_four_significant_figures_and_separators(value: str, text: str) -> None:
    assert d.dose_number(Decimal(value)) == text


def test_units_are_always_written() -> None:
    assert d.dose_text(Decimal("1296700"), "[iU]") == "1,296,700 units"
    assert d.dose_text(Decimal("802.5"), "mg") == "802.5 mg"
    assert d.concentration_text(Decimal("0.0160866"), "mg/mL") == "0.01609 mg/mL"
    given = Decimal("0.0158666666666666666666666666666666666666666666667")
    assert d.given_of_target_text(given, Decimal(400), "mg") == "0.01587 mg of 400 mg"
    assert d.given_of_target_text(Decimal(0), Decimal(1296700), "[iU]") == "0 units of 1,296,700 units"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("8.672", "8.7"),
        ("0.256", "0.26"),
        ("0.004", "< 0.01"),
        ("232.5", "232.5"),
        ("1000", "1,000"),
        ("0", "0"),
    ],
)
def test_volumes_are_what_can_be_measured(value: str, text: str) -> None:
    assert d.volume_number(Decimal(value)) == text


def test_rates_are_at_the_pump_resolution() -> None:
    assert d.rate_text(Decimal("4.6875")) == "4.7 mL/h"
    assert d.rate_text(Decimal("4.6875"), Decimal(1)) == "5 mL/h"
    assert d.rate_text(Decimal("4.6875"), Decimal("0.01")) == "4.69 mL/h"
    assert d.rate_number(Decimal("0.01")) == "< 0.1"


def test_durations_counts_and_bsa() -> None:
    assert d.minutes_text(Decimal("174.375")) == "174 min"
    assert d.minutes_text(Decimal("0.2")) == "< 1 min"
    assert d.clock_text(Decimal("339.375")) == "5 h 39 min"
    assert d.count_text(Decimal("0.5"), "tablet") == "0.5 tablet"
    assert d.count_text(Decimal(2), "tablet") == "2 tablets"
    assert d.bsa_text(Decimal("2.1412")) == "2.14 m²"


_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _figures(text: str) -> int:
    digits = text.replace(",", "").replace(".", "").lstrip("0")
    return len(digits)


@given(st.decimals(Decimal("1e-9"), Decimal("1e8"), allow_nan=False, allow_infinity=False))
def test_no_dose_is_zero_and_none_has_more_than_four_figures_after_the_point(value: Decimal) -> None:
    text = d.dose_number(value)
    assert text != "0"
    if "." in text:
        assert _figures(text) <= d.SIGNIFICANT_FIGURES
    assert Decimal(text.replace(",", "")) == pytest.approx(value, rel=Decimal("0.0005"))


@given(st.decimals(Decimal("1e-6"), Decimal("1000"), allow_nan=False, allow_infinity=False))
def test_no_volume_reads_zero(value: Decimal) -> None:
    assert d.volume_number(value) != "0"


def test_a_bag_too_small_reads_in_plain_words_and_keeps_its_id_for_logs() -> None:
    from fhir_desens.errors import SafetyViolation
    from fhir_desens.protocol.calculate import PlanRequest, compute_plan
    from fhir_desens.protocol.library import builtin_protocols
    from fhir_desens.protocol.quantity import Quantity

    protocol = builtin_protocols()["iv-12-step-3-bag"]
    request = PlanRequest(
        protocol, "x", Quantity(Decimal(400), "mg"), final_rate_ml_h=Decimal(300), bag_volume_ml=Decimal(20)
    )
    with pytest.raises(SafetyViolation) as error:
        compute_plan(request)
    assert error.value.invariant_id == "INV-03"
    assert "INV-" not in str(error.value)
    assert str(error.value).startswith("Solution 1 (20 mL) is too small: steps 1-4 need")


def _too_precise(text: str) -> list[str]:
    """Numbers with a decimal point and more than the policy's significant figures."""
    return [n for n in _NUMBER.findall(text) if "." in n and _figures(n) > d.SIGNIFICANT_FIGURES]


def test_the_fhir_text_people_read_follows_the_policy_and_the_values_stay_exact() -> None:
    from datetime import UTC, datetime

    from fhir_desens.fhir.apply import ApplyContext, apply_plan
    from fhir_desens.protocol.calculate import PlanRequest, compute_plan
    from fhir_desens.protocol.library import builtin_protocols
    from fhir_desens.protocol.quantity import Quantity

    target = Decimal("804.33396359969780900596046189426578218650087912063")
    plan = compute_plan(
        PlanRequest(builtin_protocols()["iv-12-step-3-bag"], "rituximab", Quantity(target, "mg"))
    )
    bundle = apply_plan(plan, ApplyContext("Patient/p1", authored=datetime(2026, 1, 1, tzinfo=UTC)))
    resources = [e["resource"] for e in bundle["entry"]]
    texts = [r["dosageInstruction"][0]["text"] for r in resources if r["resourceType"] == "MedicationRequest"]
    group = next(r for r in resources if r["resourceType"] == "RequestGroup")
    texts += [n["text"] for n in group["note"]] + [a["description"] for a in group["action"]]
    texts += [r["code"]["text"] for r in resources if r["resourceType"] == "Medication"]
    assert texts and all(_too_precise(t) == [] for t in texts), [t for t in texts if _too_precise(t)]
    assert "804.3 mg" in group["note"][0]["text"]
    doses = [
        r["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"]
        for r in resources
        if r["resourceType"] == "MedicationRequest"
    ]
    total = Decimal(0)
    for dose in doses:
        total = EXACT.add(total, dose)
    assert total == target  # structured values exact


def test_the_signing_time_is_written_in_the_sites_zone() -> None:
    """The signed plan's "Signed" time reads like the worksheet's clock times: the site's zone, not UTC."""
    from zoneinfo import ZoneInfo

    from fhir_desens.course.readback import _when

    assert _when("2026-12-02T18:50:00+00:00", ZoneInfo("Europe/Paris")) == "2 Dec 2026 19:50 CET"
    assert _when("2026-07-02T18:50:00Z", ZoneInfo("America/New_York")) == "2 Jul 2026 14:50 EDT"
    assert _when(None, ZoneInfo("UTC")) == "—"


def test_a_safety_violation_reads_without_its_id() -> None:
    """Every SafetyViolation (plan invariants, re-plans, drug and outcome rules) reads as plain words; the
    rule's id stays on the exception for logs and JSON."""
    from fhir_desens.errors import SafetyViolation

    bare = SafetyViolation("INV-10", "re-plan step 3 exceeds the target")
    assert str(bare) == bare.for_people and "INV-" not in str(bare) and bare.invariant_id == "INV-10"
    worded = SafetyViolation("OUT-1", "detail", "Nothing was written.")
    assert str(worded) == "Nothing was written." and worded.detail == "detail"
