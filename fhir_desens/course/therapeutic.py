"""The plan against the patient's therapeutic order: the dose it was chosen from, and how far the
target may stray from it before a reason is needed (pure).

The plan starts from the active (standard-rate) order when there is one; the target dose typed or
copied may differ from it (a per-m² recalculation, a rounding the pharmacy asked for), but a target
that differs by more than the site's tolerance (``FHIR_DESENS_DOSE_TOLERANCE_PERCENT``, 5 % by
default) is a likely slip (a ten-fold error, the wrong order) and is signed only with an explicit
acknowledgement and its reason (rule ORDER-DOSE-1).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from fhir_desens.course.draft import PlanDraft
from fhir_desens.errors import DesensError
from fhir_desens.protocol.quantity import Quantity, display, div, mul, parse_quantity, sub

__all__ = ["DoseDifference", "difference_blocker", "dose_blocker", "dose_difference"]


@dataclass(frozen=True)
class DoseDifference:
    order: Quantity  # as the order states it
    target: Quantity  # as prescribed on the plan (per m² when dosed by body surface area)
    percent: Decimal | None  # None: not comparable (different kinds of unit)

    def beyond(self, tolerance_percent: Decimal) -> bool:
        """Beyond the tolerance (a dose that cannot be compared, e.g. units against mg, is shown, not
        blocked: the order's own wording stays on the page as the source)."""
        return self.percent is not None and self.percent > tolerance_percent

    def describe(self) -> str:
        if self.percent is None:
            return f"the target dose ({self.target}) cannot be compared with the order's ({self.order})"
        return (
            f"the target dose ({self.target}) differs from the active order ({self.order}) by "
            f"{display(self.percent, 1)} %"
        )


def dose_difference(draft: PlanDraft) -> DoseDifference | None:
    """How the draft's dose compares with the therapeutic order's (None: no order dose to compare)."""
    if not draft.ordered_dose or not draft.order_reference:
        return None
    try:
        order = parse_quantity(draft.ordered_dose, "ordered_dose")
        prescribed = [parse_quantity(d, "target_dose") for d in (draft.dose_per_m2, draft.target) if d]
    except DesensError:
        return None
    # the dose as prescribed (per m²) when the order is per m² too, else the total
    target = next((q for q in prescribed if q.dimension is order.dimension), prescribed[0])
    if order.dimension is not target.dimension or order.value <= 0:
        return DoseDifference(order, target, None)
    ordered, planned = order.canonical().value, target.canonical().value
    percent = mul(div(abs(sub(planned, ordered)), ordered), Decimal(100))
    return DoseDifference(order, target, percent)


def dose_blocker(draft: PlanDraft, tolerance_percent: Decimal) -> str | None:
    """Why the plan may not be signed because of its dose (None: within tolerance, or acknowledged)."""
    return difference_blocker(draft, dose_difference(draft), tolerance_percent)


def difference_blocker(
    draft: PlanDraft, difference: DoseDifference | None, tolerance_percent: Decimal
) -> str | None:
    """:func:`dose_blocker` of ``draft`` given its :func:`dose_difference` ``difference``."""
    if difference is None or not difference.beyond(tolerance_percent) or draft.dose_reason:
        return None
    return (
        f"{difference.describe()[:1].upper()}{difference.describe()[1:]} (more than "
        f"{display(tolerance_percent, 1)} %): check the dose, or acknowledge the difference with a reason."
    )
