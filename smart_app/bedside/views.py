"""Bedside pages: start a session from a signed plan, run it from the flowsheet, print its record.

``POST /s/<sid>/orders/<rg>/bedside``     start (the signed plan is read back and checked first)
``GET  /s/<sid>/bedside/<session>``       the flowsheet (server-rendered; works without JavaScript)
``POST /s/<sid>/bedside/<session>``       one entry (``kind`` + fields + ``entry_id``); 303 back, or the
                                         page with the refusal naming the field (400/409, nothing written)
``POST /s/<sid>/bedside/<session>/send``  send what has not reached the EHR
``GET  /s/<sid>/bedside/<session>/state`` JSON for the script (server time, phase, last entry, unsent)
``GET  /s/<sid>/bedside/<session>/record`` the printable session record
``GET  /s/<sid>/bedside/<session>/record.pdf`` the same as a PDF (smart_app.paper.record)
``POST /s/<sid>/bedside/<session>/close-plan``  close the signed plan in the EHR (done automatically on
                                         completion; again here after a conflict or a failure)
``POST /s/<sid>/bedside/<session>/release-hold`` put the standard-rate order the plan held back to active

Every form carries an ``entry_id`` minted when the page was rendered (the script mints a fresh one per
submission): a double click, a resubmitted form or a replay after a lost connection records once.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from fhir_desens.course.bedside.entries import NewEntry
from fhir_desens.course.bedside.prestart import ChartFact, read_chart_facts
from fhir_desens.course.bedside.record import SessionNotFound, start_entry
from fhir_desens.course.bedside.session import SessionState
from fhir_desens.course.chart import open_client, patient_reference
from fhir_desens.course.closing import ClosedPlan, PlanInEhr, close_plan, plan_in_ehr
from fhir_desens.course.lifecycle import release_hold
from fhir_desens.errors import ConflictError, DesensError, InputError
from smart_app.app_session import AppSession, app_session
from smart_app.bedside import page
from smart_app.bedside.forms import clock_time, entry_data
from smart_app.bedside.service import bedside
from smart_app.orders.signed import load_signed_plan
from smart_app.paper.record import author_names, record_context, session_record_pdf_for
from smart_app.services import services

log = logging.getLogger(__name__)

bp = Blueprint("bedside", __name__, url_prefix="/s/<string(length=43):sid>", template_folder="templates")
SESSION = "<string(length=36):session_id>"
REQUEST_WAIT = 10.0  # seconds a page waits for the background sender to finish a session before sending


def _author(session: AppSession) -> str:
    return session.user.reference or "unknown user"


def _names(session: AppSession) -> dict[str, str]:
    """People's names for author references (the signed-in user's, as the EHR gave it)."""
    user = session.user
    return {user.reference: user.display} if user.reference and user.display else {}


def _wants_json() -> bool:
    return "application/json" in request.headers.get("Accept", "")


@bp.get("/orders/<string(maxlength=64):rg_id>/bedside")
def start_page(sid: str, rg_id: str) -> tuple[str, int]:
    session = app_session(sid)
    signed = load_signed_plan(session.smart, rg_id)
    smart = session.smart
    html = render_template(
        "bedside_start.html",
        sid=sid,
        csrf_token=session.csrf_token,
        banner=session.banner(),
        need_patient_banner=smart.need_patient_banner,
        style_vars=services().styles.get(smart.smart_style_url),
        signed=signed,
    )
    return html, 200


@bp.post("/orders/<string(maxlength=64):rg_id>/bedside")
def start(sid: str, rg_id: str) -> Response | tuple[str, int]:
    session = app_session(sid)
    signed = load_signed_plan(session.smart, rg_id)
    if signed.status != "active" or signed.plan is None or signed.draft is None:
        reason = signed.recompute_problem or f"the plan is {signed.status}, not active"
        raise ConflictError(f"This plan cannot be started at the bedside: {reason}")
    svc = bedside()
    session_id = request.form.get("session_id") or str(uuid.uuid4())
    now = svc.now().astimezone()
    typed = request.form.get("at_time", "").strip()
    started = clock_time(typed, now, "at_time") if typed else now
    if started > now:
        raise InputError("at_time", "is in the future", "now or earlier")
    step_requests = {o.step: f"MedicationRequest/{o.id}" for o in signed.orders if o.step is not None}
    new = start_entry(
        entry_id=request.form.get("entry_id") or str(uuid.uuid4()),
        session_id=session_id,
        author=_author(session),
        at=started,
        draft=signed.draft,
        request_group=f"RequestGroup/{rg_id}",
        step_requests=step_requests,
        encounter=f"Encounter/{session.smart.encounter}" if session.smart.encounter else None,
        beta_blocker=request.form.get("beta_blocker") == "yes",
        peak_flow=request.form.get("peak_flow") == "yes",
        plan_session=signed.session_id or None,
    )
    svc.record().record(new)
    svc.recorded(session_id, sid, services().settings.session_ttl)
    svc.send(session.smart, svc.record().load(session_id), wait=REQUEST_WAIT)
    return redirect(url_for("bedside.flowsheet", sid=sid, session_id=session_id), code=303)


def _load(sid: str, session_id: str) -> tuple[AppSession, SessionState]:
    session = app_session(sid)
    state = bedside().record().load(session_id)
    if state.context.get("patient") != patient_reference(session.smart):
        raise SessionNotFound()
    return session, state


def _render(
    sid: str,
    session: AppSession,
    state: SessionState,
    *,
    status: int = 200,
    error: DesensError | None = None,
    sent: Any = None,
    closing: str | None = None,
) -> tuple[str, int]:
    svc = bedside()
    now = svc.now()
    outbox = sent if sent is not None else svc.status(state.session_id)
    smart = session.smart
    in_ehr = _plan_in_ehr(session, state) if state.completion is not None else None
    chart = _chart_facts(session, state) if state.phase in ("checklist", "ready") else []
    html = render_template(
        "flowsheet.html",
        sid=sid,
        csrf_token=session.csrf_token,
        banner=session.banner(),
        need_patient_banner=smart.need_patient_banner,
        style_vars=services().styles.get(smart.smart_style_url),
        user=session.user,
        state=state,
        plan=state.plan,
        rows=page.rows(state),
        current=page.current(state, now),
        resume=page.resume_rows(state) if state.open_reaction else [],
        vitals=page.vitals_rows(state),
        vitals_due=state.vitals_due(now),
        outbox=page.status_view(outbox),
        now=now,
        clock=page.clock,
        p=page,
        error=error,
        entry_id=lambda: str(uuid.uuid4()),
        names=_names(session),
        last_seq=len(svc.record().entries(state.session_id)),
        in_ehr=in_ehr,
        closing=closing,
        test_clock=svc.test_clock,
        chart=chart,
    )
    return html, status


def _chart_facts(session: AppSession, state: SessionState) -> list[ChartFact]:
    """What the chart says for the pre-start checklist (read while the checklist is open)."""
    draft = state.context.get("draft") or {}
    per_body_size = bool(draft.get("dose_per_m2") or draft.get("dose_basis"))
    try:
        with open_client(session.smart) as client:
            return read_chart_facts(
                client,
                str(state.context.get("patient")),
                state.plan,
                bedside().now(),
                per_body_size=per_body_size,
            )
    except DesensError as error:
        log.info("pre-start chart facts not read (%s)", type(error).__name__)
        return [
            ChartFact(
                "chart",
                "Chart",
                "the chart could not be read: confirm each item",
                "the chart cannot tell",
                None,
            )
        ]


def _plan_in_ehr(session: AppSession, state: SessionState) -> PlanInEhr:
    request_group = str(state.context.get("request_group") or "")
    with open_client(session.smart) as client:
        return plan_in_ehr(client, session.smart, request_group)


def _close(session: AppSession, state: SessionState) -> ClosedPlan:
    """Close the session's plan in the EHR as the session ended (completed, or stopped with its reason)."""
    assert state.completion is not None
    completion = state.completion
    when = completion["at"].isoformat(timespec="seconds")
    with open_client(session.smart) as client:
        return close_plan(
            client,
            session.smart,
            str(state.context.get("request_group") or ""),
            completed=completion["outcome"] == "completed",
            given_orders=state.given_order_ids(),
            when=when,
            reason=completion.get("reason"),
        )


