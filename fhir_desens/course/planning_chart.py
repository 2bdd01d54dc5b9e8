"""What the planner reads from the chart, in as few round trips as the EHR allows (no Flask).

The start form is pre-filled from the active medication orders (with their Medications and the
Conditions they are for), the latest height and weight, and the risk criteria the chart answers (the
problem list, active orders, FEV1 results); the worksheets of the drafts it starts list the patient's
other active plans of the drug, so the signed plans are read with them. :func:`read_planning` reads all
of it in **one batch Bundle** when the EHR's CapabilityStatement lists ``batch`` (the caller says) (then a second batch for the Medications
the orders reference, when they reference any), otherwise search by search. A batch entry that fails
is read again on its own, so errors are what the plain search would give.

The result, :class:`PlanningReads`, is the EHR's JSON as returned: the app keeps it for the start
form's POST (read once per draft), and :func:`chart_for_planning` / :func:`risk_chart_of` derive the
form's pre-fill from it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.smart import SmartSession
from fhir_desens.course.chart import (
    HEIGHT_LOINC,
    LOINC,
    ORDER_STATUSES,
    WEIGHT_LOINC,
    ChartForPlanning,
    condition_references,
    desensitization_step,
    medication_references,
    own_resources,
    patient_reference,
    read_references,
)
from fhir_desens.course.readback import signed_plans_search
from fhir_desens.course.risk import RiskChart
from fhir_desens.errors import DesensError
from fhir_desens.fhir.allergy import Allergy
from fhir_desens.fhir.chart.drugs import drug_candidates
from fhir_desens.fhir.chart.measurements import latest_body_measurements
from fhir_desens.fhir.risk_chart import FEV1_PERCENT

log = logging.getLogger(__name__)

RISK_ORDER_STATUSES = ("active", "on-hold")
Resources = list[dict[str, Any]]


@dataclass(frozen=True)
class Search:
    """One search of the batch: ``all_pages`` follows next links (the orders), else the first page."""

    resource_type: str
    params: dict[str, str]
    all_pages: bool = False

    @property
    def url(self) -> str:
        return f"{self.resource_type}?{urlencode(self.params)}"


@dataclass(frozen=True)
class PlanningReads:
    """The chart as the EHR returned it (None: the grant does not allow reading that kind)."""

    orders: Resources | None  # active, on-hold and draft MedicationRequests, ours included
    body: Resources | None  # height and weight Observations, latest first
    conditions: Resources | None  # the patient's Conditions (problem list)
    fev1: Resources | None  # FEV1 % predicted Observations, latest first
    medications: dict[str, dict[str, Any]] = field(default_factory=dict)  # "Medication/<id>" -> resource
    referenced_conditions: dict[str, dict[str, Any]] = field(default_factory=dict)  # of the orders
    plans: Resources | None = None  # the signed plans' RequestGroups (first page, newest first)

    def to_json(self) -> dict[str, Any]:
        return {
            "plans": self.plans,
            "orders": self.orders,
            "body": self.body,
            "conditions": self.conditions,
            "fev1": self.fev1,
            "medications": self.medications,
            "referenced_conditions": self.referenced_conditions,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanningReads:
        return cls(
            orders=data.get("orders"),
            body=data.get("body"),
            conditions=data.get("conditions"),
            fev1=data.get("fev1"),
            medications=dict(data.get("medications") or {}),
            referenced_conditions=dict(data.get("referenced_conditions") or {}),
            plans=data.get("plans"),
        )


def _searches(smart: SmartSession) -> dict[str, Search]:
    own = patient_reference(smart)
    granted = smart.granted
    searches: dict[str, Search] = {}
    if granted.can_read("MedicationRequest"):
        searches["orders"] = Search(
            "MedicationRequest", {"patient": own, "status": ORDER_STATUSES, "_count": "100"}, all_pages=True
        )
    if granted.can_read("Observation"):
        codes = f"{LOINC}|{HEIGHT_LOINC},{LOINC}|{WEIGHT_LOINC}"
        searches["body"] = Search(
            "Observation", {"patient": own, "code": codes, "_sort": "-date", "_count": "50"}
        )
        searches["fev1"] = Search(
            "Observation",
            {"patient": own, "code": f"{LOINC}|{FEV1_PERCENT}", "_sort": "-date", "_count": "20"},
        )
    if granted.can_read("Condition"):
        searches["conditions"] = Search("Condition", {"patient": own, "_count": "100"})
    if granted.can_read("RequestGroup"):
        searches["plans"] = Search("RequestGroup", signed_plans_search(own))
    return searches


def _entry_ok(entry: Any, resource_type: str) -> dict[str, Any] | None:
    """A batch-response entry's resource when its status is 2xx and it is a ``resource_type``."""
    if not isinstance(entry, Mapping):
        return None
    response = entry.get("response")
    status = str(response.get("status", "")) if isinstance(response, Mapping) else ""
    resource = entry.get("resource")
    if status[:1] == "2" and isinstance(resource, dict) and resource.get("resourceType") == resource_type:
        return resource
    return None


