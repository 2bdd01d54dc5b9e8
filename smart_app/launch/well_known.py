"""The app's public JWK set (for ``private_key_jwt`` registration) and a health check."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from smart_app.services import services

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
