"""What other parts need from a session record: a summary per session (pure).

The allergy write-back and the tolerance window (issue 13) read finished sessions from here: drug, dose,
protocol, steps planned and given, times, and each breakthrough reaction with its grade and coded
symptoms.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_desens.course.bedside.reactions import SNOMED
from fhir_desens.course.bedside.state import SessionState
from fhir_desens.protocol import display as shown


@dataclass(frozen=True)
class ReactionSummary:
    onset: datetime
    row: int
    protocol_step: int | None
    grade: str  # Brown 2004: mild | moderate | severe (also the R4 AllergyIntolerance.reaction.severity)
    phenotype: str
    manifestations: tuple[dict[str, str], ...]  # {system, code, display, text}: text in the flowsheet's words
    resolved_at: datetime | None
    resume_option: str | None


@dataclass(frozen=True)
class SessionSummary:
    session_id: str
    patient: str
    encounter: str | None
    drug: str
    drug_rxnorm: tuple[str, ...]
    dose: str  # the target as displayed, e.g. "400 mg"
    delivered: Decimal
    dose_unit: str
    protocol_id: str
    protocol_title: str
    protocol_version: str
    request_group: str | None
    steps_planned: int  # rows of the session's schedule (after any re-plan)
    steps_completed: int
    phase: (
        str  # not-started, checklist, ready, running, paused, between-steps, observation, completed, stopped
    )
    completed: bool
    started_at: datetime | None
    first_dose_at: datetime | None
    last_dose_at: datetime | None  # the end of the last step given
    ended_at: datetime | None  # the completion entry's time
    reactions: tuple[ReactionSummary, ...]


def summarize(state: SessionState) -> SessionSummary:
    context: dict[str, Any] = state.context
    draft: dict[str, Any] = context.get("draft") or {}
    plan = state.plan
    completed_rows = {s.row.number for s in state.segments if s.status == "completed"}
    ends = [s.ended_at for s in state.segments if s.ended_at is not None]
    return SessionSummary(
        session_id=state.session_id,
        patient=str(context.get("patient") or ""),
        encounter=context.get("encounter"),
        drug=plan.drug,
        drug_rxnorm=tuple(str(c) for c in draft.get("drug_rxnorm") or ()),
        dose=shown.dose_text(plan.target_dose.value, plan.dose_unit),
        delivered=state.delivered,
        dose_unit=plan.dose_unit,
        protocol_id=plan.protocol.id,
        protocol_title=plan.protocol.title,
        protocol_version=plan.protocol.version,
        request_group=context.get("request_group"),
        steps_planned=len(state.rows),
        steps_completed=len(completed_rows),
        phase=state.phase,
        completed=state.phase == "completed",
        started_at=state.started_at,
        first_dose_at=state.segments[0].started_at if state.segments else None,
        last_dose_at=max(ends) if ends else None,
        ended_at=state.completion["at"] if state.completion else None,
        reactions=tuple(
            ReactionSummary(
                onset=r.onset,
                row=r.row.number,
                protocol_step=r.row.step.protocol_step,
                grade=r.grade,
                phenotype=r.phenotype,
                manifestations=tuple(  # an unverified code is left out: the words only
                    {"system": SNOMED, "code": s.code, "display": s.display, "text": s.label}
                    if s.verified
                    else {"display": s.label, "text": s.label}
                    for s in r.symptoms
                ),
                resolved_at=r.resolved_at,
                resume_option=(r.resumed or {}).get("option"),
            )
            for r in state.reactions
        ),
    )


__all__ = ["ReactionSummary", "SessionSummary", "summarize"]
