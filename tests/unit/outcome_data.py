"""Session outcomes and allergy records shared by the outcome tests (unit and integration)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir_desens.course.outcome.record import BreakthroughReaction, CodedText, SessionOutcome

SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ENDED = datetime(2026, 12, 2, 13, 30, tzinfo=UTC)
RECORDED = datetime(2026, 12, 2, 14, 5, tzinfo=UTC)

CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"


def hives_at_step_11() -> BreakthroughReaction:
    return BreakthroughReaction(
        step=11,
        grade="grade 1 (mild, skin and mucosa)",
        severity="mild",
        manifestations=(
            CodedText("Urticaria", SNOMED, "126485001"),
            CodedText("Pruritus", SNOMED, "418290006"),
        ),
        onset=datetime(2026, 12, 2, 12, 42, tzinfo=UTC),
        route=CodedText("Intravenous route", SNOMED, "47625008"),
    )


def outcome(
    patient: str = "Patient/p1",
    *,
    session: str = "session-1",
    reactions: tuple[BreakthroughReaction, ...] = (),
    completed: bool = True,
    encounter: str | None = "Encounter/e1",
    drug: str = "ceftriaxone",
) -> SessionOutcome:
    return SessionOutcome(
        session_id=session,
        patient=patient,
        drug=CodedText(drug),
        dose="2 g",
        steps_planned=12,
        steps_completed=12 if completed else 10,
        completed=completed,
        ended_at=ENDED,
        started_at=datetime(2026, 12, 2, 8, 0, tzinfo=UTC),
        protocol_id="iv-12-step-3-bag",
        protocol_title="IV 12-step, 3-bag rapid desensitization (BWH/Castells)",
        protocol_version="1.0.0",
        reactions=reactions,
        encounter=encounter,
        author_name="Dr A. Allergist",
    )


def allergy(patient: str = "Patient/p1", drug: str = "ceftriaxone", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
        "type": "allergy",
        "category": ["medication"],
        "criticality": "high",
        "code": {"text": drug},
        "patient": {"reference": patient},
        "note": [{"text": "Anaphylaxis 2019 after IV ceftriaxone."}],
        "reaction": [{"manifestation": [{"text": "Anaphylaxis"}], "severity": "severe"}],
    }
    resource.update(extra)
    return resource


def assert_status_kept(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Issue 13: the allergy stays active/confirmed with its criticality, whatever was written."""
    for element in ("clinicalStatus", "verificationStatus", "criticality", "code", "patient"):
        assert after.get(element) == before.get(element), element
    assert after["clinicalStatus"]["coding"][0]["code"] == "active"
    assert after["verificationStatus"]["coding"][0]["code"] == "confirmed"
