"""The planning pages: start a plan, the worksheet with its edit forms, print and pharmacy sheets.

``/s/<sid>/plan/new`` (GET form, POST creates a draft), ``/s/<sid>/plan/<draft_id>`` (GET the
worksheet; POST an edit: recalculate, insert, remove, confirm-unlisted, override),
``/s/<sid>/plan/<draft_id>/print`` and ``/pharmacy``. Views parse, call the domain and render;
every edit is recomputed through the engine and the safety invariants before it is saved, and a
refused edit re-renders the page (400, or 422 for a safety invariant) with the draft unchanged.
Signing (``POST .../sign``) belongs to the orders blueprint, which re-renders the plan page through
:func:`render_plan_page` when the orders were not sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from fhir_desens.course import readback
from fhir_desens.course.chart import ChartForPlanning, candidate_key, patient_reference
from fhir_desens.course.copy import draft_fields_from_signed, read_copy_source
from fhir_desens.course.draft import DILUENTS, CopiedSettings
from fhir_desens.course.drug_review import DrugReview
from fhir_desens.course.lifecycle import active_plans_for_drug
from fhir_desens.course.planning_chart import PlanningReads, chart_for_planning, risk_chart_of
from fhir_desens.course.readback import SignedPlanSummary
from fhir_desens.course.risk import RiskChart, chart_risk_for, risk_sources
from fhir_desens.course.sign import (
    DuplicatePlan,
    SignRefusal,
    SignResult,
    describe_refusal,
    planned_start,
    signed_marker,
)
from fhir_desens.course.therapeutic import dose_blocker, dose_difference
from fhir_desens.errors import DesensError, InputError, SafetyViolation
from fhir_desens.fhir.chart import DrugCandidate
from fhir_desens.fhir.risk_chart import ChartRisk
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.display import chart_time_text
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.model import Protocol
from fhir_desens.protocol.quantity import plain
from fhir_desens.protocol.risk import ProtocolSuggestion
from smart_app.app_session import AppSession, app_session, override_evidence
from smart_app.chart.page import PatientBanner
from smart_app.paper.pdf import pdf_response
from smart_app.paper.sheets import draft_status, paper_for
from smart_app.planning import drafts
from smart_app.planning.computed import Computed, computed_for
from smart_app.planning.drafts import Assessment, DraftNotFound, PlanDraft
from smart_app.planning.forms import (
    CLOSING_TEXT,
    DOSE_UNITS,
    GRADES,
    LABELS,
    FieldError,
    ProtocolOptions,
    error_status,
    field_error,
    options_for,
    parse_start,
    risk_defaults,
    start_defaults,
)
from smart_app.planning.worksheet import Worksheet, at_start
from smart_app.security import allow_printing_from_the_app
from smart_app.services import services

log = logging.getLogger(__name__)

__all__ = ["bp", "render_plan_page"]

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

bp = Blueprint("plan", __name__, url_prefix="/s/<string(length=43):sid>/plan", template_folder="templates")

ACTIONS = (
    "recalculate",
    "insert",
    "remove",
    "confirm-unlisted",
    "confirm-uncoded",
    "override",
    "schedule",
    "acknowledge-dose",
    "keep-order",
    "hold-order",
    "confirm-duplicate",
)
#: DrugCandidate.source of the copied plan's drug when the chart does not list it
COPIED_SOURCE = "signed plan"


def _session(sid: str) -> AppSession:
    session = app_session(sid)
    patient_reference(session.smart)  # a launch without a patient cannot plan
    return session


def _common(session: AppSession, banner: PatientBanner) -> dict[str, Any]:
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


# --- start form ----------------------------------------------------------------------------------


def _copied(session: AppSession, copy_id: str | None) -> CopiedSettings | None:
    """What "Copy this plan" carries over: every parameter the signed plan recorded
    (:func:`fhir_desens.course.copy.draft_fields_from_signed`); for a plan signed without its parameters,
    what its RequestGroup and orders show (best effort, ``recorded=False``)."""
    if not copy_id:
        return None
    if not FHIR_ID.match(copy_id):
        raise InputError("copy", "is not a FHIR resource id", "the id of a signed plan (RequestGroup)")
    signed = readback.load_signed_plan(session.smart, copy_id, drafts.library(), services().settings.zone)
    signed_on = signed.authored if signed.authored != "—" else None
    if signed.parameters is None:
        guessed = read_copy_source(session.client, session.smart, copy_id, drafts.library())
        return replace(guessed, recorded=False, signed_on=signed_on)
    fields = draft_fields_from_signed(signed)
    known = set(CopiedSettings.__dataclass_fields__)
    copied = CopiedSettings(**{k: v for k, v in fields.items() if k in known and v is not None})
    return replace(copied, signed_on=signed_on)


def _same_drug(candidate: DrugCandidate, copied: CopiedSettings) -> bool:
    if candidate.name.lower() != (copied.drug or "").lower():
        return False
    return not (candidate.rxnorm and copied.drug_rxnorm) or bool(
        set(candidate.rxnorm) & set(copied.drug_rxnorm)
    )


def _current_order(chart: ChartForPlanning, copied: CopiedSettings) -> DrugCandidate | None:
    """The chart's active order for the copied drug (same RxNorm code, else same name), if any."""
    for candidate in chart.candidates:
        if candidate.source != "order":
            continue
        codes = set(candidate.rxnorm) & set(copied.drug_rxnorm)
        if codes or candidate.name.lower() == (copied.drug or "").lower():
            return candidate
    return None


