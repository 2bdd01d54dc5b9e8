"""Building: the files of ``profiles/`` (StructureDefinitions with differential *and* snapshot,
CodeSystems, ValueSets, the ImplementationGuide resource, ``package.json`` and ``.index.json``),
and comparing or writing them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.profiles.differentials import PROFILES
from fhir_desens.fhir.profiles.extensions import EXTENSIONS, extension_differential
from fhir_desens.fhir.profiles.paths import default_definitions_dir
from fhir_desens.fhir.profiles.snapshot import BaseDefinitions, SnapshotBuilder
from fhir_desens.fhir.profiles.terminology import (
    CODE_SYSTEMS,
    HL7_SD,
    IMPLEMENTATION_GUIDE,
    LICENSE,
    PUBLISHER,
    VALUE_SETS,
    CodeSystemSpec,
    ValueSetSpec,
)


def _snapshot_and_differential(
    definitions: BaseDefinitions, base_url: str, differential: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(snapshot elements, differential in snapshot order, mapping declarations used)."""
    base = definitions.get(base_url)
    snapshot = SnapshotBuilder(definitions, base).apply(differential)
    order = {element["id"]: i for i, element in enumerate(snapshot)}
    ordered = sorted((copy.deepcopy(dict(d)) for d in differential), key=lambda d: order[d["id"]])
    used = {m["identity"] for element in snapshot for m in element.get("mapping", [])}
    declared: dict[str, dict[str, Any]] = {}
    for sd in (base, *definitions.by_url.values()):
        for mapping in sd.get("mapping", []):
            if mapping["identity"] in used and mapping["identity"] not in declared:
                declared[mapping["identity"]] = copy.deepcopy(mapping)
        if set(declared) == used:
            break
    mappings = [declared[identity] for identity in sorted(declared)]
    return snapshot, ordered, mappings


def _conformance_header(
    resource_type: str, *, id_: str, url: str, name: str, title: str, description: str
) -> dict[str, Any]:
    """The metadata every conformance resource of this guide starts with: the guide's version, active,
    not experimental, its publisher."""
    return {
        "resourceType": resource_type,
        "id": id_,
        "url": url,
        "version": c.IG_VERSION,
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
        "description": description,
    }


def _structure_definition(
    definitions: BaseDefinitions,
    *,
    url: str,
    name: str,
    title: str,
    description: str,
    kind: str,
    type_: str,
    differential: Sequence[Mapping[str, Any]],
    context: Sequence[str] = (),
) -> dict[str, Any]:
    base_url = HL7_SD + type_
    snapshot, ordered, mappings = _snapshot_and_differential(definitions, base_url, differential)
    sd = _conformance_header(
        "StructureDefinition",
        id_=url.rsplit("/", 1)[1],
        url=url,
        name=name,
        title=title,
        description=description,
    )
    sd["fhirVersion"] = c.FHIR_VERSION
    if mappings:
        sd["mapping"] = mappings
    sd["kind"] = kind
    sd["abstract"] = False
    if context:
        sd["context"] = [{"type": "element", "expression": expression} for expression in context]
    sd.update(
        {
            "type": type_,
            "baseDefinition": base_url,
            "derivation": "constraint",
            "snapshot": {"element": snapshot},
            "differential": {"element": ordered},
        }
    )
    return sd


def _terminology_header(resource_type: str, spec: CodeSystemSpec | ValueSetSpec) -> dict[str, Any]:
    """The conformance header of a CodeSystem or ValueSet from its spec."""
    return _conformance_header(
        resource_type,
        id_=spec.id,
        url=spec.url,
        name=spec.name,
        title=spec.title,
        description=spec.description,
    )


def _code_system(spec: CodeSystemSpec) -> dict[str, Any]:
    return {
        **_terminology_header("CodeSystem", spec),
        "caseSensitive": True,
        "valueSet": spec.value_set,
        "content": "complete",
        "count": len(spec.concepts),
        "concept": [
            {"code": k.code, "display": k.display, "definition": k.definition} for k in spec.concepts
        ],
    }


def _value_set(spec: ValueSetSpec) -> dict[str, Any]:
    include: dict[str, Any] = {"system": spec.system}
    if spec.codes:
        include["concept"] = [{"code": k.code, "display": k.display} for k in spec.codes]
    return {
        **_terminology_header("ValueSet", spec),
        "immutable": False,
        "compose": {"include": [include]},
    }


GUIDE_TITLE = "fhir-desens: rapid drug desensitization protocols and sessions"
GUIDE_DESCRIPTION = (
    "Profiles, extensions and terminology for exchanging rapid drug desensitization protocols between "
    "hospitals as PlanDefinitions (one ActivityDefinition per step), and for ordering a session for one "
    "patient as a RequestGroup of step MedicationRequests."
)


def _example_entries(examples_dir: Path | None) -> list[dict[str, Any]]:
    if examples_dir is None or not examples_dir.is_dir():
        return []
    entries = []
    for path in sorted(examples_dir.glob("*.json")):
        resource = json.loads(path.read_text("utf-8"))
        profiles = resource.get("meta", {}).get("profile", [])
        entry: dict[str, Any] = {
            "reference": {"reference": f"{resource['resourceType']}/{resource['id']}"},
            "name": resource.get("title")
            or resource.get("name")
            or f"{resource['resourceType']} {resource['id']}",
        }
        if profiles:
            entry["exampleCanonical"] = profiles[0]
        else:
            entry["exampleBoolean"] = True
        entries.append(entry)
    return entries


