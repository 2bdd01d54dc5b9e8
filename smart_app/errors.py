"""Error handlers: HTML for people, JSON for machines, never a traceback.

Messages of :class:`fhir_desens.errors.DesensError` are written for people and never contain tokens,
secrets or patient names, so they are shown as they are (autoescaped). Anything unexpected is
logged with its traceback on the server and answered with a generic message and a reference id.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from fhir_desens.client.smart import AuthorizationDenied
from fhir_desens.errors import AuthError, DesensError, FhirServerError, SafetyViolation, TemporaryServerError

TITLES = {
    400: "The request could not be used",
    401: "Sign-in needed",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Conflict",
    422: "The data could not be used",
    502: "The EHR answered with an error",
    503: "The EHR is not available right now",
}


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" or (
        request.accept_mimetypes["application/json"] > request.accept_mimetypes["text/html"]
    )


def _respond(
    status: int,
    message: str,
    *,
    code: str,
    hint: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    **extra: Any,
) -> Response:
    """The error page (or JSON): ``detail`` is the technical account, shown small for the support team."""
    title = title or TITLES.get(status, "Something went wrong")
    if hint and hint in message:  # never the same advice twice on one page
        hint = None
    if _wants_json():
        body: dict[str, Any] = {"error": code, "message": message, "status": status}
        if detail:  # the bedside page shows "message" to the nurse; the request is for the program's log
            body["detail"] = detail
        body.update(extra)
        response = jsonify(body)
    else:
        response = Response(
            render_template(
                "error.html",
                title=title,
                message=message,
                hint=hint,
                detail=detail,
                status=status,
                back=_patient_page(status),
                **extra,
            ),
            mimetype="text/html",
        )
    response.status_code = status
    return response


_SESSION_PAGE = re.compile(r"^/s/([A-Za-z0-9_-]{43})/")


def _patient_page(status: int) -> str | None:
    """The patient page of the session the failing page belongs to (a way back inside the EHR frame), unless
    the session itself is what failed (401: it has ended; the page says to open the app again)."""
    found = _SESSION_PAGE.match(request.path)
    if found is None or status == 401:
        return None
    return f"/s/{found.group(1)}/patient"


def _hint_for(error: DesensError) -> str | None:
    if isinstance(error, AuthorizationDenied):
        return (
            "Open the app again from the EHR (from the patient's chart). If this keeps happening, contact your "
            "EHR administrator."
        )
    if isinstance(error, AuthError):
        return "Open the app again from the EHR."
    if isinstance(error, TemporaryServerError):
        return "The EHR may be busy. Wait a moment and reload the page."
    if isinstance(error, FhirServerError):
        return "Try again later. If this keeps happening, contact your EHR administrator."
    return None


def init_errors(app: Flask) -> None:
    @app.errorhandler(DesensError)
    def desens_error(error: DesensError) -> Response:
        status = int(getattr(error, "http_status", 500))
        app.logger.warning("%s (%d): %s", type(error).__name__, status, error.message)
        extra: dict[str, Any] = {}
        if isinstance(error, SafetyViolation):  # the rule's id for logs and JSON, never the page's words
            app.logger.warning("safety rule %s: %s", error.invariant_id, error.detail)
            extra = {"invariant": error.invariant_id}
        if isinstance(error, AuthorizationDenied):
            extra = {"oauth_error": error.error, "oauth_error_description": error.description}
        message, title, detail = error.message, None, None
        if isinstance(error, AuthorizationDenied):
            title = "The EHR refused the sign-in"
        elif isinstance(error, FhirServerError) and error.plain:  # what the app was doing, in words
            message, detail = error.plain, error.message
        elif isinstance(
            error, TemporaryServerError
        ):  # "GET /fhir/...: timed out (ReadTimeout)" is for support
            message, detail = "The EHR did not answer in time, or answered that it is busy.", error.message
        return _respond(
            status,
            message,
            code=type(error).__name__,
            hint=_hint_for(error),
            title=title,
            detail=detail,
            **extra,
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if isinstance(error, InternalServerError) and error.original_exception is not None:
            return unexpected(error.original_exception)
        if status == 413:  # never a bare "capacity limit": say what to do
            limit = app.config.get("MAX_CONTENT_LENGTH") or 0
            return _respond(
                413,
                f"The form was larger than the app accepts ({limit // 1024} kB), so nothing was saved.",
                code="RequestEntityTooLarge",
                hint="Shorten the longest text (indication, reasons, notes) and send the form again.",
            )
        return _respond(status, error.description or "", code=error.name.replace(" ", ""))

    @app.errorhandler(Exception)
    def unexpected(error: BaseException) -> Response:
        reference = secrets.token_hex(4)
        app.logger.error("unexpected error, reference %s", reference, exc_info=error)
        return _respond(
            500,
            f"An unexpected error occurred (reference {reference}).",
            code="InternalError",
            hint="Reload the page. If this keeps happening, give the reference to your support team.",
            reference=reference,
        )