def _candidates(chart: ChartForPlanning, copied: CopiedSettings | None) -> list[DrugCandidate]:
    """The Drug choices: the chart's, and for a copy the signed plan's drug first (its name and codes
    exactly as signed; the chart's own entry when it has the same one)."""
    candidates = list(chart.candidates)
    if copied is None or not copied.drug:
        return candidates
    same = next((c for c in candidates if _same_drug(c, copied)), None)
    if same is not None:
        candidates.remove(same)
        return [same, *candidates]
    order = _current_order(chart, copied)
    signed = DrugCandidate(
        name=copied.drug,
        rxnorm=copied.drug_rxnorm,
        source=COPIED_SOURCE,
        route=order.route if order else None,
        indication=copied.indication,
        order_reference=order.order_reference if order else None,
        dose=None,
    )
    return [signed, *candidates]


def _start_values(
    chart: ChartForPlanning, copied: CopiedSettings | None, candidates: Sequence[DrugCandidate]
) -> dict[str, str]:
    """The start form's initial values: the chart's; for a copy, the signed plan's drug, indication and
    dose as prescribed (a plan signed without its parameters: the current order's dose)."""
    values = start_defaults(chart)
    if copied is None or not copied.drug or not candidates:
        return values
    drug = candidates[0]
    values["drug"] = candidate_key(drug)
    values["indication"] = copied.indication or drug.indication or ""
    order = _current_order(chart, copied)
    if copied.target_dose and copied.dose_unit in DOSE_UNITS:
        values["target_dose"], values["dose_unit"] = copied.target_dose, copied.dose_unit
    elif order is not None and order.dose is not None and order.dose.unit in DOSE_UNITS:
        values["target_dose"], values["dose_unit"] = plain(order.dose.value), order.dose.unit
    else:
        values["target_dose"] = ""
    return values


def _dose_note(chart: ChartForPlanning, copied: CopiedSettings | None) -> str | None:
    """For a copy: say so when the current order's dose differs from the signed plan's."""
    if copied is None or not copied.target_dose or not copied.dose_unit:
        return None
    order = _current_order(chart, copied)
    if order is None or order.dose is None:
        return None
    if order.dose.unit == copied.dose_unit and plain(order.dose.value) == copied.target_dose:
        return None
    signed = f"{copied.target_dose} {DOSE_UNITS.get(copied.dose_unit, copied.dose_unit)}"
    current = f"{plain(order.dose.value)} {DOSE_UNITS.get(order.dose.unit, order.dose.unit)}"
    return (
        f"The current order for {order.name} is for {current}; the signed plan was for {signed} (filled in)."
    )


def _render_start(
    session: AppSession,
    banner: PatientBanner,
    chart: ChartForPlanning,
    values: Mapping[str, str],
    *,
    copied: CopiedSettings | None,
    candidates: Sequence[DrugCandidate],
    errors: list[FieldError] | None = None,
    status: int = 200,
    risk: ChartRisk | None = None,
    risk_unavailable: Sequence[str] = (),
) -> tuple[str, int]:
    protocols = drafts.library()
    html = render_template(
        "plan_new.html",
        **_common(session, banner),
        chart=chart,
        candidates=[(candidate_key(c), c) for c in candidates],
        values=values,
        errors=errors or [],
        error_for={e.field: e.message for e in errors or []},
        dose_units=DOSE_UNITS,
        grades=GRADES,
        copied=copied,
        copied_protocol=protocols.get(copied.protocol_id) if copied and copied.protocol_id else None,
        copied_source=COPIED_SOURCE,
        dose_note=_dose_note(chart, copied),
        risk=risk,
        risk_unavailable=risk_unavailable,
    )
    return html, status


