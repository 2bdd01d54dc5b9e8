"""Bedside forms pass every typed value through the one text check (issue 11 "Spoofed names"): direction
overrides, zero-width and control characters are refused with the field named, so what the flowsheet shows
is what was recorded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from werkzeug.datastructures import MultiDict

from fhir_desens.errors import InputError
from smart_app.bedside.forms import MAX_FIELD_CHARACTERS, entry_data

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("checklist", "name", "\u202enillicinep"),
        ("treatment", "dose", "0.5\u200b mg"),
        ("resume", "allergist", "Dr\u2066 A. Allergist"),
        ("complete", "reason", "stopped\x1b[2J early"),
        ("complete", "next_dose_note", "x" * (MAX_FIELD_CHARACTERS + 1)),
        ("reaction", "symptoms", "itch\u200ding"),
    ],
)
def test_spoofed_or_overlong_bedside_text_is_refused_with_the_field_named(
    kind: str, field: str, value: str
) -> None:
    with pytest.raises(InputError) as refused:
        entry_data(kind, MultiDict([(field, value)]), NOW)
    assert refused.value.field == field


def test_plain_bedside_text_is_kept_as_typed_and_a_reason_keeps_its_lines() -> None:
    data = entry_data(
        "complete",
        MultiDict([("outcome", "stopped"), ("reason", " Hives at step 4.\nStopped by Dr Ng. ")]),
        NOW,
    )
    assert data["outcome"] == "stopped" and data["reason"] == "Hives at step 4.\nStopped by Dr Ng."
