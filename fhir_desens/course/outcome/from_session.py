"""From the app's own session record (the bedside record) to the outcome and the tolerance window.

The app's own record is the most trusted source of the last dose (TOL-2): a completed session's last step
is a full dose given under the app's eyes, and the doses recorded in the app after it
(:mod:`.later_doses`) keep the window open. A session stopped before the full dose gives no tolerance and
is no dose evidence (its outcome is still written, worded as stopped).

:func:`tolerance_overview` answers, for each drug the patient was desensitized to in this app, whether
tolerance can be assumed now, from the session record, then the EHR's administrations, then the order
schedule (:mod:`.last_dose`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.course.bedside.summary import SessionSummary
from fhir_desens.course.outcome.last_dose import ehr_doses, names_drug
from fhir_desens.course.outcome.later_doses import LaterDose, dose_evidence
from fhir_desens.course.outcome.record import BreakthroughReaction, CodedText, SessionOutcome
from fhir_desens.drugs.tolerance import DoseEvidence, DoseSource, ToleranceAssessment, assess
from fhir_desens.errors import InputError
from fhir_desens.protocol.crossreactivity import DrugRef
from fhir_desens.protocol.model import Protocol
from fhir_desens.protocol.risk import BROWN_GRADES

__all__ = [
    "DrugTolerance",
    "finished",
    "outcome_from_session",
    "recorded_doses",
    "session_doses",
    "tolerance_overview",
]

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
_GRADE_NUMBER = {"mild": 1, "moderate": 2, "severe": 3}
FINISHED_PHASES = ("completed", "stopped")


def finished(summaries: Iterable[SessionSummary]) -> list[SessionSummary]:
    """Sessions whose outcome can be written (completed, or stopped before the full dose)."""
    return [s for s in summaries if s.phase in FINISHED_PHASES]


def _drug(summary: SessionSummary) -> CodedText:
    if summary.drug_rxnorm:
        return CodedText(summary.drug, RXNORM, summary.drug_rxnorm[0])
    return CodedText(summary.drug)


_SEMANTIC_TAG = re.compile(
    r"\s*\((?:finding|disorder|observable entity|morphologic abnormality|symptom)\)\s*$"
)


def _plain_display(display: str) -> str:
    """'Itching (finding)' -> 'Itching': the SNOMED CT semantic tag is not for the note's reader."""
    return _SEMANTIC_TAG.sub("", display) or display


def _manifestation(recorded: Mapping[str, str]) -> CodedText:
    """A symptom as the flowsheet words it ("Wheals / hives", also for a code no longer offered), with its
    code and the code's own display ("Wheal") for the chart's coding."""
    display = _plain_display(recorded.get("display") or recorded.get("code") or "reaction")
    text = recorded.get("text") or display
    return CodedText(
        text,
        recorded.get("system"),
        recorded.get("code"),
        display=display if display != text and recorded.get("code") else None,
    )


def _grade(severity: str) -> str:
    number = _GRADE_NUMBER.get(severity)
    if number is None:
        raise InputError("reaction.grade", f"{severity!r} is not a Brown grade", "mild, moderate, severe")
    return f"Brown grade {number}, {BROWN_GRADES[number]}"


