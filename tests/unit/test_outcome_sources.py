"""The tolerance window from FHIR evidence (administrations, order schedules) and the next course's start."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from fhir_desens.course.outcome.last_dose import administration_doses, names_drug, scheduled_doses
from fhir_desens.course.outcome.next_course import next_course
from fhir_desens.drugs.tolerance import DoseEvidence, DoseSource, ToleranceStatus, assess
from fhir_desens.protocol.crossreactivity import DrugRef
from fhir_desens.protocol.library import builtin_protocols
from tests.unit.outcome_data import hives_at_step_11, outcome

BACTRIM = DrugRef("sulfamethoxazole-trimethoprim")
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def administration(
    when: str, *, status: str = "completed", drug: str = "Bactrim DS 800/160 mg", **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": f"ma-{when}",
        "status": status,
        "medicationCodeableConcept": {"text": drug},
        "effectiveDateTime": when,
    }
    resource.update(extra)
    return resource


def order(
    timing: dict[str, Any], *, status: str = "active", drug: str = "co-trimoxazole 960 mg"
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": "mr-1",
        "status": status,
        "intent": "order",
        "authoredOn": "2026-12-01T08:00:00Z",
        "medicationCodeableConcept": {"text": drug},
        "dosageInstruction": [{"timing": timing}],
    }


# -- EHR administrations ------------------------------------------------------------------------------


@pytest.mark.requirement("TOL-2")
def test_the_window_from_the_ehrs_administrations() -> None:
    doses = administration_doses(
        [
            administration("2026-12-02T08:00:00Z"),
            administration("2026-12-02T20:00:00+00:00"),
            administration("2026-12-03T08:00:00Z", status="not-done"),  # not given
            administration("2026-12-02T23:00:00Z", drug="Vancomycin 1 g"),  # another drug
            administration("2026-12-02T22:00:00"),  # no time zone: not evidence
        ],
        BACTRIM,
    )
    assert [d.at.hour for d in doses] == [8, 20]
    assert {d.source for d in doses} == {DoseSource.EHR_ADMINISTRATION}
    result = assess(BACTRIM, doses, NOW)
    assert result.status is ToleranceStatus.GREEN
    assert (
        result.last_dose is not None
        and result.last_dose.reference == "MedicationAdministration/ma-2026-12-02T20:00:00+00:00"
    )
    assert "the EHR's medication administrations" in result.reasons[1]


def test_an_administration_period_counts_at_its_end_and_a_contained_medication_names_the_drug() -> None:
    resource = administration("x")
    del resource["effectiveDateTime"], resource["medicationCodeableConcept"]
    resource["effectivePeriod"] = {"start": "2026-12-02T08:00:00Z", "end": "2026-12-02T09:00:00Z"}
    resource["contained"] = [{"resourceType": "Medication", "id": "m", "code": {"text": "Septra DS"}}]
    resource["medicationReference"] = {"reference": "#m"}
    [dose] = administration_doses([resource], BACTRIM)
    assert dose.at == datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def test_drug_names_match_by_ingredient_or_words() -> None:
    assert names_drug(DrugRef("Rocephin (ceftriaxone) 2 g"), DrugRef("ceftriaxone"))
    assert not names_drug(DrugRef("cefazolin"), DrugRef("ceftriaxone"))
    assert names_drug(DrugRef("drug x 10 mg"), DrugRef("drug x"))
    assert not names_drug(None, DrugRef("drug x"))


# -- the order schedule -----------------------------------------------------------------------------------


@pytest.mark.requirement("TOL-2")
def test_the_window_from_the_order_schedule_is_a_plan_never_green() -> None:
    timing = {
        "repeat": {
            "frequency": 1,
            "period": Decimal("1"),
            "periodUnit": "d",
            "boundsPeriod": {"start": "2026-12-01T08:00:00Z"},
        }
    }
    doses = scheduled_doses([order(timing)], BACTRIM, NOW + timedelta(days=2))
    assert [d.at.day for d in doses] == [1, 2, 3, 4, 5]
    assert {d.source for d in doses} == {DoseSource.ORDER_SCHEDULE}
    result = assess(BACTRIM, doses, NOW)
    assert result.status is ToleranceStatus.AMBER  # scheduled at 08:00 today, 1 h ago: but only a plan
    assert result.last_dose is not None and result.last_dose.at == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    assert "plan, not proof" in " ".join(result.reasons)


def test_explicit_event_times_and_bounds_end_are_read() -> None:
    timing = {
        "event": ["2026-12-02T10:00:00Z"],
        "repeat": {
            "frequency": 2,
            "period": 1,
            "periodUnit": "d",
            "boundsPeriod": {"start": "2026-12-02T08:00:00Z", "end": "2026-12-03T08:00:00Z"},
        },
    }
    doses = scheduled_doses([order(timing)], BACTRIM, NOW)
    assert sorted(d.at.strftime("%d %H") for d in doses) == ["02 08", "02 10", "02 20", "03 08"]


@pytest.mark.parametrize("status", ["draft", "cancelled", "entered-in-error", "stopped"])
def test_orders_that_are_not_in_force_are_no_plan(status: str) -> None:
    timing = {"event": ["2026-12-02T10:00:00Z"]}
    assert scheduled_doses([order(timing, status=status)], BACTRIM, NOW) == []


def test_a_malformed_schedule_gives_nothing_rather_than_a_guess() -> None:
    for repeat in (
        {"frequency": 0, "period": 1, "periodUnit": "d"},
        {"period": "often", "periodUnit": "d"},
        {"period": 1, "periodUnit": "mo"},
    ):
        assert scheduled_doses([order({"repeat": repeat})], BACTRIM, NOW) == []


# -- all three sources together ------------------------------------------------------------------------------


@pytest.mark.requirement("TOL-2")
def test_the_session_record_then_administrations_then_the_schedule() -> None:
    session = DoseEvidence(
        datetime(2026, 12, 2, 13, 0, tzinfo=UTC),
        DoseSource.APP_RECORD,
        "session s-1",
        "tmp-smx-oral-hourly",
    )
    given = administration_doses([administration("2026-12-02T13:00:00Z")], BACTRIM)
    planned = scheduled_doses([order({"event": ["2026-12-03T08:00:00Z"]})], BACTRIM, NOW)
    result = assess(BACTRIM, [*planned, *given, session], NOW)
    assert result.source is DoseSource.APP_RECORD  # same time as the administration: our record first
    assert (
        result.status is ToleranceStatus.AMBER
    )  # 20 h after 13:00, the window (24 h) is in its last quarter
    assert result.protocol == "tmp-smx-oral-hourly"


# -- the next course ------------------------------------------------------------------------------------------


def test_no_reaction_means_the_same_plan_and_no_suggestion() -> None:
    course = next_course(outcome(), builtin_protocols())
    assert course.suggested is None
    assert course.same.protocol_id == "iv-12-step-3-bag"
    assert "full dose given (12 steps); breakthrough reaction: none." in course.last_session


def test_a_mild_reaction_at_step_11_suggests_an_intermediate_step_before_it() -> None:
    course = next_course(outcome(reactions=(hives_at_step_11(),)), builtin_protocols())
    assert course.suggested is not None
    assert course.suggested.insert_before == (11,)
    assert course.suggested.label == "Add an intermediate step before step 11"
    assert [c.protocol_id for c in course.alternatives] == ["iv-16-step-4-bag"]
    assert course.choices[-1] == course.same  # the allergist can leave it
    assert "grade 1 (mild, skin and mucosa) at step 11" in course.last_session


def test_a_moderate_reaction_or_a_stopped_session_suggests_the_16_step_protocol_first() -> None:
    moderate = dataclasses.replace(hives_at_step_11(), severity="moderate", grade="grade 2 (moderate)")
    for o in (outcome(reactions=(moderate,)), outcome(completed=False, reactions=(hives_at_step_11(),))):
        course = next_course(o, builtin_protocols())
        assert course.suggested is not None and course.suggested.protocol_id == "iv-16-step-4-bag"
        assert course.alternatives[0].insert_before == (11,)


def test_oral_protocols_get_no_inserted_step() -> None:
    o = dataclasses.replace(
        outcome(
            reactions=(dataclasses.replace(hives_at_step_11(), step=4),), drug="sulfamethoxazole-trimethoprim"
        ),
        protocol_id="tmp-smx-oral-hourly",
        steps_planned=6,
        steps_completed=6,
    )
    course = next_course(o, builtin_protocols())
    assert course.suggested is None
    assert "at step 4" in course.last_session
