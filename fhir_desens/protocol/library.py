"""The protocol library: built-in protocols (packaged JSON) and the exact dict form of a protocol.

``protocol_from_dict`` is also how protocols arrive from elsewhere (edited copies, FHIR imports go
through ``fhir_desens.fhir``), so it checks everything and names the offending JSON path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from decimal import Decimal
from functools import cache, lru_cache

from fhir_desens.errors import DesensError, InputError, ProtocolDefinitionError
from fhir_desens.protocol.model import (
    MAX_OVERFILL_FRACTION,
    ClosingMethod,
    Evidence,
    Premedication,
    Preparation,
    Protocol,
    ProtocolDefaults,
    ProtocolKind,
    ReactionRule,
    SolutionDefinition,
    Source,
    StepDefinition,
    TargetKind,
)
from fhir_desens.protocol.quantity import Dimension, Quantity, div, parse_decimal, parse_quantity, plain

TYPE_CHECKING = False  # mypy reads this block; typing is not imported at run time (commands start faster)
if TYPE_CHECKING:
    from typing import Any


def _ratio(text: str, path: str) -> Decimal:
    """'1/40' or '0.025' as an exact Decimal."""
    numerator, slash, denominator = str(text).partition("/")
    try:
        value = parse_decimal(numerator, path)
        if slash:
            value = div(value, parse_decimal(denominator, path))
    except (InputError, ArithmeticError) as error:
        raise ProtocolDefinitionError(f"{path}: '{text}' is not a number or ratio ({error})") from None
    return value


def _decimal(raw: Mapping[str, Any], key: str, path: str) -> Decimal | None:
    value = raw.get(key)
    return None if value is None else _ratio(str(value), f"{path}.{key}")


def _quantity(raw: Mapping[str, Any], key: str, path: str) -> Quantity | None:
    value = raw.get(key)
    if value is None:
        return None
    try:
        return parse_quantity(str(value), f"{path}.{key}").canonical()
    except DesensError as error:
        raise ProtocolDefinitionError(f"{path}.{key}: {error}") from None


def _enum(enum: Any, value: Any, path: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        accepted = ", ".join(member.value for member in enum)
        raise ProtocolDefinitionError(f"{path}: '{value}' is not one of {accepted}") from None


def _required(raw: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in raw or raw[key] in (None, ""):
        raise ProtocolDefinitionError(f"{path}.{key} is required")
    return raw[key]


def _preparation(raw: Mapping[str, Any] | None, path: str) -> Preparation | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ProtocolDefinitionError(f"{path}: a preparation must be an object")
    drug = _quantity(raw, "drug_amount", path)
    bag = _decimal(raw, "bag_volume_ml", path)
    if drug is None or bag is None:
        raise ProtocolDefinitionError(f"{path}: a preparation needs bag_volume_ml and drug_amount")
    return Preparation(
        bag_volume_ml=bag,
        drug_amount=drug,
        drug_volume_ml=_decimal(raw, "drug_volume_ml", path) or Decimal(0),
        removed_ml=_decimal(raw, "removed_ml", path) or Decimal(0),
        overfill_ml=_decimal(raw, "overfill_ml", path) or Decimal(0),
    )


def _solution(raw: Mapping[str, Any], path: str) -> SolutionDefinition:
    solution = SolutionDefinition(
        number=int(_required(raw, "number", path)),
        label=str(_required(raw, "label", path)),
        dilution=_decimal(raw, "dilution", path),
        dose_fraction=_decimal(raw, "dose_fraction", path),
        concentration=_quantity(raw, "concentration", path),
        volume_ml=_decimal(raw, "volume_ml", path),
        diluent=raw.get("diluent"),
        solid=bool(raw.get("solid", False)),
        unit_dose=_quantity(raw, "unit_dose", path),
        preparation=_preparation(raw.get("preparation"), f"{path}.preparation"),
        unit_name=str(raw.get("unit_name") or "tablet"),
    )
    check_solution(solution, path)
    return solution


def check_solution(solution: SolutionDefinition, path: str) -> None:
    """A solution's strength is defined exactly once and in range, and its stated recipe makes it (for
    protocols from a template and from an exchanged PlanDefinition alike)."""
    strengths = [solution.dilution, solution.dose_fraction, solution.concentration, solution.unit_dose]
    if sum(value is not None for value in strengths) != 1:
        raise ProtocolDefinitionError(
            f"{path}: give exactly one of dilution, dose_fraction, concentration or (solid) unit_dose"
        )
    if solution.solid != (solution.unit_dose is not None):
        raise ProtocolDefinitionError(f"{path}: solid forms need unit_dose, and only solid forms have one")
    for name, value in (("dilution", solution.dilution), ("dose_fraction", solution.dose_fraction)):
        if value is not None and not 0 < value <= 1:
            raise ProtocolDefinitionError(f"{path}.{name} must be above 0 and at most 1, got {plain(value)}")
    check_preparation(solution, path)


def preparation_problem(solution: SolutionDefinition) -> str | None:
    """Why a solution's stated preparation does not make it (INV-22, INV-23), or None when it does."""
    prep = solution.preparation
    if prep is None:
        return None
    label = f"solution {solution.number}"
    if prep.bag_volume_ml <= 0 or prep.drug_amount.value <= 0:
        return f"{label}: the bag volume and the drug added must be above 0"
    if min(prep.removed_ml, prep.overfill_ml, prep.drug_volume_ml) < 0:
        return f"{label}: removed, overfill and drug volumes cannot be negative"
    if prep.overfill_ml > prep.bag_volume_ml * MAX_OVERFILL_FRACTION:
        return (
            f"{label}: an overfill of {plain(prep.overfill_ml)} mL in a {plain(prep.bag_volume_ml)} mL bag "
            f"is implausible (at most {plain(MAX_OVERFILL_FRACTION * 100)}% of the label)"
        )
    if prep.removed_ml >= prep.bag_volume_ml + prep.overfill_ml:
        return f"{label}: removing {plain(prep.removed_ml)} mL leaves nothing in the bag"
    if prep.drug_amount.dimension not in (Dimension.MASS, Dimension.ACTIVITY):
        return f"{label}: the drug added must be a dose (mg, units), got {prep.drug_amount}"
    made = prep.concentration()
    if solution.concentration is None or solution.concentration != made:
        stated = "no concentration" if solution.concentration is None else str(solution.concentration)
        return f"{label}: the preparation makes {plain(made.value)} {made.unit}, the protocol states {stated}"
    if solution.volume_ml is not None and solution.volume_ml != prep.final_volume_ml:
        return (
            f"{label}: the preparation makes {plain(prep.final_volume_ml)} mL, "
            f"the protocol prepares {plain(solution.volume_ml)} mL"
        )
    return None


