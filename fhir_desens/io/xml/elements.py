"""The FHIR XML vocabulary (namespaces, element kinds, primitive types) and each element's metadata,
introspected lazily from the R4B models: what repeats, what type each primitive is, the element order."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from lxml import etree

from fhir_desens.errors import FhirFormatError, MappingError
from fhir_desens.fhir.models import element_model_class, is_resource_type

FHIR_NS: Final = "http://hl7.org/fhir"
XHTML_NS: Final = "http://www.w3.org/1999/xhtml"
#: Default upper bound on FHIR element nesting (libxml2 itself stops at 256 levels).
MAX_DEPTH: Final = 100
#: Largest accepted magnitude of a decimal's exponent (as in :mod:`fhir_desens.io.json`).
MAX_DECIMAL_EXPONENT: Final = 1000

FHIR_PREFIX: Final = "{" + FHIR_NS + "}"
XHTML_DIV: Final = "{" + XHTML_NS + "}div"
EXTENSION_TAG: Final = FHIR_PREFIX + "extension"
XHTML_VOID: Final = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
# lxml takes None as the key of the default namespace; lxml-stubs only allow str keys
FHIR_NSMAP: Final[Any] = {None: FHIR_NS}
XHTML_NSMAP: Final[Any] = {None: XHTML_NS}

# element kinds
PRIMITIVE: Final = 0
COMPLEX: Final = 1
RESOURCE: Final = 2
XHTML: Final = 3

# JSON representation of a primitive
J_STRING: Final = 0
J_BOOLEAN: Final = 1
J_INTEGER: Final = 2
_J_DECIMAL: Final = 3

_PRIMITIVE_BY_MARKER: Final = {
    "Base64Binary": "base64Binary",
    "Canonical": "canonical",
    "Code": "code",
    "Date": "date",
    "DateTime": "dateTime",
    "Decimal": "decimal",
    "Id": "id",
    "Instant": "instant",
    "Integer": "integer",
    "Integer64": "integer64",
    "Markdown": "markdown",
    "Oid": "oid",
    "PositiveInt": "positiveInt",
    "String": "string",
    "Time": "time",
    "UnsignedInt": "unsignedInt",
    "Uri": "uri",
    "Url": "url",
    "Uuid": "uuid",
    "UuidVersion": "uuid",
}
_J_BY_PRIMITIVE: Final = {
    "boolean": J_BOOLEAN,
    "integer": J_INTEGER,
    "positiveInt": J_INTEGER,
    "unsignedInt": J_INTEGER,
    "decimal": _J_DECIMAL,
}

INTEGER_RE: Final = re.compile(r"-?[0-9]+\Z")
DECIMAL_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")


@dataclass(frozen=True, slots=True)
class ElementInfo:
    name: str
    tag: str
    repeats: bool
    kind: int
    json_type: int
    fhir_type: str
    model: Any  # the element's model class for COMPLEX, else None


@dataclass(frozen=True, slots=True)
class TypeInfo:
    name: str
    is_resource: bool
    elements: dict[str, ElementInfo]  # in FHIR order
    index: dict[str, int]
    attributes: frozenset[str]  # element names that XML writes as attributes


_TYPES: dict[Any, TypeInfo] = {}


def _unwrap(annotation: Any) -> tuple[bool, Any, tuple[Any, ...]]:
    """(repeats, base type, Annotated metadata) of a pydantic field annotation."""
    repeats = False
    metadata: tuple[Any, ...] = ()
    ann = annotation
    for _ in range(10):
        origin = typing.get_origin(ann)
        if origin is typing.Union or origin is types.UnionType:
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            ann = args[0]
        elif origin is list:
            repeats = True
            ann = typing.get_args(ann)[0]
        elif origin is typing.Annotated:
            metadata = tuple(getattr(ann, "__metadata__", ()))
            ann = typing.get_args(ann)[0]
        else:
            break
    return repeats, ann, metadata


def _classify(annotation: Any) -> tuple[bool, int, str, Any]:
    """(repeats, kind, FHIR type, model class) of one element."""
    repeats, base, metadata = _unwrap(annotation)
    for marker in metadata:
        marker_name = type(marker).__name__
        if marker_name == "Xhtml":
            return repeats, XHTML, "xhtml", None
        primitive = _PRIMITIVE_BY_MARKER.get(marker_name)
        if primitive:
            return repeats, PRIMITIVE, primitive, None
    get_klass = getattr(base, "get_model_klass", None)
    if get_klass is not None:
        klass = get_klass()
        if klass.has_resource_base():
            return repeats, RESOURCE, "Resource", None
        return repeats, COMPLEX, klass.__name__, klass
    if base is bool:
        return repeats, PRIMITIVE, "boolean", None
    if base is int:
        return repeats, PRIMITIVE, "integer", None
    if base is Decimal:
        return repeats, PRIMITIVE, "decimal", None
    return repeats, PRIMITIVE, "string", None


def type_info(model: Any) -> TypeInfo:
    info = _TYPES.get(model)
    if info is not None:
        return info
    is_resource = bool(model.has_resource_base())
    by_alias: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        alias = field.alias or name
        extra = field.json_schema_extra
        if alias.startswith("_") or not isinstance(extra, dict) or not extra.get("element_property"):
            continue
        by_alias[alias] = field
    elements: dict[str, ElementInfo] = {}
    for alias in model.elements_sequence():
        field = by_alias.get(alias)
        if field is None:  # pragma: no cover - the models list only their own fields
            continue
        repeats, kind, fhir_type, klass = _classify(field.annotation)
        elements[alias] = ElementInfo(
            name=alias,
            tag=FHIR_PREFIX + alias,
            repeats=repeats,
            kind=kind,
            json_type=_J_BY_PRIMITIVE.get(fhir_type, J_STRING),
            fhir_type=fhir_type,
            model=klass,
        )
    attributes: set[str] = set()
    if not is_resource and "id" in elements:
        attributes.add("id")
    if model.__name__ == "Extension" and "url" in elements:
        attributes.add("url")
    info = TypeInfo(
        name=model.__name__,
        is_resource=is_resource,
        elements=elements,
        index={name: i for i, name in enumerate(elements)},
        attributes=frozenset(attributes),
    )
    _TYPES[model] = info
    return info


def resource_info(resource_type: Any, path: str) -> TypeInfo:
    if not isinstance(resource_type, str) or not is_resource_type(resource_type):
        raise FhirFormatError(f"{path or 'document'}: {resource_type!r} is not a FHIR resource type")
    try:
        return type_info(element_model_class(resource_type))
    except MappingError as exc:  # pragma: no cover - is_resource_type said it exists
        raise FhirFormatError(str(exc)) from exc


def extension_info() -> TypeInfo:
    return type_info(element_model_class("Extension"))


def tag_of(node: etree._Element) -> str | None:
    """The Clark-notation tag of an element, None for any other node."""
    tag: object = node.tag
    return tag if isinstance(tag, str) else None


def open_empty_elements(div: etree._Element) -> None:
    """Write empty non-void XHTML elements as ``<span></span>``, not ``<span/>``.

    Both are the same XML, but a browser parsing the narrative as HTML reads ``<span/>`` as an
    unclosed start tag. Void elements (``<br/>``) stay self-closed.
    """
    for node in div.iter():
        tag = tag_of(node)
        if tag is None or node.text is not None or len(node):
            continue
        if etree.QName(tag).localname not in XHTML_VOID:
            node.text = ""
