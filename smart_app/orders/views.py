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
from datetime import datetime
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from fhir_desens.course.assessment import assess
from fhir_desens.course.chart import open_client, patient_reference
from fhir_desens.course.held_orders import OrdersHeldMeanwhile
from fhir_desens.course.lifecycle import (
    LifecycleNotPermitted,
    PlanChangedMeanwhile,
    PlanEnded,
    can_change_status,
    discontinue,
    hold_therapeutic_order,
)
from fhir_desens.course.lifecycle import release_hold as release
from fhir_desens.course.sign_errors import describe_refusal
from fhir_desens.errors import DesensError, InputError
from fhir_desens.protocol.crossreactivity import DrugRef
from fhir_desens.protocol.display import moment_text
from smart_app.app_session import AppSession, app_session
from smart_app.orders.signed import SignedPlanPage, load_signed_plan
from smart_app.orders.signed import sign as sign_orders
from smart_app.paper.pdf import pdf_response
from smart_app.paper.sheets import paper_for, signed_status, signer_words
from smart_app.planning import drafts
from smart_app.planning.drafts import DraftNotFound
from smart_app.planning.views import render_plan_page
from smart_app.security import allow_printing_from_the_app
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
    sent = "again" if result.repeat else "1"
    target = url_for("orders.signed", sid=sid, rg_id=result.request_group_id, sent=sent)
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
    """Who signed, for people: the name the orders carry, else the signed-in user's name when they signed
    it; None when the orders name no readable person (the pages then say so in words, never
    "Practitioner/7": a pharmacist needs a person to call)."""
    if signed.author_name:
        return signed.author_name
    user = session.user
    if signed.author is not None and signed.author == user.reference and user.name:
        return user.name
    return None


def _signed(sid: str, rg_id: str) -> tuple[dict[str, Any], SignedPlanPage, AppSession]:
    svc = services()
    session = app_session(sid)
    smart = session.smart
    signed = load_signed_plan(smart, rg_id, started_at=svc.site_now())
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
        "signer_words": signer_words(_signer(session, signed), signed.author),
        "can_change": can_change_status(smart),
        "when": _when,
    }
    return common, signed, session


def _when(value: str | None) -> str:
    """A FHIR dateTime for people, in the site's zone ("15 Jan 2027 09:00 CET")."""
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        return value
    return moment_text(moment, services().settings.zone)


def _held_cancelled(steps: str) -> str:
    """The sentence of ``?held=1,3``: step orders someone had put on hold, cancelled as the nurse confirmed."""
    numbers = [n for n in steps.split(",") if n.isdigit() and len(n) <= 3][:50]
    if not numbers:
        return ""
    which = ", ".join(numbers)
    plural = len(numbers) > 1
    return (
        f"As you confirmed, the {'orders' if plural else 'order'} of step{'s' if plural else ''} {which}, "
        f"which {'were' if plural else 'was'} on hold in the EHR, {'were' if plural else 'was'} cancelled too."
    )


#: what ``?done=`` on the signed plan page reports
DONE = {
    "discontinued": "The plan is discontinued: its orders not yet given are cancelled, the others stopped.",
    "discontinued-released": "The plan is discontinued: its orders not yet given are cancelled, the others "
    "stopped. The {order} is active again.",
    "already-discontinued": "This plan was already discontinued; nothing was written again.",
    "held": "The {order} was put on hold for this plan.",
    "released": "The {order} is active again.",
}


def _render_signed(sid: str, rg_id: str, *, status: int = 200, **extra: Any) -> tuple[str, int]:
    common, signed_plan, _ = _signed(sid, rg_id)
    sent = request.args.get("sent")
    done = DONE.get(request.args.get("done", ""), "").format(order=signed_plan.order_name) or None
    done = f"{done} {_held_cancelled(request.args.get('held', ''))}".strip() if done else None
    return render_template("signed_plan.html", **common, sent=sent, done=done, **extra), status


@bp.get("/orders/<string(maxlength=64):rg_id>")
def signed(sid: str, rg_id: str) -> tuple[str, int]:
    return _render_signed(sid, rg_id)


@bp.post("/orders/<string(maxlength=64):rg_id>/discontinue")
def discontinue_plan(sid: str, rg_id: str) -> Response | tuple[str, int]:
    """Discontinue: ONE transaction (course.lifecycle.discontinue); a refusal re-renders the page."""
    session = app_session(sid)
    reason = request.form.get("discontinue_reason", "")
    release = request.form.get("release_hold") in ("yes", "on")
    # the held orders the nurse was shown and agreed to cancel (a later hold is asked about again)
    cancel_held = frozenset(r for r in request.form.get("cancel_held", "").split(",") if r)
    try:
        result = discontinue(session.course(), rg_id, reason, release=release, cancel_held=cancel_held)
    except OrdersHeldMeanwhile as error:  # another person's hold: said, and cancelled only when confirmed
        log.info("discontinue waits: %d step order(s) on hold", len(error.held))
        return _render_signed(
            sid, rg_id, status=409, discontinue_error=error.message, posted_reason=reason, held=error.held
        )
    except InputError as error:
        message = f"Reason for discontinuing: {error.problem}" + (
            f" (accepted: {error.accepted})" if error.accepted else ""
        )
        return _render_signed(sid, rg_id, status=400, discontinue_error=message, posted_reason=reason)
    except (LifecycleNotPermitted, PlanChangedMeanwhile, PlanEnded) as error:
        log.warning("discontinue refused (%s)", type(error).__name__)
        return _render_signed(sid, rg_id, status=error.http_status, discontinue_error=error.message)
    session.forget("plans")  # no longer an active plan for the worksheets' duplicate check
    done = "already-discontinued" if result.already else "discontinued"
    if done == "discontinued" and result.hold is not None and result.hold.state == "released":
        done = "discontinued-released"
    steps = ",".join(h.step for h in result.held_cancelled if h.step)
    target = url_for("orders.signed", sid=sid, rg_id=rg_id, done=done)
    if steps:  # the result says which held orders were cancelled, as confirmed
        target = url_for("orders.signed", sid=sid, rg_id=rg_id, done=done, held=steps)
    return redirect(target, code=303)


