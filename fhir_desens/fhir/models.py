"""The one module that names the FHIR release and the model import path.

We speak FHIR R4 (4.0.1) on the wire. The typed models come from ``fhir.resources.R4B`` (4.3.0),
the R4-compatible release of fhir.resources; the top-level ``fhir.resources.<x>`` modules are R5
and must never be imported (``tests/unit/test_fhir_release.py`` enforces it). Everything else in
the project imports model classes from here, either by name
(``from fhir_desens.fhir.models import Patient``) or with :func:`model_class`.

**Raw dicts are the source of truth; models are for validation and typing.** fhir.resources keeps
a ``Decimal("0.50")`` inside the model but writes it back as ``0.5`` (a float) when dumping.
:func:`to_fhir_dict` puts the model's own ``Decimal`` objects back where it can, but only a raw
dict read with :func:`fhir_desens.io.json.loads` is guaranteed to keep every decimal's text.

The model classes are imported lazily on first use: importing this module is cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

from fhir_desens.errors import MappingError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pydantic import ValidationError

__all__ = [
    "FHIR_VERSION",
    "MODEL_PACKAGE",
    "MODEL_RELEASE",
    "R4B_ONLY_ELEMENTS",
    "USED_RESOURCE_TYPES",
    "ActivityDefinition",
    "AllergyIntolerance",
    "Bundle",
    "CodeSystem",
    "Condition",
    "Device",
    "Encounter",
    "Medication",
    "MedicationAdministration",
    "MedicationRequest",
    "Observation",
    "OperationOutcome",
    "Organization",
    "Parameters",
    "Patient",
    "PlanDefinition",
    "Practitioner",
    "Procedure",
    "Provenance",
    "RequestGroup",
    "StructureDefinition",
    "ValueSet",
    "element_model_class",
    "is_resource_type",
    "model_class",
    "parse_resource",
    "to_fhir_dict",
    "try_parse",
]

#: The FHIR version we read and write.
FHIR_VERSION = "4.0.1"
#: The fhir.resources release used for the typed models (R4-compatible; there is no plain R4).
MODEL_RELEASE = "R4B"
#: The import path of the model package. Nothing else in the project may spell it.
MODEL_PACKAGE = "fhir.resources.R4B"

#: Elements that exist in the R4B models but not in R4 4.0.1: they must never reach an R4 server.
R4B_ONLY_ELEMENTS: frozenset[str] = frozenset({"subjectCanonical"})

#: The resource types the project uses, each importable from this module by name.
USED_RESOURCE_TYPES: tuple[str, ...] = (
    "ActivityDefinition",
    "AllergyIntolerance",
    "Bundle",
    "CodeSystem",
    "Condition",
    "Device",
    "Encounter",
    "Medication",
    "MedicationAdministration",
    "MedicationRequest",
    "Observation",
    "OperationOutcome",
    "Organization",
    "Parameters",
    "Patient",
    "PlanDefinition",
    "Practitioner",
    "Procedure",
    "Provenance",
    "RequestGroup",
    "StructureDefinition",
    "ValueSet",
)

if TYPE_CHECKING:  # pragma: no cover - the classes are untyped for mypy (ignore_missing_imports)
    ActivityDefinition: Any
    AllergyIntolerance: Any
    Bundle: Any
    CodeSystem: Any
    Condition: Any
    Device: Any
    Encounter: Any
    Medication: Any
    MedicationAdministration: Any
    MedicationRequest: Any
    Observation: Any
    OperationOutcome: Any
    Organization: Any
    Parameters: Any
    Patient: Any
    PlanDefinition: Any
    Practitioner: Any
    Procedure: Any
    Provenance: Any
    RequestGroup: Any
    StructureDefinition: Any
    ValueSet: Any


def __getattr__(name: str) -> Any:
    """Lazy attribute access for the re-exported model classes (PEP 562)."""
    if name in USED_RESOURCE_TYPES:
        cls = model_class(name)
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _model_package() -> Any:
    return importlib.import_module(MODEL_PACKAGE)


@cache
def element_model_class(type_name: str) -> Any:
    """The R4B model class for any FHIR type name: resource, data type or backbone element.

    Backbone elements use the fhir.resources naming (``PatientCommunication``, ``BundleEntry``).
    Raises :class:`MappingError` for a name the R4B models do not know.
    """
    if not type_name or not type_name.isidentifier():
        raise MappingError(f"{type_name!r} is not a FHIR type name")
    try:
        return _model_package().get_fhir_model_class(type_name)
    except (ValueError, ImportError, AttributeError) as exc:
        raise MappingError(f"{type_name!r} is not a FHIR {MODEL_RELEASE} type") from exc


def is_resource_type(type_name: str) -> bool:
    """True if ``type_name`` names a concrete resource type (not a data type or backbone element)."""
    try:
        cls = element_model_class(type_name)
    except MappingError:
        return False
    return bool(cls.has_resource_base()) and type_name not in {"Resource", "DomainResource"}


def model_class(resource_type: str) -> Any:
    """The R4B model class of a resource type, e.g. ``model_class("Patient")``.

    Raises :class:`MappingError` if ``resource_type`` is not a resource type.
    """
    if not isinstance(resource_type, str) or not is_resource_type(resource_type):
        raise MappingError(f"resourceType {resource_type!r} is not a FHIR {FHIR_VERSION} resource type")
    return element_model_class(resource_type)


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = str(part)
            if name.endswith("__ext"):
                name = "_" + name[: -len("__ext")]
            text += ("." if text else "") + name
    return text


def _issues_from(resource_type: str, exc: ValidationError) -> list[dict[str, str]]:
    issues: list[dict[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        path = _path(tuple(err.get("loc", ())))
        expression = f"{resource_type}.{path}" if path else resource_type
        code = "structure" if err.get("type") == "extra_forbidden" else "invalid"
        issues.append(
            {
                "severity": "error",
                "code": code,
                "expression": expression,
                "diagnostics": f"{expression}: {err.get('msg', 'invalid')}",
            }
        )
    return issues


def _resource_type_of(raw: Mapping[str, Any]) -> str:
    if not isinstance(raw, Mapping):
        raise MappingError(f"a FHIR resource must be a JSON object, not {type(raw).__name__}")
    resource_type = raw.get("resourceType")
    if not isinstance(resource_type, str):
        raise MappingError("resourceType: missing or not a string")
    return resource_type


def try_parse(raw: Mapping[str, Any]) -> tuple[Any | None, list[dict[str, str]]]:
    """Validate ``raw`` against the R4B model without raising on content problems.

    Returns ``(model, [])`` on success and ``(None, issues)`` otherwise, where each issue is an
    OperationOutcome-like dict with ``severity``, ``code``, ``expression`` and ``diagnostics``.
    Use it on read paths where an EHR's unknown element must not crash a read.
    """
    try:
        resource_type = _resource_type_of(raw)
        cls = model_class(resource_type)
    except MappingError as exc:
        return None, [{"severity": "error", "code": "structure", "expression": "", "diagnostics": str(exc)}]
    from pydantic import ValidationError

    try:
        return cls.model_validate(dict(raw)), []
    except ValidationError as exc:
        return None, _issues_from(resource_type, exc)
    except (ValueError, TypeError) as exc:  # validators in fhir.resources may raise these directly
        return None, [
            {"severity": "error", "code": "invalid", "expression": resource_type, "diagnostics": str(exc)}
        ]


def parse_resource(raw: Mapping[str, Any]) -> Any:
    """Validate ``raw`` against the R4B model; raise :class:`MappingError` naming the element paths."""
    model, issues = try_parse(raw)
    if model is None:
        shown = "; ".join(issue["diagnostics"] for issue in issues[:10])
        more = f" (and {len(issues) - 10} more)" if len(issues) > 10 else ""
        raise MappingError(f"not a valid FHIR {FHIR_VERSION} resource: {shown}{more}")
    return model


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _find_r4b_only(obj: Any, path: str) -> str | None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in R4B_ONLY_ELEMENTS or (key.startswith("_") and key[1:] in R4B_ONLY_ELEMENTS):
                return f"{path}.{key}" if path else key
            found = _find_r4b_only(value, f"{path}.{key}" if path else key)
            if found:
                return found
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found = _find_r4b_only(value, f"{path}[{index}]")
            if found:
                return found
    return None


def _restore_decimals(model: Any, dumped: Any) -> Any:
    """Replace the floats of a json-mode dump by the model's own Decimals (or exact conversions)."""
    if isinstance(dumped, float):
        if isinstance(model, Decimal):
            return model
        return Decimal(repr(dumped))
    if isinstance(dumped, dict):
        fields = getattr(type(model), "model_fields", None)
        if not fields:
            return {key: _restore_decimals(None, value) for key, value in dumped.items()}
        by_alias = {(info.alias or name): name for name, info in fields.items()}
        out: dict[str, Any] = {}
        for key, value in dumped.items():
            attr = by_alias.get(key)
            sub = getattr(model, attr, None) if attr else None
            out[key] = _restore_decimals(sub, value)
        return out
    if isinstance(dumped, list):
        subs = model if isinstance(model, list) and len(model) == len(dumped) else [None] * len(dumped)
        return [_restore_decimals(sub, value) for sub, value in zip(subs, dumped, strict=True)]
    return dumped


def to_fhir_dict(model: Any) -> dict[str, Any]:
    """Dump a model to a FHIR JSON dict (aliases, no ``None``), with ``Decimal`` for every decimal.

    The decimals are the model's own ``Decimal`` objects where the model kept them, so their text
    survives; no float is ever returned. Raises :class:`MappingError` if an R4B-only element
    (``subjectCanonical``) is present: it must not be sent to an R4 server.
    """
    dump = getattr(model, "model_dump", None)
    if dump is None:
        raise MappingError(f"not a FHIR model: {type(model).__name__}")
    dumped = dump(mode="json", by_alias=True, exclude_none=True)
    result = _restore_decimals(model, dumped)
    if not isinstance(result, dict):  # pragma: no cover - a model always dumps to an object
        raise MappingError("model did not dump to a JSON object")
    found = _find_r4b_only(result, "")
    if found:
        raise MappingError(f"{found}: element exists only in R4B and must not be written to an R4 server")
    return result
