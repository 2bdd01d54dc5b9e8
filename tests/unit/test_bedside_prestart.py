"""The pre-start checklist as the chart informs it: each finding with its source, what the chart cannot tell
said so, and premedications given per the chart offered at the chart's time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fhir_desens.client.smart import DEFAULT_NEEDS
from fhir_desens.course.bedside.prestart import (
    CANNOT_TELL,
    NOT_GRANTED,
    Allergies,
    allergies_for,
    chart_facts,
    consent_fact,
)
from fhir_desens.errors import InputError
from fhir_desens.fhir.allergy import allergy_from_fhir
from fhir_desens.protocol.crossreactivity import DrugRef
from tests.bedside_session import NURSE, START, Bedside, carboplatin_plan

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def weight(days_ago: int, kg: str = "68") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"w{days_ago}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "effectiveDateTime": (NOW - timedelta(days=days_ago)).isoformat(),
        "valueQuantity": {
            "value": float(kg),
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }


def order(name: str, status: str = "active", id_: str = "o1") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": id_,
        "status": status,
        "medicationCodeableConcept": {"text": name},
    }


def given(name: str, minutes_ago: int, id_: str = "a1") -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": id_,
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"display": name}]},
        "effectiveDateTime": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "dosage": {"dose": {"value": 25, "unit": "mg"}},
    }


def facts(**chart: Any) -> dict[str, Any]:
    found = chart_facts(
        carboplatin_plan(),
        observations=chart.get("observations", []),
        requests=chart.get("requests", []),
        administrations=chart.get("administrations", []),
        consents=chart.get("consents"),
        now=NOW,
        per_body_size=chart.get("per_body_size", True),
        allergies=chart.get("allergies", Allergies()),
    )
    return {f.label if f.item == "premedication" else f.item: f for f in found}


def test_each_finding_names_its_source_and_what_the_chart_cannot_tell_says_so() -> None:
    got = facts(
        observations=[weight(3)],
        requests=[order("famotidine 20 mg IV", id_="famo"), order("EPINEPHrine 0.3 mg IM", id_="epi")],
        administrations=[given("diphenhydramine", 40, "dph")],
        consents=[{"resourceType": "Consent", "id": "c1", "status": "active", "dateTime": NOW.isoformat()}],
    )
    assert (
        got["weight"].ok
        and got["weight"].source == "Observation/w3"
        and "3 days ago" in got["weight"].finding
    )
    premeds = {f.name: f for f in got.values() if f.item == "premedication"}
    assert (
        premeds["diphenhydramine"].ok and premeds["diphenhydramine"].source == "MedicationAdministration/dph"
    )
    assert premeds["diphenhydramine"].given_at == NOW - timedelta(minutes=40)
    assert premeds["diphenhydramine"].dose == "25 mg"
    assert premeds["famotidine"].ok is None and premeds["famotidine"].source == "MedicationRequest/famo"
    assert got["emergency-kit"].ok and got["emergency-kit"].source == "MedicationRequest/epi"
    assert got["consent"].ok and got["consent"].source == "Consent/c1"
    assert got["iv-access"].source == CANNOT_TELL and got["one-to-one-nurse"].source == CANNOT_TELL


def test_an_old_weight_missing_orders_and_an_old_consent_are_flagged() -> None:
    got = facts(
        observations=[weight(45)],
        requests=[order("epinephrine", status="stopped")],
        administrations=[given("diphenhydramine", 26 * 60)],  # yesterday's dose is not this session's
        consents=[{"resourceType": "Consent", "id": "c0", "status": "active", "dateTime": "2026-06-01"}],
    )
    assert got["weight"].ok is False and "weigh the patient" in got["weight"].finding
    premeds = [f for f in got.values() if f.item == "premedication"]
    assert premeds and all(f.source == "not in the chart" for f in premeds)
    required = [f for f in premeds if f.name in ("diphenhydramine", "famotidine")]
    # not ordered yet is what every signed plan starts with (it orders the steps only): said, not flagged red
    assert required and all(f.ok is None for f in required)
    assert all(
        f.finding.startswith("not ordered in the EHR yet (the signed plan lists it, ") for f in required
    )
    assert all("ask the prescriber to order it there" in f.finding for f in required)
    assert all(f.ok is None for f in premeds if f not in required)  # conditional ones: given only if ...
    assert got["emergency-kit"].ok is False
    assert got["consent"].ok is None and "confirm today's" in got["consent"].finding
    assert facts(observations=[weight(45)], per_body_size=False)["weight"].ok is True  # a fixed dose


def test_consents_the_chart_could_not_give_are_said_so() -> None:
    assert facts(consents=None)["consent"].source == CANNOT_TELL


def test_a_premedication_given_before_the_session_was_opened_is_recorded_at_its_time() -> None:
    bedside = Bedside()
    bedside.start()
    before = (START - timedelta(minutes=30)).isoformat()
    bedside.record(
        "checklist",
        item="premedication",
        name="famotidine",
        dose="20 mg",
        at=before,
        source="MedicationAdministration/x",
    )
    assert bedside.state.premedications[-1]["at"] == START - timedelta(minutes=30)
    assert bedside.state.premedications[-1]["source"] == "MedicationAdministration/x"
    with pytest.raises(InputError) as refused:
        bedside.record(
            "checklist", item="premedication", name="famotidine", at=(START - timedelta(hours=25)).isoformat()
        )
    assert refused.value.field == "at"
    with pytest.raises(InputError):  # only premedications may be dated before the session
        bedside.record("checklist", item="consent", author=NURSE, at=before)
    bedside.record("checklist", item="one-to-one-nurse")  # recorded when confirmed, not required
    assert (
        "one-to-one-nurse" in bedside.state.checklist
        and "one-to-one-nurse" not in bedside.state.missing_checklist()
    )


def test_a_conditional_premedication_not_ordered_reads_as_the_protocol_words_it() -> None:
    """The checklist said "aspirin 325 mg PO: not ordered (given only if flushing occurred in the index
    reaction)": neither given nor a rule. Now the protocol's timing and condition, and what to do."""
    got = [f for f in facts(requests=[]).values() if f.item == "premedication" and f.name == "aspirin"]
    [aspirin] = got
    assert aspirin.ok is None and "given only" not in aspirin.finding
    assert aspirin.finding == (
        "not ordered. The protocol gives it the night before and the morning of the desensitization, only "
        "if flushing occurred in the index reaction: if that applies, ask the prescriber for the order"
    )


