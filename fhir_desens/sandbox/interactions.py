"""FHIR REST requests as the sandbox gateway sees them: classified by method and path, the scope
permission each needs, and the refusal (:class:`Denied`) rendered as an OperationOutcome."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from werkzeug.wrappers import Response

FHIR_JSON = "application/fhir+json; charset=utf-8"
INTERACTION_PERMISSION = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search-type": "s",
    "history-type": "s",
    "search-system": "s",
}


class Denied(Exception):
    """A request the gateway refuses: rendered as an OperationOutcome."""

    def __init__(self, status: int, code: str, diagnostics: str, *, bearer_error: str | None = None) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.bearer_error = bearer_error


@dataclass(frozen=True)
class Interaction:
    """A classified FHIR REST request."""

    kind: str  # create, read, vread, ..., transaction, batch, operation
    resource_type: str | None
    resource_id: str | None = None
    conditional: bool = False
    operation: str | None = None


def classify(method: str, path: str) -> Interaction:
    """Classify a request by method and path relative to the FHIR base (``Patient/1/_history``)."""
    method = "GET" if method == "HEAD" else method
    segments = [s for s in path.split("/") if s]
    if not segments:
        if method == "POST":
            return Interaction("bundle", None)
        if method == "GET":
            return Interaction("search-system", None)
        raise Denied(405, "not-supported", f"{method} is not supported on the FHIR base")
    head = segments[0]
    if head.startswith("$"):
        return Interaction("operation", None, operation=head)
    if head == "_history":
        return Interaction("history-system", None)
    if not head[:1].isupper():
        raise Denied(404, "not-found", "not a FHIR resource type")
    if any(s.startswith("$") for s in segments[1:]):
        operation = next(s for s in segments[1:] if s.startswith("$"))
        resource_id = segments[1] if len(segments) == 3 else None
        return Interaction("operation", head, resource_id, operation=operation)
    if len(segments) == 1:
        table = {
            "GET": "search-type",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }
        if method not in table:
            raise Denied(405, "not-supported", f"{method} is not supported on a resource type")
        kind = table[method]
        return Interaction(kind, head, conditional=kind in ("update", "patch", "delete"))
    if len(segments) == 2 and segments[1] == "_search" and method == "POST":
        return Interaction("search-type", head)
    if len(segments) == 2 and segments[1] == "_history" and method == "GET":
        return Interaction("history-type", head)
    if len(segments) == 2:
        table = {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        if method not in table:
            raise Denied(405, "not-supported", f"{method} is not supported on a resource instance")
        return Interaction(table[method], head, segments[1])
    if len(segments) == 3 and segments[2] == "_history" and method == "GET":
        return Interaction("history-instance", head, segments[1])
    if len(segments) == 4 and segments[2] == "_history" and method == "GET":
        return Interaction("vread", head, segments[1])
    raise Denied(404, "not-found", "unsupported FHIR URL")


def outcome_response(
    status: int, code: str, diagnostics: str, headers: Mapping[str, str] | None = None
) -> Response:
    severity = "error" if status >= 400 else "information"
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }
    return Response(json.dumps(body), status=status, headers=dict(headers or {}), content_type=FHIR_JSON)


__all__ = ["FHIR_JSON", "INTERACTION_PERMISSION", "Denied", "Interaction", "classify", "outcome_response"]
