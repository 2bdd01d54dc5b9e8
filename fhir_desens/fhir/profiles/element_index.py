"""Checking: the constraints of a differential applied to one instance, at every depth."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fhir_desens.fhir.profiles.terminology import value_set_codes

Issue = dict[str, Any]


def make_issue(severity: str, code: str, text: str, expression: str) -> Issue:
    return {"severity": severity, "code": code, "details": {"text": text}, "expression": [expression]}


Node = tuple[Any, str]  # (value, FHIRPath-like expression)


#: A JSON value made hashable, types and exact spellings kept (``Decimal("1.0")`` is not ``1``).
Frozen = tuple[Any, ...]


def frozen(value: Any) -> Frozen:
    """``value`` as a hashable key: equal keys mean JSON values every check treats alike (same
    types, same spellings, same key order)."""
    if isinstance(value, Mapping):
        return ("{", tuple((key, frozen(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("[", tuple(frozen(item) for item in value))
    return (type(value).__name__, repr(value))


def _cardinality(value: str) -> float:
    return float("inf") if value == "*" else float(value)


def json_list(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else nothing (the checks never trust the input's shape)."""
    return value if isinstance(value, list) else []


def _choice_key(node: Mapping[str, Any], name: str, types: Sequence[str] | None) -> list[tuple[str, str]]:
    """Keys of ``node`` that are values of the choice element ``name[x]``: (key, type code)."""
    stem = name[:-3]
    found = []
    for key in node:
        suffix = key[len(stem) :] if key.startswith(stem) else ""
        type_code = _PRIMITIVE_SUFFIXES.get(suffix, suffix if suffix in _COMPLEX_TYPES else "")
        if type_code and (types is None or type_code in types):
            found.append((key, type_code))
    return found


_PRIMITIVES = (
    "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant", "integer",
    "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid",
)  # fmt: skip
_PRIMITIVE_SUFFIXES = {p[0].upper() + p[1:]: p for p in _PRIMITIVES}
_COMPLEX_TYPES = frozenset(
    {"Address", "Age", "Annotation", "Attachment", "CodeableConcept", "Coding", "ContactPoint", "Count",
     "Distance", "Duration", "HumanName", "Identifier", "Money", "Period", "Quantity", "Range", "Ratio",
     "Reference", "SampledData", "Signature", "Timing", "ContactDetail", "Contributor", "DataRequirement",
     "Expression", "ParameterDefinition", "RelatedArtifact", "TriggerDefinition", "UsageContext", "Dosage", "Meta"}
)  # fmt: skip


def _values(value: Any, expression: str) -> list[Node]:
    if isinstance(value, list):
        return [(item, f"{expression}[{i}]") for i, item in enumerate(value)]
    return [(value, expression)]