def check_preparation(solution: SolutionDefinition, path: str) -> None:
    problem = preparation_problem(solution)
    if problem is not None:
        raise ProtocolDefinitionError(f"{path}: {problem}")


def _step(raw: Mapping[str, Any], number: int, path: str) -> StepDefinition:
    return StepDefinition(
        number=number,
        solution=int(_required(raw, "solution", path)),
        minutes=_decimal(raw, "minutes", path),
        rate_ml_h=_decimal(raw, "rate_ml_h", path),
        rate_fraction=_decimal(raw, "rate_fraction", path),
        volume_ml=_decimal(raw, "volume_ml", path),
        units=_decimal(raw, "units", path),
        empties_solution=bool(raw.get("empties_solution", False)),
        inserted=bool(raw.get("inserted", False)),
        note=raw.get("note"),
    )


def _premedication(raw: Mapping[str, Any], path: str) -> Premedication:
    return Premedication(
        drug=str(_required(raw, "drug", path)),
        dose=str(_required(raw, "dose", path)),
        route=str(_required(raw, "route", path)),
        offset_minutes=_decimal(raw, "offset_minutes", path),
        timing=str(_required(raw, "timing", path)),
        condition=raw.get("condition"),
    )


def _defaults(raw: Mapping[str, Any]) -> ProtocolDefaults:
    fractions = raw.get("bag_fractions")
    closing = raw.get("closing")
    return ProtocolDefaults(
        bag_volume_ml=_decimal(raw, "bag_volume_ml", "defaults"),
        final_rate_ml_h=_decimal(raw, "final_rate_ml_h", "defaults"),
        closing=None if closing is None else _enum(ClosingMethod, closing, "defaults.closing"),
        step_minutes=_decimal(raw, "step_minutes", "defaults") or Decimal(15),
        bag_fractions=None
        if fractions is None
        else tuple(_ratio(f, f"defaults.bag_fractions[{i}]") for i, f in enumerate(fractions)),
    )


