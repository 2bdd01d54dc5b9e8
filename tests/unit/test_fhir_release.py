"""Only the R4B models may be imported: the top-level ``fhir.resources.<x>`` modules are R5.

Scans the source of fhir_desens/, smart_app/, tests/ and benchmarks/ with ``ast`` (imports,
``from`` imports and ``importlib.import_module``/``__import__`` calls with a literal name), and
checks that inside the shipped packages only ``fhir_desens/fhir/models.py`` names the model
package at all.
"""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import pytest

from fhir_desens.errors import MappingError
from fhir_desens.fhir import models
from fhir_desens.io.json import dumps

SCANNED = ("fhir_desens", "smart_app", "tests", "benchmarks")
SHIPPED = ("fhir_desens", "smart_app")
MODELS_MODULE = Path("fhir_desens/fhir/models.py")

# below fhir.resources only these are allowed: the R4B models and the release-neutral type helpers
ALLOWED_SUBMODULES = frozenset({"R4B", "fhirtypes"})


def _allowed_module(module: str) -> bool:
    """True if importing ``module`` cannot give an R5 model."""
    parts = module.split(".")
    if parts[:2] != ["fhir", "resources"]:
        return True  # ``from fhir import resources`` is caught by the from-import check
    if len(parts) == 2:
        return True  # ``import fhir.resources`` alone names no model
    return parts[2] in ALLOWED_SUBMODULES


def violations(source: str, filename: str = "<string>") -> list[str]:
    """Each R5-capable import in ``source``, as ``line: text``."""
    found: list[str] = []
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _allowed_module(alias.name):
                    found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            for alias in node.names:
                if module == "fhir" and alias.name == "resources":
                    found.append(f"{node.lineno}: from fhir import resources")
                elif (
                    module == "fhir.resources" and alias.name not in ALLOWED_SUBMODULES
                ) or not _allowed_module(module):
                    found.append(f"{node.lineno}: from {module} import {alias.name}")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                name in {"import_module", "__import__"}
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and first.value.startswith("fhir.resources")
                and not _allowed_module(first.value)
            ):
                found.append(f"{node.lineno}: {name}({first.value!r})")
    return found


def _sources(repo_root: Path, folders: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        base = repo_root / folder
        if base.is_dir():
            files.extend(
                p for p in base.rglob("*.py") if ".venv" not in p.parts and "node_modules" not in p.parts
            )
    return sorted(files)


def test_no_module_imports_an_r5_model(repo_root: Path) -> None:
    sources = _sources(repo_root, SCANNED)
    assert any(p.relative_to(repo_root) == MODELS_MODULE for p in sources)  # the scan sees the tree
    problems = {
        str(path.relative_to(repo_root)): found
        for path in sources
        if (found := violations(path.read_text(encoding="utf-8"), str(path)))
    }
    assert problems == {}, "R5 fhir.resources imports (use fhir_desens.fhir.models, R4B): " + repr(problems)


def test_only_the_models_module_names_the_model_package(repo_root: Path) -> None:
    named: list[str] = []
    for path in _sources(repo_root, SHIPPED):
        if path.relative_to(repo_root) == MODELS_MODULE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            module = None
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                module = node.module
            elif isinstance(node, ast.Import):
                module = next((a.name for a in node.names if a.name.startswith("fhir.resources")), None)
            if module and module.startswith("fhir.resources"):
                named.append(f"{path.relative_to(repo_root)}:{getattr(node, 'lineno', '?')}")
    assert named == [], "import model classes from fhir_desens.fhir.models instead: " + repr(named)


def test_models_module_names_the_r4b_release() -> None:
    assert models.MODEL_PACKAGE == "fhir.resources.R4B"
    assert models.FHIR_VERSION == "4.0.1"
    for name in models.USED_RESOURCE_TYPES:
        cls = getattr(models, name)
        assert cls.__module__.startswith("fhir.resources.R4B."), (name, cls.__module__)
        assert models.model_class(name) is cls


R5 = "fhir.resources"  # the top level of fhir.resources is the R5 release


@pytest.mark.parametrize(
    "source",
    [
        f"import {R5}.patient",
        f"import {R5}.patient as p",
        f"from {R5}.patient import Patient",
        "from fhir.resources import patient",
        "from fhir.resources import construct_fhir_element",
        "from fhir import resources",
        "import importlib\nimportlib.import_module('fhir.resources.bundle')",
        "__import__('fhir.resources.plandefinition')",
        f"def f():\n    from {R5}.medicationrequest import MedicationRequest",
    ],
)
def test_the_scanner_catches_r5_imports(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "from fhir.resources.R4B.patient import Patient",
        "import fhir.resources.R4B.bundle",
        "from fhir.resources import R4B",
        "from fhir.resources.fhirtypes import String",
        "import fhir.resources",
        "import importlib\nimportlib.import_module('fhir.resources.R4B')",
        "from fhir_core.fhirabstractmodel import FHIRAbstractModel",
        "from fhir_desens.fhir.models import Patient",
        "from .patient import Patient",
    ],
)
def test_the_scanner_allows_r4b_and_helpers(source: str) -> None:
    assert violations(source) == []


