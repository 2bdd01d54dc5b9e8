"""Bringing a finished session's outcome back to the chart: preview, confirm, result; tasks; tolerance.

``GET /s/<sid>/outcome/<session>`` shows what would be written (in words and as a diff, or the clinical
note, or the copy-ready text) and why that write; ``POST`` writes what the allergist confirmed and shows
exactly what was written. The work is in :mod:`fhir_desens.course.outcome`; these views gather the
session, the EHR's capabilities and the grant, call it and render.

The patient page and the planning page show the tolerance window and the open tasks through the
``outcome_panel`` and ``next_course_for`` template functions (a failure there never breaks those pages).
``POST /s/<sid>/outcome/doses`` records a dose given after a desensitization (drug, dose, time) in the
app's own record, the first source of the tolerance window's last dose.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import tzinfo
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.course.bedside.record import BedsideRecord
from fhir_desens.course.bedside.summary import SessionSummary
from fhir_desens.course.chart import patient_reference
from fhir_desens.course.outcome.allergy_change import GUARDED, Flavor, element_words
from fhir_desens.course.outcome.from_session import (
    DrugTolerance,
    finished,
    outcome_from_session,
    tolerance_overview,
)
from fhir_desens.course.outcome.last_dose import names_drug
from fhir_desens.course.outcome.later_doses import LaterDose
from fhir_desens.course.outcome.next_course import CourseChange, next_course
from fhir_desens.course.outcome.preview import Preview, prepare, with_pdf
from fhir_desens.course.outcome.strategy import WriteDecision, WritePath, choose_write
from fhir_desens.course.outcome.tasks import ChartTask
from fhir_desens.course.outcome.wording import outcome_id, session_outcome_id
from fhir_desens.course.outcome.writeback import write_outcome
from fhir_desens.errors import DesensError, InputError
from fhir_desens.protocol.crossreactivity import DrugRef
from fhir_desens.protocol.display import moment_text
from smart_app.app_session import AppSession, app_session
from smart_app.chart.views import render_patient_page
from smart_app.library import library
from smart_app.outcome.dose_form import DoseEntry, dose_form, later_dose, refusal
from smart_app.paper.record import session_record_pdf_for
from smart_app.services import services

log = logging.getLogger(__name__)

bp = Blueprint("outcome", __name__, url_prefix="/s/<string(length=43):sid>", template_folder="templates")

_SESSION_ID = "string(minlength=8,maxlength=64)"


def _local_zone() -> tzinfo:
    """The site's zone (``FHIR_DESENS_TIME_ZONE``, else the server's), as every other page of the app."""
    return services().settings.zone


def _record() -> BedsideRecord:
    svc = services()
    return BedsideRecord(svc.record_store(), library(), svc.now)


def _summary(session: AppSession, session_id: str) -> SessionSummary:
    """This patient's finished session ``session_id`` (404 otherwise: never another patient's)."""
    patient = patient_reference(session.smart)
    for summary in finished(_record().patient_sessions(patient)):
        if summary.session_id == session_id:
            return summary
    abort(404)


def _decision(session: AppSession) -> WriteDecision:
    setting, flavor = services().settings.allergy_write_for(session.smart.fhir_base)
    return choose_write(
        services().capabilities.get(session.client),
        session.smart.granted,
        setting,
        flavor=Flavor(flavor) if flavor else None,
    )


def _preview(session: AppSession, session_id: str, allergy_id: str | None) -> Preview:
    user = session.user
    outcome = outcome_from_session(
        _summary(session, session_id),
        author=user.reference,
        author_name=user.in_records,
        protocols=library(),
    )
    if outcome.encounter is None and session.smart.encounter:  # a session started without one
        outcome = dataclasses.replace(outcome, encounter=f"Encounter/{session.smart.encounter}")
    return prepare(
        session.client,
        outcome,
        _decision(session),
        recorded_at=services().now(),
        allergy_id=allergy_id or None,
        tz=_local_zone(),
    )


def _page(session: AppSession, template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    html = render_template(
        template,
        sid=session.sid,
        csrf_token=session.csrf_token,
        banner=session.banner(),
        need_patient_banner=session.smart.need_patient_banner,
        style_vars=services().styles.get(session.smart.smart_style_url),
        path_words=_PATH_WORDS,
        guarded=GUARDED,
        element_words=element_words,
        **context,
    )
    return html, status


_PATH_WORDS = {
    WritePath.UPDATE_ALLERGY: "Update the allergy record",
    WritePath.CLINICAL_NOTE: "Write a clinical note",
    WritePath.NOTHING_WRITABLE: "Nothing can be written to this EHR",
}


@bp.get(f"/outcome/<{_SESSION_ID}:session_id>")
def preview(sid: str, session_id: str) -> tuple[str, int]:
    session = app_session(sid)
    try:
        shown = _preview(session, session_id, request.args.get("allergy"))
    except InputError as error:
        return _page(session, "outcome_error.html", 400, message=error.message)
    return _page(session, "outcome_preview.html", preview=shown, session_id=session_id)


@bp.post(f"/outcome/<{_SESSION_ID}:session_id>")
def confirm(sid: str, session_id: str) -> tuple[str, int]:
    session = app_session(sid)
    try:
        shown = _preview(session, session_id, request.form.get("allergy"))
    except InputError as error:
        return _page(session, "outcome_error.html", 400, message=error.message)
    previewed = request.form.get("previewed_version") or None
    add = request.form.get("add_allergy") == "yes"
    pdf_missing = False
    if shown.document is not None and not shown.already_written:
        pdf = _session_record_pdf(session, session_id)
        pdf_missing = pdf is None
        shown = with_pdf(shown, pdf) if pdf is not None else shown
    report = write_outcome(
        session.client,
        shown,
        tasks=services().task_book(),
        now=services().now(),
        add_allergy=add,
        previewed_version=previewed,
    )
    if report.refused:  # the next preview reads the statement again and may choose the clinical note
        services().capabilities.forget(session.client)
    status = 409 if report.conflict is not None else 200
    return _page(
        session,
        "outcome_result.html",
        status,
        preview=shown,
        report=report,
        session_id=session_id,
        pdf_missing=pdf_missing,
    )


def _session_record_pdf(session: AppSession, session_id: str) -> bytes | None:
    """The session record as a PDF for the clinical note; None (said on the result page) when it cannot be
    rendered: the note then carries its text only."""
    try:
        return session_record_pdf_for(session, session_id)
    except (DesensError, OSError, ValueError) as error:
        log.warning("session record PDF not rendered for the clinical note: %s", type(error).__name__)
        return None


@bp.post("/outcome/tasks/<string(minlength=8,maxlength=64):task_id>/done")
def task_done(sid: str, task_id: str) -> Response:
    session = app_session(sid)
    book = services().task_book()
    own = {t.outcome_id for t in book.tasks_for(patient_reference(session.smart))}
    if task_id not in own:
        abort(404)
    book.mark_done(task_id, session.user.in_records, services().now())
    return redirect(url_for("patient.page", sid=sid) + "#outcome-tasks", code=303)


# -- doses given after a desensitization ---------------------------------------------------------------------


@bp.post("/outcome/doses")
def record_dose(sid: str) -> Response | tuple[str, int]:
    """Record a dose; refused, the patient page again with the form as it was sent and the message beside
    the field (nothing recorded)."""
    session = app_session(sid)
    patient = patient_reference(session.smart)
    try:
        dose = later_dose(
            request.form,
            [s for s in finished(_record().patient_sessions(patient)) if s.completed],
            patient=patient,
            recorded_by=session.user.in_records,
            now=services().now(),
            zone=_local_zone(),
        )
    except InputError as error:
        return render_patient_page(sid, status=400, dose_entry=refusal(error, request.form))
    services().dose_book().record(dose)
    return redirect(url_for("patient.page", sid=sid) + "#tolerance-heading", code=303)


@bp.post("/outcome/doses/<string(minlength=8,maxlength=64):dose_id>/entered-in-error")
def dose_in_error(sid: str, dose_id: str) -> Response:
    """Mark a recorded dose entered in error: kept, shown struck through, no longer evidence."""
    session = app_session(sid)
    book = services().dose_book()
    if dose_id not in {d.dose_id for d in book.doses_for(patient_reference(session.smart))}:
        abort(404)
    book.mark_entered_in_error(dose_id, session.user.in_records, services().now())
    return redirect(url_for("patient.page", sid=sid) + "#later-doses-heading", code=303)


# -- the panels on the patient and planning pages ----------------------------------------------------------


def outcome_panel(sid: str, dose_entry: DoseEntry | None = None) -> dict[str, Any]:
    """Tolerance per drug, finished sessions and open tasks for the patient page (never raises);
    ``dose_entry``: a refused later dose, shown again in its form."""
    try:
        session = app_session(sid)
        patient = patient_reference(session.smart)
        summaries = _record().patient_sessions(patient)
        later = services().dose_book().doses_for(patient)
        rows = tolerance_overview(
            _ehr_client(session),
            summaries,
            patient,
            services().now(),
            _local_zone(),
            later=later,
        )
        every_task = services().task_book().tasks_for(patient, open_only=False)
        titles = {key: protocol.title for key, protocol in library().items()}
        sessions = finished(summaries)
        return {
            "tolerance": rows,
            "sessions": sessions,
            "in_chart": _in_chart(patient, sessions, every_task),
            "switch_protocol": {row.drug: _suggested_switch(row) for row in rows},
            "task_sessions": _task_sessions(patient, sessions),
            "session_started": {
                x.session_id: moment_text(x.started_at, _local_zone()) for x in sessions if x.started_at
            },
            "tasks": [task for task in every_task if task.open],
            "protocol_titles": titles,
            "later_doses": [(dose, _dose_line(dose)) for dose in reversed(later)],
            "dose_form": dose_form(rows, services().site_now(), dose_entry),
            "error": None,
        }
    except DesensError as error:
        log.warning("outcome panel unavailable: %s", type(error).__name__)
        return {
            "tolerance": [],
            "sessions": [],
            "in_chart": {},
            "switch_protocol": {},
            "task_sessions": {},
            "session_started": {},
            "tasks": [],
            "protocol_titles": {},
            "later_doses": [],
            "dose_form": None,
            "error": error.message,
        }


def _in_chart(patient: str, sessions: list[SessionSummary], tasks: list[ChartTask]) -> dict[str, str]:
    """Per finished session whose outcome is in the chart (written by the app, or copied by hand and ticked
    off), the sentence that says so: the patient page then stops offering to bring it again."""
    closed = {task.outcome_id: task for task in tasks if task.done_at is not None}
    said: dict[str, str] = {}
    for summary in sessions:
        task = closed.get(session_outcome_id(patient, summary.session_id))
        if task is not None and task.done_at is not None:
            how = "written by this app" if task.written_by_the_app else f"copied by {task.done_by}"
            said[summary.session_id] = f"In the chart: {how}, {moment_text(task.done_at, _local_zone())}."
    return said


def _task_sessions(patient: str, sessions: list[SessionSummary]) -> dict[str, str]:
    """Which session each task is about ("carboplatin 400 mg, session of 3 Dec 2026"), by outcome id: two
    sessions' tasks for one drug must be told apart."""
    named: dict[str, str] = {}
    for summary in sessions:
        when = f", session of {moment_text(summary.started_at, _local_zone())}" if summary.started_at else ""
        named[session_outcome_id(patient, summary.session_id)] = f"{summary.drug} {summary.dose}{when}"
    return named


