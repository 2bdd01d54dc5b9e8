"""The one error taxonomy of fhir-desens.

Every error the package raises on purpose derives from :class:`DesensError`. Each class carries the
exit status the CLI uses and the HTTP status the app uses, so no layer has to guess. Messages are
written for the person who made the mistake: they name the field and say what is accepted. They
never contain tokens, secrets or patient names.

This module imports the standard library only, so the pure protocol engine may use it.
"""

from __future__ import annotations

from collections.abc import Mapping

TYPE_CHECKING = False  # mypy reads this block; typing is not imported at run time (commands start faster)
if TYPE_CHECKING:
    from typing import Any


class DesensError(Exception):
    """Root of every deliberate fhir-desens error."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(DesensError):
    """Bad input from a person or a calling program: nothing was computed or written."""

    exit_code = 2
    http_status = 400

    def __init__(self, field: str, problem: str, accepted: str | None = None) -> None:
        text = f"{field}: {problem}"
        if accepted:
            text += f" (accepted: {accepted})"
        super().__init__(text)
        self.field = field
        self.problem = problem
        self.accepted = accepted


class UnitError(InputError):
    """An unknown unit, or a unit of the wrong dimension for where it is used."""


class ProtocolDefinitionError(DesensError):
    """A protocol definition (built-in, imported or edited) is malformed or inconsistent."""

    exit_code = 2
    http_status = 422


class SafetyViolation(DesensError):
    """A computed plan breaks a named safety invariant; the plan must not be used."""

    exit_code = 3
    http_status = 422

    def __init__(self, invariant_id: str, detail: str, message: str | None = None) -> None:
        # People read ``message`` (plain words naming what to change; every raiser should give one);
        # the invariant id and the technical detail are for logs, JSON and OperationOutcomes
        # (``invariant_id``, ``detail``), never in the text a person reads (``str(error)``).
        #: what a clinician reads: plain words, never the invariant id
        self.for_people = message or f"refused as unsafe: {detail}"
        super().__init__(self.for_people)
        self.invariant_id = invariant_id
        self.detail = detail


class ContraindicationError(DesensError):
    """Desensitization is contraindicated for this patient and drug (see the reasons)."""

    exit_code = 3
    http_status = 409

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("desensitization is contraindicated: " + "; ".join(reasons))
        self.reasons = reasons


class MappingError(DesensError):
    """FHIR content could not be mapped to or from the domain model."""

    exit_code = 2
    http_status = 422


class FhirFormatError(MappingError):
    """A document is not well-formed FHIR JSON or XML, or was refused by the hardened parser."""


class ValidationFailed(DesensError):
    """Content parsed but is not valid against FHIR, our profiles or the protocol arithmetic."""

    exit_code = 1
    http_status = 422

    def __init__(self, message: str, issues: list[Mapping[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.issues = list(issues or [])


class FhirServerError(DesensError):
    """A FHIR server answered with an error; ``outcome`` holds its OperationOutcome, if any."""

    exit_code = 4
    http_status = 502

    def __init__(
        self,
        message: str,
        status: int | None = None,
        outcome: Mapping[str, Any] | None = None,
        *,
        plain: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = dict(outcome) if outcome else None
        #: the same failure in a clinician's words (what the app was doing, whether anything may be
        #: written), when the client knew the request; ``message`` stays the technical account
        self.plain = plain

    @property
    def for_people(self) -> str:
        """What to show a clinician: :attr:`plain` when known, else the message."""
        return self.plain or self.message


class TemporaryServerError(FhirServerError):
    """Timeouts, 408/429/5xx: the same idempotent request may succeed later."""

    exit_code = 5
    http_status = 503


class ConflictError(FhirServerError):
    """The server refused a write because the resource changed (412) or already exists differently (409)."""

    exit_code = 6
    http_status = 409


class NotFoundError(FhirServerError):
    """The resource or canonical was not found on the server."""

    exit_code = 4
    http_status = 404


class AuthError(DesensError):
    """SMART/OAuth failure: bad state, refused grant, invalid token, untrusted issuer."""

    exit_code = 7
    http_status = 401


class ForbiddenError(AuthError):
    """The granted scopes do not allow this action."""

    http_status = 403


class ConfigurationError(DesensError):
    """Required configuration is missing or invalid; the process refuses to start."""

    exit_code = 78  # EX_CONFIG
