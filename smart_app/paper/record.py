"""The session record as paper: the completed flowsheet with every entry, reaction and signature (issue 12),
as the printable page and as a PDF in the worksheet's style (running header with the patient's name, MRN
and birth date, "page X of Y" on every page).

``session_record_pdf`` renders a record already loaded (no I/O but the renderer);
``session_record_pdf_for`` loads this patient's session from the app's record first (the outcome's clinical
note attaches it). Both run inside a request of the app (templates and static URLs).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from flask import render_template, request

from fhir_desens.course.bedside.entries import Entry
from fhir_desens.course.bedside.outbox import OutboxStatus
from fhir_desens.course.bedside.record import SessionNotFound
from fhir_desens.course.bedside.state import SessionState, minutes_between
from fhir_desens.course.chart import patient_reference
from fhir_desens.errors import DesensError
from fhir_desens.protocol import display as shown
from smart_app.app_session import AppSession
from smart_app.bedside import page
from smart_app.bedside.reaction_view import reaction_views
from smart_app.bedside.service import bedside
from smart_app.chart.page import PatientBanner
from smart_app.paper.pdf import render_pdf
from smart_app.paper.sheets import SheetStatus
from smart_app.services import services

log = logging.getLogger(__name__)

CHECKLIST_WORDS = {
    "consent": "Consent signed",
    "iv-access": "IV access working",
    "emergency-kit": "Emergency kit at the bedside",
    "beta-blocker-held": "Beta-blocker held",
    "one-to-one-nurse": "1:1 nurse assigned",
}
ENTRY_WORDS = {
    "session-start": "Session started",
    "checklist": "Checklist",
    "vitals": "Vital signs",
    "step-start": "Step started",
    "step-stop": "Step stopped",
    "symptom-check": "Symptom check",
    "reaction": "Reaction",
    "treatment": "Treatment",
    "resolved": "Symptoms resolved",
    "resume": "Decision after the reaction",
    "complete": "Session ended",
    "void": "Correction (entered in error)",
}
PHASE_WORDS = {
    "completed": "completed",
    "stopped": "stopped early",
}
#: entry fields that are machinery (or identifiers printed elsewhere), not part of what a person recorded
_HIDDEN_FIELDS = {
    "draft", "step_requests", "entry_id", "request_group", "session_id", "plan_session", "at", "patient",
    "encounter", "target",
}  # fmt: skip
FIELD_WORDS = {
    "row": "step",
    "rate_ml_h": "rate (mL/h)",
    "heart_rate": "heart rate",
    "respiratory_rate": "respiratory rate",
    "spo2": "SpO2 (%)",
    "temperature": "temperature (°C)",
    "peak_flow": "peak flow (L/min)",
    "beta_blocker": "beta-blocker in the chart",
    "peak_flow_needed": "peak flow needed",
    "observation_end": "observation until",
    "next_dose": "next dose",
    "next_dose_note": "next-dose note",
    "option": "decision",
}


@dataclass(frozen=True)
class RecordFacts:
    """The record's heading facts, as people read them."""

    status: SheetStatus
    started: str
    ended: str
    duration: str
    given: str
    outcome: str
    observation: str
    next_dose: str
    discharge_vitals: str


def _zone() -> tzinfo:
    return services().settings.zone


def when(value: datetime | None, zone: tzinfo) -> str:
    """'2 Dec 2026 09:05 CET' in the site's zone."""
    if value is None:
        return "—"
    return shown.chart_time_text(value.isoformat(), zone)


def _outcome_words(state: SessionState) -> str:
    completion = state.completion
    if completion is None:
        return f"not finished ({state.phase.replace('-', ' ')} when printed)"
    words = PHASE_WORDS.get(str(completion["outcome"]), str(completion["outcome"]))
    reason = str(completion.get("reason") or "").strip()
    return f"{words}: {reason}" if reason else words


def _discharge_vitals(state: SessionState, zone: tzinfo) -> str:
    last_end = max((s.ended_at for s in state.segments if s.ended_at), default=None)
    after = [v for v in state.vitals if last_end is not None and v.at >= last_end]
    if not after or state.completion is None:
        return "—"
    final = after[-1]
    values = final.signs.values
    parts = []
    if "systolic" in values and "diastolic" in values:
        parts.append(f"BP {shown.grouped(values['systolic'])}/{shown.grouped(values['diastolic'])}")
    for field, label in (
        ("heart_rate", "HR"),
        ("respiratory_rate", "RR"),
        ("spo2", "SpO2"),
        ("temperature", "T"),
    ):
        if field in values:
            parts.append(f"{label} {shown.grouped(values[field])}")
    return f"{when(final.at, zone)}: " + ", ".join(parts)


def facts(state: SessionState, zone: tzinfo) -> RecordFacts:
    unit = state.plan.dose_unit
    completion = state.completion or {}
    ended = completion.get("at")
    duration = "—"
    if state.started_at is not None and ended is not None:
        duration = shown.clock_text(minutes_between(state.started_at, ended))
    given = shown.given_of_target_text(state.delivered, state.target, unit)
    next_dose = "—"
    if completion:
        next_dose = page.next_dose_words(state)
        note = str(completion.get("next_dose_note") or "").strip()
        next_dose += f"; {note}" if note else ""
    status = SheetStatus(False, f"Session record: {_outcome_words(state)}")
    return RecordFacts(
        status=status,
        started=when(state.started_at, zone),
        ended=when(ended, zone),
        duration=duration,
        given=given,
        outcome=_outcome_words(state),
        observation=f"until {when(completion.get('observation_end'), zone)}" if completion else "—",
        next_dose=next_dose,
        discharge_vitals=_discharge_vitals(state, zone),
    )