def _search_one(client: FhirClient, search: Search, first: Mapping[str, Any] | None = None) -> Resources:
    if first is None:
        first = client.search(search.resource_type, search.params)
    if search.all_pages:
        return client.rest_of_search(search.resource_type, first)
    page = client.rest_of_search(search.resource_type, {**first, "link": []})
    return [r for r in page if r.get("resourceType") == search.resource_type]


def run_searches(client: FhirClient, searches: Mapping[str, Search], *, batch: bool) -> dict[str, Resources]:
    """Each search's resources: in one batch Bundle when ``batch``, else one request each."""
    firsts: dict[str, dict[str, Any] | None] = dict.fromkeys(searches)
    if batch and len(searches) > 1:
        names = list(searches)
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": searches[n].url}} for n in names],
        }
        try:
            entries = client.batch(bundle).get("entry") or []
        except DesensError as error:  # the batch as a whole failed: search by search, as without batches
            log.warning("the chart batch failed (%s): searching one by one", type(error).__name__)
            entries = []
        for name, entry in zip(names, entries, strict=False):
            firsts[name] = _entry_ok(entry, "Bundle")
            if firsts[name] is None:
                log.warning("a batch entry (%s search) failed: read on its own", searches[name].resource_type)
    return {name: _search_one(client, search, firsts[name]) for name, search in searches.items()}


def read_batch(client: FhirClient, urls: Sequence[str]) -> list[dict[str, Any] | None]:
    """GET each relative URL (``Patient/1``, ``Condition?patient=...``) in one batch Bundle; each
    entry's resource when it answered 2xx, else None (the caller reads that one on its own)."""
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": url}} for url in urls],
    }
    entries = list(client.batch(bundle).get("entry") or [])
    entries += [None] * (len(urls) - len(entries))
    found: list[dict[str, Any] | None] = []
    for url, entry in zip(urls, entries, strict=False):
        expected = "Bundle" if "?" in url else url.partition("/")[0]
        found.append(_entry_ok(entry, expected))
    return found


def read_by_reference(client: FhirClient, refs: Sequence[str], *, batch: bool) -> dict[str, dict[str, Any]]:
    """Each readable "Type/id" (one batch when ``batch`` and more than one); unreadable ones skipped."""
    if not batch or len(refs) < 2:
        return read_references(client, refs)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": ref}} for ref in refs],
    }
    try:
        entries = client.batch(bundle).get("entry") or []
    except DesensError as error:  # the batch as a whole failed: one by one, as without batches
        log.warning("the reference batch failed (%s): reading one by one", type(error).__name__)
        return read_references(client, refs)
    found: dict[str, dict[str, Any]] = {}
    for ref, entry in zip(refs, entries, strict=False):
        resource = _entry_ok(entry, ref.partition("/")[0])
        if resource is None:
            log.warning("could not read a %s (batch entry)", ref.partition("/")[0])
        else:
            found[ref] = resource
    return found


