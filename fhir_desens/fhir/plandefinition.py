"""Protocol <-> FHIR PlanDefinition (+ one ActivityDefinition per step), lossless both ways.

The protocol's full meaning travels in our extensions (``canonical.EXT_*``); the standard elements
(``type``, ``action`` with ``timingDuration`` and ``relatedAction``, ActivityDefinition dosages with
``rateQuantity`` in UCUM mL/h) carry the same facts for systems that do not know our guide.
``protocol_from_plan_definition(plan_definition_from_protocol(p)) == p`` for every protocol.
Steps are sequenced with ``relatedAction`` ``after-end`` on the later step; ``before-start`` on the
earlier step is accepted on import. No network here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from fhir_desens.errors import MappingError, ProtocolDefinitionError
from fhir_desens.fhir import canonical as c
from fhir_desens.protocol.library import check_protocol
from fhir_desens.protocol.model import (
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
from fhir_desens.protocol.quantity import Dimension, Quantity, unit

ROUTES = {
    "IV": {"system": c.SNOMED, "code": "47625008", "display": "Intravenous route"},
    "oral": {"system": c.SNOMED, "code": "26643006", "display": "Oral route"},
}


# --- small builders ---------------------------------------------------------------------------


def ucum(value: Decimal, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit(code).display, "system": c.UCUM, "code": code}


def _ext(url: str, **value: Any) -> dict[str, Any]:
    return {"url": url, **value}


def _sub(name: str, kind: str, value: Any) -> list[dict[str, Any]]:
    """A sub-extension, or nothing when the value is absent (None/False/empty)."""
    if value is None or value is False or value == ():
        return []
    return [{"url": name, f"value{kind}": value}]


def _step_id(number: int) -> str:
    return f"step-{number}"


def _name(protocol_id: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", protocol_id) if part)


def canonical_url(protocol: Protocol) -> str:
    return protocol.url or c.plan_definition(protocol.id)


def activity_id(protocol: Protocol, step: StepDefinition) -> str:
    return f"{protocol.id}-step-{step.number}"


# --- Protocol -> PlanDefinition -----------------------------------------------------------------


def plan_definition_from_protocol(protocol: Protocol) -> dict[str, Any]:
    """The PlanDefinition of a protocol (raw FHIR R4 dict; Decimals stay Decimal)."""
    url = canonical_url(protocol)
    resource: dict[str, Any] = {
        "resourceType": "PlanDefinition",
        "id": protocol.id,
        "meta": {"profile": [c.PROFILE_PROTOCOL]},
        "extension": [
            _settings_extension(protocol),
            *(_solution_extension(s) for s in protocol.solutions),
            *(_premedication_extension(p) for p in protocol.premedications),
            *(_ext(c.EXT_CLOSING_METHOD, valueCode=m.value) for m in protocol.closing_methods),
        ],
        "url": url,
        "version": protocol.version,
        "name": _name(protocol.id),
        "title": protocol.title,
        "type": {"coding": [{"system": c.PLAN_DEFINITION_TYPE, "code": "clinical-protocol"}]},
        "status": protocol.status,
        "experimental": False,
        "publisher": "fhir-desens",
        "description": protocol.description or protocol.title,
        "usage": "\n".join(protocol.nursing_instructions) or None,
        "relatedArtifact": [
            {"type": "citation", "citation": s.citation, **({"url": s.url} if s.url else {})}
            for s in protocol.sources
        ]
        or None,
        "action": [
            {
                "title": "Desensitization steps",
                "groupingBehavior": "logical-group",
                "selectionBehavior": "all",
                "action": [_step_action(protocol, s) for s in protocol.steps],
            }
        ],
    }
    return {k: v for k, v in resource.items() if v is not None}


def _settings_extension(protocol: Protocol) -> dict[str, Any]:
    d = protocol.defaults
    subs = [
        *_sub("kind", "Code", protocol.kind.value),
        *_sub("route", "String", protocol.route),
        *_sub("targetKind", "Code", protocol.target_kind.value),
        *_sub("reactionRule", "Code", protocol.reaction_rule.value),
        *_sub("evidence", "Code", protocol.evidence.value),
        *(e for dim in protocol.dose_dimensions for e in _sub("doseDimension", "Code", dim.value)),
        *_sub("allowDoseDecrease", "Boolean", protocol.allow_dose_decrease),
        *_sub("fixedTable", "Boolean", protocol.fixed_table),
        *_sub("bagVolume", "Quantity", None if d.bag_volume_ml is None else ucum(d.bag_volume_ml, "mL")),
        *_sub(
            "finalRate", "Quantity", None if d.final_rate_ml_h is None else ucum(d.final_rate_ml_h, "mL/h")
        ),
        *_sub("stepDuration", "Duration", ucum(d.step_minutes, "min")),
        *_sub("defaultClosing", "Code", d.closing.value if d.closing else None),
        *(e for f in d.bag_fractions or () for e in _sub("bagFraction", "Decimal", f)),
        *(e for drug in protocol.drugs for e in _sub("drug", "String", drug)),
    ]
    return _ext(c.EXT_PROTOCOL_SETTINGS, extension=subs)


def _quantity(q: Quantity | None) -> dict[str, Any] | None:
    return None if q is None else ucum(q.value, q.unit)


def _solution_extension(solution: SolutionDefinition) -> dict[str, Any]:
    subs = [
        *_sub("number", "PositiveInt", solution.number),
        *_sub("label", "String", solution.label),
        *_sub("dilution", "Decimal", solution.dilution),
        *_sub("doseFraction", "Decimal", solution.dose_fraction),
        *_sub("concentration", "Quantity", _quantity(solution.concentration)),
        *_sub("volume", "Quantity", None if solution.volume_ml is None else ucum(solution.volume_ml, "mL")),
        *_sub("diluent", "String", solution.diluent),
        *_sub("solid", "Boolean", solution.solid),
        *_sub("unitDose", "Quantity", _quantity(solution.unit_dose)),
        *_sub("unitName", "String", None if solution.unit_name == "tablet" else solution.unit_name),
        *_preparation_subs(solution.preparation),
    ]
    return _ext(c.EXT_SOLUTION, extension=subs)


def _ml(value: Decimal) -> dict[str, Any] | None:
    return ucum(value, "mL") if value else None


def _preparation_subs(prep: Preparation | None) -> list[dict[str, Any]]:
    if prep is None:
        return []
    return [
        *_sub("preparedFromBag", "Quantity", ucum(prep.bag_volume_ml, "mL")),
        *_sub("overfill", "Quantity", _ml(prep.overfill_ml)),
        *_sub("removed", "Quantity", _ml(prep.removed_ml)),
        *_sub("drugAdded", "Quantity", _quantity(prep.drug_amount)),
        *_sub("drugVolume", "Quantity", _ml(prep.drug_volume_ml)),
        *_sub("preparation", "String", prep.text),
    ]


def _preparation_from_subs(subs: Sequence[Mapping[str, Any]]) -> Preparation | None:
    bag = _value_of(_one(subs, "preparedFromBag", "valueQuantity", None), "mL")
    drug = _quantity_of(_one(subs, "drugAdded", "valueQuantity", None))
    if bag is None and drug is None:
        return None
    if bag is None or drug is None:
        raise MappingError("a solution's preparation needs both preparedFromBag and drugAdded")
    zero = Decimal(0)
    return Preparation(
        bag_volume_ml=bag,
        drug_amount=drug,
        drug_volume_ml=_value_of(_one(subs, "drugVolume", "valueQuantity", None), "mL") or zero,
        removed_ml=_value_of(_one(subs, "removed", "valueQuantity", None), "mL") or zero,
        overfill_ml=_value_of(_one(subs, "overfill", "valueQuantity", None), "mL") or zero,
    )


def _premedication_extension(premedication: Premedication) -> dict[str, Any]:
    offset = premedication.offset_minutes
    subs = [
        *_sub("drug", "String", premedication.drug),
        *_sub("dose", "String", premedication.dose),
        *_sub("route", "String", premedication.route),
        *_sub("timing", "String", premedication.timing),
        *_sub("offset", "Duration", None if offset is None else ucum(offset, "min")),
        *_sub("condition", "String", premedication.condition),
    ]
    return _ext(c.EXT_PREMEDICATION, extension=subs)


def _step_action(protocol: Protocol, step: StepDefinition) -> dict[str, Any]:
    subs = [
        *_sub("solution", "PositiveInt", step.solution),
        *_sub("rate", "Quantity", None if step.rate_ml_h is None else ucum(step.rate_ml_h, "mL/h")),
        *_sub("rateFraction", "Decimal", step.rate_fraction),
        *_sub("volume", "Quantity", None if step.volume_ml is None else ucum(step.volume_ml, "mL")),
        *_sub("units", "Decimal", step.units),
        *_sub("emptiesSolution", "Boolean", step.empties_solution),
        *_sub("inserted", "Boolean", step.inserted),
        *_sub("note", "String", step.note),
    ]
    action: dict[str, Any] = {
        "extension": [_ext(c.EXT_STEP, extension=subs)],
        "id": _step_id(step.number),
        "prefix": str(step.number),
        "title": f"Step {step.number}",
        "description": _step_text(protocol, step),
    }
    if step.number > 1:
        action["relatedAction"] = [{"actionId": _step_id(step.number - 1), "relationship": "after-end"}]
    if step.minutes is not None:
        action["timingDuration"] = ucum(step.minutes, "min")
    action["definitionCanonical"] = f"{c.activity_definition(activity_id(protocol, step))}|{protocol.version}"
    return action


def _step_text(protocol: Protocol, step: StepDefinition) -> str:
    solution = protocol.solution(step.solution).label
    if step.rate_ml_h is not None:
        how = f"at {step.rate_ml_h} mL/h"
    elif step.rate_fraction is not None:
        how = f"at {step.rate_fraction} x the final rate"
    elif step.volume_ml is not None or step.units is not None:
        # A discrete dose is given at once; its minutes are the wait before the next dose, never an
        # infusion time ("1 mL for 30 min" would read as a 30-minute infusion).
        amount = f"{step.volume_ml} mL" if step.volume_ml is not None else f"{step.units} unit(s)"
        return f"{solution}: give {amount}, then wait {step.minutes} min before the next step"
    else:
        how = "until the solution is empty"
    duration = f" for {step.minutes} min" if step.minutes is not None else " until the target is reached"
    return f"{solution} {how}{duration}"


def activity_definitions_from_protocol(protocol: Protocol) -> list[dict[str, Any]]:
    """One ActivityDefinition (kind MedicationRequest) per step: the order template of that step."""
    return [_activity(protocol, step) for step in protocol.steps]


def _activity(protocol: Protocol, step: StepDefinition) -> dict[str, Any]:
    timing: dict[str, Any] = {"repeat": {"count": 1}}
    if step.minutes is not None:
        timing["repeat"].update({"duration": step.minutes, "durationUnit": "min"})
    dose_and_rate: dict[str, Any] = {}
    if step.rate_ml_h is not None:
        dose_and_rate["rateQuantity"] = ucum(step.rate_ml_h, "mL/h")
    if step.volume_ml is not None:
        dose_and_rate["doseQuantity"] = ucum(step.volume_ml, "mL")
    if step.units is not None:
        dose_and_rate["doseQuantity"] = {
            "value": step.units,
            "unit": "unit",
            "system": c.UCUM,
            "code": "{unit}",
        }
    dosage: dict[str, Any] = {"text": _step_text(protocol, step), "timing": timing}
    if protocol.route in ROUTES:
        dosage["route"] = {"coding": [ROUTES[protocol.route]], "text": protocol.route}
    if dose_and_rate:
        dosage["doseAndRate"] = [dose_and_rate]
    ident = activity_id(protocol, step)
    return {
        "resourceType": "ActivityDefinition",
        "id": ident,
        "meta": {"profile": [c.PROFILE_STEP_ACTIVITY]},
        "url": c.activity_definition(ident),
        "version": protocol.version,
        "name": _name(ident),
        "title": f"{protocol.title}: step {step.number}",
        "status": protocol.status,
        "experimental": False,
        "publisher": "fhir-desens",
        "description": _step_text(protocol, step),
        "kind": "MedicationRequest",
        "intent": "proposal",
        "dosage": [dosage],
    }


# --- PlanDefinition -> Protocol -----------------------------------------------------------------


def protocol_from_plan_definition(resource: Mapping[str, Any]) -> Protocol:
    """Read a protocol back from its PlanDefinition; MappingError names what is missing or wrong.

    Content from other systems may hold null or wrongly typed elements anywhere: whatever the
    reader meets that it cannot use becomes a MappingError, never a crash.
    """
    try:
        return _protocol_from_plan_definition(resource)
    except MappingError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError, IndexError) as error:
        url = resource.get("url") if isinstance(resource, Mapping) else None
        label = f"PlanDefinition {url}" if isinstance(url, str) else "PlanDefinition"
        detail = f"{type(error).__name__}: {error}"[:200]
        raise MappingError(f"{label}: an element is missing or has the wrong type ({detail})") from None


def _protocol_from_plan_definition(resource: Mapping[str, Any]) -> Protocol:
    if not isinstance(resource, Mapping) or resource.get("resourceType") != "PlanDefinition":
        raise MappingError(f"expected a PlanDefinition, got {resource.get('resourceType')!r}")
    url = _required(resource, "url")
    settings = _subs(_single_extension(resource, c.EXT_PROTOCOL_SETTINGS, "PlanDefinition"))
    group = _steps_group(resource)
    steps = tuple(_step_from_action(action, n + 1) for n, action in enumerate(ordered_step_actions(group)))
    protocol_id = str(resource.get("id") or url.rstrip("/").rsplit("/", 1)[-1])
    try:
        protocol = Protocol(
            id=protocol_id,
            version=str(_required(resource, "version")),
            title=str(resource.get("title") or resource.get("name") or protocol_id),
            kind=ProtocolKind(_one(settings, "kind", "valueCode")),
            route=str(_one(settings, "route", "valueString")),
            description=str(resource.get("description", "")),
            evidence=Evidence(_one(settings, "evidence", "valueCode")),
            sources=tuple(
                Source(str(a.get("citation", "")), a.get("url"))
                for a in resource.get("relatedArtifact", [])
                if a.get("type") == "citation"
            ),
            dose_dimensions=tuple(Dimension(v) for v in _many(settings, "doseDimension", "valueCode")),
            target_kind=TargetKind(_one(settings, "targetKind", "valueCode")),
            solutions=tuple(_solution_from_extension(e) for e in _extensions(resource, c.EXT_SOLUTION)),
            steps=steps,
            defaults=_defaults_from_settings(settings),
            closing_methods=tuple(
                ClosingMethod(e["valueCode"]) for e in _extensions(resource, c.EXT_CLOSING_METHOD)
            ),
            reaction_rule=ReactionRule(_one(settings, "reactionRule", "valueCode", "standard")),
            allow_dose_decrease=bool(_one(settings, "allowDoseDecrease", "valueBoolean", False)),
            fixed_table=bool(_one(settings, "fixedTable", "valueBoolean", False)),
            premedications=tuple(
                _premedication_from_extension(e) for e in _extensions(resource, c.EXT_PREMEDICATION)
            ),
            nursing_instructions=tuple(line for line in str(resource.get("usage", "")).split("\n") if line),
            drugs=tuple(str(d) for d in _many(settings, "drug", "valueString")),
            status=str(resource.get("status", "active")),
            url=None if url == c.plan_definition(protocol_id) else url,
        )
    except (ValueError, KeyError, TypeError) as error:
        raise MappingError(f"PlanDefinition {url}: {error}") from None
    try:
        check_protocol(protocol)
    except ProtocolDefinitionError as error:
        raise MappingError(f"PlanDefinition {url}: {error}") from None
    return protocol


def _required(resource: Mapping[str, Any], key: str) -> Any:
    if not resource.get(key):
        raise MappingError(f"PlanDefinition.{key} is required")
    return resource[key]


def _extensions(element: Mapping[str, Any], url: str) -> list[Mapping[str, Any]]:
    return [e for e in element.get("extension", []) if e.get("url") == url]


def _single_extension(element: Mapping[str, Any], url: str, where: str) -> Mapping[str, Any]:
    found = _extensions(element, url)
    if len(found) != 1:
        raise MappingError(f"{where} needs exactly one extension {url}, found {len(found)}")
    return found[0]


def _subs(extension: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(extension.get("extension", []))


def _many(subs: Sequence[Mapping[str, Any]], name: str, key: str) -> list[Any]:
    return [s[key] for s in subs if s.get("url") == name and key in s]


def _one(subs: Sequence[Mapping[str, Any]], name: str, key: str, default: Any = KeyError) -> Any:
    values = _many(subs, name, key)
    if len(values) > 1:
        raise MappingError(f"sub-extension '{name}' appears {len(values)} times")
    if not values:
        if default is KeyError:
            raise MappingError(f"sub-extension '{name}' ({key}) is required")
        return default
    return values[0]


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float):
        raise MappingError("decimal read as float: parse FHIR JSON with fhir_desens.io.json")
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise MappingError(f"expected a decimal number, got {type(value).__name__}")
    try:
        number = Decimal(value)
    except ArithmeticError:
        raise MappingError(f"expected a decimal number, got {str(value)[:40]!r}") from None
    if not number.is_finite():
        raise MappingError(f"expected a finite decimal number, got {str(value)[:40]!r}")
    return number


def _value_of(quantity: Mapping[str, Any] | None, expected_unit: str) -> Decimal | None:
    if quantity is None:
        return None
    code = quantity.get("code") or quantity.get("unit")
    if code != expected_unit:
        raise MappingError(f"expected a quantity in {expected_unit}, got {code!r}")
    return _decimal(quantity.get("value"))


def _quantity_of(quantity: Mapping[str, Any] | None) -> Quantity | None:
    if quantity is None:
        return None
    value = _decimal(quantity.get("value"))
    if value is None:
        raise MappingError("a quantity has no value")
    return Quantity(value, unit(str(quantity.get("code") or quantity.get("unit"))).code)


def _defaults_from_settings(settings: Sequence[Mapping[str, Any]]) -> ProtocolDefaults:
    fractions = [_decimal(v) for v in _many(settings, "bagFraction", "valueDecimal")]
    closing = _one(settings, "defaultClosing", "valueCode", None)
    return ProtocolDefaults(
        bag_volume_ml=_value_of(_one(settings, "bagVolume", "valueQuantity", None), "mL"),
        final_rate_ml_h=_value_of(_one(settings, "finalRate", "valueQuantity", None), "mL/h"),
        closing=None if closing is None else ClosingMethod(closing),
        step_minutes=_value_of(_one(settings, "stepDuration", "valueDuration", None), "min") or Decimal(15),
        bag_fractions=tuple(f for f in fractions if f is not None) or None,
    )


def _solution_from_extension(extension: Mapping[str, Any]) -> SolutionDefinition:
    subs = _subs(extension)
    return SolutionDefinition(
        number=int(_one(subs, "number", "valuePositiveInt")),
        label=str(_one(subs, "label", "valueString")),
        dilution=_decimal(_one(subs, "dilution", "valueDecimal", None)),
        dose_fraction=_decimal(_one(subs, "doseFraction", "valueDecimal", None)),
        concentration=_quantity_of(_one(subs, "concentration", "valueQuantity", None)),
        volume_ml=_value_of(_one(subs, "volume", "valueQuantity", None), "mL"),
        diluent=_one(subs, "diluent", "valueString", None),
        solid=bool(_one(subs, "solid", "valueBoolean", False)),
        unit_dose=_quantity_of(_one(subs, "unitDose", "valueQuantity", None)),
        preparation=_preparation_from_subs(subs),
        unit_name=str(_one(subs, "unitName", "valueString", "tablet")),
    )


def _premedication_from_extension(extension: Mapping[str, Any]) -> Premedication:
    subs = _subs(extension)
    return Premedication(
        drug=str(_one(subs, "drug", "valueString")),
        dose=str(_one(subs, "dose", "valueString")),
        route=str(_one(subs, "route", "valueString")),
        offset_minutes=_value_of(_one(subs, "offset", "valueDuration", None), "min"),
        timing=str(_one(subs, "timing", "valueString")),
        condition=_one(subs, "condition", "valueString", None),
    )


def _steps_group(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    actions = resource.get("action") or []
    if len(actions) != 1 or not actions[0].get("action"):
        raise MappingError("PlanDefinition.action must be one group whose child actions are the steps")
    return dict(actions[0])


def ordered_step_actions(group: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Order the step actions by their relatedAction chain (after-end on the later step, or before-start)."""
    actions = list(group["action"])
    by_id = {a.get("id"): a for a in actions}
    if None in by_id or len(by_id) != len(actions):
        raise MappingError("every step action needs a unique id")
    successor: dict[str, str] = {}
    for action in actions:
        for related in action.get("relatedAction", []):
            other, relationship = related.get("actionId"), related.get("relationship")
            if other not in by_id:
                raise MappingError(f"action {action['id']} relates to unknown action {other!r}")
            if relationship == "after-end":
                pair = (other, action["id"])
            elif relationship == "before-start":
                pair = (action["id"], other)
            else:
                raise MappingError(
                    f"action {action['id']}: relationship {relationship!r} (accepted: after-end, before-start)"
                )
            if successor.get(pair[0], pair[1]) != pair[1]:
                raise MappingError(f"action {pair[0]} has two successors")
            successor[pair[0]] = pair[1]
    if not successor:
        return actions  # a one-step protocol, or listed in order without relations
    firsts = set(by_id) - set(successor.values())
    if len(firsts) != 1:
        raise MappingError("the steps' relatedAction links do not form one chain")
    order, current = [], firsts.pop()
    while current is not None:
        order.append(by_id[current])
        current = successor.get(current)
        if len(order) > len(actions):
            raise MappingError("the steps' relatedAction links form a cycle")
    if len(order) != len(actions):
        raise MappingError("some steps are not linked into the chain")
    return order