def _chosen(
    candidates: Sequence[DrugCandidate], key: str | None, other: str | None
) -> tuple[str, tuple[str, ...]]:
    """The drug of the start form's choice (name and codes), for the chart's risk answers."""
    chosen = next((c for c in candidates if candidate_key(c) == key), None)
    if chosen is not None:
        return chosen.name, chosen.rxnorm
    return (other or "").strip(), ()


def _risk(
    session: AppSession,
    reads: PlanningReads,
    candidates: Sequence[DrugCandidate],
    key: str | None,
    other: str | None,
) -> tuple[ChartRisk, RiskChart]:
    chart = risk_chart_of(reads)
    name, codes = _chosen(candidates, key, other)
    return chart_risk_for(chart, name, codes, session.allergies()), chart


@bp.get("/new")
def new(sid: str) -> tuple[str, int]:
    session = _session(sid)
    reads = session.planning_reads(fresh=True)  # read once per draft: the POST reuses it
    chart = chart_for_planning(reads, session.smart, session.allergies())
    copied = _copied(session, request.args.get("copy"))
    candidates = _candidates(chart, copied)
    values = _start_values(chart, copied, candidates)
    risk, risk_chart = _risk(session, reads, candidates, values.get("drug"), values.get("other_drug"))
    values.update(risk_defaults(risk))  # RISK-CHART-1: pre-filled from the chart, each with its source
    return _render_start(
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
    session = _session(sid)
    reads = session.planning_reads()  # as the form was shown (read again only when that has expired)
    chart = chart_for_planning(reads, session.smart, session.allergies())
    form = request.form
    copied: CopiedSettings | None = None
    errors: list[FieldError] = []
    try:
        copied = _copied(session, form.get("copy"))
    except InputError as error:  # a tampered hidden field
        errors.append(field_error(error, default="copy"))
    candidates = _candidates(chart, copied)
    start, start_errors = parse_start(form, candidates)
    errors.extend(start_errors)
    risk, risk_chart = _risk(session, reads, candidates, form.get("drug"), form.get("other_drug"))
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
        return _render_start(
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


# --- the plan page --------------------------------------------------------------------------------


@dataclass
class PlanContext:
    session: AppSession
    banner: PatientBanner
    draft: PlanDraft
    assessment: Assessment
    protocols: Mapping[str, Protocol]
    plan: Plan | None = None
    plan_error: FieldError | None = None
    errors: list[FieldError] = field(default_factory=list)
    review: DrugReview | None = None  # the drug checks of the plan (None: no plan)
    signed: SignResult | None = None  # the draft was signed: read-only
    computed: Computed | None = None  # the draft's plan and its clock-free worksheet, memoized

    @property
    def blocked(self) -> bool:
        """Contraindicated without an expert override: no worksheet, no edits, no signing."""
        return self.assessment.contraindicated and not self.draft.override_reason


def _context(sid: str, draft_id: str) -> PlanContext:
    session = _session(sid)
    draft = drafts.load_draft(sid, draft_id)
    if draft.patient != patient_reference(session.smart):
        raise DraftNotFound()
    assessment = drafts.assessment_for(session, draft)
    context = PlanContext(session, session.banner(), draft, assessment, drafts.library())
    context.signed = signed_marker(services().store, sid, draft_id)
    computed = computed_for(draft)  # the engine and the invariants ran on this draft's content
    context.computed = computed
    context.plan, context.plan_error, context.review = computed.plan, computed.plan_error, computed.review
    return context


def _protocol_values(context: PlanContext) -> dict[str, str]:
    """The protocol form as the stored draft has it (defaults shown as the engine resolved them)."""
    draft, plan = context.draft, context.plan
    protocol = context.protocols.get(draft.protocol_id)
    values = {"protocol": draft.protocol_id, "diluent": draft.diluent or "", "closing": draft.closing or ""}
    if plan is not None and plan.final_rate_ml_h is not None:
        values["final_rate"] = plain(plan.final_rate_ml_h)
    bag = draft.bag_volume_ml
    if bag is None and protocol is not None and protocol.defaults.bag_volume_ml is not None:
        bag = plain(protocol.defaults.bag_volume_ml)
    values["bag_volume"] = bag or ""
    if not values["closing"] and plan is not None and plan.closing is not None:
        values["closing"] = plan.closing.value
    return values


def _suggestion(context: PlanContext) -> ProtocolSuggestion | None:
    return context.computed.suggestion if context.computed is not None else None


def _worksheet(context: PlanContext) -> Worksheet | None:
    """The worksheet with its clock times (the plan's part memoized, :mod:`smart_app.planning.computed`)."""
    computed, draft = context.computed, context.draft
    if computed is None or computed.plan is None or computed.sheet is None:
        return None
    return at_start(computed.sheet, computed.plan, _start_of(draft), planned=draft.planned_start is not None)


def _start_of(draft: PlanDraft) -> datetime:
    """The worksheet's clock: the planned start, else "if started now" (both in the site's zone)."""
    start = planned_start(draft)
    return start.astimezone(services().settings.zone) if start is not None else services().site_now()


def _start_value(draft: PlanDraft) -> str:
    """The planned start for the form's datetime-local field (site's zone, no offset)."""
    start = planned_start(draft)
    return start.astimezone(services().settings.zone).strftime("%Y-%m-%dT%H:%M") if start else ""


def _when(value: str) -> str:
    """A FHIR dateTime for people in the site's zone ("15 Jan 2027 09:00 CET"), as the signed plan's page."""
    return chart_time_text(value, services().settings.zone) if value else "an earlier visit"


def _duplicates(context: PlanContext) -> list[SignedPlanSummary]:
    """Other active plans for the same drug (none when they cannot be read), from the signed plans the
    start form read with the chart (read again once that read has expired); signing searches afresh."""
    try:
        return active_plans_for_drug(
            context.session.smart,
            context.protocols,
            context.draft.drug,
            context.draft.drug_rxnorm,
            zone=services().settings.zone,
            bundle=context.session.signed_plans_bundle(),
        )
    except DesensError as error:
        log.warning("active plans could not be read: %s", type(error).__name__)
        return []


def _render_plan(
    context: PlanContext,
    *,
    posted: Mapping[str, str] | None = None,
    status: int = 200,
    refusal: SignRefusal | None = None,
) -> tuple[str, int]:
    session, draft, plan = context.session, context.draft, context.plan
    protocol = context.protocols.get(draft.protocol_id)
    options: ProtocolOptions | None = options_for(protocol) if protocol is not None else None
    worksheet = _worksheet(context) if plan is not None and not context.blocked else None
    values = _protocol_values(context)
    if posted is not None and posted.get("action") == "recalculate":
        values.update(
            {k: posted.get(k, "") for k in ("protocol", "final_rate", "bag_volume", "diluent", "closing")}
        )
    errors = list(context.errors)
    if context.plan_error is not None and not errors:
        errors.append(context.plan_error)
    can_write = session.smart.can_sign_orders  # the same rule signing applies (course.sign.sign_draft)
    blockers = drafts.signing_blockers(draft, context.assessment, can_write, context.review)
    dose_blocked = dose_blocker(draft, services().settings.dose_tolerance_percent)
    if dose_blocked:
        blockers.append(dose_blocked)
    duplicates = _duplicates(context) if can_write and context.signed is None else []
    if duplicates and not draft.duplicate_reason:
        blockers.append(DuplicatePlan(duplicates).reasons[0])
    html = render_template(
        "plan.html",
        **_common(session, context.banner),
        draft=draft,
        assessment=context.assessment,
        blocked=context.blocked,
        protocol=protocol,
        protocols=context.protocols,
        builtin_ids=frozenset(builtin_protocols()),  # imported protocols show where they come from
        options=options,
        suggestion=_suggestion(context),
        plan=plan,
        worksheet=worksheet,
        values=values,
        posted=posted or {},
        errors=errors,
        error_for={e.field: e.message for e in errors},
        refusal=refusal,
        closing_text={c.value: t for c, t in CLOSING_TEXT.items()},
        diluents=DILUENTS,
        blockers=blockers,
        review=context.review,
        allergists=drafts.allergists(),
        user_is_allergist=override_evidence(session.user) is not None,
        duplicates=duplicates,
        dose=dose_difference(draft),
        dose_tolerance=services().settings.dose_tolerance_percent,
        signed=context.signed,
        signed_when=_when(context.signed.sent_at) if context.signed else None,
        planned_start_value=_start_value(draft),
        zone_name=services().site_now().strftime("%Z") or str(services().settings.zone),
        can_write=can_write,
        fixed_note=drafts.fixed_dose_note(draft, plan) if plan is not None else None,
        sign_url=url_for("plan.page", sid=session.sid, draft_id=draft.draft_id) + "/sign",
    )
    return html, status


def render_plan_page(
    sid: str, draft_id: str, *, status: int, sign_error: DesensError | None = None
) -> tuple[str, int]:
    """The plan page of a draft with ``status``; ``sign_error``: why "Sign and send orders" did not
    sign (shown in an alert saying what happened and what the chart holds, above the worksheet and
    its print links). DraftNotFound, or the EHR's errors when the page itself cannot be read."""
    refusal = describe_refusal(sign_error) if sign_error is not None else None
    return _render_plan(_context(sid, draft_id), status=status, refusal=refusal)


@bp.get("/<string(length=22):draft_id>")
def page(sid: str, draft_id: str) -> tuple[str, int]:
    return render_plan_page(sid, draft_id, status=200)


def _edit(context: PlanContext, action: str, form: Mapping[str, str]) -> PlanDraft:
    """The edited draft (not yet saved); InputError names the form field."""
    draft, plan = context.draft, context.plan
    if context.signed is not None:
        raise InputError(
            "action",
            f"this plan was signed on {_when(context.signed.sent_at)}: a signed plan is read-only",
            "Copy this plan (from the signed plan) to start a new course",
        )
    if action == "override":
        evidence = override_evidence(context.session.user)
        return drafts.with_override(draft, context.assessment, form, evidence)
    if context.blocked:
        raise InputError(
            "action",
            "desensitization is contraindicated for this drug",
            "an expert override with its reason first",
        )
    if action == "confirm-unlisted":
        return drafts.with_unlisted_confirmed(draft, context.assessment, form)
    if action == "confirm-uncoded":
        return drafts.with_uncoded_confirmed(draft, context.review, form)
    if action == "recalculate":
        return drafts.with_protocol_settings(draft, form, context.protocols)
    if action == "schedule":
        return drafts.with_planned_start(draft, form, services().site_now())
    if action == "acknowledge-dose":
        return drafts.with_dose_reason(draft, form)
    if action == "keep-order":
        return drafts.with_order_kept(draft, form)
    if action == "hold-order":
        return drafts.with_order_held(draft)
    if action == "confirm-duplicate":
        return drafts.with_duplicate_confirmed(draft, form)
    if plan is None:
        raise InputError("action", "the plan cannot be computed", "change the protocol settings first")
    if action == "insert":
        return drafts.with_insertion(draft, plan, form)
    return drafts.without_insertion(draft, plan, form)


_FIELD_OF_ACTION: dict[str, str] = {
    "recalculate": "protocol",
    "insert": "insert_before",
    "remove": "remove",
    "confirm-unlisted": "confirm_unlisted",
    "confirm-uncoded": "confirm_uncoded",
    "override": "override_reason",
    "schedule": "planned_start",
    "acknowledge-dose": "dose_reason",
    "keep-order": "keep_order_reason",
    "hold-order": "keep_order_reason",
    "confirm-duplicate": "duplicate_reason",
}


@bp.post("/<string(length=22):draft_id>")
def edit(sid: str, draft_id: str) -> Response | tuple[str, int]:
    context = _context(sid, draft_id)
    form: MultiDict[str, str] = request.form
    flat = {key: form.get(key, "") for key in form}
    action = flat.get("action", "")
    try:
        if action not in ACTIONS:
            raise InputError("action", "unknown action", ", ".join(ACTIONS))
        edited = _edit(context, action, flat)
        drafts.plan_for(edited)  # recomputed through the engine and the invariants before saving
    except (InputError, SafetyViolation) as error:
        context.errors = [field_error(error, default=_FIELD_OF_ACTION.get(action, "action"))]
        return _render_plan(context, posted=flat, status=error_status([error]))
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
    context = _context(sid, draft_id)
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
        **_common(context.session, context.banner),
        draft=context.draft,
        assessment=context.assessment,
        worksheet=_worksheet(context),
        review=context.review,
        printed_at=now.strftime("%Y-%m-%d %H:%M %Z").strip(),
        prescriber=context.session.user.display,
        fixed_note=drafts.fixed_dose_note(context.draft, context.plan),
        back_url=url_for("plan.page", sid=sid, draft_id=draft_id),
        back_text="Back to the plan",
        sheet_status=draft_status(),
        paper=paper_for(context.plan, context.draft.drug_rxnorm, services().settings.bag_overfill_ml),
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
