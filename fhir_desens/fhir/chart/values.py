"""Tolerant accessors shared by the chart readers: a concept's codings and a JSON number as Decimal."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_desens.fhir.raw import objects

__all__ = ["codings", "json_decimal"]


def codings(concept: Any) -> list[Mapping[str, Any]]:
    """The concept's codings that are objects; none when it is no object."""
    return objects(concept.get("coding")) if isinstance(concept, Mapping) else []


def json_decimal(value: Any) -> Decimal | None:
    """A JSON number as Decimal; the project's JSON reader already yields Decimal, stdlib json gives float/int."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None
