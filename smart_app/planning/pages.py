"""What every planning page needs: the session (with a patient to plan for) and the template
context they all share."""

from __future__ import annotations

from typing import Any

from fhir_desens.course.chart import patient_reference
from smart_app.app_session import AppSession, app_session
from smart_app.chart.page import PatientBanner
from smart_app.planning.forms import (
    LABELS,
)
from smart_app.services import services


def session_for(sid: str) -> AppSession:
    session = app_session(sid)
    patient_reference(session.smart)  # a launch without a patient cannot plan
    return session


def common_context(session: AppSession, banner: PatientBanner) -> dict[str, Any]:
    svc = services()
    return {
        "sid": session.sid,
        "csrf_token": session.csrf_token,
        "banner": banner,
        "smart": session.smart,
        "user": session.user,
        "need_patient_banner": session.smart.need_patient_banner,
        "style_vars": svc.styles.get(session.smart.smart_style_url),
        "labels": LABELS,
    }
