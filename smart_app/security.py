"""Response headers (CSP with ``frame-ancestors`` from config) and CSRF protection.

CSRF: a small synchronizer-token implementation, written here rather than pulled from a library,
because the app's sessions are server-side records reached through the URL path (``/s/<sid>/``)
and must work without cookies inside an EHR iframe. Each session record holds a random
``csrf`` token; every form carries it in a hidden ``csrf_token`` field (scripts may send the
``X-CSRF-Token`` header instead). Every request with a state-changing method (anything but GET,
HEAD, OPTIONS) is refused with 400 unless it names a live session and carries that session's token
(compared in constant time). A cross-origin ``Origin`` header is refused as well.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, Response, current_app, g, request
from flask.sessions import NullSession, SessionInterface
from werkzeug.exceptions import BadRequest

from smart_app.services import services

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfError(BadRequest):
    description = (
        "This form was not sent by this app session, or the session has ended. "
        "Reload the page from the EHR and try again."
    )


def csp_nonce() -> str:
    nonce: str | None = g.get("csp_nonce")
    if nonce is None:
        nonce = secrets.token_urlsafe(16)
        g.csp_nonce = nonce
    return nonce


def allow_form_action(origin: str) -> None:
    """Let this response's forms post to ``origin`` (the EHR's authorization endpoint)."""
    g.form_action_extra = origin


def _check_csrf() -> None:
    if request.method in SAFE_METHODS:
        return
    svc = services()
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin != svc.settings.public_origin:
        raise CsrfError()
    sid = (request.view_args or {}).get("sid")
    record = svc.session_record(sid) if isinstance(sid, str) else None
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = record.get("csrf") if record else None
    if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(), sent.encode()):
        current_app.logger.warning("CSRF check failed for %s %s", request.method, request.url_rule)
        raise CsrfError()


def allow_printing_from_the_app() -> None:
    """A print sheet may also be framed by the app itself (the Print button's hidden frame)."""
    g.printable_sheet = True


def _ancestors(configured: tuple[str, ...]) -> tuple[str, ...]:
    if g.get("printable_sheet") and "'self'" not in configured and "'none'" not in configured:
        return (*configured, "'self'")
    return configured


def _headers(response: Response) -> Response:
    settings = services().settings
    nonce = csp_nonce()
    form_action = "'self'"
    extra = g.get("form_action_extra")
    if extra:
        form_action += f" {extra}"
    policy = [
        "default-src 'none'",
        "script-src 'self'",
        f"style-src 'self' 'nonce-{nonce}'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        f"form-action {form_action}",
        "base-uri 'none'",
        "frame-src 'self'",  # the Print button loads the sheet into a hidden frame of the app itself
        f"frame-ancestors {' '.join(_ancestors(settings.frame_ancestors))}",
    ]
    response.headers["Content-Security-Policy"] = "; ".join(policy)
    response.headers["Referrer-Policy"] = "no-referrer"  # session ids live in URL paths
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    if "Cache-Control" not in response.headers or request.path.startswith(("/s/", "/callback", "/launch")):
        response.headers["Cache-Control"] = "no-store"
    response.headers.pop("X-Frame-Options", None)  # framing is governed by frame-ancestors
    return response


class NoCookieSessions(SessionInterface):
    """Flask's cookie session is never used (sessions are server-side records reached through the URL
    path, so that they work inside an EHR iframe): no cookie is read or set, and nothing is spent on
    one per request. Writing to ``flask.session`` fails loudly (a :class:`NullSession`)."""

    def open_session(self, app: Flask, request: object) -> NullSession:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: object, response: Response) -> None:
        return None


def init_security(app: Flask) -> None:
    app.session_interface = NoCookieSessions()
    app.before_request(_check_csrf)
    app.after_request(_headers)
    app.jinja_env.globals["csp_nonce"] = csp_nonce
