"""The planning pages: start a plan, the worksheet with its edit forms, print and pharmacy sheets.

``/s/<sid>/plan/new`` (GET form, POST creates a draft), ``/s/<sid>/plan/<draft_id>`` (GET the
worksheet; POST an edit: recalculate, insert, remove, confirm-unlisted, override),
``/s/<sid>/plan/<draft_id>/print`` and ``/pharmacy``. Views parse, call the domain and render;
every edit is recomputed through the engine and the safety invariants before it is saved, and a
refused edit re-renders the page (400, or 422 for a safety invariant) with the draft unchanged.
Signing (``POST .../sign``) belongs to the orders blueprint, which re-renders the plan page through
:func:`render_plan_page` when the orders were not sent.

The routes live here; the work, by concern: :mod:`~smart_app.planning.start_form` (the chart's
choices, a copy, the risk pre-fill), :mod:`~smart_app.planning.plan_page` (the plan page's context and
rendering), :mod:`~smart_app.planning.edits` (the edit actions), :mod:`~smart_app.planning.pages`
(what every page shares).
"""

from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from fhir_desens.course.chart import patient_reference
from fhir_desens.course.draft import CopiedSettings
from fhir_desens.course.planning_chart import chart_for_planning
from fhir_desens.course.risk import risk_sources
from fhir_desens.errors import InputError, SafetyViolation
from fhir_desens.protocol.display import moment_text
from smart_app.paper.pdf import pdf_response
from smart_app.paper.sheets import draft_status, paper_for
from smart_app.planning import drafts
from smart_app.planning.drafts import PlanDraft
from smart_app.planning.edits import ACTIONS, FIELD_OF_ACTION, edited_draft
from smart_app.planning.forms import (
    FieldError,
    error_status,
    field_error,
    parse_start,
    risk_defaults,
)
from smart_app.planning.pages import common_context, session_for
from smart_app.planning.plan_page import context_for, render_plan, render_plan_page, worksheet_of
from smart_app.planning.start_form import (
    candidates_for,
    chart_risk,
    copied_settings,
    render_start,
    start_values,
)
from smart_app.security import allow_printing_from_the_app
from smart_app.services import services

__all__ = ["bp", "render_plan_page"]

bp = Blueprint("plan", __name__, url_prefix="/s/<string(length=43):sid>/plan", template_folder="templates")


# --- start form ----------------------------------------------------------------------------------


@bp.get("/new")
def new(sid: str) -> tuple[str, int]:
    session = session_for(sid)
    reads = session.planning_reads(fresh=True)  # read once per draft: the POST reuses it
    chart = chart_for_planning(reads, session.smart, session.allergies())
    copied = copied_settings(session, request.args.get("copy"))
    candidates = candidates_for(chart, copied)
    values = start_values(chart, copied, candidates)
    risk, risk_chart = chart_risk(session, reads, candidates, values.get("drug"), values.get("other_drug"))
    values.update(risk_defaults(risk))  # RISK-CHART-1: pre-filled from the chart, each with its source
    return render_start(
        session,
        session.banner(),
        chart,
        values,
        copied=copied,
        candidates=candidates,
        risk=risk,
        risk_unavailable=risk_chart.unavailable,
    )


@bp.post("/new")
def create(sid: str) -> Response | tuple[str, int]:
    session = session_for(sid)
    reads = session.planning_reads()  # as the form was shown (read again only when that has expired)
    chart = chart_for_planning(reads, session.smart, session.allergies())
    form = request.form
    copied: CopiedSettings | None = None
    errors: list[FieldError] = []
    try:
        copied = copied_settings(session, form.get("copy"))
    except InputError as error:  # a tampered hidden field
        errors.append(field_error(error, default="copy"))
    candidates = candidates_for(chart, copied)
    start, start_errors = parse_start(form, candidates)
    errors.extend(start_errors)
    risk, risk_chart = chart_risk(session, reads, candidates, form.get("drug"), form.get("other_drug"))
    draft: PlanDraft | None = None
    if start is not None and not errors:
        start = replace(start, risk_sources=risk_sources(risk), risk_pointers=risk.pointers)
        try:
            draft = drafts.draft_from_start(
                start,
                patient=patient_reference(session.smart),
                protocols=drafts.library(),
                created_at=services().clock(),
                copied=copied,
                pump_resolution_ml_h=services().settings.pump_resolution_ml_h,  # the site's pumps
            )
            drafts.plan_for(draft)  # a draft is only kept when the engine can plan it safely
        except (InputError, SafetyViolation) as error:
            errors = [field_error(error, default="target_dose")]
            draft = None
    if draft is None:
        return render_start(
            session,
            session.banner(),
            chart,
            form.to_dict(),
            copied=copied,
            candidates=candidates,
            errors=errors,
            status=error_status(errors),
            risk=risk,
            risk_unavailable=risk_chart.unavailable,
        )
    drafts.save_draft(sid, draft)
    return redirect(url_for("plan.page", sid=sid, draft_id=draft.draft_id), code=303)


