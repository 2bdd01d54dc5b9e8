"""The "Record a dose given after desensitization" form: its fields, their labels, parsing, and the form as
shown again after a refusal (what the user typed, the message beside the field), as every form of the app.

Errors are raised with the form's field names (``session_id``, ``dose``, ``given_at``) or the dose's own
field names from the course layer (``drug``, ``dose``, ``given_at``); :func:`refusal` turns either into the
field's visible label ("Given at: is in the future ...") and the input it belongs to.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from fhir_desens.boundary.numbers import NumberField, parse_number
from fhir_desens.boundary.text import form_text
from fhir_desens.course.bedside.summary import SessionSummary
from fhir_desens.course.outcome.from_session import DrugTolerance
from fhir_desens.course.outcome.later_doses import LaterDose
from fhir_desens.errors import InputError
from fhir_desens.protocol.display import moment_text
from fhir_desens.protocol.quantity import parse_quantity

__all__ = ["LABELS", "DoseEntry", "dose_form", "later_dose", "refusal"]

#: the form's fields (their ``name``) as their labels name them
LABELS = {"session_id": "Drug", "dose": "Dose", "given_at": "Given at"}
#: the input of each field (its ``id``: the error sits beside it, ``aria-describedby`` names it)
INPUTS = {"session_id": "dose-drug", "dose": "dose-amount", "given_at": "dose-time"}
#: the course layer's names (LaterDose's fields) for the form's fields
_DOMAIN_FIELDS = {"drug": "session_id", "amount": "dose", "unit": "dose"}

#: A dose given after desensitization, as typed: above zero, of human size (the unit is checked apart).
LATER_DOSE = NumberField("dose", Decimal(0), Decimal(100_000_000))
_ACCEPTED_TIME = "a date and time, e.g. 2026-12-03T08:00"


@dataclass(frozen=True)
class DoseEntry:
    """The form as the user filled it in, and what was refused (by input id), to show it again."""

    values: Mapping[str, str]
    error_for: Mapping[str, str] = field(default_factory=dict)


def refusal(error: InputError, form: Mapping[str, str]) -> DoseEntry:
    """The refused form, its typed values kept and the message (labelled, with what is accepted) beside the
    field it is about (an error about something the form does not show goes beside the dose)."""
    name = _DOMAIN_FIELDS.get(error.field, error.field)
    if name not in LABELS:
        name = "dose"
    message = f"{LABELS[name]}: {error.problem}" + (
        f" (accepted: {error.accepted})" if error.accepted else ""
    )
    values = {key: str(form.get(key, ""))[:200] for key in ("session_id", "dose", "given_at", "dose_id")}
    return DoseEntry(values, {INPUTS[name]: message})


def _given_at(raw: str, zone: tzinfo) -> datetime:
    """The form's datetime-local value, in the site's zone (an offset typed by hand is refused)."""
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise InputError("given_at", f"'{raw[:20]}' is not a date and time", _ACCEPTED_TIME) from None
    if moment.tzinfo is not None:
        raise InputError("given_at", "carries its own time zone", _ACCEPTED_TIME)
    return moment.replace(tzinfo=zone)


def later_dose(
    form: Mapping[str, str],
    sessions: Sequence[SessionSummary],
    *,
    patient: str,
    recorded_by: str,
    now: datetime,
    zone: tzinfo,
) -> LaterDose:
    """The dose from the form: after which of this patient's completed ``sessions``, how much, when."""
    chosen = form.get("session_id", "")
    summary = next((s for s in sessions if s.session_id == chosen), None)
    if summary is None:
        raise InputError("session_id", "choose a drug this patient was desensitized to in this app")
    quantity = parse_quantity(form_text(form.get("dose", ""), "dose", max_length=40), "dose")
    amount = parse_number(quantity.value, LATER_DOSE)  # the one number check: no 0, -5, 50 digits, 1e-41
    given_at = _given_at(form.get("given_at", ""), zone)
    ended = summary.last_dose_at or summary.ended_at
    if ended is not None and given_at < ended:
        raise InputError(
            "given_at",
            f"is before the desensitization's last step ({moment_text(ended, zone)}): record doses given after it",
        )
    return LaterDose(
        dose_id=form.get("dose_id", ""),
        patient=patient,
        session_id=summary.session_id,
        drug=summary.drug,
        drug_rxnorm=summary.drug_rxnorm,
        amount=amount,
        unit=quantity.unit,
        given_at=given_at,
        recorded_by=recorded_by,
        recorded_at=now,
    )


def dose_form(
    rows: list[DrugTolerance], site_now: datetime, entry: DoseEntry | None
) -> dict[str, Any] | None:
    """The form: one choice per drug with a completed session whose tolerance is kept by continued dosing
    (every-administration drugs are desensitized each time); after a refusal, filled in as it was sent."""
    choices = [
        (row.last_completed.session_id, row.drug)
        for row in rows
        if row.last_completed is not None
        and not (row.assessment.rule is not None and row.assessment.rule.every_administration)
    ]
    if not choices:
        return None
    typed = dict(entry.values) if entry is not None else {}
    return {
        "choices": choices,
        "dose_id": typed.get("dose_id") or str(uuid.uuid4()),  # refused: nothing recorded, same entry
        "session_id": typed.get("session_id", ""),
        "dose": typed.get("dose", ""),
        "now": typed.get("given_at") or site_now.strftime("%Y-%m-%dT%H:%M"),
        "zone": site_now.tzname() or "",
        "error_for": dict(entry.error_for) if entry is not None else {},
    }
