"""Bedside forms: what each entry kind reads from a posted form (server-rendered forms and the script
send the same fields). Validation is the session domain's; this only gathers and names the fields."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from werkzeug.datastructures import MultiDict

from fhir_desens.boundary.text import form_text
from fhir_desens.errors import InputError

FIELDS: dict[str, tuple[str, ...]] = {
    "checklist": ("item", "name", "dose", "source"),  # source: where the chart shows it (prestart)
    "vitals": ("systolic", "diastolic", "heart_rate", "respiratory_rate", "spo2", "temperature", "peak_flow"),
    "step-start": ("row", "rate_ml_h"),
    "step-stop": ("row", "volume_ml"),
    "symptom-check": ("row",),
    "reaction": ("grade", "phenotype"),
    "treatment": ("treatment", "dose"),
    "resolved": (),
    "resume": ("option", "allergist"),
    "complete": ("outcome", "reason", "next_dose", "next_dose_note"),
    "entered-in-error": ("target", "reason"),
}
LISTS = {"symptom-check": "symptoms", "reaction": "symptoms"}
#: Fields typed into a text area (line breaks kept); every other field is one line.
MULTILINE = frozenset({"reason", "next_dose_note"})
#: Longest text accepted in any one bedside field.
MAX_FIELD_CHARACTERS = 2000


def clock_time(text: str, now: datetime, field: str) -> datetime:
    """A time typed at the bedside: ``HH:MM`` (today, the server's local date and zone) or a date and
    time (``YYYY-MM-DD HH:MM``, or ISO 8601) when recording after the fact across midnight."""
    text = text.strip()
    try:
        if len(text) <= 5:
            parsed = time.fromisoformat(text.zfill(5))
            return now.replace(hour=parsed.hour, minute=parsed.minute, second=0, microsecond=0)
        moment = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        raise InputError(
            field, f"'{text}' is not a time", "HH:MM (24-hour clock), or YYYY-MM-DD HH:MM"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=now.tzinfo)


def _text(value: str, name: str) -> str:
    """A typed value through the one boundary check: direction overrides, zero-width and control
    characters are refused with the field named (what the record shows is what was checked)."""
    return form_text(value, name, max_length=MAX_FIELD_CHARACTERS, multiline=name in MULTILINE)


def entry_data(kind: str, form: MultiDict[str, str], now: datetime) -> dict[str, Any]:
    """The entry's data from the form; ``at`` is the typed time (HH:MM) or now."""
    if kind not in FIELDS:
        raise InputError("kind", f"unknown entry kind '{kind}'", ", ".join(FIELDS))
    data: dict[str, Any] = {}
    for name in FIELDS[kind]:
        value = _text(form.get(name, ""), name)
        if value:
            data[name] = value
    if kind in LISTS:
        data[LISTS[kind]] = [_text(v, LISTS[kind]) for v in form.getlist(LISTS[kind]) if v]
    typed = form.get("at_time", "").strip()
    data["at"] = (clock_time(typed, now, "at_time") if typed else now).isoformat()
    if kind == "complete":
        end = form.get("observation_end", "").strip()
        data["observation_end"] = (clock_time(end, now, "observation_end") if end else now).isoformat()
    return data
