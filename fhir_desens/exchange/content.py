"""Identity and meaningful content of canonical resources (what "the same protocol" means).

Two copies of a canonical resource are the same when their content is equal once the server's
bookkeeping is ignored: ``id``, ``meta`` and the generated ``text`` narrative at the top level.
Numbers compare by value (``0.50`` equals ``0.5``: FHIR servers written in JavaScript drop trailing
zeros), so a resource read back from a server equals the one that was written. Such a server also keeps
a decimal as a double: a value with more significant digits than a double holds (an authored protocol's bag
dilution is an exact quotient, 0.0099219145326282159405...) comes back rounded to 17 digits, and is the same
number when the double of ours is the double the server keeps. Values of at most 15 significant digits
survive a double exactly, so for them any difference is a real one.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

__all__ = ["CANONICAL_TYPES", "canonical_key", "first_difference", "same_content"]

#: Canonical resource types the exchange imports, in the order they are written: terminology and
#: profiles first, then step activities, then the protocols that reference them.
CANONICAL_TYPES: Final = (
    "StructureDefinition",
    "CodeSystem",
    "ValueSet",
    "ActivityDefinition",
    "PlanDefinition",
)
_IGNORED: Final = frozenset({"id", "meta", "text"})


def canonical_key(resource: Mapping[str, Any]) -> tuple[str, str, str | None] | None:
    """``(type, url, version)`` of a canonical resource; None when it has no url."""
    url, version = resource.get("url"), resource.get("version")
    if not isinstance(url, str) or not url:
        return None
    return str(resource.get("resourceType")), url, version if isinstance(version, str) else None


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal):
        return Decimal(value)
    return value


#: Significant digits any decimal keeps through an IEEE 754 double (DBL_DIG).
_DOUBLE_EXACT_DIGITS: Final = 15


def _same_number(left: Decimal, right: Decimal) -> bool:
    if left == right:
        return True
    digits = max(len(left.normalize().as_tuple().digits), len(right.normalize().as_tuple().digits))
    return digits > _DOUBLE_EXACT_DIGITS and float(left) == float(right)


def first_difference(a: Any, b: Any, path: str = "", *, top: bool = True) -> str | None:
    """The path of the first meaningful difference between two resources; None when they agree."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = sorted((set(a) | set(b)) - (_IGNORED if top else set()))
        for key in keys:
            if key not in a or key not in b:
                return f"{path}.{key}".lstrip(".")
            found = first_difference(a[key], b[key], f"{path}.{key}", top=False)
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} ({len(a)} vs {len(b)} items)".lstrip(".")
        for index, (left, right) in enumerate(zip(a, b, strict=True)):
            found = first_difference(left, right, f"{path}[{index}]", top=False)
            if found is not None:
                return found
        return None
    left, right = _number(a), _number(b)
    if isinstance(left, Decimal) and isinstance(right, Decimal):
        return None if _same_number(left, right) else path.lstrip(".") or "(the whole value)"
    if type(left) is not type(right) or left != right:
        return path.lstrip(".") or "(the whole value)"
    return None


def same_content(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return first_difference(a, b) is None
