"""FHIR JSON (dict) -> FHIR XML, in the FHIR-defined element order."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from lxml import etree

from fhir_desens.errors import FhirFormatError
from fhir_desens.io.xml.elements import (
    COMPLEX,
    EXTENSION_TAG,
    FHIR_NSMAP,
    FHIR_PREFIX,
    J_BOOLEAN,
    J_INTEGER,
    J_STRING,
    MAX_DEPTH,
    PRIMITIVE,
    RESOURCE,
    XHTML_DIV,
    XHTML_NS,
    ElementInfo,
    TypeInfo,
    extension_info,
    open_empty_elements,
    resource_info,
    tag_of,
    type_info,
)
from fhir_desens.io.xml.parser import parse_xml


def _format_primitive(value: Any, element: ElementInfo, path: str) -> str:
    json_type = element.json_type
    if json_type == J_STRING:
        if isinstance(value, str):
            return value
    elif json_type == J_BOOLEAN:
        if value is True:
            return "true"
        if value is False:
            return "false"
    elif json_type == J_INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    elif isinstance(value, Decimal):
        if value.is_finite():
            return format(value, "f")
    elif isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise FhirFormatError(f"{path}: {type(value).__name__} is not a valid JSON value for {element.fhir_type}")


def _as_object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FhirFormatError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def _as_list(value: Any, element: ElementInfo, path: str) -> list[Any]:
    if element.repeats:
        if not isinstance(value, list):
            raise FhirFormatError(f"{path}: element repeats and must be a JSON array")
        return value
    if isinstance(value, list):
        raise FhirFormatError(f"{path}: element does not repeat and must not be a JSON array")
    return [value]


def _write_primitive(
    parent: etree._Element,
    element: ElementInfo,
    value: Any,
    ext: Any,
    path: str,
    depth: int,
    max_depth: int,
) -> None:
    if ext is not None:
        ext = _as_object(ext, "_" + path)
        unknown = set(ext) - {"id", "extension"}
        if unknown:
            raise FhirFormatError(f"_{path}: unexpected key(s) {sorted(unknown)} (only id and extension)")
    if value is None and not ext:
        raise FhirFormatError(f"{path}: primitive has neither a value nor an extension")
    node = etree.SubElement(parent, element.tag)
    if ext and "id" in ext:
        if not isinstance(ext["id"], str):
            raise FhirFormatError(f"_{path}.id: must be a string")
        node.set("id", ext["id"])
    if value is not None:
        node.set("value", _format_primitive(value, element, path))
    if ext and "extension" in ext:
        extensions = ext["extension"]
        if not isinstance(extensions, list):
            raise FhirFormatError(f"_{path}.extension: must be a JSON array")
        ext_info = extension_info()
        for i, item in enumerate(extensions):
            item_path = f"_{path}.extension[{i}]"
            sub = etree.SubElement(node, EXTENSION_TAG)
            _write_complex(sub, _as_object(item, item_path), ext_info, item_path, depth + 1, max_depth)


def _write_xhtml(parent: etree._Element, value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise FhirFormatError(f"{path}: narrative div must be a string of XHTML")
    try:
        div = parse_xml(value)
    except FhirFormatError as exc:
        raise FhirFormatError(f"{path}: narrative div is not well-formed XHTML: {exc.message}") from exc
    if div.tag != XHTML_DIV:
        raise FhirFormatError(f"{path}: narrative must be an XHTML div in namespace {XHTML_NS}")
    open_empty_elements(div)
    parent.append(div)


def _write_complex(
    node: etree._Element,
    obj: Mapping[str, Any],
    info: TypeInfo,
    path: str,
    depth: int,
    max_depth: int,
) -> None:
    if depth > max_depth:
        raise FhirFormatError(f"{path}: nesting deeper than {max_depth} levels")
    elements = info.elements
    index = info.index
    present: dict[str, int] = {}
    for key in obj:
        if not isinstance(key, str):
            raise FhirFormatError(f"{path}: JSON keys must be strings")
        name = key[1:] if key.startswith("_") else key
        element = elements.get(name)
        if element is None:
            if key == "resourceType" and info.is_resource:
                continue
            raise FhirFormatError(f"{path}: unknown element {key!r} in {info.name}")
        if key is not name and (element.kind != PRIMITIVE or name in info.attributes):
            raise FhirFormatError(f"{path}: {key!r} is only allowed for primitive elements")
        present[name] = index[name]
    for name in sorted(present, key=present.__getitem__):
        element = elements[name]
        child_path = f"{path}.{name}"
        value = obj.get(name)
        if name in info.attributes:
            if not isinstance(value, str):
                raise FhirFormatError(f"{child_path}: must be a string")
            node.set(name, value)
            continue
        kind = element.kind
        if kind == PRIMITIVE:
            ext = obj.get("_" + name)
            if element.repeats:
                values = [] if value is None else _as_list(value, element, child_path)
                exts = [] if ext is None else _as_list(ext, element, "_" + child_path)
                if values and exts and len(values) != len(exts):
                    raise FhirFormatError(f"{child_path}: {name} and _{name} arrays differ in length")
                for i in range(max(len(values), len(exts))):
                    _write_primitive(
                        node,
                        element,
                        values[i] if values else None,
                        exts[i] if exts else None,
                        f"{child_path}[{i}]",
                        depth + 1,
                        max_depth,
                    )
            else:
                if isinstance(value, list) or isinstance(ext, list):
                    raise FhirFormatError(
                        f"{child_path}: element does not repeat and must not be a JSON array"
                    )
                _write_primitive(node, element, value, ext, child_path, depth + 1, max_depth)
        elif value is None:
            raise FhirFormatError(f"{child_path}: null is not allowed here")
        elif kind == COMPLEX:
            sub_info = type_info(element.model)
            items = _as_list(value, element, child_path)
            for i, item in enumerate(items):
                item_path = f"{child_path}[{i}]" if element.repeats else child_path
                sub = etree.SubElement(node, element.tag)
                _write_complex(sub, _as_object(item, item_path), sub_info, item_path, depth + 1, max_depth)
        elif kind == RESOURCE:
            items = _as_list(value, element, child_path)
            for i, item in enumerate(items):
                item_path = f"{child_path}[{i}]" if element.repeats else child_path
                wrapper = etree.SubElement(node, element.tag)
                _write_resource(wrapper, _as_object(item, item_path), item_path, depth + 1, max_depth)
        else:
            _write_xhtml(node, value, child_path)


def _write_resource(
    parent: etree._Element | None, obj: Mapping[str, Any], path: str, depth: int, max_depth: int
) -> etree._Element:
    resource_type = obj.get("resourceType")
    info = resource_info(resource_type, path)
    tag = FHIR_PREFIX + info.name
    node = etree.Element(tag, nsmap=FHIR_NSMAP) if parent is None else etree.SubElement(parent, tag)
    _write_complex(node, obj, info, f"{path}.{info.name}" if path else info.name, depth, max_depth)
    return node


def _indent(node: etree._Element, level: int, unit: str) -> None:
    """Pretty-print FHIR elements in place, leaving every XHTML narrative exactly as it is."""
    children = [child for child in node if tag_of(child) is not None]
    if not children:
        return
    inner = "\n" + unit * (level + 1)
    node.text = inner
    for child in children:
        child.tail = inner
        if child.tag != XHTML_DIV:
            _indent(child, level + 1, unit)
    children[-1].tail = "\n" + unit * level


def resource_to_element(resource: Mapping[str, Any], *, max_depth: int = MAX_DEPTH) -> etree._Element:
    """Build the FHIR XML element tree of a FHIR JSON resource dict."""
    return _write_resource(None, _as_object(resource, "resource"), "", 0, max_depth)


def json_to_xml(resource: Mapping[str, Any], *, pretty: bool = True, max_depth: int = MAX_DEPTH) -> bytes:
    """Convert a FHIR JSON resource dict to a UTF-8 FHIR XML document (with an XML declaration)."""
    root = resource_to_element(resource, max_depth=max_depth)
    if pretty:
        _indent(root, 0, "  ")
    body: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return body + b"\n" if pretty else body
