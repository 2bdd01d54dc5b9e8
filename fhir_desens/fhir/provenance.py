"""The Provenance written with the app's changes to the chart: which resources, when, by whom, how."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
APP_NAME = "fhir-desens"


def provenance_resource(
    targets: Sequence[str],
    recorded: str,
    operation: str,
    *,
    author: str | None,
    author_name: str = APP_NAME,
    author_display: str | None = None,
    provenance_id: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """A Provenance of ``targets`` (references): ``operation`` is a v3 DataOperation code (CREATE,
    UPDATE); the author is ``author`` (a reference) or, without one, ``author_name`` (the app's name
    unless the caller knows the person's); ``author_display`` is the person's name beside the reference, for
    readers whose grant cannot read that Practitioner."""
    resource: dict[str, Any] = {"resourceType": "Provenance"}
    if provenance_id is not None:
        resource["id"] = provenance_id
    resource["target"] = [{"reference": t} for t in targets]
    resource["recorded"] = recorded
    resource["activity"] = {"coding": [{"system": DATA_OPERATION, "code": operation}]}
    if reason is not None:
        resource["reason"] = [{"text": reason}]
    resource["agent"] = [
        {
            "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]},
            "who": _who(author, author_display, author_name),
        }
    ]
    return resource


def _who(author: str | None, author_display: str | None, author_name: str) -> dict[str, str]:
    if not author:
        return {"display": author_name}
    return {"reference": author, "display": author_display} if author_display else {"reference": author}
