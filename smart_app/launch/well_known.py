"""The app's public JWK set (for ``private_key_jwt`` registration), a liveness check (``/healthz``: the
process answers) and a readiness check (``/readyz``: its shared stores answer; docs/deployment.md)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from smart_app.services import services

log = logging.getLogger(__name__)
bp = Blueprint("well_known", __name__)


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    key = services().signing_key
    response = jsonify({"keys": [key.public_jwk()] if key is not None else []})
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/healthz")
def health() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def ready() -> tuple[Response, int]:
    """Readiness for a load balancer: the shared stores answer (the session store, e.g. Redis, and the
    record database, e.g. PostgreSQL). 503 names what does not answer, never how or where."""
    svc = services()
    failed = []
    try:
        svc.store.get("readiness", "probe")
    except Exception as error:  # any backend failure: not ready
        log.warning("readiness: the session store does not answer (%s)", type(error).__name__)
        failed.append("session store")
    try:
        svc.record_store().session_ids("Patient/readiness-probe")
    except Exception as error:
        log.warning("readiness: the record database does not answer (%s)", type(error).__name__)
        failed.append("record database")
    if failed:
        return jsonify({"status": "unavailable", "failed": failed}), 503
    return jsonify({"status": "ok"}), 200
