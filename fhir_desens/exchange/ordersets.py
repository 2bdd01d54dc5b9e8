"""Order sets in exchange inputs, validated like protocols: recomputed through the engine.

An order set is a RequestGroup carrying the ``desens-plan-parameters`` extension (what ``$apply`` or
"Sign and send orders" wrote) with its step MedicationRequests and their Medications, in a Bundle,
a package or files given together. Its actions' references are resolved among the inputs (by the
Bundle's ``urn:uuid`` fullUrls, or by ``Type/id``); then :func:`fhir_desens.fhir.orderset
.verify_order_set`, the one implementation the app's read-back of signed plans also uses, recomputes
the plan from the recorded parameters and compares every step. Each difference becomes an error on
the order (or the group) it is about, naming the step, what is stated and what the engine gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fhir_desens.exchange.load import Loaded
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.orderset import StepFinding, verify_order_set
from fhir_desens.protocol.model import Protocol

__all__ = ["OrderSetIssue", "is_order_set", "order_set_issues"]

#: Where each finding points inside a step MedicationRequest.
_EXPRESSIONS: Final = {
    "dose": "dosageInstruction[0].doseAndRate[0].doseQuantity.value",
    "dose unit": "dosageInstruction[0].doseAndRate[0].doseQuantity.code",
    "rate": "dosageInstruction[0].doseAndRate[0].rateQuantity.value",
    "duration": "dosageInstruction[0].timing.repeat.duration",
    "sequence": "dosageInstruction[0].sequence",
    "concentration": "medicationReference",
}


@dataclass(frozen=True)
class OrderSetIssue:
    """One problem of an order set, on the input it is about."""

    where: Loaded
    severity: str
    message: str
    expression: str | None


def is_order_set(item: Loaded) -> bool:
    """A RequestGroup that records what it was computed from (our plan parameters)."""
    if item.resource_type != "RequestGroup":
        return False
    return any(
        isinstance(e, Mapping) and e.get("url") == c.EXT_PLAN_PARAMETERS
        for e in item.resource.get("extension") or []
    )


class _Index:
    """Inputs by the references that can name them: fullUrl (within a Bundle) and Type/id."""

    def __init__(self, loaded: Sequence[Loaded]) -> None:
        self.by_full_url = {(i.source, i.full_url): i for i in loaded if i.full_url}
        self.by_id: dict[str, Loaded] = {}
        for item in loaded:
            resource_id = item.resource.get("id")
            if isinstance(resource_id, str):
                self.by_id.setdefault(f"{item.resource_type}/{resource_id}", item)

    def resolve(self, reference: Any, source: str, kind: str) -> Loaded | None:
        if not isinstance(reference, Mapping) or not isinstance(reference.get("reference"), str):
            return None
        ref = reference["reference"]
        found = self.by_full_url.get((source, ref)) or self.by_id.get(ref)
        return found if found is not None and found.resource_type == kind else None


def _action_references(group: Mapping[str, Any]) -> list[Any]:
    return [a.get("resource") for a in group.get("action") or [] if isinstance(a, Mapping)]


def order_set_issues(
    loaded: Sequence[Loaded], protocols: Mapping[str, Protocol]
) -> tuple[int, list[OrderSetIssue]]:
    """How many order sets were recomputed, and every problem found in them."""
    index = _Index(loaded)
    checked, issues = 0, []
    for item in loaded:
        if not is_order_set(item):
            continue
        found = _check(item, index, protocols)
        recomputed = not any(i.message.startswith("order set not recomputed") for i in found or [])
        checked += 1 if recomputed else 0
        issues += found or []
    return checked, issues


def _check(group: Loaded, index: _Index, protocols: Mapping[str, Protocol]) -> list[OrderSetIssue] | None:
    references = _action_references(group.resource)
    orders = [index.resolve(ref, group.source, "MedicationRequest") for ref in references]
    missing = sum(order is None for order in orders)
    if missing:
        text = (
            f"order set not recomputed: {missing} of {len(references)} step order(s) are not in the input "
            "(validate the RequestGroup together with its MedicationRequests and Medications)"
        )
        return [OrderSetIssue(group, "warning", text, "RequestGroup.action")]
    present = [order for order in orders if order is not None]
    medications: dict[str, Mapping[str, Any]] = {}
    normalised = []
    for position, order in enumerate(present):
        medication = index.resolve(order.resource.get("medicationReference"), order.source, "Medication")
        copy = dict(order.resource)
        if medication is not None:  # name it Medication/<key> as a server would, for the shared check
            medications[f"m{position}"] = medication.resource
            copy["medicationReference"] = {"reference": f"Medication/m{position}"}
        normalised.append(copy)
    check = verify_order_set(group.resource, normalised, medications, protocols)
    if check.plan is None:
        severity = "error" if check.problem and "cannot be recomputed" in check.problem else "warning"
        return [OrderSetIssue(group, severity, f"order set not recomputed: {check.problem}", None)]
    return [_issue(finding, group, present) for finding in check.findings] or None


def _issue(finding: StepFinding, group: Loaded, orders: Sequence[Loaded]) -> OrderSetIssue:
    message = finding.describe()
    if finding.step is None or finding.element == "action duration":
        expression = (
            "RequestGroup.action" if finding.step is None else f"RequestGroup.action[{finding.step - 1}]"
        )
        return OrderSetIssue(group, "error", message, expression)
    order = orders[finding.step - 1] if 0 < finding.step <= len(orders) else group
    path = _EXPRESSIONS.get(finding.element, "dosageInstruction[0].text")
    return OrderSetIssue(order, "error", message, f"{order.resource_type}.{path}")