@bp.get(f"/bedside/{SESSION}")
def flowsheet(sid: str, session_id: str) -> tuple[str, int]:
    session, state = _load(sid, session_id)
    return _render(sid, session, state)


@bp.post(f"/bedside/{SESSION}")
def entry(sid: str, session_id: str) -> Response | tuple[str, int] | tuple[Response, int]:
    session, state = _load(sid, session_id)
    svc = bedside()
    kind = request.form.get("kind", "")
    try:
        data = entry_data(kind, request.form, svc.now().astimezone())
        new = NewEntry(request.form.get("entry_id", ""), session_id, kind, data, _author(session))
        appended = svc.record().record(new)
    except (InputError, ConflictError) as error:
        log.info("bedside entry refused (%s)", type(error).__name__)
        if _wants_json():
            field = getattr(error, "field", None)
            return jsonify({"ok": False, "message": error.message, "field": field}), error.http_status
        return _render(sid, session, state, status=error.http_status, error=error)
    if appended.created:
        svc.recorded(session_id, sid, services().settings.session_ttl)
    state = svc.record().load(session_id)
    sent = svc.send(session.smart, state, wait=REQUEST_WAIT)
    if kind == "complete" and appended.created:
        # the page reads the plan back from the EHR: a plan left active shows with a button to try again
        log.info("bedside session ended; closing its plan: %s", _close(session, state).state)
    if _wants_json():
        return jsonify({"ok": True, "created": appended.created, "unsent": sent.unsent if sent else None})
    return redirect(url_for("bedside.flowsheet", sid=sid, session_id=session_id) + "#now", code=303)


