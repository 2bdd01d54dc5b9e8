"""The plan page of a draft: its context (the session, the draft, the allergy screening, the memoized plan),
the worksheet with its clock times, the signing blockers and the other active plans of the drug, rendered.
The orders blueprint re-renders it through :func:`render_plan_page` when signing was refused."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, render_template, request, url_for
from markupsafe import Markup

from fhir_desens.course.assessment import premedication_blocker
from fhir_desens.course.chart import patient_reference
from fhir_desens.course.drug_review import DrugReview
from fhir_desens.course.lifecycle import active_plans_for_drug
from fhir_desens.course.readback import SignedPlanSummary
from fhir_desens.course.sign import SignResult, planned_start, signed_marker
from fhir_desens.course.sign_errors import DuplicatePlan, SignRefusal, describe_refusal
from fhir_desens.course.therapeutic import difference_blocker
from fhir_desens.errors import DesensError
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.display import chart_time_text
from fhir_desens.protocol.model import Protocol
from smart_app.app_session import AppSession, override_evidence
from smart_app.chart.page import PatientBanner
from smart_app.fragments import fragment, hole
from smart_app.page_cache import memo
from smart_app.planning import drafts, sections
from smart_app.planning.computed import Computed, computed_for
from smart_app.planning.drafts import Assessment, DraftNotFound, PlanDraft
from smart_app.planning.forms import LABELS, FieldError
from smart_app.planning.pages import session_for
from smart_app.planning.worksheet import (
    ClockTimes,
    Worksheet,
    clock_times,
    with_premedication_allergies,
    with_times,
)
from smart_app.security import csp_nonce
from smart_app.services import services

log = logging.getLogger(__name__)


@dataclass
class PlanContext:
    session: AppSession
    banner: PatientBanner
    draft: PlanDraft
    assessment: Assessment
    protocols: Mapping[str, Protocol]
    computed: Computed  # the draft's plan, checks and clock-free worksheet, memoized per content
    plan: Plan | None = None
    plan_error: FieldError | None = None
    errors: list[FieldError] = field(default_factory=list)
    review: DrugReview | None = None  # the drug checks of the plan (None: no plan)
    signed: SignResult | None = None  # the draft was signed: read-only
    #: the plan's premedications the allergy list rules out -> the allergy in words (PLAN-PREMED-1)
    premedications_ruled_out: dict[str, str] = field(default_factory=dict)

    @property
    def blocked(self) -> bool:
        """Contraindicated without an expert override: no worksheet, no edits, no signing."""
        return self.assessment.contraindicated and not self.draft.override_reason


def context_for(sid: str, draft_id: str) -> PlanContext:
    session = session_for(sid)
    draft = drafts.load_draft(sid, draft_id)
    if draft.patient != patient_reference(session.smart):
        raise DraftNotFound()
    assessment = drafts.assessment_for(session, draft)
    computed = computed_for(draft)  # the engine and the invariants ran on this draft's content
    context = PlanContext(session, session.banner(), draft, assessment, drafts.library(), computed)
    context.signed = signed_marker(services().store, sid, draft_id)
    context.plan, context.plan_error, context.review = computed.plan, computed.plan_error, computed.review
    if context.plan is not None:
        context.premedications_ruled_out = drafts.premedications_ruled_out(session, context.plan)
    return context


def times_of(context: PlanContext) -> ClockTimes | None:
    """The worksheet's clock times (None: no plan), from the planned start, else "if started now"."""
    plan, draft = context.plan, context.draft
    if plan is None:
        return None
    planned = draft.planned_start is not None
    return clock_times(plan, _start_of(draft), planned=planned, offsets=context.computed.offsets)


def worksheet_of(context: PlanContext) -> Worksheet | None:
    """The worksheet with its clock times (the plan's part memoized, :mod:`smart_app.planning.computed`)."""
    computed, times = context.computed, times_of(context)
    if computed.sheet is None or times is None:
        return None
    return with_premedication_allergies(with_times(computed.sheet, times), context.premedications_ruled_out)


def _start_of(draft: PlanDraft) -> datetime:
    """The worksheet's clock: the planned start, else "if started now" (both in the site's zone)."""
    start = planned_start(draft)
    return start.astimezone(services().settings.zone) if start is not None else services().site_now()


def _start_value(draft: PlanDraft) -> str:
    """The planned start for the form's field as the app writes times ("2027-01-15 09:00", site's zone)."""
    start = planned_start(draft)
    return start.astimezone(services().settings.zone).strftime(START_FORMAT) if start else ""


#: how the planned start is typed and shown on the plan page (unambiguous: never the browser's 12/03/2026)
START_FORMAT = "%Y-%m-%d %H:%M"


