"""Tolerant accessors for raw FHIR JSON read from servers, where any element may be missing or malformed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def text_or_none(value: Any) -> str | None:
    """A non-blank string, stripped; anything else (missing, blank, a number, an object) is None."""
    if isinstance(value, str):
        text = value.strip()
        return text or None
    return None


def objects(value: Any) -> list[Mapping[str, Any]]:
    """The JSON objects of an element that may be one object, a list of objects, or malformed."""
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, Mapping)]
    return []
