"""The plan page's sections that depend on content, not on the request: rendered once per content and
kept (:mod:`smart_app.fragments`), with the page's URL, the CSRF token and the clock times filled in
per request.

=================  ===========================================================================
section            key: everything it shows besides its holes
=================  ===========================================================================
allergy match      the draft's content (its drug, patient, confirmations, override), the
                   allergy list's content digest (None: not readable), whether the user is an
                   allergist (the override form differs), the configured co-signing allergists
drug review        the draft's content (the drug checks are computed from it alone)
protocol form      the draft's content (the suggestion, the protocol's options, the form's values)
worksheet          the draft's content and its clock basis; the clock times are holes
=================  ===========================================================================

"The draft's content" is its digest (:func:`~smart_app.planning.computed.draft_version`), which fixes
the plan, its checks, its suggestion and its worksheet (:mod:`smart_app.planning.computed`); a draft
names its patient, so no two patients share a draft key. The protocol library, the display policy
and the site's settings are fixed for the app's life, and each app has its own memo. A section shown
with what was posted or with errors is rendered afresh and never kept (its key is None).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from flask import render_template
from markupsafe import Markup

from fhir_desens.course.draft import DILUENTS
from fhir_desens.protocol.calculate import Plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.model import Protocol
from fhir_desens.protocol.quantity import plain
from smart_app.fragments import fragment, hole
from smart_app.planning.computed import Computed
from smart_app.planning.drafts import Assessment, PlanDraft
from smart_app.planning.forms import CLOSING_TEXT, LABELS, FieldError, options_for
from smart_app.planning.worksheet import ClockTimes, with_premedication_allergies, with_times

__all__ = [
    "PER_REQUEST",
    "Shown",
    "allergy_match",
    "clock_holes",
    "clock_values",
    "drug_review",
    "protocol_form",
    "worksheet_part",
]

#: the per-request values every section leaves as holes
PER_REQUEST = ("page_url", "csrf_token")
_FORM_FIELDS = ("protocol", "final_rate", "bag_volume", "diluent", "closing")


class Shown:
    """What one plan page request shows the sections with: the per-request values (``page_url``,
    ``csrf_token``) and, on a page re-rendered after a POST, what was posted and the errors."""

    def __init__(
        self,
        per_request: Mapping[str, str],
        posted: Mapping[str, str] | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        self.per_request = per_request
        self.posted = posted
        self.errors = errors or []

    @property
    def cacheable(self) -> bool:
        return self.posted is None and not self.errors

    def render(
        self, name: str, template: str, key: Hashable, context: Callable[[], dict[str, Any]]
    ) -> Markup:
        """Section ``name`` of ``template`` for ``key`` (kept unless this page shows a POST's values)."""

        def render() -> str:
            return render_template(
                template,
                **context(),
                posted=self.posted or {},
                error_for={e.field: e.message for e in self.errors},
                **{name: hole(name) for name in PER_REQUEST},
            )

        return fragment(name, key if self.cacheable else None, render).fill(self.per_request)


def allergy_match(
    shown: Shown,
    draft: PlanDraft,
    computed: Computed,
    assessment: Assessment,
    allergy_list: str | None,
    *,
    user_is_allergist: bool,
    allergists: tuple[str, ...],
) -> Markup:
    """The "Allergy match" section. ``allergy_list``: the digest of the allergy list the screening
    ``assessment`` was made from (None: the list could not be read)."""
    key = (computed.version, allergy_list, assessment.allergy_list_read, user_is_allergist, allergists)
    return shown.render(
        "plan allergy match",
        "_plan_allergy.html",
        key,
        lambda: {
            "draft": draft,
            "assessment": assessment,
            "user_is_allergist": user_is_allergist,
            "allergists": allergists,
        },
    )


def drug_review(shown: Shown, draft: PlanDraft, computed: Computed) -> Markup | None:
    """The "Drug and products" section (None: no plan, so no checks)."""
    if computed.review is None:
        return None
    return shown.render(
        "plan drug review",
        "_plan_drug_review.html",
        computed.version,
        lambda: {"draft": draft, "review": computed.review, "plan": computed.plan, "diluents": DILUENTS},
    )


def protocol_form(
    shown: Shown, draft: PlanDraft, computed: Computed, protocols: Mapping[str, Protocol]
) -> Markup:
    """The "Protocol" section: the suggestion, the protocol form and the insert form."""

    def context() -> dict[str, Any]:
        protocol = protocols.get(draft.protocol_id)
        values = protocol_values(draft, computed.plan, protocols)
        if shown.posted is not None and shown.posted.get("action") == "recalculate":
            values.update({k: shown.posted.get(k, "") for k in _FORM_FIELDS})
        return {
            "draft": draft,
            "plan": computed.plan,
            "protocol": protocol,
            "protocols": protocols,
            "builtin_ids": frozenset(builtin_protocols()),  # imported protocols show where they come from
            "options": options_for(protocol) if protocol is not None else None,
            "values": values,
            "suggestion": computed.suggestion,
            "labels": LABELS,
            "diluents": DILUENTS,
            "closing_text": {c.value: t for c, t in CLOSING_TEXT.items()},
        }

    return shown.render("plan protocol form", "_plan_protocol.html", computed.version, context)


def worksheet_part(
    shown: Shown, computed: Computed, times: ClockTimes, ruled_out: Mapping[str, str] | None = None
) -> Markup:
    """The worksheet and timeline sections with ``times`` (:func:`~smart_app.planning.worksheet.clock_times`
    of the draft's plan), and a "Remove inserted step" button on inserted steps. Never shows a POST's
    values, so it is kept on every page."""
    sheet = computed.sheet
    if sheet is None:
        raise ValueError("the draft has no plan, so no worksheet")
    holes = clock_holes(times)

    def render() -> str:
        return render_template(
            "_worksheet.html",
            worksheet=with_premedication_allergies(with_times(sheet, holes), ruled_out or {}),
            remove_url=hole("page_url"),
            csrf_token=hole("csrf_token"),
        )

    allergies = tuple(sorted((ruled_out or {}).items()))
    found = fragment("plan worksheet", (computed.version, times.clock_basis, allergies), render)
    return found.fill({**shown.per_request, **clock_values(times)})


def clock_holes(times: ClockTimes) -> ClockTimes:
    """``times`` with a hole for each clock time (what :func:`clock_values` fills in)."""
    return ClockTimes(
        steps=tuple(hole(f"step{i}") for i in range(len(times.steps))),
        premedications=tuple(
            None if t is None else hole(f"premed{i}") for i, t in enumerate(times.premedications)
        ),
        started_at=hole("started_at"),
        ends_at=hole("ends_at"),
        clock_basis=times.clock_basis,  # the draft's: "from the planned start" or "if started now"
    )


def clock_values(times: ClockTimes) -> dict[str, str]:
    """The values of :func:`clock_holes`."""
    values = {f"step{i}": t for i, t in enumerate(times.steps)}
    values.update({f"premed{i}": t for i, t in enumerate(times.premedications) if t is not None})
    values.update(started_at=times.started_at, ends_at=times.ends_at)
    return values


def protocol_values(draft: PlanDraft, plan: Plan | None, protocols: Mapping[str, Protocol]) -> dict[str, str]:
    """The protocol form as the stored draft has it (defaults shown as the engine resolved them)."""
    protocol = protocols.get(draft.protocol_id)
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
