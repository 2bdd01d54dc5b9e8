"""From the bedside record's session summaries to the outcome and the tolerance window (first source)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fhir_desens.course.bedside.summary import ReactionSummary, SessionSummary, summarize
from fhir_desens.course.outcome.from_session import (
    finished,
    outcome_from_session,
    recorded_doses,
    session_doses,
    tolerance_overview,
)
from fhir_desens.course.outcome.later_doses import LaterDose, MemoryDoseBook
from fhir_desens.course.outcome.wording import note_text
from fhir_desens.drugs.tolerance import DoseEvidence, DoseSource, ToleranceStatus, assess, rule_for
from fhir_desens.errors import InputError
from fhir_desens.protocol.crossreactivity import DrugRef
from tests.bedside_session import Bedside

START = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
SNOMED = "http://snomed.info/sct"


def summary(**change: object) -> SessionSummary:
    base = SessionSummary(
        session_id="s-1",
        patient="Patient/p1",
        encounter="Encounter/e1",
        drug="ceftriaxone",
        drug_rxnorm=("2193",),
        dose="2 g",
        delivered=Decimal("2"),
        dose_unit="g",
        protocol_id="iv-12-step-3-bag",
        protocol_title="IV 12-step, 3-bag rapid desensitization (BWH/Castells)",
        protocol_version="1.0.0",
        request_group="RequestGroup/rg1",
        steps_planned=12,
        steps_completed=12,
        phase="completed",
        completed=True,
        started_at=START,
        first_dose_at=START + timedelta(minutes=30),
        last_dose_at=START + timedelta(hours=6),
        ended_at=START + timedelta(hours=7),
        reactions=(),
    )
    return dataclasses.replace(base, **change)  # type: ignore[arg-type]


def reaction(grade: str = "mild", step: int | None = 11) -> ReactionSummary:
    return ReactionSummary(
        onset=START + timedelta(hours=5),
        row=12,
        protocol_step=step,
        grade=grade,
        phenotype="type-i",
        manifestations=({"system": SNOMED, "code": "126485001", "display": "Urticaria"},),
        resolved_at=None,
        resume_option="same-step",
    )


def test_a_completed_session_becomes_the_outcome_to_write() -> None:
    outcome = outcome_from_session(
        summary(reactions=(reaction(),)), author="Practitioner/a1", author_name="Dr A. Allergist"
    )
    assert outcome.completed and outcome.steps_completed == 12
    assert outcome.drug.code == "2193"
    assert outcome.encounter == "Encounter/e1"
    [r] = outcome.reactions
    assert (r.step, r.severity, r.grade) == (11, "mild", "Brown grade 1, mild (skin and mucosa)")
    assert r.manifestations[0].code == "126485001"
    text = note_text(outcome, rule_for(DrugRef("ceftriaxone")), START + timedelta(hours=8))
    assert (
        "Breakthrough reaction: Brown grade 1, mild (skin and mucosa) at step 11. "
        "Onset and signs: step 11 at 13:00 (Urticaria). Recorded by" in text
    )


def test_symptoms_read_as_the_flowsheet_words_them_also_the_old_wheal() -> None:
    """A session recorded with the old "Wheals / hives" (Wheal (finding) 247472004, no longer offered) read
    "Wheal" in the outcome's preview, note and allergy record: now the flowsheet's words, with the code and
    SNOMED CT's own display kept in the coding."""
    bedside = Bedside()
    bedside.reaction_at_step_11()  # itching and the old wheal
    outcome = outcome_from_session(summarize(bedside.state), author_name="Dr A. Allergist")
    [r] = outcome.reactions
    assert [m.text for m in r.manifestations] == ["Itching", "Wheals / hives"]
    wheal = r.manifestations[1].concept()
    assert wheal == {
        "coding": [{"system": SNOMED, "code": "247472004", "display": "Wheal"}],
        "text": "Wheals / hives",
    }
    text = note_text(outcome, rule_for(DrugRef("carboplatin")), START + timedelta(hours=9))
    assert "(Itching, Wheals / hives)" in text and "Wheal)" not in text


def test_an_inserted_step_is_named_by_its_row() -> None:
    outcome = outcome_from_session(summary(reactions=(reaction(step=None),)))
    assert outcome.reactions[0].step == 12


def test_a_stopped_session_is_written_as_stopped() -> None:
    outcome = outcome_from_session(summary(phase="stopped", completed=False, steps_completed=9))
    assert not outcome.completed and outcome.steps_completed == 9


@pytest.mark.parametrize("phase", ["running", "paused", "checklist", "observation"])
def test_a_session_still_under_way_has_no_outcome_yet(phase: str) -> None:
    with pytest.raises(InputError, match="not finished"):
        outcome_from_session(summary(phase=phase, completed=False))
    assert finished([summary(phase=phase, completed=False)]) == []


