"""Plan drafts: one desensitization being planned in an app session, kept server-side.

A :class:`PlanDraft` holds what the clinician chose (drug, target dose, protocol and its settings,
inserted steps, risk answers, confirmations and override), never computed numbers: every page and
the signing step recompute the plan from it through the engine and the safety invariants
(:func:`plan_for`). Drafts live in the session store (kind ``"draft"``, key ``"<sid>:<draft_id>"``,
encrypted like the sessions) for the session's lifetime; a draft id is only found with the session
id that created it, so another session's draft is "not found".

The edit functions (``with_*``) take the posted form, check it and return a new draft, raising
:class:`InputError` named after the form field; the caller recomputes the plan before saving, so an
edit that the engine or the invariants refuse leaves the stored draft unchanged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from fhir_desens.course import draft as course_draft
from fhir_desens.course.assessment import (
    Assessment,
    MatchedAllergy,
    assess,
    premedication_allergies,
    signing_blockers,
)
from fhir_desens.course.draft import (
    DILUENTS,
    CopiedSettings,
    PlanDraft,
    draft_from_start,
    fixed_dose_note,
    new_draft_id,
    plan_request_for,
    risk_answers,
    suggestion_for,
)
from fhir_desens.course.drug_review import DrugReview, drug_ref_for
from fhir_desens.course.lifecycle import substantive_reason
from fhir_desens.course.sign import review_for
from fhir_desens.course.therapeutic import dose_difference
from fhir_desens.drugs.overrides import OverrideAuthority, check_override_authority, check_override_reason
from fhir_desens.errors import DesensError, InputError
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.model import Protocol, ProtocolKind
from fhir_desens.protocol.quantity import plain
from smart_app.app_session import AppSession
from smart_app.library import library
from smart_app.page_cache import memo
from smart_app.planning.forms import checkbox, choice, number, options_for
from smart_app.services import services

log = logging.getLogger(__name__)

DRAFT_KIND = "draft"
_DRAFT_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


class DraftNotFound(DesensError):
    """No draft with this id in this app session (unknown, expired, or another session's)."""

    exit_code = 2
    http_status = 404

    def __init__(self) -> None:
        super().__init__(
            "This plan was not found in this app session (it may have expired). "
            "Start a new plan from the patient page."
        )


def _store_key(sid: str, draft_id: str) -> str:
    return f"{sid}:{draft_id}"


def save_draft(sid: str, draft: PlanDraft) -> None:
    if not _DRAFT_ID.match(draft.draft_id):
        raise ValueError("malformed draft id")
    svc = services()
    svc.store.put(DRAFT_KIND, _store_key(sid, draft.draft_id), draft.to_dict(), ttl=svc.settings.session_ttl)


def load_draft(sid: str, draft_id: str) -> PlanDraft:
    """The draft of this session, or :class:`DraftNotFound` (HTTP 404)."""
    if not _DRAFT_ID.match(draft_id):
        raise DraftNotFound()
    draft = services().store.get_as(DRAFT_KIND, _store_key(sid, draft_id), _draft_of)
    if draft is None or draft.draft_id != draft_id:
        raise DraftNotFound()
    return draft


def _draft_of(data: Mapping[str, Any]) -> PlanDraft | None:
    """A stored draft record as a draft (read once per stored record: drafts are frozen)."""
    try:
        return PlanDraft.from_dict(data)
    except (KeyError, TypeError, ValueError):
        log.warning("unreadable draft record")
        return None


def plan_for(draft: PlanDraft) -> Plan:
    """The exact plan of a draft with the app's library (see :func:`fhir_desens.course.draft.plan_for`)."""
    return course_draft.plan_for(draft, library())


# --- edits from the plan page ----------------------------------------------------------------------


def _posted_number(form: Mapping[str, str], name: str, *, switched: bool) -> str | None:
    """A number field of the protocol form; absent after a protocol switch means "the default"."""
    if switched and not (form.get(name) or "").strip():
        return None
    value = number(form, name)
    return None if value is None else plain(value)


def with_protocol_settings(
    draft: PlanDraft, form: Mapping[str, str], protocols: Mapping[str, Protocol]
) -> PlanDraft:
    """The "Recalculate" form: protocol, final rate, bag volume, diluent, closing method."""
    protocol_id = choice(form, "protocol", protocols)
    protocol = protocols[protocol_id]
    switched = protocol_id != draft.protocol_id
    options = options_for(protocol)
    final_rate = _posted_number(form, "final_rate", switched=switched) if options.final_rate else None
    bag_volume = _posted_number(form, "bag_volume", switched=switched) if options.bag_volume else None
    diluent: str | None = None
    if options.diluent:
        if switched and "diluent" not in form:
            diluent = None
        else:
            diluent = choice(form, "diluent", ["", *DILUENTS]) or None
    closing: str | None = None
    if options.closing:
        allowed = [c.value for c in options.closing]
        posted = form.get("closing", "")
        if switched and posted not in allowed:
            closing = None  # the previous protocol's method does not apply to this one
        else:
            closing = choice(form, "closing", ["", *allowed]) or None
    return replace(
        draft,
        protocol_id=protocol_id,
        final_rate_ml_h=final_rate,
        bag_volume_ml=bag_volume,
        diluent=diluent,
        closing=closing,
        insert_before=() if switched else draft.insert_before,
    )


def _step_number(form: Mapping[str, str], name: str, count: int) -> int:
    raw = (form.get(name) or "").strip()
    accepted = f"a step number from 1 to {count}"
    if not raw:
        raise InputError(name, "is empty", accepted)
    if not raw.isdigit() or len(raw) > 4:
        raise InputError(name, f"'{raw[:12]}' is not a step number", accepted)
    value = int(raw)
    if not 1 <= value <= count:
        raise InputError(name, f"there is no step {value} in this plan", accepted)
    return value


def _protocol_step(plan: Plan, number: int) -> int | None:
    """The protocol's own number of the plan's step ``number`` (None for an inserted step)."""
    return plan.steps[number - 1].protocol_step


def with_insertion(draft: PlanDraft, plan: Plan, form: Mapping[str, str]) -> PlanDraft:
    """ "Insert a step before step N" (N as numbered on the worksheet)."""
    if plan.protocol.kind is not ProtocolKind.INFUSION:
        raise InputError("insert_before", "steps can be inserted in infusion protocols only")
    number_ = _step_number(form, "insert_before", len(plan.steps))
    protocol_step = _protocol_step(plan, number_)
    if protocol_step is None:
        raise InputError(
            "insert_before",
            f"step {number_} is an inserted step",
            "the number of one of the protocol's own steps",
        )
    if protocol_step in draft.insert_before:
        raise InputError(
            "insert_before", f"a step is already inserted before step {number_}", "another step number"
        )
    return replace(draft, insert_before=tuple(sorted((*draft.insert_before, protocol_step))))


def without_insertion(draft: PlanDraft, plan: Plan, form: Mapping[str, str]) -> PlanDraft:
    """ "Remove inserted step N": the insertion before the protocol step that follows it."""
    number_ = _step_number(form, "remove", len(plan.steps))
    if not plan.steps[number_ - 1].inserted:
        raise InputError(
            "remove", f"step {number_} is not an inserted step", "the number of an inserted step"
        )
    before = _protocol_step(plan, number_ + 1) if number_ < len(plan.steps) else None
    if before is None or before not in draft.insert_before:
        raise InputError("remove", f"step {number_} cannot be matched to an insertion", "reload the page")
    return replace(draft, insert_before=tuple(n for n in draft.insert_before if n != before))


def assessment_for(session: AppSession, draft: PlanDraft, *, fresh: bool = False) -> Assessment:
    """The draft's drug against the session's allergy list (briefly cached; ``fresh`` reads it from the
    EHR again, as signing does). Matching runs on the resolved drug name (DRUG-NAME-1). The screening
    is memoized per drug and allergy list content (:mod:`smart_app.page_cache`): a changed list is
    screened again."""
    allergies = session.allergies(fresh=fresh)
    key = (draft.drug, draft.drug_rxnorm, session.chart_key("allergies"), allergies is None)
    screening: Assessment = memo("screenings").get(
        key, lambda: assess(drug_ref_for(draft.drug, draft.drug_rxnorm), allergies)
    )
    return screening


def premedications_ruled_out(session: AppSession, plan: Plan) -> dict[str, str]:
    """PLAN-PREMED-1 for the plan page: the plan's premedications the session's allergy list rules out,
    memoized per premedication list and allergy list content like :func:`assessment_for` (signing and the
    bedside read the list afresh and call the rule themselves)."""
    allergies = session.allergies()
    names = tuple(premedication.drug for premedication in plan.premedications)
    key = (names, session.chart_key("allergies"), allergies is None)
    ruled_out: dict[str, str] = memo("premedication screenings").get(
        key, lambda: premedication_allergies(plan.premedications, allergies)
    )
    return dict(ruled_out)


def review_of(draft: PlanDraft, plan: Plan) -> DrugReview:
    """The drug checks of the draft's plan (the same signing runs)."""
    return review_for(draft, plan, library())


def with_unlisted_confirmed(draft: PlanDraft, assessment: Assessment, form: Mapping[str, str]) -> PlanDraft:
    if not assessment.unlisted:
        raise InputError("confirm_unlisted", "the drug is on the allergy list; there is nothing to confirm")
    if not checkbox(form, "confirm_unlisted"):
        raise InputError("confirm_unlisted", "the box is not ticked", "tick the box, then Confirm")
    return replace(draft, unlisted_confirmed=True)


def with_premedications_withheld(
    draft: PlanDraft, ruled_out: Mapping[str, str], form: Mapping[str, str], who: str
) -> PlanDraft:
    """PLAN-PREMED-1: the allergist acknowledges that the premedications the allergy list rules out are not
    given (recorded on the signed plan with who acknowledged it)."""
    if not ruled_out:
        raise InputError(
            "confirm_premedications",
            "no premedication of this protocol is on the allergy list; there is nothing to acknowledge",
        )
    if not checkbox(form, "confirm_premedications"):
        raise InputError("confirm_premedications", "the box is not ticked", "tick the box, then Acknowledge")
    return replace(draft, premedications_withheld=tuple(ruled_out), premedications_withheld_by=who)


def with_uncoded_confirmed(draft: PlanDraft, review: DrugReview | None, form: Mapping[str, str]) -> PlanDraft:
    """DRUG-NAME-2: an unresolved drug name is planned only after this explicit confirmation."""
    if review is None or review.resolution.resolved:
        raise InputError("confirm_uncoded", "the drug is known; there is nothing to confirm")
    if not checkbox(form, "confirm_uncoded"):
        raise InputError("confirm_uncoded", "the box is not ticked", "tick the box, then Confirm")
    return replace(draft, uncoded_confirmed=True)


def overridden_summary(assessment: Assessment) -> str:
    """What is overridden, for the worksheet and the orders: "Stevens-Johnson syndrome, 2019"."""
    parts: list[str] = []
    for matched in assessment.matched:
        if matched.screening is None or not matched.contraindicated:
            continue
        year = (
            matched.allergy.onset or matched.allergy.last_occurrence or matched.allergy.recorded_date or ""
        )[:4]
        for reason in matched.screening.reasons:
            label = reason.removeprefix("history of ").split(" (recorded as", 1)[0]
            text = f"{label[:1].upper()}{label[1:]}{', ' + year if year.isdigit() else ''}"
            if text not in parts:
                parts.append(text)
    return "; ".join(parts)


def allergists() -> tuple[str, ...]:
    """The configured allergists a non-allergist may ask to co-sign an override."""
    return services().settings.allergists


def with_override(
    draft: PlanDraft, assessment: Assessment, form: Mapping[str, str], user_evidence: str | None
) -> PlanDraft:
    """OVERRIDE-1/2: an allergist (or another user with an allergist's co-signature) and a real reason."""
    if not assessment.contraindicated:
        raise InputError("override_reason", "no contraindication was found; there is nothing to override")
    reason = check_override_reason(form.get("override_reason"))
    cosigner = (form.get("override_cosigner") or "").strip() or None
    cosigner_evidence = None
    if user_evidence is None and cosigner is not None:
        if cosigner not in allergists():
            raise InputError(
                "override_cosigner",
                "is not one of the configured allergists",
                ", ".join(allergists()) or "none configured",
            )
        if not checkbox(form, "cosigner_agreed"):
            raise InputError("cosigner_agreed", "the allergist's agreement is not confirmed", "tick the box")
        cosigner_evidence = "configured allergist list"
    authority = check_override_authority(
        OverrideAuthority("the signed-in user", user_evidence, cosigner, cosigner_evidence)
    )
    return replace(
        draft, override_reason=reason, overridden=overridden_summary(assessment), override_authority=authority
    )


__all__ = [
    "DILUENTS",
    "DRAFT_KIND",
    "Assessment",
    "CopiedSettings",
    "DraftNotFound",
    "MatchedAllergy",
    "PlanDraft",
    "assess",
    "assessment_for",
    "draft_from_start",
    "fixed_dose_note",
    "library",
    "load_draft",
    "new_draft_id",
    "plan_for",
    "plan_request_for",
    "risk_answers",
    "save_draft",
    "signing_blockers",
    "suggestion_for",
    "with_insertion",
    "with_override",
    "with_premedications_withheld",
    "with_protocol_settings",
    "with_uncoded_confirmed",
    "with_unlisted_confirmed",
    "without_insertion",
]


# --- reconciliation with the chart, and the clock ---------------------------------------------------

#: how far back a planned start may lie (a plan being signed as the first bag is hung)
START_GRACE = timedelta(minutes=30)
START_HORIZON = timedelta(days=366)


def with_planned_start(draft: PlanDraft, form: Mapping[str, str], now: datetime) -> PlanDraft:
    """The planned start, typed as a local date and time of the site (``now`` carries its zone):
    "2027-01-15 09:00" (or ISO 8601's "2027-01-15T09:00"). Empty: no planned start (clock times "if
    started now")."""
    raw = (form.get("planned_start") or "").strip()
    accepted = "a date and 24-hour time like 2027-01-15 09:00, in the site's time zone, from now on"
    if not raw:
        return replace(draft, planned_start=None)
    try:
        local = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError("planned_start", f"'{raw[:20]}' is not a date and time", accepted) from None
    if local.tzinfo is not None:
        raise InputError("planned_start", "carries its own time zone", accepted)
    start = local.replace(tzinfo=now.tzinfo)
    if start < now - START_GRACE:
        raise InputError("planned_start", f"{start:%Y-%m-%d %H:%M} is in the past", accepted)
    if start > now + START_HORIZON:
        raise InputError("planned_start", f"{start:%Y-%m-%d} is more than a year ahead", accepted)
    return replace(draft, planned_start=start.isoformat(timespec="minutes"))


def with_dose_reason(draft: PlanDraft, form: Mapping[str, str]) -> PlanDraft:
    if dose_difference(draft) is None:
        raise InputError(
            "dose_reason", "there is no order dose to compare with; there is nothing to acknowledge"
        )
    if not checkbox(form, "dose_acknowledged"):
        raise InputError("dose_acknowledged", "the box is not ticked", "tick the box and give the reason")
    return replace(draft, dose_reason=substantive_reason(form.get("dose_reason"), "dose_reason"))


def with_order_kept(draft: PlanDraft, form: Mapping[str, str]) -> PlanDraft:
    if not draft.order_reference:
        raise InputError(
            "keep_order_reason", "the plan was not started from an order; there is nothing to keep"
        )
    return replace(
        draft, keep_order_reason=substantive_reason(form.get("keep_order_reason"), "keep_order_reason")
    )


def with_order_held(draft: PlanDraft) -> PlanDraft:
    return replace(draft, keep_order_reason=None)


def with_duplicate_confirmed(draft: PlanDraft, form: Mapping[str, str]) -> PlanDraft:
    return replace(
        draft, duplicate_reason=substantive_reason(form.get("duplicate_reason"), "duplicate_reason")
    )