def _deep_includes(value: Any, pattern: Any) -> bool:
    if isinstance(pattern, Mapping):
        return isinstance(value, Mapping) and all(
            k in value and _deep_includes(value[k], v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(_deep_includes(v, p) for v in value) for p in pattern)
    return bool(value == pattern)


def _fixed_or_pattern(element: Mapping[str, Any]) -> tuple[str, Any] | None:
    for key, value in element.items():
        if key.startswith(_FIXED_OR_PATTERN):
            return key, value
    return None


_FIXED_OR_PATTERN = ("fixed", "pattern")


class Interpreter:
    """Applies the constraints of a differential to one instance, at every depth."""

    def __init__(
        self, name: str, elements: Sequence[Mapping[str, Any]], root: Any, root_expression: str
    ) -> None:
        self.name = name  # the profile's or extension's id, to label issues
        self.elements = {e["id"]: e for e in elements}
        self.root_id = elements[0]["id"]
        self.root = (root, root_expression)
        self.cache: dict[str, list[Node]] = {}

    def nodes(self, element_id: str) -> list[Node]:
        """Every instance value at ``element_id`` (slices filtered, choice types restricted)."""
        if element_id in self.cache:
            return self.cache[element_id]
        if element_id == self.root_id:
            result = [self.root]
        else:
            parent_id, name = element_id.rsplit(".", 1)
            result = []
            for parent, expression in self.nodes(parent_id):
                result += self.children(parent, expression, parent_id, name)
        self.cache[element_id] = result
        return result

    def children(self, parent: Any, expression: str, parent_id: str, name: str) -> list[Node]:
        if not isinstance(parent, Mapping):
            return []
        name, _, slice_name = name.partition(":")
        element_id = f"{parent_id}.{name}"
        if name.endswith("[x]"):
            spec = self.elements.get(element_id)
            types = [t["code"] for t in spec["type"]] if spec and "type" in spec else None
            found = []
            for key, _type in _choice_key(parent, name, types):
                found += _values(parent[key], f"{expression}.{key}")
        else:
            found = _values(parent.get(name), f"{expression}.{name}") if name in parent else []
        if slice_name:
            found = [node for node in found if self.in_slice(node[0], element_id, slice_name)]
        return found

    def in_slice(self, value: Any, sliced_id: str, slice_name: str) -> bool:
        sliced = self.elements.get(sliced_id, {})
        discriminators = sliced.get("slicing", {}).get("discriminator", [])
        if not discriminators or not isinstance(value, Mapping):
            return False
        for discriminator in discriminators:
            spec = self.elements.get(f"{sliced_id}:{slice_name}.{discriminator['path']}", {})
            expected = _fixed_or_pattern(spec)
            if expected is None or not _deep_includes(value.get(discriminator["path"]), expected[1]):
                return False
        return True

    def label(self, element_id: str) -> str:
        return f"{self.name} {element_id.split('.', 1)[1] if '.' in element_id else element_id}"

    def check(self) -> list[Issue]:
        issues: list[Issue] = []
        for element_id, element in self.elements.items():
            if element_id == self.root_id:
                continue
            parent_id, name = element_id.rsplit(".", 1)
            for parent, expression in self.nodes(parent_id):
                if not isinstance(parent, Mapping):
                    continue
                values = self.children(parent, expression, parent_id, name)
                issues += self._cardinality(element, values, parent, expression, name)
                for value, where in values:
                    issues += self._value(element, value, where)
                issues += self._closed(element, element_id, parent, expression, name)
        return issues

    def _cardinality(
        self,
        element: Mapping[str, Any],
        values: list[Node],
        parent: Mapping[str, Any],
        expression: str,
        name: str,
    ) -> list[Issue]:
        if name.endswith("[x]") and "type" in element:
            wrong = [key for key, type_code in _choice_key(parent, name.partition(":")[0], None)
                     if type_code not in [t["code"] for t in element["type"]]]  # fmt: skip
            if wrong:
                allowed = ", ".join(name[:-3] + t["code"][0].upper() + t["code"][1:] for t in element["type"])
                return [make_issue("error", "structure", f"{self.label(element['id'])}: {wrong[0]} is not allowed here (use {allowed})",
                               f"{expression}.{wrong[0]}")]  # fmt: skip
        count = len(values)
        low = element.get("min")
        high = element.get("max")
        if low is not None and count < low:
            return [
                make_issue(
                    "error",
                    "required",
                    f"{self.label(element['id'])}: {count} value(s), at least {low} required",
                    expression,
                )
            ]
        if high is not None and count > _cardinality(high):
            return [
                make_issue(
                    "error",
                    "structure",
                    f"{self.label(element['id'])}: {count} value(s), at most {high} allowed",
                    expression,
                )
            ]
        return []

    def _value(self, element: Mapping[str, Any], value: Any, where: str) -> list[Issue]:
        issues = []
        expected = _fixed_or_pattern(element)
        if expected is not None:
            key, wanted = expected
            ok = value == wanted if key.startswith("fixed") else _deep_includes(value, wanted)
            if not ok:
                issues.append(make_issue("error", "value", f"{self.label(element['id'])}: {json.dumps(value, default=str)} does not match "
                                     f"the required {json.dumps(wanted)}", where))  # fmt: skip
        binding = element.get("binding", {})
        codes = value_set_codes(binding["valueSet"]) if binding.get("strength") == "required" else None
        if codes is not None and isinstance(value, str) and value not in codes:
            issues.append(make_issue("error", "code-invalid", f"{self.label(element['id'])}: '{value}' is not in {binding['valueSet']} "
                                 f"({', '.join(sorted(codes))})", where))  # fmt: skip
        return issues

    def _closed(
        self,
        element: Mapping[str, Any],
        element_id: str,
        parent: Mapping[str, Any],
        expression: str,
        name: str,
    ) -> list[Issue]:
        if element.get("slicing", {}).get("rules") != "closed":
            return []
        slices = [e["sliceName"] for e in self.elements.values()
                  if e["id"].startswith(element_id + ":") and e["id"].count(":") == element_id.count(":") + 1
                  and "." not in e["id"][len(element_id):]]  # fmt: skip
        issues = []
        for value, where in _values(parent.get(name), f"{expression}.{name}") if name in parent else []:
            if not any(self.in_slice(value, element_id, s) for s in slices):
                url = value.get("url") if isinstance(value, Mapping) else None
                issues.append(make_issue("error", "structure", f"{self.label(element_id)}: unknown entry "
                                     f"{url!r} (allowed: {', '.join(slices)})", where))  # fmt: skip
        return issues
