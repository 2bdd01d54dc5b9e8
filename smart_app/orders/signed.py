"""The orders concern's glue between the app session and :mod:`fhir_desens.course`: sign a draft,
list the patient's signed plans, and a signed plan with its worksheet for the pages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from fhir_desens.client.smart import SmartSession
from fhir_desens.course import readback
from fhir_desens.course.draft import PlanDraft
from fhir_desens.course.drug_review import DrugReview
from fhir_desens.course.readback import SignedPlan, SignedPlanSummary
from fhir_desens.course.sign import SignResult, review_for, sign_draft
from smart_app.app_session import AppSession
from smart_app.library import library
from smart_app.planning.worksheet import Worksheet, worksheet_for
from smart_app.services import services

__all__ = ["SignedPlanPage", "load_signed_plan", "sign", "signed_plans"]


@dataclass(frozen=True)
class SignedPlanPage(SignedPlan):
    """A signed plan as its pages show it: with the worksheet of the verified recomputation and its drug
    checks (products, preparation, warnings), which the signed sheets print as the draft's do: the
    pharmacist prepares from the signed pharmacy sheet."""

    worksheet: Worksheet | None = None
    review: DrugReview | None = None


def sign(session: AppSession, draft: PlanDraft) -> SignResult:
    """Sign and send the draft's orders (the allergy list and the other active plans of the drug are
    read afresh before anything is written). The signed plans the worksheets reuse are dropped either
    way: signed, the plan is one of them; refused as a duplicate, the EHR holds another."""
    try:
        return sign_draft(session.course(), draft, lambda: session.allergies(fresh=True))
    finally:
        session.forget("plans")


def signed_plans(smart: SmartSession, bundle: Mapping[str, Any] | None = None) -> list[SignedPlanSummary]:
    return readback.signed_plans(smart, library(), services().settings.zone, bundle=bundle)


def load_signed_plan(
    smart: SmartSession, rg_id: str, *, started_at: datetime | None = None
) -> SignedPlanPage:
    """A signed plan of this patient; the worksheet only when the engine gives exactly its orders."""
    signed = readback.load_signed_plan(smart, rg_id, library(), services().settings.zone)
    worksheet = None
    review = None
    if signed.plan is not None and signed.draft is not None:
        review = review_for(signed.draft, signed.plan, library())
    if signed.plan is not None:
        start = datetime.fromisoformat(signed.planned_start) if signed.planned_start else None
        if start is not None and start.tzinfo is not None:  # the orders' own clock, shown in the site's zone
            started_at = start.astimezone(services().settings.zone)
        planned = start is not None and start.tzinfo is not None
        rxnorm = signed.draft.drug_rxnorm if signed.draft is not None else ()
        worksheet = worksheet_for(
            signed.plan,
            started_at or services().site_now(),
            planned=planned,
            rxnorm=rxnorm,
            minimum_ml=services().settings.min_draw_ml,
        )
    values = {f.name: getattr(signed, f.name) for f in fields(SignedPlan)}
    return SignedPlanPage(**values, worksheet=worksheet, review=review)