def _implementation_guide(
    conformance: Sequence[Mapping[str, Any]], examples: list[dict[str, Any]]
) -> dict[str, Any]:
    resources = [
        {
            "reference": {"reference": f"{r['resourceType']}/{r['id']}"},
            "name": r.get("title") or r["name"],
            "description": r["description"],
            "exampleBoolean": False,
        }
        for r in conformance
    ]
    return {
        **_conformance_header(
            "ImplementationGuide",
            id_=c.IG_PACKAGE_NAME,
            url=IMPLEMENTATION_GUIDE,
            name="FhirDesensIG",
            title=GUIDE_TITLE,
            description=GUIDE_DESCRIPTION,
        ),
        "packageId": c.IG_PACKAGE_NAME,
        "license": LICENSE,
        "fhirVersion": [c.FHIR_VERSION],
        "definition": {"resource": resources + examples},
    }


def _package_json() -> dict[str, Any]:
    return {
        "name": c.IG_PACKAGE_NAME,
        "version": c.IG_VERSION,
        "canonical": c.CANONICAL_BASE,
        "url": c.CANONICAL_BASE,
        "title": GUIDE_TITLE,
        "description": GUIDE_DESCRIPTION,
        "fhirVersions": [c.FHIR_VERSION],
        "dependencies": {"hl7.fhir.r4.core": c.FHIR_VERSION},
        "author": PUBLISHER,
        "license": LICENSE,
        "type": "fhir.ig",
    }


def _index_json(files: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    entries = []
    for filename, resource in files.items():
        entry = {
            "filename": filename,
            "resourceType": resource["resourceType"],
            "id": resource["id"],
            "url": resource["url"],
            "version": resource["version"],
        }
        if resource["resourceType"] == "StructureDefinition":
            entry.update({"kind": resource["kind"], "type": resource["type"]})
        entries.append(entry)
    return {"index-version": 1, "files": entries}


def build_guide(
    definitions_dir: Path | None = None, examples_dir: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Every generated file of ``profiles/``: file name -> JSON content (deterministic)."""
    definitions = BaseDefinitions(definitions_dir or default_definitions_dir())
    conformance: list[dict[str, Any]] = []
    for profile in PROFILES:
        conformance.append(
            _structure_definition(
                definitions,
                url=profile.url,
                name=profile.name,
                title=profile.title,
                description=profile.description,
                kind="resource",
                type_=profile.type,
                differential=profile.elements,
            )
        )
    for extension in EXTENSIONS:
        conformance.append(
            _structure_definition(
                definitions,
                url=extension.url,
                name=extension.name,
                title=extension.title,
                description=extension.description,
                kind="complex-type",
                type_="Extension",
                differential=extension_differential(extension),
                context=extension.contexts,
            )
        )
    conformance += [_code_system(cs) for cs in CODE_SYSTEMS]
    conformance += [_value_set(vs) for vs in VALUE_SETS]
    files: dict[str, dict[str, Any]] = {f"{r['resourceType']}-{r['id']}.json": r for r in conformance}
    guide = _implementation_guide(conformance, _example_entries(examples_dir))
    files[f"ImplementationGuide-{guide['id']}.json"] = guide
    index = _index_json(files)
    files["package.json"] = _package_json()
    files[".index.json"] = index
    return files


def render(content: Mapping[str, Any]) -> str:
    """The committed text of a generated file."""
    return json.dumps(content, indent=2, ensure_ascii=False) + "\n"


#: The file names of ``profiles/`` that the build owns (anything else there is authored by hand).
GENERATED_PATTERNS = (
    "StructureDefinition-*.json",
    "CodeSystem-*.json",
    "ValueSet-*.json",
    "ImplementationGuide-*.json",
)
GENERATED_NAMES = ("package.json", ".index.json")


def _generated_on_disk(directory: Path) -> set[str]:
    names = {p.name for pattern in GENERATED_PATTERNS for p in directory.glob(pattern)}
    return names | {name for name in GENERATED_NAMES if (directory / name).exists()}


def compare_guide(directory: Path, files: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Differences between ``directory`` and a fresh build: one line per file, empty when equal."""
    problems = []
    for name, content in files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"missing: {name}")
        elif path.read_text("utf-8") != render(content):
            problems.append(f"differs from a fresh build: {name}")
    problems += [
        f"stale (no longer generated): {name}" for name in sorted(_generated_on_disk(directory) - set(files))
    ]
    return problems


def write_guide(directory: Path, files: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Write the generated files (and remove stale ones); returns the names written or removed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name in sorted(_generated_on_disk(directory) - set(files)):
        (directory / name).unlink()
        changed.append(f"removed {name}")
    for name, content in files.items():
        path = directory / name
        text = render(content)
        if not path.is_file() or path.read_text("utf-8") != text:
            path.write_text(text, "utf-8")
            changed.append(f"wrote {name}")
    return changed
