"""Reading what the chart says about the BWH high-risk criteria (RISK-CHART-1; no Flask).

Problem-list Conditions, active and on-hold MedicationRequests and FEV1 Observations are read with
the grant the app has; what cannot be read stays unknown and is named in ``unavailable``. The index
reaction is the allergy records matched to the drug (same drug or class).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_desens.course.assessment import assess
from fhir_desens.course.drug_review import drug_ref_for
from fhir_desens.fhir.allergy import Allergy
from fhir_desens.fhir.risk_chart import ChartRisk, risk_from_chart

__all__ = ["RiskChart", "chart_risk_for", "risk_sources"]


@dataclass(frozen=True)
class RiskChart:
    conditions: tuple[Mapping[str, Any], ...] = ()
    orders: tuple[Mapping[str, Any], ...] = ()
    observations: tuple[Mapping[str, Any], ...] = ()
    unavailable: tuple[str, ...] = field(default=())


def chart_risk_for(
    chart: RiskChart, drug: str, rxnorm: tuple[str, ...], allergies: Sequence[Allergy] | None
) -> ChartRisk:
    """The criteria as the chart answers them for this drug's index reaction."""
    matched = assess(drug_ref_for(drug, rxnorm), allergies).matched
    return risk_from_chart([m.allergy for m in matched], chart.conditions, chart.orders, chart.observations)


def risk_sources(risk: ChartRisk) -> dict[str, list[str]]:
    """Criterion -> the chart's sources (or its pointer), kept on the draft for the page and the suggestion."""
    return {
        a.criterion: [*a.evidence, *([a.pointer] if a.pointer else [])]
        for a in risk.answers
        if a.sources or a.pointer
    }
