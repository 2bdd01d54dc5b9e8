"""Risk pre-filled from the chart, each answer with its source (RISK-CHART-1); unknown is never no (RISK-CHART-2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_desens.fhir.allergy import allergy_from_fhir
from fhir_desens.fhir.risk_chart import risk_from_chart, said_once
from fhir_desens.protocol.crossreactivity import DrugRef
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.risk import suggest_protocol

FIXTURES = Path(__file__).parents[2] / "fixtures" / "patients"
LIBRARY = builtin_protocols()


def chart(name: str) -> dict[str, list[dict[str, Any]]]:
    bundle = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle["entry"]:
        by_type.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    return by_type


def risk_of(name: str):
    resources = chart(name)
    allergies = [allergy_from_fhir(r) for r in resources.get("AllergyIntolerance", [])]
    return risk_from_chart(
        [a for a in allergies if a.is_drug and a.is_current],
        resources.get("Condition", []),
        resources.get("MedicationRequest", []),
        resources.get("Observation", []),
    )


@pytest.mark.invariant("RISK-CHART-1")
def test_the_paclitaxel_patient_is_prefilled_high_risk_with_sources() -> None:
    risk = risk_of("paclitaxel-high-risk")
    assert risk.grade.value == 3
    assert risk.hypotension_or_hypoxia.value is True
    assert any("68/40" in s for s in risk.hypotension_or_hypoxia.sources)
    assert risk.cardiac_or_beta_blocker.value is True
    sources = " | ".join(risk.cardiac_or_beta_blocker.sources)
    assert "I25.10" in sources and "Metoprolol" in sources
    assert risk.fev1_below_80.value is None  # not measured: unknown, not "no"
    suggestion = suggest_protocol(
        risk.risk_answers(), DrugRef("paclitaxel"), "intravenous", LIBRARY, risk.pointers
    )
    assert suggestion.high_risk and suggestion.protocol_id == "iv-16-step-4-bag"


@pytest.mark.invariant("RISK-CHART-1")
def test_a_measured_fev1_answers_the_criterion_either_way() -> None:
    risk = risk_of("aspirin-aerd")
    assert risk.fev1_below_80.value is True
    assert "78%" in risk.fev1_below_80.sources[0] and "20152-5" in risk.fev1_below_80.sources[0]
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "20152-5"}]},
        "effectiveDateTime": "2026-11-30",
        "valueQuantity": {"value": 91, "unit": "%", "code": "%"},
    }
    assert risk_from_chart([], observations=[observation]).fev1_below_80.value is False


@pytest.mark.invariant("RISK-CHART-2")
def test_an_empty_chart_answers_nothing() -> None:
    risk = risk_from_chart([])
    assert [a.value for a in risk.answers] == [None, None, None, None]
    assert risk.pointers == ()


@pytest.mark.invariant("RISK-CHART-2")
def test_anaphylaxis_without_recorded_hypotension_points_to_the_criterion_without_answering_it() -> None:
    risk = risk_of("penicillin-pregnancy")
    assert risk.hypotension_or_hypoxia.value is None
    assert risk.hypotension_or_hypoxia.pointer and "Anaphylaxis" in risk.hypotension_or_hypoxia.pointer
    assert "hypotension_or_hypoxia" in risk.pointers


def test_negated_findings_are_not_findings() -> None:
    allergy = allergy_from_fhir(
        {
            "resourceType": "AllergyIntolerance",
            "code": {"text": "carboplatin"},
            "category": ["medication"],
            "note": [{"text": "Flushing and urticaria, no hypotension, without desaturation."}],
        }
    )
    assert risk_from_chart([allergy]).hypotension_or_hypoxia.value is None


def test_inactive_or_refuted_conditions_and_stopped_orders_do_not_count() -> None:
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"code": "resolved"}]},
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I25.10"}],
            "text": "CAD",
        },
    }
    order = {
        "resourceType": "MedicationRequest",
        "status": "stopped",
        "medicationCodeableConcept": {"text": "atenolol 50 mg"},
    }
    assert risk_from_chart([], [condition], [order]).cardiac_or_beta_blocker.value is None
    active = {**order, "status": "active"}
    assert risk_from_chart([], [], [active]).cardiac_or_beta_blocker.value is True


@pytest.mark.invariant("RISK-CHART-2")
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "resourceType": st.just("Condition"),
                "code": st.fixed_dictionaries({"text": st.text(max_size=40)}),
            }
        ),
        max_size=4,
    ),
    st.lists(
        st.fixed_dictionaries(
            {
                "resourceType": st.just("MedicationRequest"),
                "status": st.sampled_from(["active", "stopped", "on-hold"]),
                "medicationCodeableConcept": st.fixed_dictionaries({"text": st.text(max_size=40)}),
            }
        ),
        max_size=4,
    ),
)
def test_the_chart_never_answers_no_for_cardiac_risk(conditions, orders) -> None:
    answer = risk_from_chart([], conditions, orders).cardiac_or_beta_blocker
    assert answer.value in (True, None)
    assert (answer.value is True) == bool(answer.sources)


@pytest.mark.parametrize("name", ["paclitaxel-high-risk", "rituximab-lymphoma", "carboplatin-ovarian"])
def test_each_fact_of_the_index_reaction_is_shown_once(name: str) -> None:
    """A reading in a manifestation, its description and a note ("Blood pressure 68/40", "blood pressure
    68/40 (systolic below 90)" twice) is one fact: the start form showed it three or four times."""
    risk = risk_of(name)
    for answer in (risk.grade, risk.hypotension_or_hypoxia):
        facts = [s.split(": ", 1)[-1].casefold() for s in answer.sources]
        assert len(facts) == len(set(facts)), answer.sources
        for reading in ("68/40", "86/50", "84%"):
            assert sum(reading in s for s in answer.sources) <= 1, answer.sources
    if name == "paclitaxel-high-risk":
        assert risk.hypotension_or_hypoxia.sources == (
            "allergy to Paclitaxel, reaction: blood pressure 68/40 (systolic below 90)",
            "allergy to Paclitaxel, reaction: SpO2 84% (at or below 92%)",
        )


@pytest.mark.invariant("RISK-CHART-1")
def test_the_index_reaction_is_named_once_before_its_facts() -> None:
    """The start form read "allergy to Paclitaxel, reaction severity 'severe'; allergy to Paclitaxel, reaction:
    blood pressure 68/40 ...; allergy to Paclitaxel, reaction: SpO2 84% ...": the place once, then the facts."""
    risk = risk_of("paclitaxel-high-risk")
    assert risk.grade.evidence == (
        "Allergy to Paclitaxel, reaction: severity 'severe'; blood pressure 68/40 (systolic below 90); "
        "SpO2 84% (at or below 92%)",
    )
    assert risk.cardiac_or_beta_blocker.evidence == (
        "Condition: Coronary artery disease, drug-eluting stent to LAD 2023; LVEF 50% (ICD-10-CM I25.10)",
        "Active order: Metoprolol succinate 50 mg extended-release tablet (beta-blocker)",
    )
    assert risk_of("aspirin-aerd").fev1_below_80.evidence == (
        "Observation: FEV1 78% of predicted (LOINC 20152-5), 10 Nov 2026",  # the day as every page writes it
    )


def test_facts_from_one_place_are_said_once_in_the_order_found() -> None:
    assert said_once(["a: x", "b: y", "a: z", "a: x", "no place"]) == ("A: x; z", "B: y", "No place")
