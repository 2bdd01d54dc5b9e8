"""Hostile charts (issue 11): what an EHR may send, read without a crash and shown as checked.

Each failure the issue lists has a regression test named after it; the hypothesis suite at the end
feeds the chart readers hostile text, numbers and wrongly typed JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_desens.boundary.text import unsafe_characters
from fhir_desens.fhir.allergy import allergy_from_fhir
from fhir_desens.fhir.chart.drugs import allergen_ref, drug_candidates, drug_ref
from fhir_desens.fhir.chart.measurements import latest_body_measurements
from fhir_desens.protocol.crossreactivity import match_allergies

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
NOW = datetime(2026, 12, 2, 16, 0, tzinfo=UTC)


def order(text: str, **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": "o1",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": text},
        **fields,
    }


def allergy(text: str) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "category": ["medication"],
        "code": {"text": text},
        "patient": {"reference": "Patient/p1"},
    }


def weight(
    value: Any, when: str, unit: str = "kg", code: str | None = "kg", ident: str = "w"
) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org"}
    if code is not None:
        quantity["code"] = code
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "effectiveDateTime": when,
        "valueQuantity": quantity,
    }


def height(value: Any, when: str, unit: str = "cm") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "h",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8302-2"}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "code": unit},
    }


# --- patient safety ------------------------------------------------------------------------------


def test_spoofed_names_right_to_left_override_is_shown_and_screened_as_the_same_text():
    (candidate,) = drug_candidates([order("\u202enillicinep")], [])
    assert candidate.name == candidate.text == "nillicinep"  # what a person reads ...
    assert drug_ref(candidate).name == "nillicinep"  # ... is what screening checks


def test_spoofed_names_zero_width_characters_are_removed_so_penicillin_matches_the_allergy():
    (candidate,) = drug_candidates([order("peni\u200bcil\u2060lin G")], [])
    assert candidate.name.lower().startswith("penicillin")
    recorded = allergy_from_fhir(allergy("Peni\u200dcillin"))
    assert recorded.substance_display == "Penicillin"
    assert match_allergies(drug_ref(candidate), [allergen_ref(recorded, "a1")])


def test_future_dated_measurements_are_not_prefilled_and_the_newest_valid_one_is_with_its_date():
    measured = latest_body_measurements(
        [weight(Decimal(95), "2099-01-01", ident="future"), weight(Decimal(62), "2026-11-18")], now=NOW
    )
    assert measured.weight is not None
    assert (measured.weight.value, measured.weight.date) == (Decimal(62), "2026-11-18")
    assert any("Observation/future" in note and "future" in note for note in measured.notes)


def test_future_dated_measurements_allow_a_day_of_time_zone_slack():
    measured = latest_body_measurements([weight(Decimal(62), "2026-12-03T08:00:00+14:00")], now=NOW)
    assert measured.weight is not None and measured.notes == ()


def test_unit_disagreement_is_flagged_and_not_read_by_code():
    measured = latest_body_measurements(
        [
            weight(Decimal(150), "2026-11-20", unit="lb", code="kg", ident="mixed"),
            weight(Decimal(68), "2026-10-01"),
        ],
        now=NOW,
    )
    assert measured.weight is not None and measured.weight.value == Decimal(68)
    assert any("disagree" in note and "Observation/mixed" in note for note in measured.notes)


def test_unit_given_only_as_text_is_still_read():
    measured = latest_body_measurements(
        [weight(Decimal(150), "2026-11-20", unit="pounds", code=None)], now=NOW
    )
    assert measured.weight is not None
    assert measured.weight.value == Decimal(150) * Decimal("0.45359237")


# --- availability ----------------------------------------------------------------------------------


def test_lone_surrogate_in_chart_text_is_replaced_not_raised_later():
    (candidate,) = drug_candidates([order("Carboplatin \ud800")], [])
    candidate.name.encode("utf-8")  # would raise UnicodeEncodeError with the surrogate kept
    assert "\ufffd" in candidate.text
    recorded = allergy_from_fhir(allergy("Carbo\udfffplatin"))
    recorded.substance_display.encode("utf-8")


@pytest.mark.parametrize(
    ("observation", "kind"),
    [(height(Decimal("1e300"), "2026-11-18"), "Height"), (weight(Decimal("1e-300"), "2026-11-18"), "Weight")],
)
def test_huge_chart_numbers_never_reach_the_arithmetic(observation, kind):
    measured = latest_body_measurements([observation], now=NOW)
    assert measured.height is None and measured.weight is None
    (note,) = measured.notes
    assert note.startswith(kind) and "outside" in note


def test_huge_chart_dose_is_not_prefilled():
    dosed = order(
        "Carboplatin",
        dosageInstruction=[{"doseAndRate": [{"doseQuantity": {"value": Decimal("1e44"), "code": "mg"}}]}],
    )
    (candidate,) = drug_candidates([dosed], [])
    assert candidate.dose is None


def test_reason_reference_to_another_patients_condition_is_not_shown():
    request = order("Carboplatin", reasonReference=[{"reference": "Condition/c9"}])
    theirs = {
        "resourceType": "Condition",
        "id": "c9",
        "subject": {"reference": "Patient/other"},
        "code": {"text": "HIV"},
    }
    (candidate,) = drug_candidates([request], [], conditions={"Condition/c9": theirs}, patient="Patient/p1")
    assert candidate.indication is None


def test_big_chart_text_is_cut_and_marked():
    (candidate,) = drug_candidates([order("Carboplatin " + "x" * 100_000)], [])
    assert len(candidate.text) < 2_100
    assert "cut" in candidate.text


def test_wrongly_typed_json_from_a_non_conformant_ehr_is_tolerated():
    odd = order(
        "Carboplatin",
        status=["active"],
        dosageInstruction=[
            {"route": {"coding": [{"system": "http://snomed.info/sct", "code": ["47625008"]}]}}
        ],
        reasonReference="Condition/1",
    )
    assert drug_candidates([odd, {"status": {"a": 1}}], []) == []  # status not a code: not an order
    assert (
        latest_body_measurements(
            [{"status": ["final"], "code": {"coding": [{"system": LOINC, "code": ["29463-7"]}]}}]
        ).weight
        is None
    )
    allergy_from_fhir(
        {"resourceType": "AllergyIntolerance", "code": 5, "category": [[1]], "onsetAge": {"value": {}}}
    )


# --- property-based: hostile text and numbers -------------------------------------------------------

HOSTILE_CHARACTERS = st.sampled_from(
    [
        "\u202e",
        "\u202d",
        "\u2066",
        "\u2069",
        "\u200b",
        "\u200d",
        "\ufeff",
        "\ud800",
        "\udfff",
        "\x00",
        "\x1b",
        "\n",
        "\u2028",
        "\ufffe",
    ]
)
HOSTILE_TEXT = st.lists(st.one_of(st.characters(), HOSTILE_CHARACTERS), max_size=40).map("".join)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HOSTILE_TEXT,
    st.decimals(allow_nan=False, allow_infinity=False),
    st.just(Decimal("1e300")),
    st.just(Decimal("-1e-300")),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(HOSTILE_TEXT, inner, max_size=3)),
    max_leaves=8,
)
CHART_PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _clean(text: str) -> bool:
    return not unsafe_characters(text)


@CHART_PROPERTY
@given(name=HOSTILE_TEXT, allergen=HOSTILE_TEXT)
def test_what_is_shown_is_what_is_checked_for_any_text(name, allergen):
    recorded = allergy_from_fhir(allergy(allergen))
    ref = allergen_ref(recorded, "a1")
    assert _clean(recorded.substance_display) and ref.name == recorded.substance_display
    for candidate in drug_candidates([order(name)], [recorded]):
        assert _clean(candidate.name) and _clean(candidate.text)
        assert drug_ref(candidate).name == candidate.name
        candidate.text.encode("utf-8")
    match_allergies(drug_ref(drug_candidates([order("penicillin")], [])[0]), [ref])


@CHART_PROPERTY
@given(
    status=JSON_VALUES,
    medication=JSON_VALUES,
    dosage=JSON_VALUES,
    reason=JSON_VALUES,
    code=JSON_VALUES,
    category=JSON_VALUES,
    reaction=JSON_VALUES,
    onset=JSON_VALUES,
)
def test_chart_readers_tolerate_any_json_in_any_field(
    status, medication, dosage, reason, code, category, reaction, onset
):
    request = {
        "resourceType": "MedicationRequest",
        "status": status,
        "medicationCodeableConcept": medication,
        "dosageInstruction": dosage,
        "reasonReference": reason,
        "reasonCode": reason,
    }
    recorded = allergy_from_fhir(
        {
            "resourceType": "AllergyIntolerance",
            "code": code,
            "category": category,
            "reaction": reaction,
            "onsetAge": onset,
            "clinicalStatus": status,
            "note": reaction,
        }
    )
    for candidate in drug_candidates(
        [request, order("x", dosageInstruction=dosage)], [recorded], {"#m": medication}
    ):
        assert _clean(candidate.name)


@CHART_PROPERTY
@given(value=JSON_VALUES, unit=JSON_VALUES, when=JSON_VALUES, status=JSON_VALUES)
def test_measurements_are_plausible_or_left_out_for_any_json(value, unit, when, status):
    observation = weight(value, "2026-11-01", unit="kg", code="kg")
    observation.update(effectiveDateTime=when, status=status)
    observation["valueQuantity"]["unit"] = unit
    for reading in (weight(value, "2026-11-01"), observation):
        measured = latest_body_measurements([reading], now=NOW)
        if measured.weight is not None:
            assert Decimal("0.3") <= measured.weight.value <= Decimal(650)
