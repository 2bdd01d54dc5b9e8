"""The next course starts from the last session: what happened, and a change the allergist can take or leave.

Nothing here changes a plan by itself: the planning page shows the last session and the suggested change,
and the allergist chooses (the suggestion, an alternative, or the same plan again).

What is suggested (clinical.md §1.6-1.7; the rule is a DESIGN built on these):

* no breakthrough reaction: the same protocol, no change;
* a reaction at step *n* of an infusion protocol: an intermediate step before step *n* (reactions cluster at
  the last steps; extra intermediate steps are the published way to resume, Horizon Health [S25]; Lee 2004
  modified the protocol for later courses [S2]), and the 16-step protocol as the alternative when the last
  one had fewer steps;
* a moderate or severe reaction, or a session stopped before the full dose: the 16-step, 4-bag protocol for
  high-risk patients first (BWH criteria, PLAN-RISK-1), with the intermediate step as the alternative;
* discrete-dose protocols (oral, fixed tables) cannot take an inserted step: the same protocol, and the
  reaction is shown for the allergist to decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo

from fhir_desens.course.outcome.record import SessionOutcome
from fhir_desens.course.outcome.wording import reaction_summary
from fhir_desens.protocol.display import date_text
from fhir_desens.protocol.model import Protocol, ProtocolKind
from fhir_desens.protocol.risk import HIGH_RISK_IV

__all__ = ["CourseChange", "NextCourse", "next_course"]

_SOURCES = (
    "clinical.md §1.7: restart before the step that caused the reaction, with or without extra intermediate "
    "steps (Horizon Health Network guideline [S25]); Lee 2004 modified the protocol for later courses [S2]; "
    "§1.6: the 16-step, 4-bag protocol for high-risk patients"
)


@dataclass(frozen=True)
class CourseChange:
    id: str
    label: str
    protocol_id: str
    insert_before: tuple[int, ...] = ()
    why: str = ""


@dataclass(frozen=True)
class NextCourse:
    last_session: str  # what happened, in one sentence
    same: CourseChange  # the last plan again
    suggested: CourseChange | None  # the allergist can take it or leave it
    alternatives: tuple[CourseChange, ...] = ()
    sources: str = _SOURCES

    @property
    def choices(self) -> tuple[CourseChange, ...]:
        first = (self.suggested,) if self.suggested else ()
        return (*first, *self.alternatives, self.same)


def _last_session(outcome: SessionOutcome, tz: tzinfo | None) -> str:
    ended = outcome.ended_at.astimezone(tz) if tz is not None else outcome.ended_at
    progress = (
        f"full dose given ({outcome.steps_planned} steps)"
        if outcome.completed
        else f"stopped after step {outcome.steps_completed} of {outcome.steps_planned}"
    )
    return (
        f"Last session {date_text(ended.date())}: {outcome.drug.text} {outcome.dose}, {outcome.protocol_title}, "
        f"{progress}; breakthrough reaction: {reaction_summary(outcome, tz)}."
    )


def next_course(
    outcome: SessionOutcome, protocols: Mapping[str, Protocol], tz: tzinfo | None = None
) -> NextCourse:
    """What the next course's plan starts from, given the last session and the protocol library."""
    last = protocols.get(outcome.protocol_id)
    same = CourseChange("same", f"Same protocol as last time ({outcome.protocol_title})", outcome.protocol_id)
    summary = _last_session(outcome, tz)
    reaction = outcome.first_reaction
    if reaction is None and outcome.completed:
        return NextCourse(summary, same, None)
    if last is None or last.kind is not ProtocolKind.INFUSION:
        return NextCourse(summary, same, None)
    changes: list[CourseChange] = []
    if reaction is not None and any(s.number == reaction.step for s in last.steps) and reaction.step > 1:
        changes.append(
            CourseChange(
                f"insert-before-{reaction.step}",
                f"Add an intermediate step before step {reaction.step}",
                outcome.protocol_id,
                (reaction.step,),
                f"the reaction came at step {reaction.step}: a smaller increase before it",
            )
        )
    high_risk = protocols.get(HIGH_RISK_IV)
    if (
        high_risk is not None
        and outcome.protocol_id != HIGH_RISK_IV
        and len(high_risk.steps) > len(last.steps)
    ):
        changes.append(
            CourseChange(
                f"switch-{HIGH_RISK_IV}",
                f"Switch to {high_risk.title}",
                HIGH_RISK_IV,
                (),
                f"{len(high_risk.steps)} steps from a more dilute first bag",
            )
        )
    if not changes:
        return NextCourse(summary, same, None)
    severe = not outcome.completed or any(r.severity in ("moderate", "severe") for r in outcome.reactions)
    if severe and changes[-1].protocol_id == HIGH_RISK_IV:
        changes.insert(0, changes.pop())
    return NextCourse(summary, same, changes[0], tuple(changes[1:]))
