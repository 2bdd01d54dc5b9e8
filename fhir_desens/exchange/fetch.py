"""Fetch a protocol published on a partner's FHIR server, validated before anyone saves or uses it.

``PlanDefinition?url=X[&version=V]``: without a version the newest one is taken (dotted numeric
versions, a ``-label`` sorting before the release; versions that cannot be ordered, or two resources
holding the newest version with different content, are reported as ambiguous). Then each step's
ActivityDefinition by its canonical (``url|version``). All three validation layers run on what was
fetched; only valid content is returned.

The result is a collection Bundle shaped like ``fhir-desens export``: server bookkeeping
(``meta.versionId``, ``meta.lastUpdated``, ``meta.source``) is dropped and each resource's id
becomes the last segment of its canonical url when that is a valid id (server ids only mean
something on that server), so a fetched protocol equals the exported one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.errors import FhirServerError, InputError, NotFoundError, ValidationFailed
from fhir_desens.exchange.content import first_difference
from fhir_desens.exchange.load import Loaded
from fhir_desens.exchange.validate import StructuralValidator, ValidationReport, validate_loaded
from fhir_desens.protocol.model import Protocol

__all__ = ["FetchResult", "fetch_protocol", "version_key"]

_VERSION: Final = re.compile(r"^(\d+(?:\.\d+)*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_ID: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_SERVER_META: Final = ("versionId", "lastUpdated", "source")
_SEARCH_PAGE: Final = "100"


@dataclass(frozen=True)
class FetchResult:
    """A fetched, validated protocol: the collection Bundle, its validation report and the protocol."""

    bundle: dict[str, Any]
    report: ValidationReport
    protocol: Protocol
    server_ids: dict[str, str]  # canonical url|version -> Type/id on the server


def version_key(version: str) -> tuple[tuple[int, ...], int, str] | None:
    """Sort key of a dotted numeric version (``1.10.0`` > ``1.9.2`` > ``1.9.2-draft``); None if not one."""
    match = _VERSION.match(version)
    if match is None:
        return None
    numbers = tuple(int(part) for part in match.group(1).split("."))
    numbers += (0,) * max(0, 3 - len(numbers))
    label = match.group(2)
    return numbers, 0 if label else 1, label or ""


def _distinct(resources: list[dict[str, Any]], what: str) -> dict[str, Any]:
    """The one resource among copies; different copies of the same url|version are ambiguous."""
    for other in resources[1:]:
        difference = first_difference(resources[0], other)
        if difference is not None:
            raise FhirServerError(
                f"{what}: the server holds {len(resources)} different resources with this url|version "
                f"(they differ at {difference}); ask the publisher which one is meant"
            )
    return resources[0]


def _newest(resources: list[dict[str, Any]], what: str) -> dict[str, Any]:
    versions = sorted({str(r.get("version", "")) for r in resources})
    keys = {v: version_key(v) for v in versions}
    if any(key is None for key in keys.values()) or len(set(keys.values())) != len(versions):
        raise InputError(
            "--version",
            f"{what}: the server holds versions {', '.join(versions)}, which cannot be ordered",
            "one of them, with --version",
        )
    newest = max(versions, key=lambda v: keys[v] or ((), 0, ""))
    return _distinct([r for r in resources if r.get("version") == newest], f"{what}|{newest}")


def _find(client: FhirClient, resource_type: str, url: str, version: str | None) -> dict[str, Any]:
    params = [("url", url), ("_count", _SEARCH_PAGE)] + ([("version", version)] if version else [])
    found = [r for r in client.search_all(resource_type, params) if r.get("url") == url]
    what = f"{resource_type} {url}"
    if version is not None:
        found = [r for r in found if r.get("version") == version]
    if not found:
        raise NotFoundError(f"{what}{'|' + version if version else ''} is not on {client.base_url}", 404)
    if version is not None:
        return _distinct(found, f"{what}|{version}")
    return _newest(found, what)


def _definitions(actions: Any) -> Iterator[str]:
    for action in actions or []:
        if isinstance(action, Mapping):
            if isinstance(action.get("definitionCanonical"), str):
                yield action["definitionCanonical"]
            yield from _definitions(action.get("action"))


def _clean(resource: Mapping[str, Any]) -> dict[str, Any]:
    cleaned = dict(resource)
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in _SERVER_META}
    if meta:
        cleaned["meta"] = meta
    else:
        cleaned.pop("meta", None)
    tail = str(resource.get("url", "")).rstrip("/").rsplit("/", 1)[-1]
    if _ID.match(tail):
        cleaned["id"] = tail
    return cleaned


def fetch_protocol(
    client: FhirClient, url: str, version: str | None = None, *, structural: StructuralValidator | None
) -> FetchResult:
    """Fetch a protocol and its step ActivityDefinitions; raise ValidationFailed if they are not valid."""
    if not url or any(ch.isspace() for ch in url) or "|" in url:
        raise InputError(
            "--url", f"{url!r} is not a canonical URL", "the PlanDefinition's url, version apart"
        )
    plan_definition = _find(client, "PlanDefinition", url, version)
    fetched = [plan_definition]
    for canonical in dict.fromkeys(_definitions(plan_definition.get("action"))):
        activity_url, _, activity_version = canonical.partition("|")
        fetched.append(_find(client, "ActivityDefinition", activity_url, activity_version or None))
    server_ids = {f"{r.get('url')}|{r.get('version')}": f"{r['resourceType']}/{r.get('id')}" for r in fetched}
    loaded = [Loaded(f"{client.base_url}/{r['resourceType']}/{r.get('id')}", _clean(r)) for r in fetched]
    report = validate_loaded(loaded, structural=structural)
    if not report.valid or not report.protocols:
        errors = report.errors()
        what = f"{len(errors)} validation error(s)" if errors else "it is not a fhir-desens protocol"
        raise ValidationFailed(
            f"PlanDefinition {url}|{plan_definition.get('version')} from {client.base_url} was not saved: {what}",
            [issue.outcome_issue() for issue in (errors or report.issues)],
        )
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": item.resource.get("url"), "resource": item.resource} for item in loaded],
    }
    return FetchResult(bundle, report, report.protocols[0][1], server_ids)


def describe_issues(issues: Sequence[Mapping[str, Any]]) -> list[str]:
    """OperationOutcome issues (from :class:`ValidationFailed`) as the validate command's text lines."""
    lines = []
    for issue in issues:
        details = issue.get("details") or {}
        lines.append(
            f"{issue.get('severity', 'error'):<11} {issue.get('diagnostics', '')}: {details.get('text', '')}"
        )
    return lines
