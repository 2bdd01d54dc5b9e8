"""fhir_desens.io.json: exact decimals, strict reading, exponent-free writing."""

from __future__ import annotations

import json as stdjson
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_desens.errors import FhirFormatError
from fhir_desens.io.json import dump_path, dumps, dumps_bytes, load_path, loads


def strict_equal(a: Any, b: Any) -> bool:
    """Equality that also checks types and each Decimal's digits and exponent (0.50 != 0.5)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Decimal):
        return bool(a.as_tuple() == b.as_tuple())
    if isinstance(a, dict):
        return list(a) == list(b) and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ---------------------------------------------------------------- reading


def test_decimal_keeps_its_text() -> None:
    doc = loads('{"a": 0.50, "b": 1.000, "c": -0.0, "d": 100.0}')
    assert [str(v) for v in doc.values()] == ["0.50", "1.000", "-0.0", "100.0"]
    assert all(type(v) is Decimal for v in doc.values())


def test_integers_stay_int_including_large() -> None:
    big = 2**200
    doc = loads(f'{{"n": 12, "neg": -7, "big": {big}}}')
    assert doc == {"n": 12, "neg": -7, "big": big}
    assert all(type(v) is int for v in doc.values())
    assert dumps(doc) == f'{{"n":12,"neg":-7,"big":{big}}}'


def test_no_float_anywhere_in_a_parsed_document() -> None:
    doc = loads(b'{"x": [1.5, {"y": 2.25e-3}], "z": 3}')

    def walk(o: Any) -> None:
        assert not isinstance(o, float)
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(doc)


def test_exponent_input_is_an_exact_decimal_and_written_without_exponent() -> None:
    doc = loads("[1e3, 1.5E-7, 2.50e+2, -4E0]")
    assert [d.as_tuple() for d in doc] == [
        Decimal("1E+3").as_tuple(),
        Decimal("1.5E-7").as_tuple(),
        Decimal("2.50E+2").as_tuple(),
        Decimal("-4").as_tuple(),
    ]
    # documented policy: positional notation, numerically identical
    assert dumps(doc) == "[1000,0.00000015,250,-4]"
    assert [Decimal(str(v)) for v in loads(dumps(doc))] == doc


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_rejected(constant: str) -> None:
    with pytest.raises(FhirFormatError, match=f"{constant} is not allowed"):
        loads(f'{{"value": {constant}}}')


def test_duplicate_keys_are_rejected_with_the_key_named() -> None:
    with pytest.raises(FhirFormatError, match="duplicate key 'status'"):
        loads('{"resourceType": "Patient", "status": "a", "status": "b"}')
    with pytest.raises(FhirFormatError, match="duplicate key 'x'"):
        loads('{"outer": [{"x": 1, "y": 2, "x": 1}]}')


def test_same_key_in_different_objects_is_fine() -> None:
    assert loads('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]


def test_oversize_input_is_rejected_before_parsing() -> None:
    doc = b'{"a": "' + b"x" * 200 + b'"}'
    assert loads(doc, max_bytes=len(doc)) == {"a": "x" * 200}
    with pytest.raises(FhirFormatError, match="too large"):
        loads(doc, max_bytes=len(doc) - 1)
    with pytest.raises(FhirFormatError, match="too large"):
        loads(doc.decode(), max_bytes=100)


def test_huge_exponent_is_rejected() -> None:
    with pytest.raises(FhirFormatError, match="out of range"):
        loads("[1e999999999]")
    assert loads("[1e1000]")[0] == Decimal("1e1000")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "invalid JSON"),
        ("[1,]", "invalid JSON"),
        ("{'a': 1}", "invalid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nesting too deep"),
        ("1" * 5000, "invalid JSON"),
    ],
)
def test_malformed_json_raises_fhir_format_error(text: str, problem: str) -> None:
    with pytest.raises(FhirFormatError, match=problem):
        loads(text)


def test_bytes_must_be_utf8_and_a_bom_is_tolerated() -> None:
    assert loads('\ufeff{"name": "Zoë"}'.encode()) == {"name": "Zoë"}
    with pytest.raises(FhirFormatError, match="not valid UTF-8"):
        loads(b'{"name": "\xff"}')


# ---------------------------------------------------------------- writing


def test_dumps_writes_decimal_text_exactly() -> None:
    assert dumps({"value": Decimal("0.50")}) == '{"value":0.50}'
    assert dumps([Decimal("0.0000001"), Decimal("-0.00"), Decimal("12.3400")]) == "[0.0000001,-0.00,12.3400]"


def test_dumps_non_ascii_and_escapes() -> None:
    assert dumps({"t": 'Zoë "q" \\ \n\u2028'}) == '{"t":"Zoë \\"q\\" \\\\ \\n\u2028"}'
    assert dumps_bytes({"t": "é"}) == '{"t":"é"}'.encode()


def test_dumps_indent_and_sort_keys_match_the_standard_layout() -> None:
    obj = {"b": [1, {"z": True, "a": None}], "a": {}, "c": []}
    assert dumps(obj, indent=2, sort_keys=True) == stdjson.dumps(obj, indent=2, sort_keys=True)
    assert dumps(obj, indent=2) == stdjson.dumps(obj, indent=2)
    assert dumps(obj) == stdjson.dumps(obj, separators=(",", ":"))


@pytest.mark.parametrize("bad", [0.5, Decimal("NaN"), Decimal("Infinity"), {1: "x"}, object(), b"x"])
def test_dumps_refuses_floats_and_non_json_values(bad: Any) -> None:
    with pytest.raises(FhirFormatError):
        dumps({"v": bad})


def test_float_refusal_names_decimal() -> None:
    with pytest.raises(FhirFormatError, match=r"use decimal\.Decimal"):
        dumps([1.25])


def test_dump_path_and_load_path_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    doc = {"resourceType": "Basic", "dose": Decimal("0.50"), "n": 3, "text": "µg"}
    dump_path(target, doc)
    assert target.read_bytes().endswith(b"\n")
    assert strict_equal(load_path(target), doc)
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(FhirFormatError, match="too large"):
        load_path(target, max_bytes=10)
    with pytest.raises(FhirFormatError, match="cannot read"):
        load_path(tmp_path / "missing.json")


# ---------------------------------------------------------------- property-based round trip

_decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d.adjusted()) <= 60
)
_text = st.text(st.characters(codec="utf-8"), max_size=20)
_scalars = st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | _decimals | _text
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_text, children, max_size=5),
    max_leaves=30,
)


def expected_after_round_trip(o: Any) -> Any:
    """What loads(dumps(o)) must give: integral decimals written without a point read back as int."""
    if isinstance(o, Decimal):
        return int(o) if o.as_tuple().exponent >= 0 else o  # type: ignore[operator]
    if isinstance(o, dict):
        return {k: expected_after_round_trip(v) for k, v in o.items()}
    if isinstance(o, list):
        return [expected_after_round_trip(v) for v in o]
    return o


@settings(max_examples=300, deadline=None)
@given(_json, st.sampled_from([None, 2]), st.booleans())
def test_round_trip_of_random_json_with_decimals(obj: Any, indent: int | None, sort_keys: bool) -> None:
    text = dumps(obj, indent=indent, sort_keys=sort_keys)
    back = loads(text)
    expected = expected_after_round_trip(obj)
    if sort_keys:
        assert strict_equal(loads(dumps(expected, sort_keys=True)), back)
    else:
        assert strict_equal(back, expected)
    # the output is valid JSON for any other reader, with the same numbers
    assert stdjson.loads(text, parse_float=Decimal) == back
    # and stable: writing what was read gives the same text
    assert dumps(back, indent=indent, sort_keys=sort_keys) == text
    assert loads(dumps_bytes(obj)) == back


@settings(max_examples=200, deadline=None)
@given(_decimals)
def test_decimal_text_never_uses_an_exponent(value: Decimal) -> None:
    text = dumps(value)
    assert "E" not in text and "e" not in text
    assert Decimal(text) == value
    if value.as_tuple().exponent < 0:  # type: ignore[operator]
        assert Decimal(text).as_tuple() == value.as_tuple()


def test_is_object_is_true_for_any_mapping_and_false_for_leaves_and_arrays() -> None:
    from types import MappingProxyType

    from fhir_desens.io.json import is_object

    assert is_object({}) and is_object(MappingProxyType({"a": 1}))
    assert not any(is_object(v) for v in ("x", 1, True, None, Decimal("0.5"), 1.5, [], [{}]))