def when_text(value: str) -> str:
    """A FHIR dateTime for people in the site's zone ("15 Jan 2027 09:00 CET"), as the signed plan's page."""
    return chart_time_text(value, services().settings.zone) if value else "an earlier visit"


def _duplicates(context: PlanContext) -> list[SignedPlanSummary]:
    """Other active plans for the same drug (none when they cannot be read), from the signed plans the
    start form read with the chart (read again once that read has expired); signing searches afresh.
    Memoized per content of that read and drug (:mod:`smart_app.page_cache`)."""
    session, draft = context.session, context.draft
    try:

        def find() -> tuple[SignedPlanSummary, ...]:
            return tuple(
                active_plans_for_drug(
                    session.smart,
                    context.protocols,
                    draft.drug,
                    draft.drug_rxnorm,
                    zone=services().settings.zone,
                    bundle=session.signed_plans_bundle(),  # parsed only when not memoized
                )
            )

        read = session.signed_plans_key()
        if read is None:
            return list(find())
        key = (read, patient_reference(session.smart), draft.drug, draft.drug_rxnorm)
        found: tuple[SignedPlanSummary, ...] = memo("active plans of a drug").get(key, find)
        return list(found)
    except DesensError as error:
        log.warning("active plans could not be read: %s", type(error).__name__)
        return []


def _sections(context: PlanContext, shown: sections.Shown, times: ClockTimes | None) -> dict[str, Any]:
    """The page's sections that depend on content (:mod:`smart_app.planning.sections`), as Markup."""
    session, draft, computed = context.session, context.draft, context.computed
    parts: dict[str, Any] = {"protocol_form": None, "worksheet_html": None}
    parts["allergy_match"] = sections.allergy_match(
        shown,
        draft,
        computed,
        context.assessment,
        session.chart_key("allergies"),
        user_is_allergist=override_evidence(session.user) is not None,
        allergists=drafts.allergists(),
    )
    parts["drug_review"] = sections.drug_review(shown, draft, computed)
    if not context.blocked:
        parts["protocol_form"] = sections.protocol_form(shown, draft, computed, context.protocols)
        if times is not None and computed.sheet is not None:
            parts["worksheet_html"] = sections.worksheet_part(
                shown, computed, times, context.premedications_ruled_out
            )
    return parts


def _blockers(context: PlanContext, can_write: bool) -> tuple[list[str], list[SignedPlanSummary]]:
    """Why signing is not possible yet, and the other active plans of the drug."""
    draft, computed = context.draft, context.computed
    blockers = drafts.signing_blockers(
        draft, context.assessment, can_write, context.review, context.premedications_ruled_out
    )
    dose_blocked = difference_blocker(draft, computed.dose, services().settings.dose_tolerance_percent)
    if dose_blocked:
        blockers.append(dose_blocked)
    duplicates = _duplicates(context) if can_write and context.signed is None else []
    if duplicates and not draft.duplicate_reason:
        blockers.append(DuplicatePlan(duplicates).reasons[0])
    return blockers, duplicates


#: the plan page's values that change per request, not with what it shows: holes in the kept page (with
#: the clock times of :func:`smart_app.planning.sections.clock_holes`)
PAGE_HOLES = ("page_url", "csrf_token", "csp_nonce", "planned_start_example", "zone_name", "last_session")


def render_plan(
    context: PlanContext,
    *,
    posted: Mapping[str, str] | None = None,
    status: int = 200,
    refusal: SignRefusal | None = None,
) -> tuple[str, int]:
    """The plan page. Unless it shows what was posted, errors or a signing refusal, it is rendered once
    per app session and everything it shows (:func:`_shown`), its sections included, and kept
    (:mod:`smart_app.fragments`); the values of :data:`PAGE_HOLES` and the clock times are filled in
    per request."""
    session, draft = context.session, context.draft
    errors = list(context.errors)
    if context.plan_error is not None and not errors:
        errors.append(context.plan_error)
    page_url = url_for("plan.page", sid=session.sid, draft_id=draft.draft_id)
    times = times_of(context) if not context.blocked else None
    shown = _shown(context, times)
    kept = posted is None and not errors and refusal is None
    key = (session.sid, request.script_root, context.computed.version, tuple(shown.items())) if kept else None

    def render() -> str:
        return _render_page(context, shown, times, posted=posted, errors=errors, refusal=refusal)

    now = services().site_now()
    per_request: dict[str, Any] = {
        "page_url": page_url,
        "csrf_token": session.csrf_token,
        "csp_nonce": csp_nonce(),
        "planned_start_example": (now + timedelta(days=1)).replace(hour=9, minute=0).strftime(START_FORMAT),
        "zone_name": now.strftime("%Z") or str(services().settings.zone),
        "last_session": _last_session(context, page_url),
        **(sections.clock_values(times) if times is not None else {}),
    }
    return fragment("plan page", key, render).fill(per_request), status