def _premedications(allergies: Allergies) -> dict[str, Any]:
    return {f.name: f for f in facts(allergies=allergies).values() if f.item == "premedication"}


def _fixture_allergies(name: str) -> list[Any]:
    bundle = json.loads(
        (Path(__file__).parents[2] / "fixtures" / "patients" / f"{name}.json").read_text("utf-8")
    )
    resources = [e["resource"] for e in bundle["entry"]]
    return [allergy_from_fhir(r) for r in resources if r["resourceType"] == "AllergyIntolerance"]


def test_a_conditional_premedication_follows_the_recorded_index_reaction() -> None:
    """Carboplatin's index reaction was "Facial and upper-chest flushing" and chest tightness: the checklist
    said aspirin was "given only if flushing occurred", as if it had not. Now it asks for the order."""
    plan = carboplatin_plan()
    known = allergies_for(plan, DrugRef("carboplatin", ("40048",)), _fixture_allergies("carboplatin-ovarian"))
    premeds = _premedications(known)
    assert premeds["aspirin"].ok is False and premeds["aspirin"].source == "allergy list"
    assert premeds["aspirin"].finding == (
        "not ordered, but the index reaction included flushing: the protocol gives it the night before and "
        "the morning of the desensitization; ask the prescriber for the order"
    )
    assert "included respiratory symptoms" in premeds["montelukast"].finding  # chest tightness
    without = allergies_for(plan, DrugRef("carboplatin", ("40048",)), [])
    assert _premedications(without)["aspirin"].ok is None  # nothing recorded: the protocol's words


def test_a_premedication_the_patient_is_allergic_to_is_not_to_be_given() -> None:
    """A patient with aspirin-exacerbated respiratory disease must not get aspirin as a premedication."""
    plan = carboplatin_plan()
    aerd = allergies_for(plan, DrugRef("carboplatin", ("40048",)), _fixture_allergies("aspirin-aerd"))
    aspirin = _premedications(aerd)["aspirin"]
    assert aspirin.ok is False and aspirin.finding.startswith("do not give: allergy to Aspirin")
    assert "alternative" in aspirin.finding
    assert _premedications(aerd)["montelukast"].ok is None  # no carboplatin reaction on file: cannot tell


def test_a_premedication_given_per_the_chart_is_timed_as_every_page_writes_times() -> None:
    """The finding said "given per the chart at 2026-12-02T08:20+00:00" beside pages writing "2 Dec 2026 08:20 UTC"."""
    got = facts(administrations=[given("diphenhydramine", 40, "dph")])
    premeds = {f.name: f for f in got.values() if f.item == "premedication"}
    assert premeds["diphenhydramine"].finding == "given per the chart at 2 Dec 2026 08:20 UTC"


def test_the_weight_and_consent_dates_read_as_every_page_writes_dates() -> None:
    got = facts(
        observations=[weight(3)],
        consents=[
            {"resourceType": "Consent", "id": "c1", "status": "active", "dateTime": "2026-11-30T10:00:00Z"}
        ],
    )
    assert "measured 29 Nov 2026 (3 days ago)" in got["weight"].finding
    assert "a consent dated 30 Nov 2026 is on file" in got["consent"].finding


def test_consents_not_read_say_why_and_what_the_nurse_does() -> None:
    """Walk session 8: "the chart's consents could not be read" on a sandbox launch (the app asked for no
    Consent scope), and nothing said what to do: check the signed form, else call the allergist."""
    not_granted = consent_fact(None, NOW, NOT_GRANTED)
    assert not_granted.finding.startswith("this launch may not read the chart's consents: check the signed")
    not_answered = consent_fact(None, NOW)
    assert not_answered.finding.startswith(
        "the chart's consents could not be read just now: check the signed"
    )
    for fact in (not_granted, not_answered, consent_fact([], NOW)):
        assert "consent form (on paper or scanned into the notes) before step 1" in fact.finding
        assert "call the allergist" in fact.finding and fact.ok is None
    assert "Consent" in {n.resource_type for n in DEFAULT_NEEDS if "r" in n.permissions}
