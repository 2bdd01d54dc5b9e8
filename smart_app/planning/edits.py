"""The plan page's edit actions: each parses its form into a new draft (not yet saved; the caller
recomputes the plan through the engine and the invariants first). InputError names the form field."""

from __future__ import annotations

from collections.abc import Mapping

from fhir_desens.errors import InputError
from smart_app.app_session import override_evidence
from smart_app.planning import drafts
from smart_app.planning.drafts import PlanDraft
from smart_app.planning.plan_page import PlanContext, when_text
from smart_app.services import services

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
    "acknowledge-premedications",
)


def edited_draft(context: PlanContext, action: str, form: Mapping[str, str]) -> PlanDraft:
    """The edited draft (not yet saved); InputError names the form field."""
    draft, plan = context.draft, context.plan
    if context.signed is not None:
        raise InputError(
            "action",
            f"this plan was signed on {when_text(context.signed.sent_at)}: a signed plan is read-only",
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
    if action == "acknowledge-premedications":
        who = context.session.user.in_records  # written on the signed orders: a name, never a reference
        return drafts.with_premedications_withheld(draft, context.premedications_ruled_out, form, who)
    if plan is None:
        raise InputError("action", "the plan cannot be computed", "change the protocol settings first")
    if action == "insert":
        return drafts.with_insertion(draft, plan, form)
    return drafts.without_insertion(draft, plan, form)


FIELD_OF_ACTION: dict[str, str] = {
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
    "acknowledge-premedications": "confirm_premedications",
}