def _shown(context: PlanContext, times: ClockTimes | None) -> dict[str, Hashable]:
    """What the plan page shows besides the draft's content (its digest is in the page's key) and the
    per-request values: the key of a kept page, so that a change to any of them renders it afresh."""
    session, draft, computed = context.session, context.draft, context.computed
    can_write = session.smart.can_sign_orders  # the same rule signing applies (course.sign.sign_draft)
    blockers, duplicates = _blockers(context, can_write)
    ruled_out = context.premedications_ruled_out
    return {
        "banner": context.banner,
        "user": session.user,
        "user_is_allergist": override_evidence(session.user) is not None,  # the override form's kind
        "need_patient_banner": session.smart.need_patient_banner,
        "style_vars": services().styles.get(session.smart.smart_style_url),
        "allergy_list": session.chart_key("allergies"),  # the screening shown (None: not readable)
        "allergy_list_read": context.assessment.allergy_list_read,
        "blocked": context.blocked,
        "worksheet": times is not None and computed.sheet is not None,
        "clock_basis": times.clock_basis if times is not None else None,
        "blockers": tuple(blockers),
        "duplicates": tuple(duplicates),
        "dose_tolerance": services().settings.dose_tolerance_percent,
        "signed": context.signed,
        "signed_when": when_text(context.signed.sent_at) if context.signed else None,
        "planned_start_value": _start_value(draft),
        "can_write": can_write,
        "premedications_ruled_out": tuple(ruled_out.items()),
        "premedications_acknowledged": premedication_blocker(draft, ruled_out) is None,
    }


def _render_page(
    context: PlanContext,
    shown: Mapping[str, Any],
    times: ClockTimes | None,
    *,
    posted: Mapping[str, str] | None,
    errors: list[FieldError],
    refusal: SignRefusal | None,
) -> str:
    """The plan page with holes for the per-request values (:data:`PAGE_HOLES`, the clock times)."""
    draft, plan, computed = context.draft, context.plan, context.computed
    holes = sections.Shown({"page_url": hole("page_url"), "csrf_token": hole("csrf_token")}, posted, errors)
    clock = sections.clock_holes(times) if times is not None else None
    parts = _sections(context, holes, clock)
    return render_template(
        "plan.html",
        **{name: value for name, value in shown.items() if name != "premedications_ruled_out"},
        **{name: hole(name) for name in PAGE_HOLES if name != "csp_nonce"},
        **{name: part or "" for name, part in parts.items()},
        csp_nonce=lambda: hole("csp_nonce"),  # the template's global (base.html), per request
        times=clock,
        sign_url=hole("page_url") + "/sign",
        sid=context.session.sid,
        labels=LABELS,
        premedications_ruled_out=context.premedications_ruled_out,
        # the draft's content (its digest is the key's version) and what the engine made of it
        draft=draft,
        plan=plan,
        sheet=computed.sheet,
        dose=computed.dose,
        fixed_note=drafts.fixed_dose_note(draft, plan) if plan is not None else None,
        # only on a page that is never kept
        posted=posted or {},
        errors=errors,
        error_for={e.field: e.message for e in errors},
        refusal=refusal,
    )


def _last_session(context: PlanContext, page_url: str) -> Markup:
    """The "From the last session" part: the outcome blueprint's template function and template (they read
    the bedside record, so per request); nothing when there was no earlier session of the drug."""
    next_course_for = current_app.jinja_env.globals.get("next_course_for")
    last = next_course_for(context.session.sid, context.draft.drug) if callable(next_course_for) else None
    if not last:
        return Markup("")
    html = current_app.jinja_env.get_template("_outcome_planning.html").render(
        last=last,
        draft=context.draft,
        plan=context.plan,
        page_url=page_url,
        csrf_token=context.session.csrf_token,
    )
    return Markup(html)  # noqa: S704 (an autoescaped template's output)


def render_plan_page(
    sid: str, draft_id: str, *, status: int, sign_error: DesensError | None = None
) -> tuple[str, int]:
    """The plan page of a draft with ``status``; ``sign_error``: why "Sign and send orders" did not
    sign (shown in an alert saying what happened and what the chart holds, above the worksheet and
    its print links). DraftNotFound, or the EHR's errors when the page itself cannot be read."""
    refusal = describe_refusal(sign_error) if sign_error is not None else None
    return render_plan(context_for(sid, draft_id), status=status, refusal=refusal)
