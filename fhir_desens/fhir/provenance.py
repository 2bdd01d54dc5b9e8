"""The Provenance written with the app's changes to the chart: which resources, when, by whom, how."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


def provenance_resource(
    provenance_id: str,
    targets: Sequence[str],
    recorded: str,
    practitioner: str | None,
    operation: str,
    reason: str | None = None,
) -> dict[str, Any]:
    """A Provenance of ``targets`` (references): ``operation`` is a v3 DataOperation code (CREATE,
    UPDATE); the author is ``practitioner`` (a reference) or, without one, the app by name."""
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": provenance_id,
        "target": [{"reference": t} for t in targets],
        "recorded": recorded,
        "activity": {"coding": [{"system": DATA_OPERATION, "code": operation}]},
    }
    if reason is not None:
        resource["reason"] = [{"text": reason}]
    resource["agent"] = [
        {
            "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]},
            "who": {"reference": practitioner} if practitioner else {"display": "fhir-desens"},
        }
    ]
    return resource
