"""The start form of a plan (``/plan/new``): the chart's drug choices and pre-filled values, a copy of a
signed plan (``?copy=<RequestGroup id>``), and the risk criteria the chart answers (RISK-CHART-1)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from flask import render_template

from fhir_desens.course import readback
from fhir_desens.course.chart import ChartForPlanning, candidate_key
from fhir_desens.course.copy import draft_fields_from_signed, read_copy_source
from fhir_desens.course.draft import CopiedSettings
from fhir_desens.course.planning_chart import PlanningReads, risk_chart_of
from fhir_desens.course.risk import RiskChart, chart_risk_for
from fhir_desens.errors import InputError
from fhir_desens.fhir.chart.drugs import DrugCandidate
from fhir_desens.fhir.risk_chart import ChartRisk
from fhir_desens.protocol.quantity import plain
from smart_app.app_session import AppSession
from smart_app.chart.page import PatientBanner
from smart_app.planning import drafts
from smart_app.planning.forms import (
    DOSE_UNITS,
    GRADES,
    FieldError,
    start_defaults,
)
from smart_app.planning.pages import common_context
from smart_app.services import services

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

#: DrugCandidate.source of the copied plan's drug when the chart does not list it
COPIED_SOURCE = "signed plan"


def copied_settings(session: AppSession, copy_id: str | None) -> CopiedSettings | None:
    """What "Copy this plan" carries over: every parameter the signed plan recorded
    (:func:`fhir_desens.course.copy.draft_fields_from_signed`); for a plan signed without its parameters,
    what its RequestGroup and orders show (best effort, ``recorded=False``)."""
    if not copy_id:
        return None
    if not FHIR_ID.match(copy_id):
        raise InputError("copy", "is not a FHIR resource id", "the id of a signed plan (RequestGroup)")
    signed = readback.load_signed_plan(session.smart, copy_id, drafts.library(), services().settings.zone)
    signed_on = signed.authored if signed.authored != "—" else None
    if signed.parameters is None:
        guessed = read_copy_source(session.client, session.smart, copy_id, drafts.library())
        return replace(guessed, recorded=False, signed_on=signed_on)
    fields = draft_fields_from_signed(signed)
    known = set(CopiedSettings.__dataclass_fields__)
    copied = CopiedSettings(**{k: v for k, v in fields.items() if k in known and v is not None})
    return replace(copied, signed_on=signed_on)


def _same_drug(candidate: DrugCandidate, copied: CopiedSettings) -> bool:
    if candidate.name.lower() != (copied.drug or "").lower():
        return False
    return not (candidate.rxnorm and copied.drug_rxnorm) or bool(
        set(candidate.rxnorm) & set(copied.drug_rxnorm)
    )


def _current_order(chart: ChartForPlanning, copied: CopiedSettings) -> DrugCandidate | None:
    """The chart's active order for the copied drug (same RxNorm code, else same name), if any."""
    for candidate in chart.candidates:
        if candidate.source != "order":
            continue
        codes = set(candidate.rxnorm) & set(copied.drug_rxnorm)
        if codes or candidate.name.lower() == (copied.drug or "").lower():
            return candidate
    return None


def candidates_for(chart: ChartForPlanning, copied: CopiedSettings | None) -> list[DrugCandidate]:
    """The Drug choices: the chart's, and for a copy the signed plan's drug first (its name and codes
    exactly as signed; the chart's own entry when it has the same one)."""
    candidates = list(chart.candidates)
    if copied is None or not copied.drug:
        return candidates
    same = next((c for c in candidates if _same_drug(c, copied)), None)
    if same is not None:
        candidates.remove(same)
        return [same, *candidates]
    order = _current_order(chart, copied)
    signed = DrugCandidate(
        name=copied.drug,
        rxnorm=copied.drug_rxnorm,
        source=COPIED_SOURCE,
        route=order.route if order else None,
        indication=copied.indication,
        order_reference=order.order_reference if order else None,
        dose=None,
    )
    return [signed, *candidates]


def start_values(
    chart: ChartForPlanning, copied: CopiedSettings | None, candidates: Sequence[DrugCandidate]
) -> dict[str, str]:
    """The start form's initial values: the chart's; for a copy, the signed plan's drug, indication and
    dose as prescribed (a plan signed without its parameters: the current order's dose)."""
    values = start_defaults(chart)
    if copied is None or not copied.drug or not candidates:
        return values
    drug = candidates[0]
    values["drug"] = candidate_key(drug)
    values["indication"] = copied.indication or drug.indication or ""
    order = _current_order(chart, copied)
    if copied.target_dose and copied.dose_unit in DOSE_UNITS:
        values["target_dose"], values["dose_unit"] = copied.target_dose, copied.dose_unit
    elif order is not None and order.dose is not None and order.dose.unit in DOSE_UNITS:
        values["target_dose"], values["dose_unit"] = plain(order.dose.value), order.dose.unit
    else:
        values["target_dose"] = ""
    return values


def _dose_note(chart: ChartForPlanning, copied: CopiedSettings | None) -> str | None:
    """For a copy: say so when the current order's dose differs from the signed plan's."""
    if copied is None or not copied.target_dose or not copied.dose_unit:
        return None
    order = _current_order(chart, copied)
    if order is None or order.dose is None:
        return None
    if order.dose.unit == copied.dose_unit and plain(order.dose.value) == copied.target_dose:
        return None
    signed = f"{copied.target_dose} {DOSE_UNITS.get(copied.dose_unit, copied.dose_unit)}"
    current = f"{plain(order.dose.value)} {DOSE_UNITS.get(order.dose.unit, order.dose.unit)}"
    return (
        f"The current order for {order.name} is for {current}; the signed plan was for {signed} (filled in)."
    )


def render_start(
    session: AppSession,
    banner: PatientBanner,
    chart: ChartForPlanning,
    values: Mapping[str, str],
    *,
    copied: CopiedSettings | None,
    candidates: Sequence[DrugCandidate],
    errors: list[FieldError] | None = None,
    status: int = 200,
    risk: ChartRisk | None = None,
    risk_unavailable: Sequence[str] = (),
) -> tuple[str, int]:
    protocols = drafts.library()
    html = render_template(
        "plan_new.html",
        **common_context(session, banner),
        chart=chart,
        candidates=[(candidate_key(c), c) for c in candidates],
        values=values,
        errors=errors or [],
        error_for={e.field: e.message for e in errors or []},
        dose_units=DOSE_UNITS,
        grades=GRADES,
        copied=copied,
        copied_protocol=protocols.get(copied.protocol_id) if copied and copied.protocol_id else None,
        copied_source=COPIED_SOURCE,
        dose_note=_dose_note(chart, copied),
        risk=risk,
        risk_unavailable=risk_unavailable,
    )
    return html, status


def _chosen(
    candidates: Sequence[DrugCandidate], key: str | None, other: str | None
) -> tuple[str, tuple[str, ...]]:
    """The drug of the start form's choice (name and codes), for the chart's risk answers."""
    chosen = next((c for c in candidates if candidate_key(c) == key), None)
    if chosen is not None:
        return chosen.name, chosen.rxnorm
    return (other or "").strip(), ()


def chart_risk(
    session: AppSession,
    reads: PlanningReads,
    candidates: Sequence[DrugCandidate],
    key: str | None,
    other: str | None,
) -> tuple[ChartRisk, RiskChart]:
    chart = risk_chart_of(reads)
    name, codes = _chosen(candidates, key, other)
    return chart_risk_for(chart, name, codes, session.allergies()), chart
