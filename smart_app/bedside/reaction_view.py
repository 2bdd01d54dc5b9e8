"""Each reaction of a session in words, for the flowsheet and the session record alike.

A nurse taking over after the decision has only the page: when the reaction began, in which step and how far
into it, what had been given, the symptoms, grade and phenotype, every treatment with its time, when it
resolved, the decision and who made it and signed it off. The open reaction's handling section shows it
while it is being handled; once decided it stays on the flowsheet from these words (walk session 8).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from fhir_desens.course.bedside import reactions as rx
from fhir_desens.course.bedside.state import Reaction, SessionState
from fhir_desens.protocol import display as shown
from smart_app.bedside import page

TimeText = Callable[[datetime | None], str]


@dataclass(frozen=True)
class TreatmentView:
    what: str  # 'H1 antihistamine (e.g. diphenhydramine IV) diphenhydramine 50 mg IV'
    at: str
    by: str


@dataclass(frozen=True)
class ReactionView:
    number: int  # 1, 2, ... in the order they began
    onset: str
    step: str  # 'step 9', or 'step 10 (Step 9 resumed after a reaction)'
    minutes_into_step: str  # '5 min'
    given_of_step: str  # '0.83 mL'
    given_in_all: str  # '4.471 mg'
    symptoms: str
    grade: str  # 'moderate'
    phenotype: str
    recorded_by: str
    treatments: tuple[TreatmentView, ...]
    resolved: str  # a time, or 'not recorded'
    decision: str  # the option in words, or 'not decided yet'
    decided_at: str
    decided_by: str
    sign_off: str  # the allergist as given, else why there is none; '' while undecided

    @property
    def summary(self) -> str:
        """One line for the flowsheet's facts: 'moderate, step 9 at 11:57'."""
        return f"{self.grade}, {self.step.split(' (')[0]} at {self.onset}"


def reaction_views(state: SessionState, time_text: TimeText, names: Mapping[str, str]) -> list[ReactionView]:
    """Every reaction of the session, oldest first, in words (``time_text`` formats its times)."""
    return [_view(number, r, state, time_text, names) for number, r in enumerate(state.reactions, 1)]


def _step_words(number: int, label: str) -> str:
    """'step 10', or 'step 10 (Step 9 resumed after a reaction)' when the step's label says more than its
    number (the step was not said twice: 'step 10 (Step 10)')."""
    if label.strip().lower() == f"step {number}":
        return f"step {number}"
    return f"step {number} ({label})"


def _view(
    number: int, reaction: Reaction, state: SessionState, time_text: TimeText, names: Mapping[str, str]
) -> ReactionView:
    decided = reaction.resumed or {}
    allergist = str(decided.get("allergist") or "").strip()
    return ReactionView(
        number=number,
        onset=time_text(reaction.onset),
        step=_step_words(reaction.row.number, reaction.row.label),
        minutes_into_step=shown.minutes_text(reaction.minutes_into_step),
        given_of_step=shown.volume_text(reaction.volume_so_far),
        given_in_all=shown.dose_text(reaction.dose_so_far, state.plan.dose_unit),
        symptoms=", ".join(s.label for s in reaction.symptoms),
        grade=reaction.grade,
        phenotype=rx.PHENOTYPES.get(reaction.phenotype, reaction.phenotype),
        recorded_by=page.person(reaction.author, names),
        treatments=tuple(
            TreatmentView(
                what=" ".join(
                    filter(None, (page.treatment_words(str(t["treatment"])), str(t.get("dose") or "")))
                ),
                at=time_text(t["at"]),
                by=page.person(str(t["author"]), names),
            )
            for t in reaction.treatments
        ),
        resolved=time_text(reaction.resolved_at) if reaction.resolved_at else "not recorded",
        decision=page.option_words(decided.get("option")) if decided else "not decided yet",
        decided_at=time_text(decided.get("at")) if decided else "",
        decided_by=page.person(str(decided.get("author") or ""), names) if decided else "",
        sign_off=_sign_off(reaction, allergist) if decided else "",
    )


def _sign_off(reaction: Reaction, allergist: str) -> str:
    """Who signed off the decision, as the nurse typed or the app offered it; else why nobody did."""
    if allergist:
        return allergist
    if reaction.grade in rx.NEEDS_ALLERGIST_TO_RESUME:
        return "no allergist sign-off recorded (the session was stopped)"
    return f"not needed after a {reaction.grade} reaction"


__all__ = ["ReactionView", "TreatmentView", "reaction_views"]
