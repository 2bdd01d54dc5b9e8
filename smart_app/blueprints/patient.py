"""The session pages, reached through the opaque session id in the path: ``/s/<sid>/...``.

The id is carried in the URL rather than a cookie so the app keeps working inside an EHR iframe
where third-party cookies are blocked, and so two launches in one browser never share state.
"""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, url_for

from smart_app.patient_view import load_patient_page
from smart_app.services import services

bp = Blueprint("patient", __name__, url_prefix="/s/<string(length=43):sid>")


@bp.get("/")
def index(sid: str) -> Response:
    return redirect(url_for("patient.page", sid=sid), code=303)


@bp.get("/patient")
def page(sid: str) -> str:
    svc = services()
    record, smart = svc.load_session(sid)
    data = load_patient_page(smart, http=svc.http, timeout=svc.settings.http_timeout)
    return render_template(
        "patient.html",
        sid=sid,
        csrf_token=record["csrf"],
        page=data,
        smart=smart,
        need_patient_banner=smart.need_patient_banner,
        style_vars=svc.styles.get(smart.smart_style_url),
    )


@bp.post("/end")
def end(sid: str) -> str:
    """End this app session (the CSRF token was checked before the view ran)."""
    services().end_session(sid)
    return render_template("ended.html")