def protocol_from_dict(raw: Mapping[str, Any]) -> Protocol:
    """Build and check a protocol from its dict form; errors name the JSON path."""
    if not isinstance(raw, Mapping):
        raise ProtocolDefinitionError("a protocol must be a JSON object")
    steps_raw = _required(raw, "steps", "protocol")
    protocol = Protocol(
        id=str(_required(raw, "id", "protocol")),
        version=str(_required(raw, "version", "protocol")),
        title=str(_required(raw, "title", "protocol")),
        kind=_enum(ProtocolKind, _required(raw, "kind", "protocol"), "protocol.kind"),
        route=str(_required(raw, "route", "protocol")),
        description=str(raw.get("description", "")),
        evidence=_enum(Evidence, raw.get("evidence", "structurally-derived"), "protocol.evidence"),
        sources=tuple(Source(str(s["citation"]), s.get("url")) for s in raw.get("sources", [])),
        dose_dimensions=tuple(
            _enum(Dimension, d, f"protocol.dose_dimensions[{i}]")
            for i, d in enumerate(_required(raw, "dose_dimensions", "protocol"))
        ),
        target_kind=_enum(TargetKind, raw.get("target_kind", "cumulative"), "protocol.target_kind"),
        solutions=tuple(
            _solution(s, f"solutions[{i}]") for i, s in enumerate(_required(raw, "solutions", "protocol"))
        ),
        steps=tuple(_step(s, i + 1, f"steps[{i}]") for i, s in enumerate(steps_raw)),
        defaults=_defaults(raw.get("defaults", {})),
        closing_methods=tuple(
            _enum(ClosingMethod, c, f"closing_methods[{i}]")
            for i, c in enumerate(raw.get("closing_methods", []))
        ),
        reaction_rule=_enum(ReactionRule, raw.get("reaction_rule", "standard"), "protocol.reaction_rule"),
        allow_dose_decrease=bool(raw.get("allow_dose_decrease", False)),
        fixed_table=bool(raw.get("fixed_table", False)),
        premedications=tuple(
            _premedication(p, f"premedications[{i}]") for i, p in enumerate(raw.get("premedications", []))
        ),
        nursing_instructions=tuple(str(n) for n in raw.get("nursing_instructions", [])),
        drugs=tuple(str(d) for d in raw.get("drugs", [])),
        status=str(raw.get("status", "active")),
        url=raw.get("url"),
    )
    check_protocol(protocol)
    return protocol


def check_protocol(protocol: Protocol) -> None:
    """Structural rules every protocol must satisfy before any plan is computed from it."""
    dose_kinds = (Dimension.MASS, Dimension.ACTIVITY)
    if not protocol.dose_dimensions or any(d not in dose_kinds for d in protocol.dose_dimensions):
        found = ", ".join(d.value for d in protocol.dose_dimensions) or "none"
        raise ProtocolDefinitionError(f"dose_dimensions must be mass and/or activity, got {found}")
    numbers = [s.number for s in protocol.solutions]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ProtocolDefinitionError(f"solutions must be numbered 1..n in order, got {numbers}")
    if not protocol.steps:
        raise ProtocolDefinitionError("a protocol needs at least one step")
    for solution in protocol.solutions:
        check_solution(solution, f"solutions[{solution.number - 1}]")
    for step in protocol.steps:
        path = f"steps[{step.number - 1}]"
        if step.solution not in numbers:
            raise ProtocolDefinitionError(f"{path}.solution {step.solution} is not a defined solution")
        if protocol.kind is ProtocolKind.INFUSION:
            _check_infusion_step(protocol, step, path)
        else:
            _check_discrete_step(protocol, step, path)
    if protocol.kind is ProtocolKind.INFUSION:
        order = [s.solution for s in protocol.steps]
        if order != sorted(order):
            raise ProtocolDefinitionError(
                "infusion steps must use the solutions in order (bag 1, then bag 2, ...)"
            )
        if set(order) != set(numbers):
            raise ProtocolDefinitionError("every solution must be used by at least one step")
        if not protocol.closing_methods or protocol.defaults.closing not in protocol.closing_methods:
            raise ProtocolDefinitionError("an infusion protocol needs closing_methods including its default")
    else:
        if protocol.closing_methods:
            raise ProtocolDefinitionError("discrete protocols have fixed doses and no closing method")
        if not protocol.fixed_doses:
            raise ProtocolDefinitionError("discrete protocols need fixed concentrations or solid unit doses")
    if protocol.fixed_table:
        _check_fixed_table(protocol)
    fractions = protocol.defaults.bag_fractions
    if fractions is not None and (len(fractions) != len(numbers) or sum(fractions) != 1):
        raise ProtocolDefinitionError(
            "defaults.bag_fractions needs one fraction per solution, summing to exactly 1"
        )


