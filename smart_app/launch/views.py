"""SMART launch: ``/launch`` (EHR and standalone) and the OAuth ``/callback``."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from fhir_desens.client.smart import PendingAuthorization, callback_error
from fhir_desens.errors import AuthError, InputError
from smart_app.security import allow_form_action
from smart_app.services import services

bp = Blueprint("launch", __name__, template_folder="templates")

MAX_PARAM = 2048


class InvalidCallback(AuthError):
    """A callback whose ``state`` is unknown, expired or already used: a bad request, not a 401."""

    http_status = 400


def _param(name: str) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_PARAM:
        raise InputError(name, f"longer than {MAX_PARAM} characters")
    return value


@bp.get("/launch")
def launch() -> Response | str:
    """EHR launch (``iss`` + ``launch``) or standalone launch (``iss`` only, or a choice of EHR)."""
    svc = services()
    iss = _param("iss")
    launch_token = _param("launch")
    if iss is None:
        if launch_token is not None:
            raise InputError("iss", "an EHR launch must name the EHR's FHIR base (iss)")
        allowed = svc.settings.allowed_iss
        if len(allowed) == 1:
            iss = allowed[0]
        else:
            return render_template("choose_ehr.html", issuers=allowed)
    if not svc.allowed_iss(iss):
        # Never contact an EHR that is not on the allow-list (no discovery request is made).
        current_app.logger.warning("launch refused: iss is not on the allow-list")
        raise InputError(
            "iss",
            "this EHR is not on the list of EHRs this app may be launched from",
            "an EHR your administrator has added to the app's settings",
        )
    authorization = svc.smart.authorize(iss, launch=launch_token)
    pending = authorization.pending
    svc.store.put("pending", pending.state, pending.to_dict(), ttl=svc.settings.state_ttl)
    if authorization.method == "POST":
        endpoint = urlsplit(authorization.endpoint)
        allow_form_action(f"{endpoint.scheme}://{endpoint.netloc}")
        return render_template(
            "authorize_post.html", endpoint=authorization.endpoint, params=authorization.params
        )
    response = redirect(authorization.location, code=302)
    return response


@bp.get("/callback")
def callback() -> Response:
    """The authorization server's redirect: check state (single use, expiring), exchange the code."""
    svc = services()
    state = _param("state") or ""
    pending_data = svc.store.take("pending", state) if state else None  # consumed: single use
    denied = callback_error(request.args)
    if denied is not None:
        raise denied
    if pending_data is None:
        raise InvalidCallback(
            "This sign-in response is unknown, expired or was already used. Open the app again from the EHR."
        )
    pending = PendingAuthorization.from_dict(pending_data)
    smart = svc.smart.complete(pending, code=_param("code") or "", state=state)
    # nothing is read from the FHIR server here: the patient page reads the signed-in user together
    # with its own batch (smart_app.app_session), one round trip for both
    sid = svc.new_session(smart)
    current_app.logger.info("launch authorized; session created (write access: %s)", smart.can_write)
    return redirect(url_for("patient.page", sid=sid), code=303)