def _suggested_switch(row: DrugTolerance) -> CourseChange | None:
    """The next course's suggested change when it is another protocol than the last session's (after a
    moderate or severe reaction, or a stopped session: the 16-step protocol), so that "protocol to use" never
    names the last protocol alone while the planning page suggests leaving it."""
    course = next_course(
        outcome_from_session(row.last_session, protocols=library()), library(), _local_zone()
    )
    suggested = course.suggested
    return (
        suggested if suggested is not None and suggested.protocol_id != row.last_session.protocol_id else None
    )


def _ehr_client(session: AppSession) -> FhirClient | None:
    """The EHR, as the second and third sources of the last dose, when the grant lets the app read them."""
    return session.client if session.smart.granted.can_read("MedicationAdministration") else None


def _dose_line(dose: LaterDose) -> str:
    who = f", recorded by {dose.recorded_by}" if dose.recorded_by else ""
    line = f"{dose.drug} {dose.dose} given {moment_text(dose.given_at, _local_zone())}{who}"
    if dose.entered_in_error_at is not None:
        by = f" by {dose.entered_in_error_by}" if dose.entered_in_error_by else ""
        line += f" (entered in error{by}, {moment_text(dose.entered_in_error_at, _local_zone())})"
    return line


def next_course_for(sid: str, drug: str) -> dict[str, Any] | None:
    """The last finished session of this drug and what the next course could change (planning page)."""
    try:
        session = app_session(sid)
        patient = patient_reference(session.smart)
        summaries = [s for s in finished(_record().patient_sessions(patient)) if _same_drug(s.drug, drug)]
        if not summaries:
            return None
        last = summaries[0]
        course = next_course(outcome_from_session(last, protocols=library()), library(), _local_zone())
        later = services().dose_book().doses_for(patient)
        rows = tolerance_overview(
            _ehr_client(session), summaries, patient, services().now(), _local_zone(), later=later
        )
        titles = {key: protocol.title for key, protocol in library().items()}
        return {
            "course": course,
            "tolerance": rows[0] if rows else None,
            "outcome_id": outcome_id,
            "protocol_titles": titles,
        }
    except DesensError as error:
        log.warning("next course unavailable: %s", type(error).__name__)
        return None


def _same_drug(recorded: str, planned: str) -> bool:
    return names_drug(DrugRef(recorded), DrugRef(planned)) or names_drug(DrugRef(planned), DrugRef(recorded))


@bp.record_once
def _panels(state: BlueprintSetupState) -> None:
    """The template functions, as globals of the app's templates (not a context processor run on every
    render: the plan page renders its "From the last session" part on every request)."""
    state.app.jinja_env.globals.update(outcome_panel=outcome_panel, next_course_for=next_course_for)
