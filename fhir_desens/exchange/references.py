"""``urn:uuid:`` / ``urn:oid:`` references inside a Bundle: resolved ones are fine, unresolved ones errors.

A transaction Bundle (what ``$apply`` produces) links its entries by ``fullUrl = urn:uuid:...`` and the
server rewrites those references when it stores them, so they are correct. Medplum's validator sees
each resource alone and reports every one as "Invalid reference": noise that teaches people to ignore
warnings. This module decides, from the loaded entries, which references resolve:

- :func:`unresolved_reference_issues`: a ``urn:`` reference that names no entry of the same Bundle is an
  error (the server would refuse it, or store a dangling link);
- :func:`is_urn_reference_noise`: a structural issue that only says a ``urn:`` reference is "invalid"
  is dropped (resolved: it is right; unresolved: the error above says so, with the reason).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from fhir_desens.exchange.load import Loaded
from fhir_desens.io.json import is_object

__all__ = ["bundle_full_urls", "is_urn_reference_noise", "unresolved_reference_issues"]

_URN: Final = ("urn:uuid:", "urn:oid:")
#: Medplum: 'Invalid reference: got "urn:uuid:…", expected "…"'.
_INVALID_REFERENCE: Final = re.compile(r'Invalid reference: got "(urn:(?:uuid|oid):[^"]+)"')


def bundle_full_urls(loaded: Sequence[Loaded]) -> dict[str, frozenset[str]]:
    """The ``fullUrl``s of each source's Bundle entries (a Bundle is one source: file or package member)."""
    urls: dict[str, set[str]] = {}
    for item in loaded:
        if item.full_url:
            urls.setdefault(item.source, set()).add(item.full_url)
    return {source: frozenset(found) for source, found in urls.items()}


def _references(value: Any, expression: str) -> Iterator[tuple[str, str]]:
    """Every ``Reference.reference`` under a resource, with its FHIRPath-like expression."""
    if is_object(value):
        reference = value.get("reference")
        if isinstance(reference, str):
            yield reference, f"{expression}.reference"
        for key, child in value.items():
            if is_object(child):
                if key == "contained" or "resourceType" in child:
                    continue  # a nested resource is validated on its own
            elif key == "contained" or not isinstance(child, list):
                continue  # a primitive holds no reference
            yield from _references(child, f"{expression}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            if isinstance(child, list) or is_object(child):
                yield from _references(child, f"{expression}[{index}]")


def unresolved_reference_issues(
    item: Loaded, full_urls: Mapping[str, frozenset[str]]
) -> list[tuple[str, str]]:
    """``(message, expression)`` for each ``urn:`` reference of ``item`` no entry of its Bundle has."""
    known = full_urls.get(item.source, frozenset())
    issues = []
    for reference, expression in _references(item.resource, item.resource_type):
        if reference.startswith(_URN) and reference not in known:
            where = "its Bundle" if item.entry is not None else "this file (it is not in a Bundle)"
            issues.append(
                (f"reference {reference} names no entry of {where} (no entry has that fullUrl)", expression)
            )
    return issues


def is_urn_reference_noise(message: str) -> bool:
    """Whether a structural issue only complains that a ``urn:`` reference is not ``Type/id``."""
    return _INVALID_REFERENCE.search(message) is not None