def read_planning(client: FhirClient, smart: SmartSession, *, batch: bool) -> PlanningReads:
    """The chart for the start form; ``batch``: whether the EHR takes batch Bundles (its
    CapabilityStatement, :class:`~fhir_desens.client.capabilities.CapabilityCache`)."""
    own = patient_reference(smart)
    searches = _searches(smart)
    use_batch = batch
    found = run_searches(client, searches, batch=use_batch)
    orders = (
        own_resources(found["orders"], own, "subject", "MedicationRequest") if "orders" in found else None
    )
    conditions = (
        own_resources(found["conditions"], own, "subject", "Condition") if "conditions" in found else None
    )
    refs: list[str] = []
    if orders is not None and smart.granted.can_read("Medication"):
        refs += medication_references(o for o in orders if not desensitization_step(o))
    known = {f"Condition/{c.get('id')}": c for c in conditions or []}
    wanted = condition_references(o for o in orders or [] if not desensitization_step(o))
    if conditions is not None:
        refs += [ref for ref in wanted if ref not in known]
    resolved = read_by_reference(client, refs, batch=use_batch) if refs else {}
    return PlanningReads(
        orders=orders,
        body=own_resources(found["body"], own, "subject", "Observation") if "body" in found else None,
        conditions=conditions,
        fev1=own_resources(found["fev1"], own, "subject", "Observation") if "fev1" in found else None,
        medications={r: v for r, v in resolved.items() if r.startswith("Medication/")},
        referenced_conditions={
            ref: known.get(ref) or resolved[ref] for ref in wanted if ref in known or ref in resolved
        },
        plans=found.get("plans"),  # readback.signed_plans checks the subject of each
    )


def signed_plans_bundle(plans: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The signed plans as the searchset :func:`fhir_desens.course.readback.signed_plans` takes."""
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": p} for p in plans]}


def chart_for_planning(
    reads: PlanningReads, smart: SmartSession, allergies: Sequence[Allergy] | None
) -> ChartForPlanning:
    """The start form's pre-fill: drugs to plan (orders first), height and weight, the allergy list."""
    unavailable = []
    if reads.orders is None:
        unavailable.append("medication orders")
    if reads.body is None:
        unavailable.append("height and weight")
    if allergies is None:
        unavailable.append("the allergy list")
    orders = [o for o in reads.orders or [] if not desensitization_step(o)]
    candidates = drug_candidates(
        orders,
        allergies or [],
        reads.medications,
        conditions=reads.referenced_conditions,
        patient=patient_reference(smart),
    )
    return ChartForPlanning(
        candidates=tuple(candidates),
        measurements=latest_body_measurements(reads.body or []),
        allergies=None if allergies is None else tuple(allergies),
        unavailable=tuple(unavailable),
        skipped=unread_references(reads, orders, smart),
    )


def unread_references(
    reads: PlanningReads, orders: Sequence[Mapping[str, Any]], smart: SmartSession
) -> tuple[str, ...]:
    """The orders' Medications and reasons the EHR did not return (another patient's, not allowed, not
    found), each named with its reference, so nothing is skipped silently."""
    skipped: list[str] = []
    why = "the EHR did not return it (not found, not allowed, or another patient's record)"
    if smart.granted.can_read("Medication"):
        for ref in medication_references(orders):
            if ref not in reads.medications:
                skipped.append(f"{ref} (the medication of an order) not read: {why}")
    if reads.conditions is not None:
        for ref in condition_references(orders):
            if ref not in reads.referenced_conditions:
                skipped.append(f"{ref} (the reason for an order) not read: {why}")
    return tuple(skipped)


def risk_chart_of(reads: PlanningReads) -> RiskChart:
    """The problem list, active and on-hold orders and FEV1 results, for the risk criteria."""
    unavailable = []
    if reads.conditions is None:
        unavailable.append("problem list")
    if reads.orders is None:
        unavailable.append("medication orders")
    if reads.fev1 is None:
        unavailable.append("lung function results")
    orders = [o for o in reads.orders or [] if o.get("status") in RISK_ORDER_STATUSES]
    return RiskChart(
        tuple(reads.conditions or ()), tuple(orders), tuple(reads.fev1 or ()), tuple(unavailable)
    )
