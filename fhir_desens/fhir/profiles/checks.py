"""Checking: what Medplum's validator does not enforce.

Medplum applies a profile's cardinality, fixed values, patterns and slices to the *top-level* elements
only, and checks no code bindings. :func:`profile_checks` applies every constraint of our differentials at
every depth (nested actions, dosage, sub-extensions), checks the required bindings they state, checks UCUM
codes, refuses R4B-only ``subjectCanonical`` and checks the references between steps, solutions and
actions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.profiles.differentials import PROFILES, ProfileSpec
from fhir_desens.fhir.profiles.element_index import (
    Frozen,
    Interpreter,
    Issue,
    frozen,
    json_list,
    make_issue,
)
from fhir_desens.fhir.profiles.extensions import EXTENSIONS, ExtensionSpec, extension_differential
from fhir_desens.fhir.profiles.ucum import ucum_problem
from fhir_desens.io.json import is_object


def _differentials() -> tuple[dict[str, ProfileSpec], dict[str, tuple[ExtensionSpec, list[dict[str, Any]]]]]:
    profiles = {p.url: p for p in PROFILES}
    extensions = {e.url: (e, extension_differential(e)) for e in EXTENSIONS}
    return profiles, extensions


_PROFILES, _EXTENSIONS = _differentials()


def _walk(value: Any, expression: str, path: str) -> Iterator[tuple[Mapping[str, Any], str, str]]:
    """Every object in a resource: (object, expression, element path without indices)."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, list) or is_object(item):
                yield from _walk(item, f"{expression}[{i}]", path)
    elif is_object(value):
        yield value, expression, path
        for key, child in value.items():
            if key == "resourceType":
                continue
            if is_object(child):
                if isinstance(child.get("resourceType"), str):
                    continue  # a contained/nested resource: checked on its own
            elif not isinstance(child, list):
                continue  # a primitive holds no object
            yield from _walk(child, f"{expression}.{key}", f"{path}.{key}")


@lru_cache(maxsize=1024)
def _in_context(path: str, contexts: Sequence[str]) -> bool:
    path = re.sub(r"(\.action)+", ".action", path)  # nested actions are PlanDefinition.action too
    return path in contexts


def _ucum_issues(quantity: Mapping[str, Any], where: str) -> list[Issue]:
    if quantity.get("system") != c.UCUM:
        return [make_issue("error", "value", f"quantity system must be {c.UCUM}", where)]
    code = quantity.get("code")
    if not isinstance(code, str):
        return [make_issue("error", "required", "a UCUM quantity needs a code", where)]
    problem = ucum_problem(code)
    return [make_issue("error", "code-invalid", problem, f"{where}.code")] if problem else []


def _walk_issues(resource: Mapping[str, Any], root: str) -> list[Issue]:
    """One walk over the resource: our extensions, then UCUM quantities, then ``subjectCanonical``."""
    extensions: list[Issue] = []
    quantities: list[Issue] = []
    subject_canonical: list[Issue] = []
    for node, expression, path in _walk(resource, root, str(resource.get("resourceType", ""))):
        extensions += _node_extension_issues(node, expression, path)
        if (
            node.get("system") == c.UCUM
            and ("value" in node or "code" in node)
            and ".extension[" not in expression
        ):
            quantities += _ucum_issues(node, expression)  # ours are checked with their extension
        if "subjectCanonical" in node:
            text = "subjectCanonical is R4B-only: not allowed in FHIR R4"
            subject_canonical.append(make_issue("error", "structure", text, f"{expression}.subjectCanonical"))
    return extensions + quantities + subject_canonical


