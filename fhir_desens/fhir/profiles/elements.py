"""Authoring helpers: differential ``ElementDefinition`` JSON (elements, slices, bindings)."""

from __future__ import annotations

from typing import Any

from fhir_desens.fhir import canonical as c


def _path_of(element_id: str) -> str:
    return ".".join(segment.split(":", 1)[0] for segment in element_id.split("."))


def el(element_id: str, **properties: Any) -> dict[str, Any]:
    """A differential ElementDefinition; ``path`` (and ``sliceName``) follow from the id."""
    element: dict[str, Any] = {"id": element_id, "path": _path_of(element_id)}
    last = element_id.rsplit(".", 1)[-1]
    if ":" in last:
        element["sliceName"] = last.split(":", 1)[1]
    element.update(properties)
    return element


def required(value_set: str) -> dict[str, Any]:
    return {"strength": "required", "valueSet": value_set}


def slicing(path: str, rules: str = "open", description: str | None = None) -> dict[str, Any]:
    slicing: dict[str, Any] = {"discriminator": [{"type": "value", "path": path}]}
    if description:
        slicing["description"] = description
    slicing.update({"ordered": False, "rules": rules})
    return slicing


def extension_slicing(element_id: str) -> dict[str, Any]:
    return el(
        element_id, slicing=slicing("url", description="Extensions are always sliced by (at least) url")
    )


def extension_slice(
    sliced: str, name: str, url: str, min_: int, max_: str, short: str, definition: str | None = None
) -> list[dict[str, Any]]:
    """A slice of an ``extension`` element for one of our extensions, and its fixed ``url``."""
    texts = {"short": short, **({"definition": definition} if definition else {})}
    return [
        el(f"{sliced}:{name}", min=min_, max=max_, type=[{"code": "Extension", "profile": [url]}], **texts),
        el(f"{sliced}:{name}.url", fixedUri=url),
    ]


def identifier_slice(sliced: str, name: str, system: str, short: str) -> list[dict[str, Any]]:
    """A 1..1 identifier slice with a fixed system (sliced by value of ``system``)."""
    return [
        el(sliced, min=1, slicing=slicing("system"), mustSupport=True),
        el(f"{sliced}:{name}", min=1, max="1", short=short, mustSupport=True),
        el(f"{sliced}:{name}.system", min=1, fixedUri=system),
        el(f"{sliced}:{name}.value", min=1),
    ]


MS = {"mustSupport": True}
UCUM_PATTERN = {"system": c.UCUM}
