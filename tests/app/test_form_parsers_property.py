"""Property tests of the app's form parsers (issue 11 "Done when"): whatever text a tampered form sends,
every numeric field either gives an exact number within its bounds or an InputError naming the field;
every text field either refuses with the field named or keeps text with nothing invisible or
direction-changing in it, so what is shown is exactly what is checked. Never any other exception."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from fhir_desens.boundary.text import unsafe_characters
from fhir_desens.errors import InputError
from smart_app.bedside.forms import FIELDS, MULTILINE, entry_data
from smart_app.chart.page import banner_from_patient
from smart_app.planning.forms import MAX_TEXT, NUMBER_FIELDS, clean_text, number

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
HOSTILE_CHARACTERS = st.sampled_from(
    [
        "\u202e",
        "\u202d",
        "\u2066",
        "\u200b",
        "\u200d",
        "\u2060",
        "\ufeff",
        "\x00",
        "\x1b",
        "\n",
        "\ufffd",
        "\ud800",
    ]
)
HOSTILE_TEXT = st.lists(st.one_of(st.characters(), HOSTILE_CHARACTERS), max_size=60).map("".join)
NUMBER_TEXT = st.one_of(
    HOSTILE_TEXT,
    st.sampled_from(
        ["1e-400", "1e-30", "1e300", "NaN", "sNaN", "-Infinity", "1" * 50, "0", "-0", "1,5", ".5", "5."]
    ),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"\A[+-]?\d{0,30}(\.\d{0,30})?([eE][+-]?\d{1,5})?\Z"),
)


def _outcome(parse: Callable[[], Any]) -> Any:
    """What ``parse`` returns, or the InputError it raises (any other exception fails the test)."""
    try:
        return parse()
    except InputError as error:
        return error


@pytest.mark.parametrize("name", list(NUMBER_FIELDS))
@settings(max_examples=150, deadline=None)
@given(text=NUMBER_TEXT)
def test_every_number_field_gives_a_bounded_number_or_names_itself(name: str, text: str) -> None:
    field = NUMBER_FIELDS[name]
    outcome = _outcome(lambda: number({name: text}, name))
    if isinstance(outcome, InputError):
        assert outcome.field == name and outcome.accepted
        return
    value = outcome
    assert isinstance(value, Decimal) and value.is_finite() and field.contains(value)
    assert abs(value.adjusted()) <= 12


@settings(max_examples=300, deadline=None)
@given(text=HOSTILE_TEXT)
def test_typed_text_is_refused_or_kept_without_anything_hidden(text: str) -> None:
    kept = _outcome(lambda: clean_text({"other_drug": text}, "other_drug", MAX_TEXT))
    if isinstance(kept, InputError):
        assert kept.field == "other_drug"
        return
    assert kept is None or (unsafe_characters(kept) == [] and len(kept) <= MAX_TEXT)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(FIELDS)), text=HOSTILE_TEXT)
def test_bedside_text_is_refused_with_its_field_or_kept_without_anything_hidden(kind: str, text: str) -> None:
    for name in FIELDS[kind]:
        data = _outcome(lambda name=name: entry_data(kind, MultiDict([(name, text)]), NOW))
        if isinstance(data, InputError):
            assert data.field == name
            continue
        kept = data.get(name, "")
        assert unsafe_characters(kept, multiline=name in MULTILINE) == []


@settings(max_examples=300, deadline=None)
@given(given_name=HOSTILE_TEXT, family=HOSTILE_TEXT, mrn=HOSTILE_TEXT)
def test_the_patient_banner_never_shows_anything_hidden(given_name: str, family: str, mrn: str) -> None:
    mr = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}
    banner = banner_from_patient(
        {"name": [{"given": [given_name], "family": family}], "identifier": [{"type": mr, "value": mrn}]}
    )
    for shown in (banner.name, banner.mrn or ""):
        assert unsafe_characters(shown) == []
        shown.encode("utf-8")  # no lone surrogate left to break the page
