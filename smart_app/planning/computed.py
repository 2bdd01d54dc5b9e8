"""What a plan page computes from its draft alone, once per draft content.

The plan (the engine with every safety invariant), the drug checks, the protocol suggestion and the
worksheet without its clock times (step table, solutions, SVG timeline) depend only on the draft and
the app's protocol library (read once at start). :func:`computed_for` memoizes them by a digest of the
draft's stored record (:mod:`smart_app.page_cache`): every edit saves a new record, so the next page
computes afresh, and a reload of an unchanged draft recomputes nothing. The clock times ("if started
now", or from the planned start) are added per request (:func:`smart_app.planning.worksheet.at_start`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_desens.course.drug_review import DrugReview
from fhir_desens.course.therapeutic import DoseDifference, dose_difference
from fhir_desens.errors import DesensError, InputError, SafetyViolation
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.risk import ProtocolSuggestion
from smart_app.page_cache import content_key, memo
from smart_app.planning import drafts
from smart_app.planning.drafts import PlanDraft
from smart_app.planning.forms import FieldError, field_error
from smart_app.planning.worksheet import ClockOffsets, Worksheet, clock_offsets, plan_sheet
from smart_app.services import services

__all__ = ["Computed", "computed_for", "draft_version"]


@dataclass(frozen=True)
class Computed:
    version: str  # the draft's content digest (draft_version) these were computed from
    plan: Plan | None  # None: the engine refused the draft (plan_error says why)
    plan_error: FieldError | None
    review: DrugReview | None  # the drug checks of the plan (None: no plan)
    suggestion: ProtocolSuggestion | None
    sheet: Worksheet | None  # the plan's worksheet, its clock times still to be set
    dose: DoseDifference | None = None  # the target against the therapeutic order's dose
    offsets: ClockOffsets | None = None  # when the plan's steps start, to count each request's clock times


def draft_version(draft: PlanDraft) -> str:
    """A digest of the draft's content: equal drafts, equal version; any edit, another one (its fields
    as JSON, keys sorted: what :meth:`PlanDraft.to_dict` stores, without its deep copy)."""
    return content_key(vars(draft))


def computed_for(draft: PlanDraft) -> Computed:
    """The draft's plan and what the pages show of it (memoized per :func:`draft_version`)."""
    version = draft_version(draft)
    found: Computed = memo("computed drafts").get(version, lambda: _compute(draft, version))
    return found


def _compute(draft: PlanDraft, version: str) -> Computed:
    dose = dose_difference(draft)
    try:
        suggestion = drafts.suggestion_for(draft, drafts.library())
    except DesensError:
        suggestion = None
    try:
        plan = drafts.plan_for(draft)
    except (InputError, SafetyViolation) as error:  # e.g. an imported protocol changed under the draft
        return Computed(version, None, field_error(error, default="protocol"), None, suggestion, None, dose)
    return Computed(
        version,
        plan,
        None,
        drafts.review_of(draft, plan),
        suggestion,
        plan_sheet(plan, draft.drug_rxnorm, services().settings.min_draw_ml),
        dose,
        clock_offsets(plan),
    )
