"""The boundary module: chart text cleaned, form text refused with the field named, one number parser."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_desens.boundary.numbers import NumberField, parse_number
from fhir_desens.boundary.text import chart_text, form_text, log_value, unsafe_characters
from fhir_desens.errors import InputError

DOSE = NumberField("Target dose", Decimal("0.001"), Decimal(100_000), "mg")
RATE = NumberField("Final rate", Decimal(0), Decimal(999), "mL/h")
HOSTILE = st.text(alphabet=st.characters(codec=None), max_size=60) | st.sampled_from(
    ["\u202enillicinep", "a\u200bb", "\ud800", "x\x00y", "\x1b[31m", "line\nbreak", "\ufeff"]
)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\u202enillicinep", "nillicinep"),
        ("peni\u200bcillin", "penicillin"),
        ("Carboplatin \ud800", "Carboplatin \ufffd"),
        ("a\x00b", "a b"),
        ("e\u0301", "\u00e9"),  # NFC: one way to spell it
    ],
)
def test_chart_text_examples(raw, shown):
    assert chart_text(raw) == shown


def test_every_surrogate_and_noncharacter_is_unsafe_and_nothing_else_for_that_reason():
    """Over every code point: surrogates and the 66 noncharacters (U+FDD0-U+FDEF, U+xxFFFE, U+xxFFFF)
    are unsafe; a letter next to them in the same block is not."""
    nonchars = {*range(0xFDD0, 0xFDF0), *(p * 0x10000 + 0xFFFE for p in range(17))}
    nonchars |= {p * 0x10000 + 0xFFFF for p in range(17)}
    assert len(nonchars) == 66
    for code in (*range(0xD800, 0xE000), *nonchars):
        assert unsafe_characters(chr(code)) == [f"U+{code:04X}"]
        assert chart_text(f"a{chr(code)}b") == "a\ufffdb"
    for code in (0xD7FF, 0xE000, 0xFDCF, 0xFDF0, 0xFFFD, 0x1FFFD, 0x10FFFD, 0x20000):
        assert unsafe_characters(f"a{chr(code)}") == []


def test_spoofed_names_typed_into_a_form_are_refused_naming_the_field():
    with pytest.raises(InputError, match=r"^Other drug: .*U\+202E"):
        form_text("\u202enillicinep", "Other drug", max_length=120)


def test_big_text_typed_into_a_form_is_refused_naming_the_field():
    with pytest.raises(InputError, match=r"^Other drug: 121 characters is too long"):
        form_text("x" * 121, "Other drug", max_length=120)


@settings(max_examples=400)
@given(HOSTILE)
def test_chart_text_is_always_safe_and_stable(text):
    cleaned = chart_text(text, limit=50)
    assert unsafe_characters(cleaned) == []
    assert chart_text(cleaned, limit=10_000) == cleaned  # cleaning twice changes nothing
    cleaned.encode("utf-8")


@settings(max_examples=400)
@given(HOSTILE)
def test_form_text_is_refused_or_safe(text):
    try:
        accepted = form_text(text, "Drug", max_length=40)
    except InputError as error:
        refused_field = error.field
    else:
        refused_field = None
        assert unsafe_characters(accepted) == []
        assert len(accepted) <= 40
    assert refused_field in (None, "Drug")


@settings(max_examples=300)
@given(HOSTILE)
def test_log_value_is_one_printable_ascii_line(text):
    logged = log_value(text)
    assert logged.isascii() and logged.isprintable() and "\n" not in logged


@pytest.mark.parametrize(
    "text", ["NaN", "nan", "Infinity", "-inf", "sNaN", "1e-400", "1e400", "1,5", "", "  ", "0x10", "1_000"]
)
def test_tampered_form_numbers_are_refused_naming_the_field(text):
    with pytest.raises(InputError) as caught:
        parse_number(text, DOSE)
    assert caught.value.field == "Target dose"


def test_tiny_doses_below_the_fields_lower_bound_are_refused():
    with pytest.raises(InputError, match=r"out of range.*above 0\.001"):
        parse_number("0.0000001", DOSE)
    assert parse_number(
        "0.001", NumberField("x", Decimal("0.001"), Decimal(1), minimum_inclusive=True)
    ) == Decimal("0.001")


def test_numbers_in_range_are_exact():
    assert parse_number(" 232.50 ", RATE) == Decimal("232.50")
    assert parse_number("1e2", RATE) == Decimal(100)
    assert parse_number(Decimal("75"), RATE) == Decimal(75)


@settings(max_examples=500)
@given(st.one_of(HOSTILE, st.from_regex(r"[+-]?\d{0,30}(\.\d{0,30})?([eE][+-]?\d{1,5})?", fullmatch=True)))
def test_parse_number_gives_a_bounded_exact_value_or_names_the_field(text):
    try:
        value = parse_number(text, RATE)
    except InputError as error:
        refused_field = error.field
    else:
        refused_field = None
        assert Decimal(0) < value <= Decimal(999)
    assert refused_field in (None, "Final rate")