def _field_text(key: str, value: Any, zone: tzinfo) -> str:
    """An entry's field as a person reads it: times in the site's zone, numbers without trailing zeros,
    rates to the pump's resolution, codes in words."""
    if isinstance(value, list | tuple):
        return ", ".join(_field_text(key, v, zone) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    if len(text) > 10 and text[4:5] == "-" and "T" in text:
        with contextlib.suppress(ValueError):
            return page.clock(datetime.fromisoformat(text.replace("Z", "+00:00")))
    number = _decimal(text)
    if number is not None:
        return shown.rate_number(number) if key == "rate_ml_h" else shown.significant(number)
    if key == "option":
        return page.option_words(text)
    if key == "treatment":
        return page.treatment_words(text)
    if key == "phenotype":
        return page.phenotype_words(text)
    return text


def _decimal(text: str) -> Decimal | None:
    if not text or not (text[0].isdigit() or text[0] in "-."):
        return None
    try:
        number = Decimal(text)
    except ArithmeticError:
        return None
    return number if number.is_finite() else None


def entry_rows(entries: Sequence[Entry], state: SessionState, zone: tzinfo) -> list[dict[str, Any]]:
    """Every entry in the order recorded: when (the time it says, and when it was recorded), what, by whom."""
    rows = []
    for e in entries:
        data = e.data
        details = "; ".join(
            f"{FIELD_WORDS.get(k, k.replace('_', ' '))}: {_field_text(k, v, zone)}"
            for k, v in data.items()
            if k not in _HIDDEN_FIELDS and v not in (None, "", [])
        )
        at = data.get("at")
        rows.append(
            {
                "at": _field_text("at", at, zone) if at else "—",
                "recorded": page.clock(e.recorded_at),
                "what": ENTRY_WORDS.get(e.kind, e.kind),
                "details": details,
                "author": e.author,
                "voided": e.entry_id in state.voided,
            }
        )
    return rows


def record_context(
    state: SessionState,
    entries: Sequence[Entry],
    banner: PatientBanner,
    *,
    printed_at: datetime,
    names: Mapping[str, str] | None = None,
    outbox: OutboxStatus | None = None,
    pdf: bool = False,
) -> dict[str, Any]:
    """What ``session_record.html`` lays out (everything already in words)."""
    zone = _zone()
    return {
        "banner": banner,
        "state": state,
        "plan": state.plan,
        "facts": facts(state, zone),
        "rows": page.rows(state),
        "vitals": page.vitals_rows(state),
        "reactions": reaction_views(state, lambda value: when(value, zone), names or {}),
        "entries": entry_rows(entries, state, zone),
        "checklist_words": CHECKLIST_WORDS,
        "outbox": page.status_view(outbox),
        "clock": page.clock,
        "when": lambda value: when(value, zone),
        "p": page,
        "names": dict(names or {}),
        "printed_at": when(printed_at, zone),
        "pdf": pdf,
        "sheet_status": facts(state, zone).status,
    }


def session_record_pdf(
    state: SessionState,
    entries: Sequence[Entry],
    banner: PatientBanner,
    *,
    printed_at: datetime,
    names: Mapping[str, str] | None = None,
    outbox: OutboxStatus | None = None,
) -> bytes:
    """The session record as a PDF (inside a request of the app: templates and static files)."""
    html = render_template(
        "session_record.html",
        sid=None,
        **record_context(state, entries, banner, printed_at=printed_at, names=names, outbox=outbox, pdf=True),
    )
    return render_pdf(html, request.host_url)


def author_names(session: AppSession, authors: set[str]) -> dict[str, str]:
    """People's names for the record's author references, read from the EHR where the grant allows it
    (best effort: an author the EHR will not show stays as its reference)."""
    names: dict[str, str] = {}
    user = session.user
    if user.reference and user.name:
        names[user.reference] = user.name
    for reference in sorted(authors - names.keys()):
        kind, _, ident = reference.partition("/")
        if (
            kind not in ("Practitioner", "PractitionerRole", "Person", "RelatedPerson", "Patient")
            or not ident
        ):
            continue
        try:
            resource = session.client.read(kind, ident).resource
        except DesensError:  # a name is a courtesy; the reference is still printed
            log.info("author name not readable (%s)", kind)
            continue
        name = _human_name(resource)
        if name:
            names[reference] = name
    return names


def _human_name(resource: Mapping[str, Any]) -> str:
    for name in resource.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        given = " ".join(name.get("given") or [])
        family = name.get("family") or ""
        text = f"{given} {family}".strip()
        if text:
            return text
    return ""


def session_record_pdf_for(session: AppSession, session_id: str) -> bytes:
    """This patient's session ``session_id`` as a PDF (SessionNotFound for another patient's session)."""
    svc = bedside()
    state = svc.record().load(session_id)
    if state.context.get("patient") != patient_reference(session.smart):
        raise SessionNotFound()
    entries = svc.record().entries(session_id)
    return session_record_pdf(
        state,
        entries,
        session.banner(),
        printed_at=svc.now(),
        names=author_names(session, {e.author for e in entries}),
        outbox=svc.status(session_id),
    )
