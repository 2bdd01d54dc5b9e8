"""Plan output: the exact JSON form (the CLI's contract) and a worksheet people read.

JSON numbers are strings holding the exact Decimal, so nothing is lost. The worksheet rounds for
display only, by the one display policy (``fhir_desens.protocol.display``).
"""

from __future__ import annotations

from decimal import Decimal

from fhir_desens.protocol import display as shown
from fhir_desens.protocol.calculate import Plan, PlannedSolution, PlannedStep
from fhir_desens.protocol.library import protocol_to_dict
from fhir_desens.protocol.model import Protocol
from fhir_desens.protocol.quantity import Quantity, plain

TYPE_CHECKING = False  # mypy reads this block; typing is not imported at run time (commands start faster)
if TYPE_CHECKING:
    from typing import Any

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
    """A dose or concentration number for people (the display policy: 4 significant figures)."""
    return shown.dose_number(value)


def clock_text(minutes: Decimal) -> str:
    """'5 h 39 min' for people (rounded to the minute, display only)."""
    return shown.clock_text(minutes)


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def rate_text(plan: Plan, rate_ml_h: Decimal) -> str:
    """A rate as the pump is programmed: at the plan's pump resolution (0.001 mL/h for exact plans)."""
    return shown.rate_number(rate_ml_h, plan.request.pump_resolution_ml_h or EXACT_RATE_RESOLUTION)


#: Plans computed without a pump resolution show rates to 0.001 mL/h, so the shown rate is the
#: computed one (the worksheet says the pump must be able to take it).
EXACT_RATE_RESOLUTION = Decimal("0.001")


def is_oral(plan: Plan) -> bool:
    return plan.protocol.route.strip().lower() in ("oral", "po")


def _solution_rows(plan: Plan) -> tuple[list[str], list[list[str]]]:
    oral = is_oral(plan)
    rows = []
    for s in plan.solutions:
        if s.unit_dose is not None:
            rows.append(
                [
                    str(s.number),
                    s.label,
                    f"{shown.dose_text(s.unit_dose.value, s.unit_dose.unit)} per {s.unit_name}",
                    "-",
                    shown.dose_text(s.drug_amount.value, plan.dose_unit),
                    shown.count_text(s.units_used or Decimal(0), s.unit_name),
                    "-",
                ]
            )
            continue
        assert s.concentration is not None
        rows.append(
            [
                str(s.number),
                s.label,
                shown.concentration_text(s.concentration.value, s.concentration.unit),
                shown.volume_text(s.volume_ml or Decimal(0)),
                shown.dose_text(s.drug_amount.value, plan.dose_unit),
                shown.volume_text(s.volume_infused_ml or Decimal(0)),
                s.diluent or "-",
            ]
        )
    used = "Given" if oral else "Infused"
    headers = ["#", "Solution", "Concentration", "Prepare", "Contains", used, "Diluent"]
    return headers, rows


def _step_rows(plan: Plan) -> tuple[list[str], list[list[str]]]:
    dose_unit = shown.unit_text(plan.dose_unit)
    discrete = all(st.rate_ml_h is None for st in plan.steps)
    unit_names = {s.number: s.unit_name for s in plan.solutions}
    rows = []
    for st in plan.steps:
        if st.units is not None:
            amount = shown.count_text(st.units, unit_names.get(st.solution, "tablet"))
        else:
            amount = shown.volume_text(st.volume_ml or Decimal(0))
        flags = " (inserted)" if st.inserted else (" (closing)" if st.closing else "")
        row = [f"{st.number}{flags}", str(st.solution)]
        if not discrete:
            row.append("-" if st.rate_ml_h is None else rate_text(plan, st.rate_ml_h))
        row += [
            shown.minutes_text(st.minutes),
            amount,
            shown.dose_number(st.dose.value),
            shown.dose_number(st.cumulative_dose.value),
            clock_text(st.start_minute),
        ]
        rows.append(row)
    amount_header = ("Give" if is_oral(plan) else "Volume") if discrete else "Volume"
    headers = ["Step", "Solution", *([] if discrete else ["Rate mL/h"])]
    headers += [
        "Wait" if discrete else "Runs",
        amount_header,
        f"Dose {dose_unit}",
        f"Cumulative {dose_unit}",
        "Starts at",
    ]
    return headers, rows


def worksheet(plan: Plan) -> str:
    """The plain-text worksheet of `fhir-desens plan --format table` (numbers by the display policy)."""
    protocol = plan.protocol
    out = [
        f"{protocol.title}",
        f"Protocol {protocol.id} version {protocol.version} ({protocol.evidence.value})",
        f"Drug: {plan.drug}    Target dose: {shown.dose_text(plan.target_dose.value, plan.dose_unit)}"
        f"    Route: {protocol.route}",
    ]
    if plan.closing:
        rate = f"    Final rate: {rate_text(plan, plan.final_rate_ml_h)} mL/h" if plan.final_rate_ml_h else ""
        out.append(f"Closing method: {plan.closing.value}{rate}")
    resolution = plan.request.pump_resolution_ml_h
    if protocol.kind.value == "infusion":
        out.append(
            f"Pump rates as programmed, in steps of {shown.grouped(resolution)} mL/h"
            if resolution is not None
            else "Pump rates exact (no pump resolution set): the pump must accept them as shown"
        )
    what = "SOLUTIONS TO GIVE BY MOUTH" if is_oral(plan) else "SOLUTIONS (pharmacy preparation)"
    out += ["", what]
    headers, rows = _solution_rows(plan)
    out += _table(headers, rows, {0, 2, 3, 4, 5})
    out += [f"Solution {s.number}: {s.preparation.text}" for s in plan.solutions if s.preparation]
    out += ["", "STEPS"]
    headers, rows = _step_rows(plan)
    out += _table(headers, rows, set(range(1, len(headers))))
    out += ["", f"Total time: {clock_text(plan.total_minutes)}"]
    if plan.premedications:
        out += ["", "PREMEDICATION"]
        for p in plan.premedications:
            condition = f" - {p.condition}" if p.condition else ""
            out.append(f"- {p.drug} {p.dose} {p.route}: {p.timing}{condition}")
    if plan.nursing_instructions:
        out += ["", "NURSING INSTRUCTIONS"] + [f"- {n}" for n in plan.nursing_instructions]
    if plan.warnings:
        out += ["", "WARNINGS"] + [f"! {w}" for w in plan.warnings]
    out += ["", "Numbers rounded for reading (docs/display.md); the plan itself is exact (--format json)."]
    return "\n".join(out) + "\n"
