"""Signed orders: ``POST /s/<sid>/plan/<draft_id>/sign`` and the read-only signed plan pages.

``/s/<sid>/orders/<RequestGroup id>`` shows a signed plan rebuilt from the EHR's resources, with
"Copy this plan" and print links (``/print``, ``/pharmacy``: the planning print sheets, fed the
signed plan's worksheet). The work is in :mod:`fhir_desens.course` (through
:mod:`smart_app.orders.signed`); these views load the session,
call it and render. A refused signing re-renders the plan page with the reason (403 no write
scope or refused, 409 blocked or conflicting, 502 the EHR failed or did not answer) and its print
links; never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from fhir_desens.course.assessment import assess
from fhir_desens.course.chart import patient_reference
from fhir_desens.course.sign import describe_refusal
from fhir_desens.errors import DesensError
from fhir_desens.protocol.crossreactivity import DrugRef
from smart_app.app_session import AppSession, app_session
from smart_app.orders.signed import SignedPlanPage, load_signed_plan
from smart_app.orders.signed import sign as sign_orders
from smart_app.planning import drafts
from smart_app.planning.drafts import DraftNotFound
from smart_app.planning.views import render_plan_page
from smart_app.planning.worksheet import local_now
from smart_app.services import services

log = logging.getLogger(__name__)

bp = Blueprint("orders", __name__, url_prefix="/s/<string(length=43):sid>", template_folder="templates")


@bp.post("/plan/<string(length=22):draft_id>/sign")
def sign(sid: str, draft_id: str) -> Response | tuple[str, int]:
    session = app_session(sid)
    draft = drafts.load_draft(sid, draft_id)
    if draft.patient != patient_reference(session.smart):
        raise DraftNotFound()
    try:
        result = sign_orders(session, draft)
    except DesensError as error:
        if isinstance(error, DraftNotFound):
            raise
        log.warning("signing refused (%s): %s", type(error).__name__, error.message)
        return _refused(sid, draft_id, error)
    target = url_for("orders.signed", sid=sid, rg_id=result.request_group_id, sent="1")
    return redirect(target, code=303)


def _refused(sid: str, draft_id: str, error: DesensError) -> tuple[str, int]:
    """The plan page again, saying what happened to the orders (and with its print links)."""
    status = int(getattr(error, "http_status", 500))
    try:
        return render_plan_page(sid, draft_id, status=status, sign_error=error)
    except DesensError as page_error:  # e.g. the EHR is down: the plan page cannot be read either
        log.warning("plan page unavailable after a refused signing: %s", type(page_error).__name__)
        html = render_template(
            "sign_failed.html", sid=sid, draft_id=draft_id, refusal=describe_refusal(error), status=status
        )
        return html, status


def _signer(session: AppSession, signed: SignedPlanPage) -> str | None:
    """Who signed, for people: the signed-in user's name when they signed it, else the reference."""
    user = session.user
    if signed.author is not None and signed.author == user.reference:
        return user.display
    return signed.author


def _signed(sid: str, rg_id: str) -> tuple[dict[str, Any], SignedPlanPage, AppSession]:
    svc = services()
    session = app_session(sid)
    smart = session.smart
    signed = load_signed_plan(smart, rg_id, started_at=local_now(svc.clock()))
    common = {
        "sid": sid,
        "csrf_token": session.csrf_token,
        "banner": session.banner(),
        "smart": smart,
        "user": session.user,
        "need_patient_banner": smart.need_patient_banner,
        "style_vars": svc.styles.get(smart.smart_style_url),
        "signed": signed,
        "signer": _signer(session, signed),
    }
    return common, signed, session


@bp.get("/orders/<string(maxlength=64):rg_id>")
def signed(sid: str, rg_id: str) -> tuple[str, int]:
    common, _, _ = _signed(sid, rg_id)
    sent = request.args.get("sent") == "1"
    return render_template("signed_plan.html", **common, sent=sent), 200


def _sheet(sid: str, rg_id: str, template: str) -> tuple[str, int]:
    common, signed_plan, session = _signed(sid, rg_id)
    if signed_plan.worksheet is None or signed_plan.draft is None:
        return render_template("signed_plan.html", **common, sent=False, no_sheet=True), 409
    drug = DrugRef(signed_plan.draft.drug, signed_plan.draft.drug_rxnorm)
    now = local_now(services().clock())
    html = render_template(
        template,
        **common,
        draft=signed_plan.draft,
        assessment=assess(drug, session.allergies()),
        worksheet=signed_plan.worksheet,
        printed_at=now.strftime("%Y-%m-%d %H:%M %Z").strip(),
        prescriber=common["signer"],
        fixed_note=None,
        back_url=url_for("orders.signed", sid=sid, rg_id=rg_id),
        back_text="Back to the signed plan",
    )
    return html, 200


@bp.get("/orders/<string(maxlength=64):rg_id>/print")
def print_worksheet(sid: str, rg_id: str) -> tuple[str, int]:
    return _sheet(sid, rg_id, "plan_print.html")


@bp.get("/orders/<string(maxlength=64):rg_id>/pharmacy")
def pharmacy(sid: str, rg_id: str) -> tuple[str, int]:
    return _sheet(sid, rg_id, "plan_pharmacy.html")
