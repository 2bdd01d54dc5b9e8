"""The reaction entries of a bedside session: ``reaction``, ``treatment``, ``resolved``, ``resume`` (pure).

A reaction pauses the running step (what it gave so far is counted); treatments and the resolution are
recorded against it; ``resume`` takes one of the re-plan's options
(:mod:`~fhir_desens.course.bedside.resume`), with the allergist's sign-off after a moderate or severe
reaction, and the schedule continues with that option's rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_desens.course.bedside import reactions as rx
from fhir_desens.course.bedside.entries import Entry, NewEntry
from fhir_desens.course.bedside.state import Reaction, SessionState, minutes_between
from fhir_desens.course.bedside.steps import check_target, segment_amounts
from fhir_desens.errors import ConflictError, InputError
from fhir_desens.protocol.display import moment_text
from fhir_desens.protocol.quantity import add, total

TREATMENT_WORDS = {t.key: t.label for t in rx.TREATMENTS}


def reaction(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    if state.open_reaction is not None:
        raise ConflictError("a reaction is already being handled; record its treatment and resume decision")
    if not state.segments:
        raise InputError("at", "no step has started yet", "a reaction during or after a step")
    symptoms = rx.symptoms_from([str(s) for s in data.get("symptoms") or []])
    if not data.get("grade"):  # never preselected: the nurse judges the severity
        raise InputError("grade", "choose the severity of this reaction", rx.words_of(rx.GRADES))
    grade = rx.choice(data.get("grade"), rx.GRADES, "grade")
    if not data.get("phenotype"):  # never preselected: the nurse judges what kind of reaction it is
        raise InputError("phenotype", "choose the kind of reaction", rx.words_of(rx.PHENOTYPES))
    phenotype = rx.choice(data.get("phenotype"), rx.PHENOTYPES, "phenotype")
    segment = state.segments[-1]
    if segment.status == "in-progress":
        if at < segment.started_at:
            raise InputError(
                "at",
                "is before the running step started",
                f"{moment_text(segment.started_at)} or later",
            )
        volume, dose = segment_amounts(state, segment, at)
        check_target(state, segment.cumulative, dose, "at")
        segment.ended_at, segment.status = at, "on-hold"
        segment.volume_ml, segment.dose, segment.cumulative = volume, dose, add(segment.cumulative, dose)
    elif segment.ended_at is not None and at < segment.ended_at:
        raise InputError(
            "at",
            "is before the last step stopped",
            f"{moment_text(segment.ended_at)} or later",
        )
    assert segment.ended_at is not None
    minutes = minutes_between(segment.started_at, segment.ended_at)
    step_volume = total(s.volume_ml for s in state.segments if s.row.number == segment.row.number)
    state.reactions.append(
        Reaction(
            entry.entry_id,
            at,
            segment.row,
            minutes,
            step_volume,
            state.delivered,
            symptoms,
            grade,
            phenotype,
            entry.author,
            segment.key if segment.status == "on-hold" else None,
        )
    )


def treatment(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    reaction = state.open_reaction
    if reaction is None:
        raise ConflictError("there is no reaction being handled")
    if not data.get("treatment"):  # never preselected: a treatment recorded is a treatment given
        raise InputError("treatment", "choose the treatment given", rx.words_of(TREATMENT_WORDS))
    key = rx.choice(data.get("treatment"), TREATMENT_WORDS, "treatment")
    if at < reaction.onset:
        raise InputError("at", "is before the reaction began", f"{moment_text(reaction.onset)} or later")
    reaction.treatments.append(
        {
            "entry_id": entry.entry_id,
            "treatment": key,
            "dose": str(data.get("dose") or ""),
            "at": at,
            "author": entry.author,
        }
    )


def resolved(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    reaction = state.open_reaction
    if reaction is None:
        raise ConflictError("there is no reaction being handled")
    if at < reaction.onset:
        raise InputError("at", "is before the reaction began", f"{moment_text(reaction.onset)} or later")
    reaction.resolved_at = at


def resume(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    reaction = state.open_reaction
    if reaction is None:
        raise ConflictError("there is no reaction to resume from")
    options = state.resume_options()
    option = str(data.get("option") or "")
    if not option:  # never preselected: the nurse (with the allergist) decides how to continue
        offered = ", ".join(k for k, v in options.items() if not isinstance(v, str))
        raise InputError("option", "choose how to continue", offered)
    if option not in options:
        raise InputError("option", f"'{option}' is not a resume option here", ", ".join(options))
    choice = options[option]
    if isinstance(choice, str):
        raise InputError("option", choice, ", ".join(k for k, v in options.items() if not isinstance(v, str)))
    if option != "stop":
        if reaction.resolved_at is None:
            raise InputError(
                "resolved", "record when the symptoms resolved before resuming", "the resolution time"
            )
        if at < reaction.resolved_at:
            raise InputError(
                "at",
                "is before the symptoms resolved",
                f"{moment_text(reaction.resolved_at)} or later",
            )
    if (
        reaction.grade in rx.NEEDS_ALLERGIST_TO_RESUME
        and option != "stop"
        and not str(data.get("allergist") or "").strip()
    ):
        raise InputError(
            "allergist",
            f"a {reaction.grade} reaction needs the allergist's sign-off to resume",
            "the signing allergist",
        )
    paused = state.segments[-1]
    if paused.status == "on-hold":
        paused.status = "stopped"
    kept = [r for r in state.rows if r.number <= reaction.row.number]
    state.rows = kept + choice.rows
    reaction.resumed = {
        "entry_id": entry.entry_id,
        "option": option,
        "at": at,
        "author": entry.author,
        "allergist": data.get("allergist"),
    }


__all__ = ["reaction", "resolved", "resume", "treatment"]
