"""Tolerant accessors for raw FHIR JSON read from servers, where any element may be missing or malformed.

Every string read through :func:`text_or_none` is normalised once, here, by
:func:`fhir_desens.boundary.text.chart_text` (invalid code points replaced, direction controls and
zero-width characters removed, length bounded): the chart readers then show and check the same text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir_desens.boundary.text import MAX_CHART_TEXT, chart_text


def text_or_none(value: Any, *, limit: int = MAX_CHART_TEXT) -> str | None:
    """A non-blank string, normalised and stripped; anything else (missing, blank, a number, an object) is None."""
    if isinstance(value, str):
        text = chart_text(value, limit=limit)
        return text or None
    return None


def objects(value: Any) -> list[Mapping[str, Any]]:
    """The JSON objects of an element that may be one object, a list of objects, or malformed."""
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, Mapping)]
    return []