@bp.post(f"/bedside/{SESSION}/close-plan")
def close_the_plan(sid: str, session_id: str) -> tuple[str, int]:
    session, state = _load(sid, session_id)
    if state.completion is None:
        raise ConflictError("The session is not finished: complete or stop it first.")
    outcome = _close(session, state)
    return _render(sid, session, state, status=409 if outcome.needs_action else 200, closing=outcome.message)


@bp.post(f"/bedside/{SESSION}/release-hold")
def release_the_hold(sid: str, session_id: str) -> tuple[str, int]:
    session, state = _load(sid, session_id)
    if state.completion is None:
        raise ConflictError("The session is not finished: the standard-rate order stays on hold until it is.")
    request_group = str(state.context.get("request_group") or "").removeprefix("RequestGroup/")
    with open_client(session.smart) as client:
        group = client.read("RequestGroup", request_group).resource
        if group.get("subject", {}).get("reference") != patient_reference(session.smart):
            raise SessionNotFound()
        outcome = release_hold(client, group, request_group)
    message = outcome.message if outcome else "This plan holds no standard-rate order."
    failed = outcome is None or outcome.state != "released"
    return _render(sid, session, state, status=409 if failed else 200, closing=message)


@bp.post(f"/bedside/{SESSION}/send")
def send(sid: str, session_id: str) -> Response:
    session, state = _load(sid, session_id)
    svc = bedside()
    svc.recorded(session_id, sid, services().settings.session_ttl)  # this launch sends from now on
    svc.send(session.smart, state, wait=REQUEST_WAIT)
    return redirect(url_for("bedside.flowsheet", sid=sid, session_id=session_id), code=303)


@bp.get(f"/bedside/{SESSION}/state")
def state_json(sid: str, session_id: str) -> Response:
    _, state = _load(sid, session_id)
    svc = bedside()
    due = state.vitals_due(svc.now())
    return jsonify(
        {
            "server_time": svc.now().timestamp(),
            "phase": state.phase,
            "entries": len(svc.record().entries(session_id)),
            "vitals_due": due.timestamp() if due else None,
            "unsent": svc.status(session_id).unsent,
        }
    )


@bp.get(f"/bedside/{SESSION}/record")
def session_record(sid: str, session_id: str) -> tuple[str, int]:
    session, state = _load(sid, session_id)
    svc = bedside()
    entries = svc.record().entries(session_id)
    html = render_template(
        "session_record.html",
        sid=sid,
        style_vars=services().styles.get(session.smart.smart_style_url),
        **record_context(
            state,
            entries,
            session.banner(),
            printed_at=svc.now(),
            names=author_names(session, {e.author for e in entries}),
            outbox=svc.status(session_id),
        ),
    )
    return html, 200


@bp.get(f"/bedside/{SESSION}/record.pdf")
def session_record_pdf(sid: str, session_id: str) -> Response:
    session = app_session(sid)
    pdf = session_record_pdf_for(session, session_id)
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = 'inline; filename="desensitization-session-record.pdf"'
    response.headers["Cache-Control"] = "no-store"
    return response