@bp.post("/orders/<string(maxlength=64):rg_id>/hold")
def hold_order(sid: str, rg_id: str) -> Response | tuple[str, int]:
    """Put the therapeutic order on hold for this plan (again: after a conflict, or when it failed)."""
    session = app_session(sid)
    signed_plan = load_signed_plan(session.smart, rg_id)
    order = signed_plan.therapeutic_order
    if order is None or signed_plan.lifecycle != "active":
        return _render_signed(sid, rg_id, status=409, hold_error="This plan holds no active order.")
    p = signed_plan.parameters
    plan_text = f"{p.drug} {p.target_dose}, {signed_plan.order_count} steps" if p else "desensitization"
    with open_client(session.smart) as client:
        outcome = hold_therapeutic_order(
            client, session.smart, order.reference, rg_id, plan_text, signed_plan.order_name
        )
    if outcome.state != "held":
        return _render_signed(sid, rg_id, status=409, hold_error=outcome.message)
    return redirect(url_for("orders.signed", sid=sid, rg_id=rg_id, done="held"), code=303)


def _sheet(sid: str, rg_id: str, template: str, *, as_pdf: bool = False) -> tuple[str, int]:
    common, signed_plan, session = _signed(sid, rg_id)
    # a discontinued plan has no print sheet: nobody should prepare or give it
    if (
        signed_plan.worksheet is None
        or signed_plan.draft is None
        or signed_plan.plan is None
        or signed_plan.lifecycle == "discontinued"
    ):
        return render_template("signed_plan.html", **common, sent=False, no_sheet=True), 409
    drug = DrugRef(signed_plan.draft.drug, signed_plan.draft.drug_rxnorm)
    allow_printing_from_the_app()
    now = services().site_now()
    pdf_endpoint = "orders.print_pdf" if template == "plan_print.html" else "orders.pharmacy_pdf"
    html = render_template(
        template,
        **common,
        draft=signed_plan.draft,
        assessment=assess(drug, session.allergies()),
        worksheet=signed_plan.worksheet,
        review=signed_plan.review,
        printed_at=moment_text(now),
        prescriber=common["signer_words"],
        fixed_note=None,
        back_url=url_for("orders.signed", sid=sid, rg_id=rg_id),
        back_text="Back to the signed plan",
        sheet_status=signed_status(common["signer_words"], signed_plan.authored, signed_plan.session_id, now),
        paper=paper_for(
            signed_plan.plan,
            signed_plan.draft.drug_rxnorm,
            services().settings.bag_overfill_ml,
            services().settings.min_draw_ml,
        ),
        pdf=as_pdf,
        pdf_url=url_for(pdf_endpoint, sid=sid, rg_id=rg_id),
    )
    return html, 200


@bp.get("/orders/<string(maxlength=64):rg_id>/print")
def print_worksheet(sid: str, rg_id: str) -> tuple[str, int]:
    return _sheet(sid, rg_id, "plan_print.html")


@bp.get("/orders/<string(maxlength=64):rg_id>/pharmacy")
def pharmacy(sid: str, rg_id: str) -> tuple[str, int]:
    return _sheet(sid, rg_id, "plan_pharmacy.html")


@bp.post("/orders/<string(maxlength=64):rg_id>/release")
def release_hold(sid: str, rg_id: str) -> Response | tuple[str, int]:
    """Make the therapeutic order active again once the plan is completed or discontinued."""
    session = app_session(sid)
    signed_plan = load_signed_plan(session.smart, rg_id)
    if signed_plan.lifecycle == "active":
        return _render_signed(sid, rg_id, status=409, hold_error="The plan is active: discontinue it first.")
    with open_client(session.smart) as client:
        group = client.read("RequestGroup", rg_id).resource
        outcome = release(client, group, rg_id, signed_plan.order_name)
    if outcome is None or outcome.state != "released":
        message = outcome.message if outcome else "This plan holds no order."
        return _render_signed(sid, rg_id, status=409, hold_error=message)
    return redirect(url_for("orders.signed", sid=sid, rg_id=rg_id, done="released"), code=303)


def _pdf(sid: str, rg_id: str, template: str, filename: str) -> Response | tuple[str, int]:
    html, status = _sheet(sid, rg_id, template, as_pdf=True)
    if status != 200:
        return html, status
    return pdf_response(html, request.host_url, filename)


@bp.get("/orders/<string(maxlength=64):rg_id>/worksheet.pdf")
def print_pdf(sid: str, rg_id: str) -> Response | tuple[str, int]:
    return _pdf(sid, rg_id, "plan_print.html", "desensitization-worksheet-signed.pdf")


@bp.get("/orders/<string(maxlength=64):rg_id>/pharmacy.pdf")
def pharmacy_pdf(sid: str, rg_id: str) -> Response | tuple[str, int]:
    return _pdf(sid, rg_id, "plan_pharmacy.html", "desensitization-pharmacy-signed.pdf")