@bp.get("/<string(length=22):draft_id>")
def page(sid: str, draft_id: str) -> tuple[str, int]:
    return render_plan_page(sid, draft_id, status=200)


@bp.post("/<string(length=22):draft_id>")
def edit(sid: str, draft_id: str) -> Response | tuple[str, int]:
    context = context_for(sid, draft_id)
    form: MultiDict[str, str] = request.form
    flat = {key: form.get(key, "") for key in form}
    action = flat.get("action", "")
    try:
        if action not in ACTIONS:
            raise InputError("action", "unknown action", ", ".join(ACTIONS))
        edited = edited_draft(context, action, flat)
        drafts.plan_for(edited)  # recomputed through the engine and the invariants before saving
    except (InputError, SafetyViolation) as error:
        context.errors = [field_error(error, default=FIELD_OF_ACTION.get(action, "action"))]
        return render_plan(context, posted=flat, status=error_status([error]))
    drafts.save_draft(sid, edited)
    anchor = {
        "insert": "steps",
        "remove": "steps",
        "recalculate": "protocol-heading",
        "schedule": "actions-heading",
        "acknowledge-dose": "actions-heading",
        "keep-order": "actions-heading",
        "hold-order": "actions-heading",
        "confirm-duplicate": "actions-heading",
    }.get(action, "")
    target = url_for("plan.page", sid=sid, draft_id=draft_id) + (f"#{anchor}" if anchor else "")
    return redirect(target, code=303)


# --- print and pharmacy sheets -------------------------------------------------------------------------


def _sheet(sid: str, draft_id: str, template: str, *, as_pdf: bool = False) -> tuple[str, int]:
    context = context_for(sid, draft_id)
    if context.blocked:
        raise InputError("plan", "desensitization is contraindicated; there is no worksheet to print")
    if context.plan is None:
        detail = context.plan_error.message if context.plan_error else "unknown"
        raise InputError("plan", f"the plan cannot be computed ({detail})", "fix the plan on the plan page")
    allow_printing_from_the_app()
    now = services().site_now()
    pdf_endpoint = "plan.print_pdf" if template == "plan_print.html" else "plan.pharmacy_pdf"
    html = render_template(
        template,
        **common_context(context.session, context.banner),
        draft=context.draft,
        assessment=context.assessment,
        worksheet=worksheet_of(context),
        review=context.review,
        printed_at=moment_text(now),
        prescriber=context.session.user.name,  # unreadable: left blank to be written by hand
        fixed_note=drafts.fixed_dose_note(context.draft, context.plan),
        back_url=url_for("plan.page", sid=sid, draft_id=draft_id),
        back_text="Back to the plan",
        sheet_status=draft_status(),
        paper=paper_for(
            context.plan,
            context.draft.drug_rxnorm,
            services().settings.bag_overfill_ml,
            services().settings.min_draw_ml,
        ),
        pdf=as_pdf,
        pdf_url=url_for(pdf_endpoint, sid=sid, draft_id=draft_id),
    )
    return html, 200


@bp.get("/<string(length=22):draft_id>/print")
def print_worksheet(sid: str, draft_id: str) -> tuple[str, int]:
    return _sheet(sid, draft_id, "plan_print.html")


@bp.get("/<string(length=22):draft_id>/pharmacy")
def pharmacy(sid: str, draft_id: str) -> tuple[str, int]:
    return _sheet(sid, draft_id, "plan_pharmacy.html")


@bp.get("/<string(length=22):draft_id>/worksheet.pdf")
def print_pdf(sid: str, draft_id: str) -> Response:
    html, _ = _sheet(sid, draft_id, "plan_print.html", as_pdf=True)
    return pdf_response(html, request.host_url, "desensitization-worksheet-draft.pdf")


@bp.get("/<string(length=22):draft_id>/pharmacy.pdf")
def pharmacy_pdf(sid: str, draft_id: str) -> Response:
    html, _ = _sheet(sid, draft_id, "plan_pharmacy.html", as_pdf=True)
    return pdf_response(html, request.host_url, "desensitization-pharmacy-draft.pdf")
