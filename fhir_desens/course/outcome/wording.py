"""The words written to the chart, and the identifier that makes writing them twice a no-op.

The note is worded for the next clinician who opens the allergy record (issue 13):

    Tolerated ceftriaxone 2 g via 12-step rapid desensitization on 2 Dec 2026 (protocol IV 12-step ...,
    version 1.0.0). Tolerance is temporary: re-desensitize after a missed dose of more than 48 h or for
    each new course. Breakthrough reaction: none. Recorded by Dr A. Allergist, 2 Dec 2026 14:05 UTC.
    Ref RDD-1a2b3c4d5e6f.

With a breakthrough reaction the sentence is exactly "Breakthrough reaction: <grade> at step <n>." (one
"<grade> at step <n>" per reaction, separated by "; "), followed by the onset and signs for the reader
who has no reaction element to look at (a clinical note): "Onset and signs: step 11 at 12:42
(Urticaria, Pruritus)."

The trailing ``Ref RDD-…`` is derived from the session and the patient, so the same outcome always
carries the same reference: the write-back looks for it before writing (an Annotation has no identifier
element, and an EHR may drop extensions, but it keeps the text).
"""

from __future__ import annotations

import uuid
from datetime import datetime, tzinfo

from fhir_desens.course.outcome.record import BreakthroughReaction, SessionOutcome
from fhir_desens.drugs.tolerance import MaintenanceRule
from fhir_desens.protocol.display import date_text, moment_text

__all__ = [
    "maintenance_sentence",
    "note_text",
    "outcome_id",
    "outcome_marker",
    "reaction_details",
    "reaction_headline",
    "reaction_summary",
]

_NAMESPACE = uuid.UUID("0c1f3c9e-7d4a-4f5e-9b0a-2e6f1d8c3b57")  # fhir-desens outcome namespace


def outcome_id(outcome: SessionOutcome) -> str:
    """A stable id for this session's outcome on this patient (the business identifier of what we write)."""
    return session_outcome_id(outcome.patient, outcome.session_id)


def session_outcome_id(patient: str, session_id: str) -> str:
    """:func:`outcome_id` from the patient reference and the session id alone (the patient page's lists)."""
    return str(uuid.uuid5(_NAMESPACE, f"{patient}|{session_id}"))


def outcome_marker(outcome: SessionOutcome) -> str:
    """The reference printed at the end of the note, searched for before writing."""
    return "RDD-" + outcome_id(outcome).replace("-", "")[:12]


def _date(when: datetime, tz: tzinfo | None) -> str:
    local = when.astimezone(tz) if tz is not None else when
    return date_text(local.date())


def maintenance_sentence(rule: MaintenanceRule | None) -> str:
    """How tolerance is kept, for the note."""
    if rule is None:
        return "re-desensitize after any missed dose or for each new course"
    if rule.every_administration:
        return "re-desensitize at every administration"
    return f"re-desensitize after a missed dose of more than {rule.window_text} or for each new course"


def _signs(reaction: BreakthroughReaction) -> str:
    details = [", ".join(m.text for m in reaction.manifestations)]
    if reaction.route is not None:
        details.append(reaction.route.text)
    if reaction.description.strip():
        details.append(reaction.description.strip())
    return "; ".join(details)


def _one_reaction(reaction: BreakthroughReaction, tz: tzinfo | None) -> str:
    onset = reaction.onset.astimezone(tz) if tz is not None else reaction.onset
    return f"{reaction.grade} at step {reaction.step}, {onset:%H:%M} ({_signs(reaction)})"


def reaction_summary(outcome: SessionOutcome, tz: tzinfo | None = None) -> str:
    """'none' or '<grade> at step <n>, <time> (<manifestations>)' for each reaction, in order."""
    if not outcome.reactions:
        return "none"
    ordered = sorted(outcome.reactions, key=lambda r: r.onset)
    return "; ".join(_one_reaction(reaction, tz) for reaction in ordered)


def reaction_headline(outcome: SessionOutcome) -> str:
    """'none' or '<grade> at step <n>' for each reaction in order (the note's "Breakthrough reaction:")."""
    if not outcome.reactions:
        return "none"
    ordered = sorted(outcome.reactions, key=lambda r: r.onset)
    return "; ".join(f"{r.grade} at step {r.step}" for r in ordered)


def reaction_details(outcome: SessionOutcome, tz: tzinfo | None = None) -> str:
    """'' or 'Onset and signs: step <n> at <time> (<manifestations>)' for each reaction in order."""
    if not outcome.reactions:
        return ""
    parts = []
    for reaction in sorted(outcome.reactions, key=lambda r: r.onset):
        onset = reaction.onset.astimezone(tz) if tz is not None else reaction.onset
        parts.append(f"step {reaction.step} at {onset:%H:%M} ({_signs(reaction)})")
    return "Onset and signs: " + "; ".join(parts)


def _protocol(outcome: SessionOutcome) -> str:
    return f"protocol {outcome.protocol_title}, version {outcome.protocol_version}"


def note_text(
    outcome: SessionOutcome,
    rule: MaintenanceRule | None,
    recorded_at: datetime,
    tz: tzinfo | None = None,
) -> str:
    """The note for the allergy record (and the clinical note), ending with its reference."""
    drug = f"{outcome.drug.text} {outcome.dose}"
    day = _date(outcome.ended_at, tz)
    if outcome.completed:
        opening = (
            f"Tolerated {drug} via {outcome.step_count}-step rapid desensitization on {day} "
            f"({_protocol(outcome)}). Tolerance is temporary: {maintenance_sentence(rule)}."
        )
    else:
        opening = (
            f"Rapid desensitization to {drug} ({outcome.step_count}-step, {_protocol(outcome)}) was stopped "
            f"after step {outcome.steps_completed} of {outcome.steps_planned} on {day}: the full dose was not "
            "reached and tolerance cannot be assumed."
        )
    author = outcome.author_name.strip() or "the allergist"
    details = reaction_details(outcome, tz)
    return (
        f"{opening} Breakthrough reaction: {reaction_headline(outcome)}. "
        + (f"{details}. " if details else "")
        + f"Recorded by {author}, {moment_text(recorded_at, tz)}. Ref {outcome_marker(outcome)}."
    )