# ---------------------------------------------------------------- the helpers of fhir_desens.fhir.models


def test_model_class_knows_resources_only() -> None:
    assert models.model_class("AllergyIntolerance").__name__ == "AllergyIntolerance"
    for not_a_resource in ("HumanName", "PatientCommunication", "Resource", "Nonsense", "", "a.b"):
        with pytest.raises(MappingError, match=r"not a FHIR 4\.0\.1 resource type"):
            models.model_class(not_a_resource)


def test_parse_resource_names_the_element_paths() -> None:
    raw = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": "abc"},
        "component": [{"code": {"text": "c"}, "unknownThing": 1}],
    }
    with pytest.raises(MappingError) as info:
        models.parse_resource(raw)
    message = str(info.value)
    assert "Observation.valueQuantity.value" in message
    assert "Observation.component[0].unknownThing" in message


def test_try_parse_returns_issues_instead_of_raising() -> None:
    model, issues = models.try_parse({"resourceType": "AllergyIntolerance", "patient": {}, "ehrOnly": True})
    assert model is None
    assert {(i["expression"], i["code"], i["severity"]) for i in issues} == {
        ("AllergyIntolerance.ehrOnly", "structure", "error"),
    }
    assert models.try_parse({"no": "type"})[0] is None
    assert models.try_parse({"resourceType": "Nope"})[1][0]["code"] == "structure"
    model, issues = models.try_parse({"resourceType": "Patient", "active": True})
    assert issues == [] and model is not None and model.active is True


def test_to_fhir_dict_keeps_the_decimal_text_and_never_returns_float() -> None:
    raw = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p"},
        "medicationCodeableConcept": {"text": "drug"},
        "dosageInstruction": [
            {"doseAndRate": [{"doseQuantity": {"value": Decimal("0.50"), "unit": "mg"}}]},
            {"doseAndRate": [{"doseQuantity": {"value": Decimal("12.000"), "unit": "mg"}}]},
        ],
    }
    dumped = models.to_fhir_dict(models.parse_resource(raw))
    values = [d["doseAndRate"][0]["doseQuantity"]["value"] for d in dumped["dosageInstruction"]]
    assert [type(v) for v in values] == [Decimal, Decimal]
    assert [str(v) for v in values] == ["0.50", "12.000"]
    assert dumps(dumped, sort_keys=True) == dumps(raw, sort_keys=True)


def test_to_fhir_dict_refuses_r4b_only_elements() -> None:
    plan = models.parse_resource(
        {
            "resourceType": "PlanDefinition",
            "status": "draft",
            "action": [{"title": "step", "subjectCanonical": "http://example.org/x"}],
        }
    )
    with pytest.raises(MappingError, match=r"action\[0\]\.subjectCanonical: element exists only in R4B"):
        models.to_fhir_dict(plan)
