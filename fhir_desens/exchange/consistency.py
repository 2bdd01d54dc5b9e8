"""Clinical consistency of a protocol PlanDefinition: does what it states match the arithmetic?

For a PlanDefinition claiming our protocol profile:

1. map it back to a :class:`~fhir_desens.protocol.model.Protocol` (``protocol_from_plan_definition``,
   which runs ``check_protocol``);
2. compute a *reference plan* with the protocol's own defaults (``compute_plan``, which checks every
   safety invariant INV-01..09): discrete protocols have fixed doses; for an infusion protocol the
   target is the one the documents state (a cumulative total of the last step or of the protocol,
   or the sum of every step's stated dose), else two reference targets are used and values that
   depend on the target are not compared (they are reported as information);
3. collect what the PlanDefinition and its ActivityDefinitions *state* per step: ``rateQuantity``,
   ``doseQuantity`` (mL: a volume; mg/g/mcg/units: a dose; ``{unit}``: tablets), ``timing.repeat
   .duration``, ``dynamicValue`` rates and durations, and these phrases in descriptions and dosage
   texts: "at 20 mL/h", "for 15 min", "0.5 mL for", "volume 2 mL", "(0.5 mL = ...)", "dose 40 mg",
   "= 40 mg", "cumulative 1,296,700 units", "1 unit(s)" or "2 tablets"; the PlanDefinition's
   description only contributes cumulative totals;
4. compare each statement with the recomputed value: a stated value agrees when it is the exact value
   correctly rounded to the decimals it shows (``1845.362`` agrees with 1845.36187...; ``2`` agrees
   with 2.4, so a value written with fewer decimals is only checked at that precision).

Pure: no I/O. The validator (:mod:`~fhir_desens.exchange.validate`) turns findings into issues.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from fhir_desens.errors import DesensError, MappingError, SafetyViolation, UnitError
from fhir_desens.fhir import canonical as c

# The step order of a PlanDefinition: the mapping's own chain walker, so both agree by construction.
from fhir_desens.fhir.plandefinition import ordered_step_actions, protocol_from_plan_definition
from fhir_desens.protocol.calculate import Plan, PlannedStep, PlanRequest, compute_plan
from fhir_desens.protocol.model import Protocol, ProtocolKind, TargetKind
from fhir_desens.protocol.quantity import CANONICAL_DOSE, EXACT, Dimension, Quantity, display, plain, unit
from fhir_desens.protocol.stated import agrees  # the one stated-value rule (also used by author)

__all__ = ["COUNT_UNIT", "REFERENCE_TARGETS", "Finding", "Statement", "agrees", "check_plan_definition"]

#: The unit of a count of solid dose forms (tablets), as UCUM writes an annotation.
COUNT_UNIT: Final = "{unit}"
_COUNT_CODES: Final = frozenset({"{unit}", "{tablet}", "{tbl}", "{tab}", "{capsule}", "unit(s)", "tablet"})
#: Reference targets for infusion protocols whose documents state none (two, to tell which
#: values depend on the target).
REFERENCE_TARGETS: Final = {
    Dimension.MASS: (Quantity(Decimal(1000), "mg"), Quantity(Decimal(1500), "mg")),
    Dimension.ACTIVITY: (Quantity(Decimal(1_000_000), "[iU]"), Quantity(Decimal(1_500_000), "[iU]")),
}
REFERENCE_DRUG: Final = "reference"


@dataclass(frozen=True)
class Finding:
    """One clinical-consistency issue; ``activity`` is the canonical of the ActivityDefinition it is in."""

    severity: str  # error | warning | information
    code: str  # OperationOutcome issue type
    message: str
    expression: str
    rule: str  # INV-xx, stated-value, mapping, reference-plan, missing-activity, not-compared
    activity: str | None = None


@dataclass(frozen=True)
class Statement:
    """A value the documents state: for protocol step ``step`` (None: the whole protocol)."""

    step: int | None
    kind: str  # rate | minutes | volume | dose | cumulative | units
    value: Decimal
    unit: str  # UCUM code, or COUNT_UNIT
    expression: str
    activity: str | None = None


# --- reading what is stated ---------------------------------------------------------------------

_NUM = r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_DOSE_UNIT = r"(mg|g|mcg|ug|µg|μg|\[iU\]|IU|units?)(?![\w/(\[])"
_FLAGS = re.IGNORECASE
_CUMULATIVE = re.compile(
    rf"\bcumulative(?:\s+(?:dose|total|amount))?\s*(?:of|is|:|=)?\s*{_NUM}\s*{_DOSE_UNIT}", _FLAGS
)
_TEXT_PATTERNS: Final = (
    ("dose", re.compile(rf"(?:\bdose\s*(?:of|is|:|=)?\s*|=\s*){_NUM}\s*{_DOSE_UNIT}", _FLAGS)),
    ("rate", re.compile(rf"\bat\s+{_NUM}\s*(mL/h(?:our|r)?)(?!\w)", _FLAGS)),
    ("minutes", re.compile(rf"\b(?:for|over)\s+{_NUM}\s*(minutes?|mins?|hours?|hrs?|h)(?!\w)", _FLAGS)),
    ("volume", re.compile(rf"\b(?:volume|give|infuse)\s*(?:of|:|=)?\s*{_NUM}\s*(mL)(?![\w/])", _FLAGS)),
    ("volume", re.compile(rf"(?<![\w.,]){_NUM}\s*(mL)(?=\s+(?:for|over)\b)", _FLAGS)),
    ("volume", re.compile(rf"\(\s*{_NUM}\s*(mL)\s*=", _FLAGS)),
    ("units", re.compile(rf"(?<![\w.,]){_NUM}\s*(unit\(s\)|tablets?|capsules?)(?!\w)", _FLAGS)),
)


def _number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def _unit_code(text: str) -> str | None:
    if text.lower() in _COUNT_CODES or text.lower().rstrip("s") in ("tablet", "capsule"):
        return COUNT_UNIT
    try:
        return unit(text).code
    except UnitError:
        return None


def text_statements(
    text: Any, step: int | None, expression: str, activity: str | None, *, only: tuple[str, ...] | None = None
) -> list[Statement]:
    """The values a free text states in the recognised phrases (see the module documentation)."""
    if not isinstance(text, str) or not text:
        return []
    found: list[Statement] = []

    def add(kind: str, number: str, unit_text: str) -> None:
        value, code = _number(number), _unit_code(unit_text)
        if value is not None and code is not None and (only is None or kind in only):
            found.append(Statement(step, kind, value, code, expression, activity))

    for match in _CUMULATIVE.finditer(text):
        add("cumulative", match.group(1), match.group(2))
    rest = _CUMULATIVE.sub(lambda m: " " * len(m.group(0)), text)  # "cumulative dose 5 mg" is no dose
    for kind, pattern in _TEXT_PATTERNS:
        for match in pattern.finditer(rest):
            add(kind, match.group(1), match.group(2))
    return found


_KIND_OF_DIMENSION: Final = {
    Dimension.VOLUME: "volume",
    Dimension.MASS: "dose",
    Dimension.ACTIVITY: "dose",
    Dimension.RATE: "rate",
}


def _quantity_statement(
    quantity: Any, step: int, expression: str, activity: str | None, rate: bool
) -> tuple[list[Statement], list[Finding]]:
    """A statement from a FHIR Quantity: what it states follows from its unit (UCUM code first)."""
    if not isinstance(quantity, Mapping) or not isinstance(quantity.get("value"), int | Decimal):
        return [], []
    ucum_code = quantity.get("code") if quantity.get("system") in (None, c.UCUM) else None
    unit_text = str(ucum_code or quantity.get("unit") or "")
    code = _unit_code(unit_text)
    kind = "units" if code == COUNT_UNIT else _KIND_OF_DIMENSION.get(unit(code).dimension) if code else None
    if kind is None or (kind == "rate") != rate:
        note = f"step {step}: a quantity in {unit_text!r} here is not understood; it was not compared"
        return [], [Finding("information", "not-supported", note, expression, "not-compared", activity)]
    return [Statement(step, kind, Decimal(quantity["value"]), str(code), expression, activity)], []


def _activity_statements(
    activity: Mapping[str, Any], step: int, canonical: str
) -> tuple[list[Statement], list[Finding]]:
    statements = text_statements(
        activity.get("description"), step, "ActivityDefinition.description", canonical
    )
    findings: list[Finding] = []
    for d, dosage in enumerate(activity.get("dosage") or []):
        if not isinstance(dosage, Mapping):
            continue
        base = f"ActivityDefinition.dosage[{d}]"
        statements += text_statements(dosage.get("text"), step, f"{base}.text", canonical)
        repeat = (dosage.get("timing") or {}).get("repeat") or {}
        duration, duration_unit = repeat.get("duration"), repeat.get("durationUnit")
        if isinstance(duration, int | Decimal) and duration_unit in ("min", "h"):
            statements.append(
                Statement(
                    step,
                    "minutes",
                    Decimal(duration),
                    duration_unit,
                    f"{base}.timing.repeat.duration",
                    canonical,
                )
            )
        for r, dose_and_rate in enumerate(dosage.get("doseAndRate") or []):
            if not isinstance(dose_and_rate, Mapping):
                continue
            for key, is_rate in (("rateQuantity", True), ("doseQuantity", False)):
                more, notes = _quantity_statement(
                    dose_and_rate.get(key), step, f"{base}.doseAndRate[{r}].{key}", canonical, is_rate
                )
                statements += more
                findings += notes
    return statements, findings


def _dynamic_statements(action: Mapping[str, Any], step: int, base: str) -> list[Statement]:
    statements = []
    for i, dynamic in enumerate(action.get("dynamicValue") or []):
        if not isinstance(dynamic, Mapping):
            continue
        path, expression = str(dynamic.get("path", "")), dynamic.get("expression") or {}
        value = (
            _number(str(expression.get("expression", "")).strip())
            if isinstance(expression, Mapping)
            else None
        )
        if value is None:
            continue
        where = f"{base}.dynamicValue[{i}]"
        if path.endswith("rateQuantity.value"):
            statements.append(Statement(step, "rate", value, "mL/h", where))
        elif path.endswith("timing.repeat.duration"):
            statements.append(Statement(step, "minutes", value, "min", where))
    return statements


def collect_statements(
    plan_definition: Mapping[str, Any], activities: Mapping[str, Mapping[str, Any]]
) -> tuple[list[Statement], list[Finding]]:
    """Every value the PlanDefinition and its ActivityDefinitions state, by protocol step."""
    statements = text_statements(
        plan_definition.get("description"), None, "PlanDefinition.description", None, only=("cumulative",)
    )
    findings: list[Finding] = []
    group = plan_definition["action"][0]
    actions = list(group["action"])
    for number, action in enumerate(ordered_step_actions(group), start=1):
        k = next(i for i, candidate in enumerate(actions) if candidate is action)
        base = f"PlanDefinition.action[0].action[{k}]"
        statements += text_statements(action.get("description"), number, f"{base}.description", None)
        statements += _dynamic_statements(action, number, base)
        canonical = action.get("definitionCanonical")
        if not isinstance(canonical, str):
            continue
        activity = activities.get(canonical)
        if activity is None:
            findings.append(
                Finding(
                    "warning",
                    "not-found",
                    f"step {number}: ActivityDefinition {canonical} is not "
                    "in the input; what it states was not checked",
                    f"{base}.definitionCanonical",
                    "missing-activity",
                )
            )
            continue
        more, notes = _activity_statements(activity, number, canonical)
        statements += more
        findings += notes
    return statements, findings


# --- the reference plan -------------------------------------------------------------------------


def _stated_target(protocol: Protocol, statements: list[Statement]) -> Quantity | None:
    last = len(protocol.steps)
    dose_units = {CANONICAL_DOSE[d].code for d in protocol.dose_dimensions}

    def quantity(s: Statement) -> Quantity | None:
        if s.unit == COUNT_UNIT:
            return None
        q = Quantity(s.value, s.unit)
        return q if q.dimension in protocol.dose_dimensions else None

    if protocol.target_kind is TargetKind.CUMULATIVE:
        for s in statements:
            if s.kind == "cumulative" and s.step in (None, last) and (q := quantity(s)) is not None:
                return q
    doses: dict[int, Quantity] = {}
    for s in statements:
        if s.kind == "dose" and s.step is not None and s.step not in doses and (q := quantity(s)) is not None:
            doses[s.step] = q.canonical()
    if protocol.target_kind is TargetKind.FINAL_DOSE:
        return doses.get(last)
    if len(doses) == last and len({q.unit for q in doses.values()}) == 1 and doses[last].unit in dose_units:
        total = Decimal(0)
        for q in doses.values():
            total = EXACT.add(total, q.value)
        return Quantity(total, doses[last].unit)
    return None


def _reference_plans(
    protocol: Protocol, statements: list[Statement]
) -> tuple[list[Plan], bool, list[Finding]]:
    """The reference plan(s), whether the target came from the documents, and any failure."""
    targets: tuple[Quantity | None, ...]
    if protocol.kind is ProtocolKind.DISCRETE:
        targets, stated = (None,), True
    else:
        target = _stated_target(protocol, statements)
        stated = target is not None
        targets = (target,) if target is not None else REFERENCE_TARGETS[protocol.dose_dimensions[0]]
    plans: list[Plan] = []
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for target in targets:
        for_what = f"reference plan for {target}" if target is not None else "reference plan"
        try:
            plans.append(compute_plan(PlanRequest(protocol, REFERENCE_DRUG, target)))
        except SafetyViolation as error:
            if (error.invariant_id, error.detail) not in seen:
                seen.add((error.invariant_id, error.detail))
                findings.append(
                    Finding(
                        "error",
                        "business-rule",
                        f"{error.invariant_id} ({for_what}): {error.detail}",
                        "PlanDefinition",
                        error.invariant_id,
                    )
                )
        except DesensError as error:
            findings.append(
                Finding(
                    "error",
                    "business-rule",
                    f"no plan can be computed from the protocol's own defaults ({for_what}): {error}",
                    "PlanDefinition",
                    "reference-plan",
                )
            )
    return plans, stated, findings


# --- comparing ----------------------------------------------------------------------------------


def _planned_step(plan: Plan, step: int | None) -> PlannedStep | None:
    if step is None:
        return plan.steps[-1] if plan.steps else None
    return next((s for s in plan.steps if s.protocol_step == step), None)


def _expected(plan: Plan, statement: Statement) -> tuple[Decimal, str] | None:
    planned = _planned_step(plan, statement.step)
    if planned is None:
        return None
    values: dict[str, tuple[Decimal | None, str]] = {
        "rate": (planned.rate_ml_h, "mL/h"),
        "minutes": (planned.minutes, "min"),
        "volume": (planned.volume_ml, "mL"),
        "dose": (planned.dose.value, planned.dose.unit),
        "cumulative": (planned.cumulative_dose.value, planned.cumulative_dose.unit),
        "units": (planned.units, COUNT_UNIT),
    }
    value, code = values[statement.kind]
    return None if value is None else (value, code)


def _shown(value: Decimal) -> str:
    text = plain(value)
    return text if len(text) <= 14 else display(value, 6)


def _unit_text(code: str) -> str:
    return "unit(s)" if code == COUNT_UNIT else unit(code).display


def _compare(statement: Statement, expected: tuple[Decimal, str] | None, context: str) -> Finding | None:
    where = f"step {statement.step}" if statement.step is not None else "the protocol"
    stated_text = f"{plain(statement.value)} {_unit_text(statement.unit)}"
    if expected is None:
        return Finding(
            "error",
            "business-rule",
            f"{where}: states {statement.kind} {stated_text}, but the protocol's "
            f"step has no {statement.kind}",
            statement.expression,
            "stated-value",
            statement.activity,
        )
    value, code = expected
    if (code == COUNT_UNIT) != (statement.unit == COUNT_UNIT):
        converted = None
    elif code == COUNT_UNIT:
        converted = value
    else:
        try:
            converted = Quantity(value, code).to(statement.unit).value
        except UnitError:
            converted = None
    if converted is None:
        return Finding(
            "error",
            "business-rule",
            f"{where}: states {statement.kind} {stated_text}, but the protocol's "
            f"{statement.kind} is in {_unit_text(code)}",
            statement.expression,
            "stated-value",
            statement.activity,
        )
    if agrees(statement.value, converted):
        return None
    return Finding(
        "error",
        "business-rule",
        f"{where}: {statement.kind} stated {stated_text}, expected {_shown(converted)} "
        f"{_unit_text(statement.unit)} (recomputed: {context})",
        statement.expression,
        "stated-value",
        statement.activity,
    )


def _compare_all(statements: list[Statement], plans: list[Plan], target_stated: bool) -> list[Finding]:
    findings: list[Finding] = []
    if not plans:
        if statements:
            note = "no reference plan could be computed, so the values the documents state were not compared"
            findings.append(Finding("information", "informational", note, "PlanDefinition", "not-compared"))
        return findings
    context = f"reference plan for {plans[0].target_dose}" + (
        ""
        if target_stated or plans[0].protocol.kind is ProtocolKind.DISCRETE
        else ", a target no document states"
    )
    for statement in statements:
        expected = [_expected(plan, statement) for plan in plans]
        if not target_stated and len(set(expected)) > 1:
            findings.append(
                Finding(
                    "information",
                    "informational",
                    f"step {statement.step}: the stated {statement.kind} "
                    "depends on the target dose, which the protocol does not state; not compared",
                    statement.expression,
                    "not-compared",
                    statement.activity,
                )
            )
            continue
        finding = _compare(statement, expected[0], context)
        if finding is not None:
            findings.append(finding)
    return findings


def check_plan_definition(
    plan_definition: Mapping[str, Any], activities: Mapping[str, Mapping[str, Any]]
) -> tuple[Protocol | None, list[Finding]]:
    """The protocol a PlanDefinition defines (None when it cannot be read) and every consistency finding.

    ``activities`` maps ``url|version`` (and ``url`` alone, when unambiguous) to ActivityDefinitions.
    """
    try:
        protocol = protocol_from_plan_definition(plan_definition)
    except MappingError as error:
        return None, [Finding("error", "invalid", str(error), "PlanDefinition", "mapping")]
    try:
        statements, findings = collect_statements(plan_definition, activities)
        plans, target_stated, failures = _reference_plans(protocol, statements)
        findings = failures + findings + _compare_all(statements, plans, target_stated)
    except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError, IndexError) as error:
        # Content from other systems may hold null or wrongly typed elements anywhere: a finding, never a crash.
        detail = f"{type(error).__name__}: {error}"[:200]
        message = f"a step's ActivityDefinition or action has a missing or wrongly typed element ({detail})"
        return None, [Finding("error", "invalid", message, "PlanDefinition", "mapping")]
    return protocol, findings