def outcome_from_session(
    summary: SessionSummary,
    *,
    author: str | None = None,
    author_name: str = "",
    protocols: Mapping[str, Protocol] | None = None,
) -> SessionOutcome:
    """The outcome of a finished session, confirmed by ``author`` (``Practitioner/<id>``); ``protocols``
    gives the protocol's own step count for the note (the schedule may have grown after a reaction)."""
    if summary.phase not in FINISHED_PHASES:
        raise InputError(
            "session", f"the session is {summary.phase}, not finished: its outcome cannot be written yet"
        )
    ended = summary.ended_at or summary.last_dose_at or summary.started_at
    if ended is None:
        raise InputError("session", "the session has no end time")
    reactions = tuple(
        BreakthroughReaction(
            step=r.protocol_step or r.row,
            grade=_grade(r.grade),
            severity=r.grade,
            manifestations=tuple(_manifestation(m) for m in r.manifestations)
            or (CodedText(f"{r.phenotype} reaction"),),
            onset=r.onset,
        )
        for r in summary.reactions
    )
    return SessionOutcome(
        session_id=summary.session_id,
        patient=summary.patient,
        drug=_drug(summary),
        dose=summary.dose,
        steps_planned=summary.steps_planned,
        steps_completed=summary.steps_completed if not summary.completed else summary.steps_planned,
        completed=summary.completed,
        ended_at=ended,
        started_at=summary.started_at if summary.started_at and summary.started_at <= ended else None,
        protocol_id=summary.protocol_id,
        protocol_title=summary.protocol_title,
        protocol_version=summary.protocol_version,
        reactions=reactions,
        encounter=summary.encounter,
        author=author,
        author_name=author_name,
        protocol_steps=len(protocols[summary.protocol_id].steps)
        if protocols and summary.protocol_id in protocols
        else None,
    )


def _drug_ref(summary: SessionSummary) -> DrugRef:
    return DrugRef(summary.drug, summary.drug_rxnorm)


def session_doses(summaries: Iterable[SessionSummary], drug: DrugRef) -> list[DoseEvidence]:
    """The full doses given in completed sessions of ``drug`` (at the end of their last step)."""
    doses = []
    for summary in summaries:
        when = summary.last_dose_at or summary.ended_at
        if summary.completed and when is not None and names_drug(_drug_ref(summary), drug):
            doses.append(
                DoseEvidence(
                    when, DoseSource.APP_RECORD, "last step of the desensitization", summary.protocol_id
                )
            )
    return doses


def recorded_doses(later: Iterable[LaterDose], drug: DrugRef) -> list[DoseEvidence]:
    """The doses of ``drug`` recorded in the app after a desensitization (not those entered in error)."""
    return dose_evidence(dose for dose in later if names_drug(dose.drug_ref, drug))


@dataclass(frozen=True)
class DrugTolerance:
    drug: str
    assessment: ToleranceAssessment
    unavailable: tuple[str, ...]  # sources that could not be read
    last_session: SessionSummary
    #: the newest completed session of the drug: doses given after it keep the tolerance (None: none completed)
    last_completed: SessionSummary | None = None


def tolerance_overview(
    client: FhirClient | None,
    summaries: Sequence[SessionSummary],
    patient: str,
    now: datetime,
    tz: tzinfo | None = None,
    later: Sequence[LaterDose] = (),
) -> list[DrugTolerance]:
    """For each drug desensitized in this app (newest session first), the tolerance window now.

    The app's own record (the sessions, and ``later``: the doses recorded in the app after them) comes
    first; ``client`` None skips the EHR sources (said so in ``unavailable``).
    """
    overview: list[DrugTolerance] = []
    seen: list[DrugRef] = []
    for summary in sorted(summaries, key=lambda s: s.started_at or now, reverse=True):
        if summary.phase not in FINISHED_PHASES:
            continue
        drug = _drug_ref(summary)
        if any(names_drug(drug, known) for known in seen):
            continue
        seen.append(drug)
        doses = session_doses(summaries, drug) + recorded_doses(later, drug)
        unavailable: tuple[str, ...] = ("the EHR was not asked",)
        if client is not None:
            chart = ehr_doses(client, patient, drug, now)
            doses.extend(chart.doses)
            unavailable = chart.unavailable
        result = assess(drug, doses, now, last_protocol=summary.protocol_id, tz=tz)
        completed = [s for s in summaries if s.completed and names_drug(_drug_ref(s), drug)]
        newest = max(completed, key=lambda s: s.started_at or now, default=None)
        overview.append(DrugTolerance(summary.drug, result, unavailable, summary, newest))
    return overview
