"""What happened in a session, as the write-back needs it (built from the session record).

Everything here is already decided and displayed elsewhere: the dose arrives as the text the display
policy produced ("2 g"), times are timezone-aware, and a breakthrough reaction carries its grade as the
bedside recorded it. The records check themselves so that a malformed outcome never reaches the chart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_desens.errors import InputError

__all__ = ["SEVERITIES", "BreakthroughReaction", "CodedText", "SessionOutcome"]

#: AllergyIntolerance.reaction.severity (R4, required binding).
SEVERITIES = ("mild", "moderate", "severe")
_REFERENCE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}$")


def _aware(value: datetime, field: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InputError(field, "must be a date and time with a time zone")


def _reference(value: str | None, resource_type: str, field: str) -> None:
    if value is None:
        return
    match = _REFERENCE.match(value)
    if not match or match["type"] != resource_type:
        raise InputError(field, f"{value!r} is not a reference", f"{resource_type}/<id>")


@dataclass(frozen=True)
class CodedText:
    """A concept as text, with its code when one is known (SNOMED CT, RxNorm ...)."""

    text: str  # what people read (a symptom in the flowsheet's words: "Wheals / hives")
    system: str | None = None
    code: str | None = None
    display: str | None = None  # the code's own display ("Wheal"), when it differs from the text

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise InputError("text", "must not be empty")
        if (self.system is None) != (self.code is None):
            raise InputError("code", "a code needs its system and a system its code")

    def concept(self) -> dict[str, Any]:
        """As a FHIR CodeableConcept."""
        if self.system and self.code:
            return {
                "coding": [{"system": self.system, "code": self.code, "display": self.display or self.text}],
                "text": self.text,
            }
        return {"text": self.text}


@dataclass(frozen=True)
class BreakthroughReaction:
    """A reaction during the session: at which step, how bad, what was seen."""

    step: int
    grade: str  # as graded at the bedside, e.g. "grade 2 (moderate)"
    severity: str  # mild | moderate | severe
    manifestations: tuple[CodedText, ...]
    onset: datetime
    route: CodedText | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.step < 1:
            raise InputError("reaction.step", "must be 1 or more")
        if self.severity not in SEVERITIES:
            raise InputError(
                "reaction.severity", f"{self.severity!r} is not a severity", ", ".join(SEVERITIES)
            )
        if not self.manifestations:
            raise InputError("reaction.manifestations", "at least one manifestation is needed")
        if not self.grade.strip():
            raise InputError("reaction.grade", "must not be empty")
        _aware(self.onset, "reaction.onset")


@dataclass(frozen=True)
class SessionOutcome:
    """One finished session (completed, or stopped before the full dose)."""

    session_id: str
    patient: str  # Patient/<id>
    drug: CodedText
    dose: str  # the full dose as displayed, e.g. "2 g"
    steps_planned: int
    steps_completed: int
    completed: bool
    ended_at: datetime
    protocol_id: str
    protocol_title: str
    protocol_version: str
    reactions: tuple[BreakthroughReaction, ...] = ()
    encounter: str | None = None  # Encounter/<id>: the launch encounter
    author: str | None = None  # Practitioner/<id>: the allergist who confirms
    author_name: str = ""
    started_at: datetime | None = None
    #: the protocol's own number of steps ("12-step"), when the session's schedule grew after a reaction
    protocol_steps: int | None = None

    def __post_init__(self) -> None:
        if not self.session_id.strip():
            raise InputError("session_id", "must not be empty")
        _reference(self.patient, "Patient", "patient")
        _reference(self.encounter, "Encounter", "encounter")
        _reference(self.author, "Practitioner", "author")
        _aware(self.ended_at, "ended_at")
        if self.started_at is not None:
            _aware(self.started_at, "started_at")
            if self.started_at > self.ended_at:
                raise InputError("started_at", "must not be after ended_at")
        if self.steps_planned < 1 or not 0 <= self.steps_completed <= self.steps_planned:
            raise InputError("steps_completed", "must lie between 0 and the number of planned steps")
        if self.completed and self.steps_completed != self.steps_planned:
            raise InputError("completed", "a completed session has completed every planned step")
        if not self.dose.strip():
            raise InputError("dose", "must not be empty")

    @property
    def step_count(self) -> int:
        """The "n" of "n-step rapid desensitization": the protocol's steps, else the steps planned."""
        return self.protocol_steps or self.steps_planned

    @property
    def breakthrough(self) -> bool:
        return bool(self.reactions)

    @property
    def first_reaction(self) -> BreakthroughReaction | None:
        return min(self.reactions, key=lambda r: r.onset) if self.reactions else None

    @property
    def last_reaction(self) -> BreakthroughReaction | None:
        return max(self.reactions, key=lambda r: r.onset) if self.reactions else None
