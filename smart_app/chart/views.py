"""The session pages, reached through the opaque session id in the path: ``/s/<sid>/...``.

The id is carried in the URL rather than a cookie so the app keeps working inside an EHR iframe
where third-party cookies are blocked, and so two launches in one browser never share state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, redirect, render_template, url_for
from werkzeug.wrappers import Response

from fhir_desens.client.smart import SmartSession
from fhir_desens.course.readback import SignedPlanSummary
from fhir_desens.errors import FhirServerError, ForbiddenError, MappingError
from smart_app.app_session import app_session, forget_chart
from smart_app.chart.page import load_patient_page
from smart_app.orders.signed import signed_plans
from smart_app.services import services

log = logging.getLogger(__name__)

bp = Blueprint("patient", __name__, url_prefix="/s/<string(length=43):sid>", template_folder="templates")


@bp.get("/")
def index(sid: str) -> Response:
    return redirect(url_for("patient.page", sid=sid), code=303)


@bp.get("/patient")
def page(sid: str) -> tuple[str, int]:
    return render_patient_page(sid)


def render_patient_page(sid: str, *, status: int = 200, **extra: Any) -> tuple[str, int]:
    """The patient page; ``extra`` for its panels (a refused form shown again, e.g. ``dose_entry``)."""
    session = app_session(sid)
    smart = session.smart
    plans = session.read_patient_page() if smart.patient else None  # one batch where the EHR takes them
    data = load_patient_page(session)
    html = render_template(
        "patient.html",
        sid=sid,
        csrf_token=session.csrf_token,
        page=data,
        signed_plans=_signed_plans(smart, plans),
        smart=smart,
        user=session.user,
        need_patient_banner=smart.need_patient_banner,
        style_vars=services().styles.get(smart.smart_style_url),
        **extra,
    )
    return html, status


def _signed_plans(smart: SmartSession, bundle: Mapping[str, Any] | None) -> list[SignedPlanSummary] | None:
    """The signed plans for the page (from ``bundle`` when the batch read them); None when the grant or
    the EHR does not let us read them."""
    if not smart.granted.can_read("RequestGroup"):
        return None
    try:
        return signed_plans(smart, bundle)
    except (FhirServerError, ForbiddenError, MappingError) as error:
        log.warning("signed plans unavailable: %s", type(error).__name__)
        return None


@bp.post("/end")
def end(sid: str) -> str:
    """End this app session (the CSRF token was checked before the view ran)."""
    forget_chart(sid)
    services().end_session(sid)
    return render_template("ended.html")
