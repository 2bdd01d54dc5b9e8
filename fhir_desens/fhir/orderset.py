"""A signed order set checked against the engine (no network).

A signed desensitization plan is a RequestGroup (with the ``desens-plan-parameters`` extension
saying what it was computed from), one MedicationRequest per step and one Medication per solution.
:func:`verify_order_set` recomputes the plan from the recorded parameters through the engine (and
so through every safety invariant) and compares, step by step, what the orders state with what the
engine gives: dose and unit, rate, duration, and the concentration of the solution each step uses;
the total of the stated doses; the values each order's dosage text states (dose, rate, duration,
volume, cumulative dose), both against the engine and against the order's own structured values;
and the RequestGroup's actions (one per step, each with the step's duration).

One implementation for every front end: the app's signed-plan page (``fhir_desens.course``) and
``fhir-desens validate`` both call it. The server may keep decimals as binary floating point
(Medplum does), so numbers are compared at :data:`COMPARE_DIGITS` significant digits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from fhir_desens.errors import DesensError
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.apply import PlanParameters, plan_parameters
from fhir_desens.protocol.calculate import Plan, PlannedStep, PlanRequest, compute_plan
from fhir_desens.protocol.model import ClosingMethod, Protocol, ProtocolKind
from fhir_desens.protocol.quantity import EXACT, Quantity, plain
from fhir_desens.protocol.stated import agrees

#: Significant digits at which a stated number must equal the engine's.
COMPARE_DIGITS = 12

__all__ = [
    "COMPARE_DIGITS",
    "OrderSetCheck",
    "StepFinding",
    "compare_actions",
    "compare_orders",
    "compare_texts",
    "request_from_parameters",
    "verify_order_set",
]


@dataclass(frozen=True)
class StepFinding:
    """One difference between what an order states and what the engine gives."""

    step: int | None  # None: about the order set as a whole (e.g. the number of steps)
    element: str  # "dose", "dose unit", "rate", "duration", "sequence", "concentration", "steps",
    # "total dose", "<kind> in the text", "<kind> in the text vs the order", "action duration"
    expected: str
    stated: str

    def describe(self) -> str:
        where = f"step {self.step}" if self.step is not None else "the order set"
        if self.element.endswith(" vs the order"):
            kind = self.element.removesuffix(" in the text vs the order")
            return f"{where}: the dosage text states {kind} {self.stated}, the order itself {self.expected}"
        return f"{where}: {self.element} is {self.stated}, the engine gives {self.expected}"


@dataclass(frozen=True)
class OrderSetCheck:
    """The verdict: the recomputed plan (when it could be recomputed) and every difference."""

    plan: Plan | None
    findings: tuple[StepFinding, ...] = ()
    problem: str | None = None  # why the plan could not be recomputed, for people

    @property
    def matches(self) -> bool:
        return self.plan is not None and self.problem is None and not self.findings


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dosage(order: Mapping[str, Any]) -> Mapping[str, Any]:
    dosages = order.get("dosageInstruction") or []
    return _obj(dosages[0] if dosages else {})


def _number(value: Any) -> Decimal | None:
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return Decimal(value)
    return None


def _same(expected: Decimal | None, stated: Any) -> bool:
    if expected is None:
        return stated is None
    number = _number(stated)
    if number is None:
        return False
    return Decimal(f"{expected:.{COMPARE_DIGITS}g}") == Decimal(f"{number:.{COMPARE_DIGITS}g}")


def _text(value: Any) -> str:
    number = _number(value)
    if number is not None:
        return plain(number)
    return "absent" if value is None else str(value)


def _medication_id(order: Mapping[str, Any]) -> str | None:
    value = _obj(order.get("medicationReference")).get("reference")
    return value[11:] if isinstance(value, str) and value.startswith("Medication/") else None


def _strength(medication: Mapping[str, Any]) -> Any:
    for ingredient in medication.get("ingredient") or []:
        ingredient = _obj(ingredient)
        if ingredient.get("isActive") is not False:
            return _obj(_obj(ingredient.get("strength")).get("numerator")).get("value")
    return None


def compare_orders(
    plan: Plan,
    orders: Sequence[Mapping[str, Any]],
    medications: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[StepFinding, ...]:
    """Every difference between the step orders (in step order) and the engine's plan.

    ``medications`` (by id) adds the check of each step's solution concentration; without it only
    the orders are compared.
    """
    if len(orders) != len(plan.steps):
        return (StepFinding(None, "steps", str(len(plan.steps)), str(len(orders))),)
    findings: list[StepFinding] = []
    for step, order in zip(plan.steps, orders, strict=True):
        dosage = _dosage(order)
        dose_rate = _obj((dosage.get("doseAndRate") or [{}])[0])
        dose, rate = _obj(dose_rate.get("doseQuantity")), _obj(dose_rate.get("rateQuantity"))
        repeat = _obj(_obj(dosage.get("timing")).get("repeat"))

        def differs(element: str, expected: Any, stated: Any, number: int = step.number) -> None:
            findings.append(StepFinding(number, element, _text(expected), _text(stated)))

        if dosage.get("sequence") != step.number:
            differs("sequence", step.number, dosage.get("sequence"))
        if dose.get("code") != step.dose.unit:
            differs("dose unit", step.dose.unit, dose.get("code"))
        if not _same(step.dose.value, dose.get("value")):
            differs("dose", step.dose.value, dose.get("value"))
        if not _same(step.minutes, repeat.get("duration")):
            differs("duration", step.minutes, repeat.get("duration"))
        if not _same(step.rate_ml_h, rate.get("value")):
            differs("rate", step.rate_ml_h, rate.get("value"))
        if medications is not None:
            solution = plan.solutions[step.solution - 1]
            expected = solution.concentration or solution.unit_dose
            medication = medications.get(_medication_id(order) or "")
            stated = _strength(medication) if medication is not None else None
            if expected is not None and not _same(expected.value, stated):
                differs("concentration", expected.value, stated)
    findings += _total_findings(plan, orders)
    return tuple(findings)


def _dose_value(order: Mapping[str, Any]) -> Decimal | None:
    dose_rate = _obj((_dosage(order).get("doseAndRate") or [{}])[0])
    return _number(_obj(dose_rate.get("doseQuantity")).get("value"))


def _total_findings(plan: Plan, orders: Sequence[Mapping[str, Any]]) -> list[StepFinding]:
    """The stated doses must add up to what the plan delivers (for a cumulative target: the target)."""
    doses = [_dose_value(order) for order in orders]
    if any(dose is None for dose in doses):
        return []  # a missing dose is already reported for its step
    total = sum((dose for dose in doses if dose is not None), Decimal(0))
    expected = plan.delivered
    if _same(expected, EXACT.plus(total)):
        return []
    code = plan.dose_unit
    return [StepFinding(None, "total dose", f"{plain(expected)} {code}", f"{plain(total)} {code}")]


def _planned_value(step: PlannedStep, kind: str) -> Quantity | None:
    values: dict[str, tuple[Decimal | None, str]] = {
        "rate": (step.rate_ml_h, "mL/h"),
        "minutes": (step.minutes, "min"),
        "volume": (step.volume_ml, "mL"),
        "dose": (step.dose.value, step.dose.unit),
        "cumulative": (step.cumulative_dose.value, step.cumulative_dose.unit),
    }
    value, code = values.get(kind, (None, ""))
    return Quantity(value, code) if value is not None else None


def _structured_value(order: Mapping[str, Any], kind: str) -> Quantity | None:
    dosage = _dosage(order)
    dose_rate = _obj((dosage.get("doseAndRate") or [{}])[0])
    source = {
        "dose": _obj(dose_rate.get("doseQuantity")),
        "rate": _obj(dose_rate.get("rateQuantity")),
        "minutes": {
            "value": _obj(_obj(dosage.get("timing")).get("repeat")).get("duration"),
            "code": _obj(_obj(dosage.get("timing")).get("repeat")).get("durationUnit"),
        },
    }.get(kind)
    value = _number(source.get("value")) if source else None
    code = source.get("code") if source else None
    return Quantity(value, str(code)) if value is not None and isinstance(code, str) else None


def _text_agrees(stated: Quantity, exact: Quantity) -> bool:
    try:
        return agrees(stated.value, exact.to(stated.unit).value)
    except DesensError:  # a unit of another dimension: disagrees
        return False


def compare_texts(plan: Plan, orders: Sequence[Mapping[str, Any]]) -> tuple[StepFinding, ...]:
    """What each order's dosage text states ("at 5 mL/h for 15 min (1.25 mL = 0.02 mg); cumulative
    0.028 mg") against the engine, and against the order's own structured values. A stated value
    agrees when it is the exact value rounded to the decimals it shows."""
    # The phrase reader of the exchange validator: one reading of dose texts for protocols and orders.
    from fhir_desens.exchange.consistency import COUNT_UNIT, text_statements

    findings: list[StepFinding] = []
    for step, order in zip(plan.steps, orders, strict=False):
        for statement in text_statements(_dosage(order).get("text"), step.number, "", None):
            if statement.unit == COUNT_UNIT:
                continue
            stated = Quantity(statement.value, statement.unit)
            shown = f"{plain(statement.value)} {statement.unit}"
            expected = _planned_value(step, statement.kind)
            if expected is not None and not _text_agrees(stated, expected):
                findings.append(
                    StepFinding(step.number, f"{statement.kind} in the text", str(expected), shown)
                )
            structured = _structured_value(order, statement.kind)
            if structured is not None and not _text_agrees(stated, structured):
                findings.append(
                    StepFinding(
                        step.number, f"{statement.kind} in the text vs the order", str(structured), shown
                    )
                )
    return tuple(findings)


def compare_actions(plan: Plan, group: Mapping[str, Any]) -> tuple[StepFinding, ...]:
    """The RequestGroup's actions: one per step, each lasting the step's duration when it says so."""
    actions = [_obj(action) for action in group.get("action") or []]
    if len(actions) != len(plan.steps):
        return (StepFinding(None, "actions", str(len(plan.steps)), str(len(actions))),)
    findings = []
    for step, action in zip(plan.steps, actions, strict=True):
        duration = _obj(action.get("timingDuration"))
        if duration and (duration.get("code") != "min" or not _same(step.minutes, duration.get("value"))):
            stated = f"{_text(duration.get('value'))} {duration.get('code')}"
            findings.append(StepFinding(step.number, "action duration", f"{plain(step.minutes)} min", stated))
    return tuple(findings)


def _closing(group: Mapping[str, Any]) -> ClosingMethod | None:
    for extension in group.get("extension") or []:
        if _obj(extension).get("url") == c.EXT_CLOSING_METHOD:
            return ClosingMethod.parse(str(_obj(extension).get("valueCode")))
    return None


def _with_diluent(protocol: Protocol, diluent: str) -> Protocol:
    solutions = tuple(s if s.solid else replace(s, diluent=diluent) for s in protocol.solutions)
    return replace(protocol, solutions=solutions)


def request_from_parameters(
    parameters: PlanParameters, protocol: Protocol, closing: ClosingMethod | None = None
) -> PlanRequest:
    """The engine request a signed plan's recorded parameters stand for."""
    fixed = protocol.kind is ProtocolKind.DISCRETE and protocol.fixed_doses
    if parameters.diluent and any(not s.solid for s in protocol.solutions):
        protocol = _with_diluent(protocol, parameters.diluent)
    return PlanRequest(
        protocol=protocol,
        drug=parameters.drug,
        target=None if fixed else parameters.target_dose,
        final_rate_ml_h=parameters.final_rate_ml_h,
        bag_volume_ml=parameters.bag_volume_ml,
        closing=closing,
        insert_before=parameters.insert_before,
        pump_resolution_ml_h=parameters.pump_resolution_ml_h,
        syringe_volumes=parameters.syringe_volumes,
    )