def _step_from_action(action: Mapping[str, Any], number: int) -> StepDefinition:
    subs = _subs(_single_extension(action, c.EXT_STEP, f"step action {action.get('id')}"))
    timing = action.get("timingDuration")
    return StepDefinition(
        number=number,
        solution=int(_one(subs, "solution", "valuePositiveInt")),
        minutes=_value_of(timing, "min") if timing else None,
        rate_ml_h=_value_of(_one(subs, "rate", "valueQuantity", None), "mL/h"),
        rate_fraction=_decimal(_one(subs, "rateFraction", "valueDecimal", None)),
        volume_ml=_value_of(_one(subs, "volume", "valueQuantity", None), "mL"),
        units=_decimal(_one(subs, "units", "valueDecimal", None)),
        empties_solution=bool(_one(subs, "emptiesSolution", "valueBoolean", False)),
        inserted=bool(_one(subs, "inserted", "valueBoolean", False)),
        note=_one(subs, "note", "valueString", None),
    )


def library_bundle(protocols: Sequence[Protocol]) -> dict[str, Any]:
    """A collection Bundle of protocols with their ActivityDefinitions (the exchange file)."""
    entries = []
    for protocol in protocols:
        for resource in (
            plan_definition_from_protocol(protocol),
            *activity_definitions_from_protocol(protocol),
        ):
            entries.append({"fullUrl": resource["url"], "resource": resource})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