def _node_extension_issues(node: Mapping[str, Any], expression: str, path: str) -> list[Issue]:
    issues: list[Issue] = []
    for i, extension in enumerate(json_list(node.get("extension"))):
        if not isinstance(extension, Mapping):
            continue
        url = extension.get("url")
        where = f"{expression}.extension[{i}]"
        if not isinstance(url, str) or not url.startswith(c.CANONICAL_BASE + "/"):
            continue
        if url not in _EXTENSIONS:
            issues.append(make_issue("error", "structure", f"unknown fhir-desens extension {url}", where))
            continue
        spec = _EXTENSIONS[url][0]
        if not _in_context(path, spec.contexts):
            issues.append(make_issue("error", "structure", f"extension {spec.id} is not allowed on {path} "
                                 f"(contexts: {', '.join(spec.contexts)})", where))  # fmt: skip
        key = (url, frozen(extension))
        found = _EXTENSION_ISSUES.get(key)
        if found is None:
            if len(_EXTENSION_ISSUES) >= _EXTENSION_ISSUES_KEPT:
                _EXTENSION_ISSUES.clear()
            found = _EXTENSION_ISSUES[key] = _extension_content_issues(url, extension)
        issues += _rooted(found, where)
    return issues


_ROOT = "$extension"
#: The issues of each distinct extension checked lately (a package repeats its steps' extensions in
#: every version): (url, frozen content) -> issues with expressions from :data:`_ROOT`.
_EXTENSION_ISSUES: dict[tuple[str, Frozen], tuple[Issue, ...]] = {}
_EXTENSION_ISSUES_KEPT = 4096


def _extension_content_issues(url: str, value: Mapping[str, Any]) -> tuple[Issue, ...]:
    """The issues of one extension's content (its differential, its UCUM quantities), expressions
    from :data:`_ROOT`: they depend on nothing else, so each distinct extension is checked once."""
    spec, differential = _EXTENSIONS[url]
    issues = Interpreter(spec.id, differential, value, _ROOT).check()
    for j, sub in enumerate(json_list(value.get("extension"))):
        for key in ("valueQuantity", "valueDuration"):
            if isinstance(sub, Mapping) and isinstance(sub.get(key), Mapping):
                issues += _ucum_issues(sub[key], f"{_ROOT}.extension[{j}].{key}")
    for key in ("valueQuantity", "valueDuration"):
        if isinstance(value.get(key), Mapping):
            issues += _ucum_issues(value[key], f"{_ROOT}.{key}")
    return tuple(issues)


def _rooted(issues: Sequence[Issue], where: str) -> list[Issue]:
    """Fresh copies of cached issues, their expressions under ``where``."""
    return [
        {
            **issue,
            "details": dict(issue["details"]),
            "expression": [where + e[len(_ROOT) :] for e in issue["expression"]],
        }
        for issue in issues
    ]


def _sub_values(extension: Mapping[str, Any], name: str) -> list[Any]:
    return [
        value
        for sub in json_list(extension.get("extension"))
        if isinstance(sub, Mapping) and sub.get("url") == name
        for key, value in sub.items()
        if key.startswith("value")
    ]


def _actions_issues(actions: Any, expression: str) -> list[Issue]:
    """relatedAction.actionId must name a sibling action; action ids must be unique."""
    if not isinstance(actions, list):
        return []
    ids = [a.get("id") for a in actions if isinstance(a, Mapping)]
    issues = []
    duplicates = sorted({i for i in ids if i is not None and ids.count(i) > 1})
    if duplicates:
        issues.append(
            make_issue("error", "invariant", f"duplicate action ids: {', '.join(duplicates)}", expression)
        )
    for i, action in enumerate(actions):
        if not isinstance(action, Mapping):
            continue
        for j, related in enumerate(json_list(action.get("relatedAction"))):
            if isinstance(related, Mapping) and related.get("actionId") not in ids:
                issues.append(make_issue("error", "invariant", f"relatedAction.actionId {related.get('actionId')!r} "
                                     "names no action of this group", f"{expression}[{i}].relatedAction[{j}]"))  # fmt: skip
    return issues


