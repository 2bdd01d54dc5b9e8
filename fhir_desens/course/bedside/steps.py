"""The step entries of a bedside session: ``step-start``, ``step-stop`` and ``symptom-check`` (pure).

Each function applies one entry to a :class:`~fhir_desens.course.bedside.state.SessionState` in place,
or refuses it with an :class:`~fhir_desens.errors.InputError` naming the field (a rate above the plan's,
a stop before the start, a dose beyond the target) or a :class:`~fhir_desens.errors.ConflictError` (not
the next step, a step still running).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_desens.boundary.numbers import NumberField, parse_number
from fhir_desens.course.bedside import reactions as rx
from fhir_desens.course.bedside.entries import Entry, NewEntry
from fhir_desens.course.bedside.resume import Row
from fhir_desens.course.bedside.state import Segment, SessionState, minutes_between
from fhir_desens.errors import ConflictError, InputError
from fhir_desens.protocol import display as shown
from fhir_desens.protocol.calculate import SIXTY
from fhir_desens.protocol.display import moment_text
from fhir_desens.protocol.model import TargetKind
from fhir_desens.protocol.quantity import add, div, mul, plain, sub

#: The numbers typed at the bedside, through the one parser (no NaN, infinity, 1e-400 or 50 digits);
#: the step's own checks (at most the planned rate, within the target) follow.
_RATE = NumberField("rate_ml_h", Decimal("0.01"), Decimal(10_000), "mL/h", minimum_inclusive=True)
_VOLUME = NumberField("volume_ml", Decimal("0.001"), Decimal(10_000), "mL", minimum_inclusive=True)


def row_of(state: SessionState, data: dict[str, Any]) -> Row:
    try:
        number = int(str(data.get("row")))
    except ValueError:
        raise InputError(
            "row", f"'{data.get('row')}' is not a step number", f"1 to {len(state.rows)}"
        ) from None
    row = state.row(number)
    if row is None:
        raise InputError("row", f"there is no step {number} in this session", f"1 to {len(state.rows)}")
    return row


def segment_amounts(state: SessionState, segment: Segment, end: datetime) -> tuple[Decimal, Decimal]:
    """(volume mL, dose) infused by ``segment`` from its start to ``end`` (exact Decimal).

    The pump runs at the rate until its volume to be infused (what is left of the row) is in: a step
    stopped late has not given more than planned.
    """
    if segment.rate_ml_h is None:  # a discrete dose: given whole at the start
        return segment.row.step.volume_ml or Decimal(0), segment.row.step.dose.value
    minutes = minutes_between(segment.started_at, end)
    volume = div(mul(segment.rate_ml_h, minutes), SIXTY)
    left = state.volume_left(segment.row, segment)
    concentration = state.concentration(segment.row.solution)
    assert concentration is not None
    if left is not None and volume >= left:
        volume = left
        if _carries_the_rest(state, segment):
            # the pump gave all that remained of the target: exactly that dose (remaining / concentration
            # × concentration can miss it by 1e-47 when the concentration does not divide evenly)
            return volume, sub(state.target, segment.cumulative)
    return volume, mul(volume, concentration)


def _carries_the_rest(state: SessionState, segment: Segment) -> bool:
    """The last row of a cumulative-target plan: its volume to be infused is what remains of the target."""
    return segment.row is state.rows[-1] and state.plan.protocol.target_kind is TargetKind.CUMULATIVE


def step_start(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    row = row_of(state, data)
    phase = state.phase
    if phase == "checklist":
        raise InputError(
            "checklist", "is not complete: " + state.missing_checklist_text(), "every item recorded"
        )
    if phase in ("running", "paused"):
        raise ConflictError(
            f"step {state.segments[-1].row.number} is still {'running' if phase == 'running' else 'paused'}"
        )
    expected = state.next_row()
    if expected is None or row.number != expected.number:
        raise ConflictError(f"the next step is {expected.number if expected else 'none'}, not {row.number}")
    previous_end = state.segments[-1].ended_at if state.segments else None
    if previous_end is not None and at < previous_end:
        raise InputError(
            "at",
            "is before the previous step stopped",
            f"{moment_text(previous_end)} or later",
        )
    rate = _rate(row, data)
    state.segments.append(Segment(entry.entry_id, row, rate, at, entry.author, cumulative=state.delivered))


def _rate(row: Row, data: dict[str, Any]) -> Decimal | None:
    planned = row.step.rate_ml_h
    if planned is None:
        return None
    raw = data.get("rate_ml_h")
    rate = planned if raw in (None, "") else parse_number(str(raw), _RATE)
    if rate <= 0 or rate > planned:
        raise InputError(
            "rate_ml_h",
            f"{plain(rate)} mL/h is not allowed for this step",
            f"more than 0 and at most the planned {plain(planned)} mL/h",
        )
    return rate


def step_stop(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    row = row_of(state, data)
    segment = state.running
    if segment is None or segment.row.number != row.number:
        raise ConflictError(f"step {row.number} is not running")
    if at <= segment.started_at:
        raise InputError(
            "at",
            "is not after the step started",
            f"later than {moment_text(segment.started_at)}",
        )
    volume, dose = segment_amounts(state, segment, at)
    if data.get("volume_ml") not in (None, ""):
        volume = parse_number(str(data["volume_ml"]), _VOLUME)
        concentration = state.concentration(row.solution)
        if volume <= 0 or concentration is None:
            raise InputError("volume_ml", "must be more than 0 mL", "the volume the pump shows as infused")
        dose = mul(volume, concentration)
    check_target(
        state, segment.cumulative, dose, "at" if data.get("volume_ml") in (None, "") else "volume_ml"
    )
    segment.ended_at, segment.status = at, "completed"
    segment.volume_ml, segment.dose, segment.cumulative = volume, dose, add(segment.cumulative, dose)


def check_target(state: SessionState, before: Decimal, dose: Decimal, field_name: str) -> None:
    if state.plan.protocol.target_kind is not TargetKind.CUMULATIVE:
        return
    total = add(before, dose)
    if total > state.target:
        unit = state.plan.dose_unit
        raise InputError(
            field_name,
            f"would give {shown.dose_text(sub(total, state.target), unit)} above the target "
            f"{shown.dose_text(state.target, unit)}",
            "a stop time or volume within the target",
        )


def symptom_check(state: SessionState, entry: Entry | NewEntry, data: dict[str, Any], at: datetime) -> None:
    row = row_of(state, data)
    symptoms = data.get("symptoms")
    if not isinstance(symptoms, list) or not symptoms:
        raise InputError("symptoms", "is required ('none' is a value)", "none, or " + rx.OFFERED)
    if symptoms != ["none"]:
        rx.symptoms_from([str(s) for s in symptoms])
    state.symptom_checks[row.number] = {
        "entry_id": entry.entry_id,
        "at": at,
        "symptoms": symptoms,
        "author": entry.author,
    }


__all__ = ["check_target", "row_of", "segment_amounts", "step_start", "step_stop", "symptom_check"]
