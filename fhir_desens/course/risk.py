"""Reading what the chart says about the BWH high-risk criteria (RISK-CHART-1; no Flask).

Problem-list Conditions, active and on-hold MedicationRequests and FEV1 Observations are read with
the grant the app has; what cannot be read stays unknown and is named in ``unavailable``. The index
reaction is the allergy records matched to the drug (same drug or class).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.client.smart import SmartSession
from fhir_desens.course.assessment import assess
from fhir_desens.course.chart import belongs_to, first_page, patient_reference
from fhir_desens.course.drug_review import drug_ref_for
from fhir_desens.fhir.allergy import Allergy
from fhir_desens.fhir.risk_chart import FEV1_PERCENT, LOINC, ChartRisk, risk_from_chart

__all__ = ["RiskChart", "chart_risk_for", "read_risk_chart", "risk_sources"]


@dataclass(frozen=True)
class RiskChart:
    conditions: tuple[Mapping[str, Any], ...] = ()
    orders: tuple[Mapping[str, Any], ...] = ()
    observations: tuple[Mapping[str, Any], ...] = ()
    unavailable: tuple[str, ...] = field(default=())


def _search(
    client: FhirClient, smart: SmartSession, kind: str, params: dict[str, str], element: str = "subject"
) -> list[dict[str, Any]] | None:
    if not smart.granted.can_read(kind):
        return None
    own = patient_reference(smart)
    found = first_page(client, kind, {"patient": own, **params})
    return [r for r in found if belongs_to(r, own, element)]


def read_risk_chart(client: FhirClient, smart: SmartSession) -> RiskChart:
    """Conditions, active orders and FEV1 results of the launch patient."""
    unavailable: list[str] = []
    conditions = _search(client, smart, "Condition", {"_count": "100"})
    if conditions is None:
        unavailable.append("problem list")
    orders = _search(client, smart, "MedicationRequest", {"status": "active,on-hold", "_count": "100"})
    if orders is None:
        unavailable.append("medication orders")
    observations = _search(
        client, smart, "Observation", {"code": f"{LOINC}|{FEV1_PERCENT}", "_sort": "-date", "_count": "20"}
    )
    if observations is None:
        unavailable.append("lung function results")
    return RiskChart(
        tuple(conditions or ()), tuple(orders or ()), tuple(observations or ()), tuple(unavailable)
    )


def chart_risk_for(
    chart: RiskChart, drug: str, rxnorm: tuple[str, ...], allergies: Sequence[Allergy] | None
) -> ChartRisk:
    """The criteria as the chart answers them for this drug's index reaction."""
    matched = assess(drug_ref_for(drug, rxnorm), allergies).matched
    return risk_from_chart([m.allergy for m in matched], chart.conditions, chart.orders, chart.observations)


def risk_sources(risk: ChartRisk) -> dict[str, list[str]]:
    """Criterion -> the chart's sources (or its pointer), kept on the draft for the page and the suggestion."""
    return {
        a.criterion: [*a.sources, *([a.pointer] if a.pointer else [])]
        for a in risk.answers
        if a.sources or a.pointer
    }