def _protocol_issues(resource: Mapping[str, Any], root: str) -> list[Issue]:
    issues: list[Issue] = []
    extensions = [e for e in json_list(resource.get("extension")) if isinstance(e, Mapping)]
    numbers = [n for e in extensions if e.get("url") == c.EXT_SOLUTION for n in _sub_values(e, "number")]
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1}, key=str)
    if duplicates:
        issues.append(
            make_issue("error", "invariant", f"duplicate solution numbers: {duplicates}", f"{root}.extension")
        )
    settings = [e for e in extensions if e.get("url") == c.EXT_PROTOCOL_SETTINGS]
    allowed = {e.get("valueCode") for e in extensions if e.get("url") == c.EXT_CLOSING_METHOD}
    listed = set(_sub_values(settings[0], "closingMethod")) if settings else set()
    if allowed and listed and allowed != listed:
        issues.append(make_issue("warning", "invariant", "the closing methods of the desens-closing-method "
                             "extensions and of settings.closingMethod differ", f"{root}.extension"))  # fmt: skip
    for g, group in enumerate(json_list(resource.get("action"))):
        if not isinstance(group, Mapping):
            continue
        steps = group.get("action")
        issues += _actions_issues(steps, f"{root}.action[{g}].action")
        for s, step in enumerate(steps if isinstance(steps, list) else []):
            for extension in json_list(step.get("extension")) if isinstance(step, Mapping) else []:
                if isinstance(extension, Mapping) and extension.get("url") == c.EXT_STEP:
                    for number in _sub_values(extension, "solution"):
                        if number not in numbers:
                            issues.append(make_issue("error", "invariant", f"step uses solution {number}, which the "
                                                 "protocol does not define", f"{root}.action[{g}].action[{s}]"))  # fmt: skip
    return issues


_SEMANTIC: dict[str, Callable[[Mapping[str, Any], str], list[Issue]]] = {
    c.PROFILE_PROTOCOL: _protocol_issues,
    c.PROFILE_SESSION: lambda resource, root: _actions_issues(resource.get("action"), f"{root}.action"),
}


def profile_checks(resource: Any, profile: str | None = None) -> list[Issue]:
    """Issues (OperationOutcome.issue dicts) Medplum's validator misses; empty when none.

    The profiles applied are ``profile`` when given, else the ones of ours in ``meta.profile``.
    Whatever the profile, our extensions are checked wherever they occur (context, sub-extensions,
    codes, UCUM), ``subjectCanonical`` is refused, and UCUM quantities need valid UCUM codes. A
    Bundle's entries are checked one by one, each against its own ``meta.profile``; expressions
    then start with ``Bundle.entry[i].resource``. Never raises, whatever the input.
    """
    return _checks(resource, profile, None)


def _checks(resource: Any, profile: str | None, root: str | None) -> list[Issue]:
    if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
        return [make_issue("error", "structure", "not a FHIR resource (no resourceType)", root or "$this")]
    resource_type = resource["resourceType"]
    root = root or resource_type
    issues: list[Issue] = []
    if resource_type == "Bundle":
        for i, entry in enumerate(json_list(resource.get("entry"))):
            if isinstance(entry, Mapping) and "resource" in entry:
                issues += _checks(entry["resource"], None, f"{root}.entry[{i}].resource")
        return issues
    meta = resource.get("meta")
    declared = json_list(meta.get("profile")) if isinstance(meta, Mapping) else []
    wanted = [profile] if profile else [p for p in declared if isinstance(p, str)]
    for canonical in wanted:
        url = canonical.split("|", 1)[0]
        spec = _PROFILES.get(url)
        if spec is None:
            if profile:
                issues.append(
                    make_issue("error", "not-found", f"not a fhir-desens profile: {canonical}", root)
                )
            continue
        if spec.type != resource_type:
            issues.append(
                make_issue(
                    "error", "invalid", f"profile {spec.id} is for {spec.type}, not {resource_type}", root
                )
            )
            continue
        issues += Interpreter(spec.id, spec.elements, resource, root).check()
        if url in _SEMANTIC:
            issues += _SEMANTIC[url](resource, root)
    issues += _walk_issues(resource, root)
    return issues
