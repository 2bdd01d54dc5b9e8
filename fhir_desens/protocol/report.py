"""Plan output: the exact JSON form (the CLI's contract) and a worksheet people read.

JSON numbers are strings holding the exact Decimal, so nothing is lost. The worksheet rounds for
display only, with the rules of ``quantity.display``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_desens.protocol.calculate import Plan, PlannedSolution, PlannedStep
from fhir_desens.protocol.library import protocol_to_dict
from fhir_desens.protocol.model import Protocol
from fhir_desens.protocol.quantity import Quantity, display, plain, unit
from fhir_desens.protocol.replan import Replan


def _q(quantity: Quantity | None) -> dict[str, str] | None:
    return None if quantity is None else {"value": plain(quantity.value), "unit": quantity.unit}


def _d(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)


def solution_dict(solution: PlannedSolution) -> dict[str, Any]:
    return {
        "number": solution.number,
        "label": solution.label,
        "strength": solution.strength,
        "concentration": _q(solution.concentration),
        "volume_ml": _d(solution.volume_ml),
        "drug_amount": _q(solution.drug_amount),
        "volume_infused_ml": _d(solution.volume_infused_ml),
        "diluent": solution.diluent,
        "unit_dose": _q(solution.unit_dose),
        "units_used": _d(solution.units_used),
        "preparation": None if solution.preparation is None else solution.preparation.text,
    }


def step_dict(step: PlannedStep) -> dict[str, Any]:
    return {
        "number": step.number,
        "solution": step.solution,
        "rate_ml_h": _d(step.rate_ml_h),
        "minutes": _d(step.minutes),
        "volume_ml": _d(step.volume_ml),
        "units": _d(step.units),
        "dose": _q(step.dose),
        "cumulative_dose": _q(step.cumulative_dose),
        "start_minute": _d(step.start_minute),
        "closing": step.closing,
        "inserted": step.inserted,
        "protocol_step": step.protocol_step,
        "note": step.note,
    }


def plan_dict(plan: Plan) -> dict[str, Any]:
    """The `fhir-desens plan --format json` object."""
    return {
        "protocol": {
            "id": plan.protocol.id,
            "version": plan.protocol.version,
            "title": plan.protocol.title,
            "route": plan.protocol.route,
            "evidence": plan.protocol.evidence.value,
        },
        "drug": plan.drug,
        "target_dose": _q(plan.target_dose),
        "target_kind": plan.protocol.target_kind.value,
        "closing": plan.closing.value if plan.closing else None,
        "final_rate_ml_h": _d(plan.final_rate_ml_h),
        "solutions": [solution_dict(s) for s in plan.solutions],
        "steps": [step_dict(s) for s in plan.steps],
        "total_minutes": plain(plan.total_minutes),
        "premedications": [
            {
                "drug": p.drug,
                "dose": p.dose,
                "route": p.route,
                "offset_minutes": _d(p.offset_minutes),
                "timing": p.timing,
                "condition": p.condition,
            }
            for p in plan.premedications
        ],
        "nursing_instructions": list(plan.nursing_instructions),
        "warnings": list(plan.warnings),
    }


def replan_dict(replan: Replan) -> dict[str, Any]:
    return {
        "option": replan.option.value,
        "interrupted_step": replan.interruption.step,
        "minutes_into_step": plain(replan.interruption.minutes),
        "delivered": _q(replan.delivered),
        "steps": [step_dict(s) for s in replan.steps],
        "total_minutes": plain(replan.total_minutes),
        "reaches_target": replan.reaches_target,
        "warnings": list(replan.warnings),
    }


def protocol_summary(protocol: Protocol) -> dict[str, Any]:
    return {
        "id": protocol.id,
        "version": protocol.version,
        "title": protocol.title,
        "route": protocol.route,
        "kind": protocol.kind.value,
        "steps": len(protocol.steps),
        "solutions": len(protocol.solutions),
        "evidence": protocol.evidence.value,
        "closing_methods": [c.value for c in protocol.closing_methods],
        "source": protocol.sources[0].citation if protocol.sources else None,
        "definition": protocol_to_dict(protocol),
    }


# --- display ---------------------------------------------------------------------------------


def dose_text(value: Decimal) -> str:
    """At least 3 decimals, more for tiny doses (0.0012 mg keeps its digits), at most 6."""
    places = 3 if value == 0 else min(6, max(3, 3 - value.adjusted()))
    return display(value, places)


def clock_text(minutes: Decimal) -> str:
    """'5 h 39 min' for people (rounded to the minute, display only)."""
    whole = int(display(minutes, 0))
    hours, rest = divmod(whole, 60)
    return f"{hours} h {rest:02d} min" if hours else f"{rest} min"


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def worksheet(plan: Plan) -> str:
    """The plain-text worksheet of `fhir-desens plan --format table`."""
    dose_unit = unit(plan.dose_unit).display
    protocol = plan.protocol
    out = [
        f"{protocol.title}",
        f"Protocol {protocol.id} version {protocol.version} ({protocol.evidence.value})",
        f"Drug: {plan.drug}    Target dose: {dose_text(plan.target_dose.value)} {dose_unit}    Route: {protocol.route}",
    ]
    if plan.closing:
        rate = f"    Final rate: {display(plan.final_rate_ml_h, 2)} mL/h" if plan.final_rate_ml_h else ""
        out.append(f"Closing method: {plan.closing.value}{rate}")
    out += ["", "SOLUTIONS (pharmacy preparation)"]
    rows = []
    for s in plan.solutions:
        if s.unit_dose is not None:
            rows.append(
                [
                    str(s.number),
                    s.label,
                    f"{dose_text(s.unit_dose.value)} {dose_unit}/unit",
                    "-",
                    f"{dose_text(s.drug_amount.value)} {dose_unit}",
                    f"{display(s.units_used or Decimal(0), 2)} units",
                    "-",
                ]
            )
            continue
        assert s.concentration is not None
        rows.append(
            [
                str(s.number),
                s.label,
                f"{dose_text(s.concentration.value)} {unit(s.concentration.unit).display}",
                f"{display(s.volume_ml or Decimal(0), 2)} mL",
                f"{dose_text(s.drug_amount.value)} {dose_unit}",
                f"{display(s.volume_infused_ml or Decimal(0), 3)} mL",
                s.diluent or "-",
            ]
        )
    out += _table(
        ["#", "Solution", "Concentration", "Prepare", "Drug in solution", "Infused/taken", "Diluent"],
        rows,
        {0, 2, 3, 4, 5},
    )
    out += [f"Solution {s.number}: {s.preparation.text}" for s in plan.solutions if s.preparation]
    out += ["", "STEPS"]
    rows = []
    for st in plan.steps:
        amount = (
            f"{display(st.units, 2)} tab"
            if st.units is not None
            else f"{display(st.volume_ml or Decimal(0), 3)}"
        )
        flags = " (inserted)" if st.inserted else (" (closing)" if st.closing else "")
        rows.append(
            [
                f"{st.number}{flags}",
                str(st.solution),
                "-" if st.rate_ml_h is None else display(st.rate_ml_h, 3),
                display(st.minutes, 3),
                amount,
                dose_text(st.dose.value),
                dose_text(st.cumulative_dose.value),
                clock_text(st.start_minute),
            ]
        )
    headers = [
        "Step",
        "Solution",
        "Rate mL/h",
        "Minutes",
        "Volume mL",
        f"Dose {dose_unit}",
        f"Cumulative {dose_unit}",
        "Starts at",
    ]
    out += _table(headers, rows, {1, 2, 3, 4, 5, 6, 7})
    out += ["", f"Total time: {display(plan.total_minutes, 3)} minutes ({clock_text(plan.total_minutes)})"]
    if plan.premedications:
        out += ["", "PREMEDICATION"]
        for p in plan.premedications:
            condition = f" - {p.condition}" if p.condition else ""
            out.append(f"- {p.drug} {p.dose} {p.route}: {p.timing}{condition}")
    if plan.nursing_instructions:
        out += ["", "NURSING INSTRUCTIONS"] + [f"- {n}" for n in plan.nursing_instructions]
    if plan.warnings:
        out += ["", "WARNINGS"] + [f"! {w}" for w in plan.warnings]
    return "\n".join(out) + "\n"