def _check_fixed_table(protocol: Protocol) -> None:
    """A fixed infusion table: fixed concentrations, timed steps, the last step closes on the total."""
    if protocol.kind is not ProtocolKind.INFUSION:
        raise ProtocolDefinitionError(
            "fixed_table is for infusion protocols (discrete doses are fixed anyway)"
        )
    if any(s.concentration is None for s in protocol.solutions):
        raise ProtocolDefinitionError("a fixed table needs a fixed concentration for every solution")
    if protocol.closing_methods != (ClosingMethod.REMAINDER_STEP,):
        raise ProtocolDefinitionError("a fixed table closes with remainder-step only")
    if any(s.rate_ml_h is None for s in protocol.steps):
        raise ProtocolDefinitionError("a fixed table gives every step a rate in mL/h")
    last = protocol.steps[-1]
    if last.minutes is None and protocol.solution(last.solution).volume_ml is None:
        raise ProtocolDefinitionError("a fixed table whose last step empties its bag needs that bag's volume")


def _check_infusion_step(protocol: Protocol, step: StepDefinition, path: str) -> None:
    is_last = step.number == len(protocol.steps)
    if step.rate_ml_h is not None and step.rate_fraction is not None:
        raise ProtocolDefinitionError(f"{path}: give rate_ml_h or rate_fraction, not both")
    if step.rate_ml_h is None and step.rate_fraction is None and not step.empties_solution:
        raise ProtocolDefinitionError(f"{path}: an infusion step needs rate_ml_h or rate_fraction")
    if step.minutes is None and not (is_last or step.empties_solution):
        raise ProtocolDefinitionError(f"{path}: only the last step may leave minutes open")
    if (
        step.empties_solution
        and step.rate_ml_h is None
        and step.rate_fraction is None
        and step.minutes is None
    ):
        raise ProtocolDefinitionError(f"{path}: a step that empties its solution needs a rate or minutes")
    if step.volume_ml is not None or step.units is not None:
        raise ProtocolDefinitionError(f"{path}: infusion steps take rates, not volumes or units")
    for name, value in (
        ("minutes", step.minutes),
        ("rate_ml_h", step.rate_ml_h),
        ("rate_fraction", step.rate_fraction),
    ):
        if value is not None and value <= 0:
            raise ProtocolDefinitionError(f"{path}.{name} must be above 0")


def _check_discrete_step(protocol: Protocol, step: StepDefinition, path: str) -> None:
    solution = protocol.solution(step.solution)
    if step.minutes is None or step.minutes <= 0:
        raise ProtocolDefinitionError(f"{path}.minutes (the interval to the next dose) must be above 0")
    if solution.solid and (step.units is None or step.units <= 0 or step.volume_ml is not None):
        raise ProtocolDefinitionError(f"{path}: a solid-form step needs units (e.g. 1 or 0.5 tablet) above 0")
    if not solution.solid and (step.volume_ml is None or step.volume_ml <= 0 or step.units is not None):
        raise ProtocolDefinitionError(f"{path}: a liquid step needs volume_ml above 0")


