"""Text from outside, normalised once so that what is checked is exactly what is shown.

Two policies, one definition of what is unsafe:

* **Chart text** (:func:`chart_text`) is never refused, because a chart that cannot be shown is a
  patient who cannot be treated. Lone surrogates and noncharacters become U+FFFD; direction
  controls (U+202E RIGHT-TO-LEFT OVERRIDE and friends), zero-width and other invisible format
  characters are removed; control characters become spaces (newlines kept in multi-line text);
  the result is NFC and at most ``limit`` characters, a cut being marked. So "\\u202enillicinep"
  is shown *and* screened as "nillicinep".
* **Form and command-line text** (:func:`form_text`) is refused with the field named when it holds
  any such character or is too long: a person typing a drug name has no reason to send them.

:func:`log_value` makes a value from a request safe to put on one log line.
"""

from __future__ import annotations

import unicodedata

from fhir_desens.errors import InputError

__all__ = [
    "MAX_CHART_TEXT",
    "REPLACEMENT",
    "TRUNCATION_MARK",
    "chart_text",
    "form_text",
    "log_value",
    "unsafe_characters",
]

REPLACEMENT = "\ufffd"
#: Longest chart text kept (one allergy note, one order text); longer text is cut and marked.
MAX_CHART_TEXT = 2000
TRUNCATION_MARK = " […text cut: longer than {limit} characters]"


def _is_surrogate_or_noncharacter(char: str) -> bool:
    """A lone surrogate (U+D800-U+DFFF) or a noncharacter: U+FDD0-U+FDEF and the last two code points of
    every plane (U+FFFE, U+FFFF, U+1FFFE, ... U+10FFFF). Arithmetic, not a regular expression: compiling
    one with all 17 planes cost each command about a millisecond at start."""
    code = ord(char)
    return 0xD800 <= code <= 0xDFFF or 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


_LINE_BREAKS = "\n\r\u2028\u2029\x85"


def _is_invisible(char: str) -> bool:
    """Format characters (bidi controls, zero-width, tags, soft hyphen) and controls other than tab/newline."""
    category = unicodedata.category(char)
    return category == "Cf" or (category == "Cc" and char not in "\t\n\r") or char in "\u2028\u2029"


def unsafe_characters(text: str, *, multiline: bool = False) -> list[str]:
    """The unsafe characters of ``text`` as ``U+XXXX`` names, in order of first appearance."""
    found: dict[str, None] = {}
    for char in text:
        bad = (
            _is_surrogate_or_noncharacter(char)
            or _is_invisible(char)
            or (not multiline and char in _LINE_BREAKS)
        )
        if bad:
            found[f"U+{ord(char):04X}"] = None
    return list(found)


def _cleaned_char(char: str, multiline: bool) -> str:
    if _is_surrogate_or_noncharacter(char):
        return REPLACEMENT
    if char in _LINE_BREAKS or char == "\t":
        return "\n" if multiline and char in _LINE_BREAKS else " "
    if _is_invisible(char):
        return " " if unicodedata.category(char) == "Cc" else ""
    return char


def chart_text(text: str, *, limit: int = MAX_CHART_TEXT, multiline: bool = False) -> str:
    """Chart text made safe to show and to check (see the module docstring); stripped."""
    if not unsafe_characters(text, multiline=multiline):
        cleaned = text
    else:
        cleaned = "".join(_cleaned_char(char, multiline) for char in text)
    cleaned = unicodedata.normalize("NFC", cleaned).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[:limit].rstrip() + TRUNCATION_MARK.format(limit=limit)
    return cleaned


def form_text(text: object, field: str, *, max_length: int, multiline: bool = False) -> str:
    """Text typed by a person: stripped and NFC, or :class:`InputError` naming ``field``."""
    if not isinstance(text, str):
        raise InputError(field, f"expected text, got {type(text).__name__}")
    unsafe = unsafe_characters(text, multiline=multiline)
    if unsafe:
        raise InputError(
            field,
            "contains invisible, direction-changing or control characters (" + ", ".join(unsafe[:5]) + ")",
            "letters, digits, spaces and punctuation as typed",
        )
    cleaned = unicodedata.normalize("NFC", text).strip()
    if len(cleaned) > max_length:
        raise InputError(field, f"{len(cleaned)} characters is too long", f"at most {max_length} characters")
    return cleaned


def log_value(value: object, limit: int = 200) -> str:
    """One safe log token: control, format and non-ASCII characters escaped, length bounded."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in escaped)
