"""UCUM codes: a small parser of the units clinical dosing uses."""

from __future__ import annotations

import re

_UCUM_PREFIXES = ("da", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m", "u", "n", "p", "f", "a", "z", "y")  # fmt: skip
#: Metric UCUM atoms (take a prefix) that clinical doses, volumes, rates and times use.
_UCUM_METRIC = frozenset(
    {"g", "L", "l", "m", "s", "mol", "eq", "U", "[iU]", "[IU]", "kat", "Cel", "K", "Pa", "bar", "cal", "J", "W",
     "Hz", "N", "V", "A", "t", "osm", "Bq", "Ci", "Gy", "Sv", "[drp]"}
)  # fmt: skip
#: Non-metric UCUM atoms (no prefix).
_UCUM_OTHER = frozenset(
    {"min", "h", "d", "wk", "mo", "a", "%", "[ppm]", "[ppb]", "[pH]", "[in_i]", "[ft_i]", "[lb_av]", "[oz_av]",
     "[gr]", "[tsp_us]", "[tbs_us]", "[foz_us]", "[degF]", "mm[Hg]", "cm[H2O]", "[mi_i]", "[HPF]", "[LPF]",
     "10*", "10^", "[pi]", "'", "''", "deg", "ar", "[arb'U]", "[USP'U]"}
)  # fmt: skip
_UCUM_TOKEN = re.compile(r"\{[^{}]*\}|\(|\)|[./]|[^./(){}]+")


def _ucum_atom_ok(text: str) -> bool:
    match = re.fullmatch(r"(.*?)([+-]?\d+)?", text)
    if not match:
        return False
    symbol, exponent = match.group(1), match.group(2)
    if symbol == "" and exponent is not None:
        return exponent.lstrip("+-").isdigit()  # a plain integer factor, e.g. "1" or "1000"
    if symbol in ("10*", "10^"):
        return exponent is not None
    if symbol in _UCUM_METRIC or symbol in _UCUM_OTHER:
        return True
    return any(symbol.startswith(p) and symbol[len(p) :] in _UCUM_METRIC for p in _UCUM_PREFIXES)


def ucum_problem(code: str) -> str | None:
    """Why ``code`` is not a UCUM code fhir-desens accepts, or None when it is one.

    A small UCUM parser: terms of components joined by ``.`` and ``/``, parentheses, exponents,
    annotations (``{tbl}``), metric prefixes, and the atoms clinical dosing uses. Unknown atoms are
    reported: ``mcg``, ``units``, ``IU``, ``hr`` and ``cc`` are common non-UCUM spellings.
    """
    if not code or code != code.strip() or " " in code:
        return f"'{code}' is not a UCUM code (empty, or contains spaces)"
    pieces = _UCUM_TOKEN.findall(code)
    if "".join(pieces) != code:
        return f"'{code}' is not a UCUM code"
    depth = 0
    expect_unit = True  # a unit (or parenthesis) must come next
    for position, piece in enumerate(pieces):
        if piece in (".", "/"):
            if expect_unit and not (piece == "/" and position == 0):
                return f"'{code}' is not a UCUM code (operator '{piece}' without a unit before it)"
            expect_unit = True
        elif piece == "(":
            if not expect_unit:
                return f"'{code}' is not a UCUM code (missing operator before '(')"
            depth += 1
        elif piece == ")":
            depth -= 1
            if depth < 0 or expect_unit:
                return f"'{code}' is not a UCUM code (unbalanced parentheses)"
        elif piece.startswith("{"):
            expect_unit = False  # an annotation, alone (= 1) or after a unit
        else:
            if not expect_unit:
                return f"'{code}' is not a UCUM code (missing operator before '{piece}')"
            if not _ucum_atom_ok(piece):
                return f"'{code}' is not a UCUM code ('{piece}' is not a UCUM unit known to fhir-desens)"
            expect_unit = False
    if depth != 0 or expect_unit:
        return f"'{code}' is not a UCUM code (incomplete)"
    return None