def protocol_to_dict(protocol: Protocol) -> dict[str, Any]:
    """The exact dict form (decimals as strings); ``protocol_from_dict`` inverts it."""

    def q(value: Quantity | None) -> str | None:
        return None if value is None else f"{plain(value.value)} {value.unit}"

    def d(value: Decimal | None) -> str | None:
        return None if value is None else plain(value)

    def clean(mapping: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in mapping.items() if v not in (None, False, [], ())}

    defaults = protocol.defaults
    return clean(
        {
            "id": protocol.id,
            "version": protocol.version,
            "title": protocol.title,
            "kind": protocol.kind.value,
            "route": protocol.route,
            "description": protocol.description,
            "evidence": protocol.evidence.value,
            "sources": [clean({"citation": s.citation, "url": s.url}) for s in protocol.sources],
            "dose_dimensions": [dim.value for dim in protocol.dose_dimensions],
            "target_kind": protocol.target_kind.value,
            "defaults": clean(
                {
                    "bag_volume_ml": d(defaults.bag_volume_ml),
                    "final_rate_ml_h": d(defaults.final_rate_ml_h),
                    "closing": defaults.closing.value if defaults.closing else None,
                    "step_minutes": d(defaults.step_minutes),
                    "bag_fractions": [plain(f) for f in defaults.bag_fractions]
                    if defaults.bag_fractions
                    else None,
                }
            ),
            "closing_methods": [c.value for c in protocol.closing_methods],
            "reaction_rule": protocol.reaction_rule.value,
            "allow_dose_decrease": protocol.allow_dose_decrease,
            "fixed_table": protocol.fixed_table,
            "solutions": [
                clean(
                    {
                        "number": s.number,
                        "label": s.label,
                        "dilution": d(s.dilution),
                        "dose_fraction": d(s.dose_fraction),
                        "concentration": q(s.concentration),
                        "volume_ml": d(s.volume_ml),
                        "diluent": s.diluent,
                        "solid": s.solid,
                        "unit_dose": q(s.unit_dose),
                        "unit_name": None if s.unit_name == "tablet" else s.unit_name,
                        "preparation": None
                        if s.preparation is None
                        else clean(
                            {
                                "bag_volume_ml": d(s.preparation.bag_volume_ml),
                                "drug_amount": q(s.preparation.drug_amount),
                                "drug_volume_ml": d(s.preparation.drug_volume_ml or None),
                                "removed_ml": d(s.preparation.removed_ml or None),
                                "overfill_ml": d(s.preparation.overfill_ml or None),
                            }
                        ),
                    }
                )
                for s in protocol.solutions
            ],
            "steps": [
                clean(
                    {
                        "solution": s.solution,
                        "minutes": d(s.minutes),
                        "rate_ml_h": d(s.rate_ml_h),
                        "rate_fraction": d(s.rate_fraction),
                        "volume_ml": d(s.volume_ml),
                        "units": d(s.units),
                        "empties_solution": s.empties_solution,
                        "inserted": s.inserted,
                        "note": s.note,
                    }
                )
                for s in protocol.steps
            ],
            "premedications": [
                clean(
                    {
                        "drug": p.drug,
                        "dose": p.dose,
                        "route": p.route,
                        "offset_minutes": d(p.offset_minutes),
                        "timing": p.timing,
                        "condition": p.condition,
                    }
                )
                for p in protocol.premedications
            ],
            "nursing_instructions": list(protocol.nursing_instructions),
            "drugs": list(protocol.drugs),
            "status": protocol.status,
            "url": protocol.url,
        }
    )


#: The packaged protocols: one file per protocol, named by its id (``iv-12-step-3-bag.json``).
TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")


def _template_names() -> list[str]:
    return sorted(name for name in os.listdir(TEMPLATES) if name.endswith(".json"))


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.read()


@cache
def _builtin_protocol(file_name: str) -> Protocol:
    """One packaged protocol, read once (a command reads only the one it plans with)."""
    try:
        protocol = protocol_from_dict(json.loads(_read(os.path.join(TEMPLATES, file_name))))
    except ProtocolDefinitionError as error:
        raise ProtocolDefinitionError(f"built-in protocol {file_name}: {error}") from None
    if f"{protocol.id}.json" != file_name:
        raise ProtocolDefinitionError(
            f"built-in protocol {file_name}: its id '{protocol.id}' is not its name"
        )
    return protocol


@lru_cache(maxsize=1)
def builtin_protocols() -> dict[str, Protocol]:
    """Every packaged protocol by id, in a stable order."""
    protocols = (_builtin_protocol(name) for name in _template_names())
    return {protocol.id: protocol for protocol in protocols}


def get_protocol(protocol_id: str, extra: Mapping[str, Protocol] | None = None) -> Protocol:
    """A protocol by id from ``extra`` (e.g. imported ones) or the built-ins; unknown ids are input errors."""
    if extra and protocol_id in extra:
        return extra[protocol_id]
    file_name = f"{protocol_id}.json"
    if file_name in _template_names():  # a packaged file's name, never a path made from the input
        return _builtin_protocol(file_name)
    library = {**builtin_protocols(), **(extra or {})}
    raise InputError("--protocol", f"unknown protocol '{protocol_id}'", ", ".join(library))