@pytest.mark.requirement("TOL-2")
def test_the_window_from_the_session_record() -> None:
    sessions = [
        summary(),
        summary(session_id="s-0", started_at=START - timedelta(days=30), phase="stopped", completed=False),
    ]
    doses = session_doses(sessions, DrugRef("ceftriaxone"))
    assert [(d.at, d.source) for d in doses] == [(START + timedelta(hours=6), DoseSource.APP_RECORD)]
    [row] = tolerance_overview(None, sessions, "Patient/p1", START + timedelta(hours=20))
    assert row.assessment.status is ToleranceStatus.GREEN
    assert row.assessment.source is DoseSource.APP_RECORD
    assert row.assessment.protocol == "iv-12-step-3-bag"
    assert row.unavailable == ("the EHR was not asked",)
    [late] = tolerance_overview(None, sessions, "Patient/p1", START + timedelta(hours=60))
    assert late.assessment.status is ToleranceStatus.RED
    assert late.assessment.headline.startswith("Re-desensitization required")


def test_one_row_per_drug_from_the_newest_session() -> None:
    sessions = [
        summary(),
        summary(
            session_id="s-2",
            started_at=START + timedelta(days=1),
            last_dose_at=START + timedelta(days=1, hours=6),
        ),
        summary(session_id="s-3", drug="carboplatin", drug_rxnorm=(), protocol_id="iv-16-step-4-bag"),
        summary(session_id="s-4", phase="running", completed=False, drug="rituximab"),
    ]
    rows = tolerance_overview(None, sessions, "Patient/p1", START + timedelta(days=1, hours=8))
    assert [r.drug for r in rows] == ["ceftriaxone", "carboplatin"]
    assert rows[0].last_session.session_id == "s-2"
    assert (
        rows[1].assessment.status is ToleranceStatus.RED and rows[1].assessment.protocol == "iv-16-step-4-bag"
    )


# -- doses given after the desensitization, recorded in the app ------------------------------------------


def later(hours: float, **change: object) -> LaterDose:
    base = LaterDose(
        dose_id=f"entry-{hours:g}".replace(".", "-") + "-0000",
        patient="Patient/p1",
        session_id="s-1",
        drug="ceftriaxone",
        drug_rxnorm=("2193",),
        amount=Decimal("2"),
        unit="g",
        given_at=START + timedelta(hours=hours),
        recorded_by="N. Nurse",
        recorded_at=START + timedelta(hours=hours, minutes=10),
    )
    return dataclasses.replace(base, **change)  # type: ignore[arg-type]


@pytest.mark.requirement("TOL-2")
def test_a_dose_recorded_after_the_desensitization_keeps_the_window_open() -> None:
    sessions = [summary()]
    doses = [later(30), later(50)]
    now = START + timedelta(hours=60)  # 54 h after the session's last step: red on the session alone
    [without] = tolerance_overview(None, sessions, "Patient/p1", now)
    assert without.assessment.status is ToleranceStatus.RED
    [row] = tolerance_overview(None, sessions, "Patient/p1", now, later=doses)
    a = row.assessment
    assert a.status is ToleranceStatus.GREEN
    assert a.source is DoseSource.APP_RECORD and a.last_dose is not None
    assert a.last_dose.at == START + timedelta(hours=50)
    assert a.reasons[1] == (
        "Last dose 4 Dec 2026 10:00 UTC, from the app's own record "
        "(2 g given after desensitization, recorded by N. Nurse)."
    )
    assert a.red_from == START + timedelta(hours=98)


@pytest.mark.requirement("TOL-2")
def test_recorded_doses_of_another_drug_do_not_count() -> None:
    other = later(30, drug="cefazolin", drug_rxnorm=("2180",))
    assert recorded_doses([other], DrugRef("ceftriaxone", ("2193",))) == []
    [row] = tolerance_overview(None, [summary()], "Patient/p1", START + timedelta(hours=60), later=[other])
    assert row.assessment.status is ToleranceStatus.RED


@pytest.mark.requirement("TOL-2")
def test_the_apps_recorded_dose_is_trusted_before_the_ehr_at_the_same_time() -> None:
    dose = later(30)
    administration = DoseEvidence(dose.given_at, DoseSource.EHR_ADMINISTRATION, "MedicationAdministration/1")
    schedule = DoseEvidence(START + timedelta(hours=40), DoseSource.ORDER_SCHEDULE, "MedicationRequest/1")
    result = assess(
        DrugRef("ceftriaxone"), [administration, schedule, dose.evidence()], START + timedelta(hours=45)
    )
    assert result.source is DoseSource.APP_RECORD  # proof outranks the later plan; ours first at a tie


@pytest.mark.parametrize(
    ("change", "field"),
    [
        # named by the dose's own field names, as every domain error is; the app maps them to its labels
        ({"amount": Decimal("0")}, "dose"),
        ({"unit": "mL"}, "dose"),
        ({"given_at": START + timedelta(hours=40)}, "given_at"),  # after it was recorded: the future
        ({"given_at": datetime(2026, 12, 3, 8, 0)}, "given_at"),  # a naive time: a program's mistake
        ({"dose_id": "x"}, "dose_id"),
        ({"drug": " "}, "drug"),
    ],
)
def test_a_recorded_dose_is_checked(change: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as raised:
        later(30, **change)
    assert raised.value.field == field


def test_a_recorded_dose_reads_as_people_write_it() -> None:
    assert later(30, amount=Decimal("960"), unit="mg").dose == "960 mg"
    assert later(30, amount=Decimal("0.5"), unit="ug").dose == "0.5 mcg"
    book = MemoryDoseBook()
    first = book.record(later(30))
    assert book.record(later(30, amount=Decimal("1"))) == first  # the same page entry records once
    assert book.doses_for("Patient/p1") == [first]