def _canonical(group: Mapping[str, Any]) -> str:
    value = next(iter(group.get("instantiatesCanonical") or []), "")
    return value if isinstance(value, str) else ""


def verify_order_set(
    group: Mapping[str, Any],
    orders: Sequence[Mapping[str, Any]],
    medications: Mapping[str, Mapping[str, Any]] | None,
    protocols: Mapping[str, Protocol],
) -> OrderSetCheck:
    """Recompute a signed plan from its RequestGroup and compare its orders, step by step.

    ``orders`` are the step MedicationRequests in the RequestGroup's action order; ``protocols`` the
    library by id. Never raises for content: what cannot be checked is the ``problem``.
    """
    parameters = plan_parameters(dict(group))
    if parameters is None:
        return OrderSetCheck(None, problem="The signed plan does not record what it was computed from.")
    protocol = protocols.get(parameters.protocol_id)
    if protocol is None:
        return OrderSetCheck(None, problem=f"Protocol {parameters.protocol_id} is not in this app's library.")
    if _canonical(group).partition("|")[2] != protocol.version:  # exactly this version, not a prefix of it
        return OrderSetCheck(
            None, problem=f"The library now has version {protocol.version} of protocol {protocol.id}."
        )
    try:
        plan = compute_plan(
            request_from_parameters(parameters, protocol, _closing(group))
        )  # runs the invariants
    except (DesensError, ValueError) as error:
        message = error.message if isinstance(error, DesensError) else str(error)
        return OrderSetCheck(None, problem=f"The plan cannot be recomputed: {message}")
    findings = (
        compare_orders(plan, orders, medications) + compare_texts(plan, orders) + compare_actions(plan, group)
    )
    if findings:
        return OrderSetCheck(plan, findings, "Recomputing the plan does not give the signed orders.")
    return OrderSetCheck(plan)
