"""FHIR XML -> FHIR JSON (dict): each element checked against the model's metadata."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any, Final

from lxml import etree

from fhir_desens.errors import FhirFormatError
from fhir_desens.io.xml.elements import (
    COMPLEX,
    DECIMAL_RE,
    FHIR_NS,
    FHIR_PREFIX,
    INTEGER_RE,
    J_BOOLEAN,
    J_INTEGER,
    J_STRING,
    MAX_DECIMAL_EXPONENT,
    MAX_DEPTH,
    PRIMITIVE,
    RESOURCE,
    XHTML,
    XHTML_DIV,
    XHTML_NS,
    XHTML_NSMAP,
    ElementInfo,
    TypeInfo,
    extension_info,
    open_empty_elements,
    resource_info,
    tag_of,
    type_info,
)
from fhir_desens.io.xml.parser import MAX_XML_BYTES, parse_xml


def _local_name(el: etree._Element, path: str) -> str:
    tag = tag_of(el)
    if tag is None or not tag.startswith(FHIR_PREFIX):
        shown = tag or "a non-element node"
        raise FhirFormatError(f"{path}: element {shown} is not in the FHIR namespace {FHIR_NS}")
    return tag[len(FHIR_PREFIX) :]


def _no_text(el: etree._Element, path: str) -> None:
    text = el.text
    if text is not None and text.strip():
        raise FhirFormatError(f"{path}: FHIR elements carry no text content (use the value attribute)")


def _primitive_value(text: str, element: ElementInfo, path: str) -> Any:
    json_type = element.json_type
    if json_type == J_STRING:
        return text
    if json_type == J_BOOLEAN:
        if text == "true":
            return True
        if text == "false":
            return False
        raise FhirFormatError(f"{path}: boolean value must be true or false")
    if json_type == J_INTEGER:
        if not INTEGER_RE.match(text) or len(text) > 40:
            raise FhirFormatError(f"{path}: {element.fhir_type} value is not an integer")
        return int(text)
    if not DECIMAL_RE.match(text) or len(text) > 4000:
        raise FhirFormatError(f"{path}: decimal value is not a FHIR decimal")
    value = Decimal(text)
    if abs(value.adjusted()) > MAX_DECIMAL_EXPONENT:
        raise FhirFormatError(f"{path}: decimal value is out of range")
    return value


def _attributes(el: etree._Element, allowed: frozenset[str], path: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in el.attrib.items():
        name = str(key)
        if name.startswith("{"):
            continue  # xsi:schemaLocation, xml:lang and other namespaced attributes carry no FHIR data
        if name not in allowed:
            raise FhirFormatError(f"{path}: unexpected attribute {name!r}")
        found[name] = str(value)
    return found


_PRIMITIVE_ATTRS: Final = frozenset({"id", "value"})


def _primitive_to_json(
    el: etree._Element, element: ElementInfo, path: str, depth: int, max_depth: int
) -> tuple[Any, dict[str, Any] | None]:
    attrs = _attributes(el, _PRIMITIVE_ATTRS, path)
    _no_text(el, path)
    value = attrs.get("value")
    converted = None if value is None else _primitive_value(value, element, path)
    extension: list[Any] = []
    ext_info: TypeInfo | None = None
    for child in el:
        if tag_of(child) is None:
            continue
        name = _local_name(child, path)
        if name != "extension":
            raise FhirFormatError(f"{path}: a primitive element may only contain extension, not {name}")
        if ext_info is None:
            ext_info = extension_info()
        extension.append(_complex_to_json(child, ext_info, f"{path}.extension", depth + 1, max_depth))
    ext: dict[str, Any] | None = None
    if "id" in attrs or extension:
        ext = {}
        if "id" in attrs:
            ext["id"] = attrs["id"]
        if extension:
            ext["extension"] = extension
    if converted is None and ext is None:
        raise FhirFormatError(f"{path}: primitive element has neither a value nor an extension")
    return converted, ext


def _xhtml_to_string(el: etree._Element, path: str) -> str:
    if el.tag != XHTML_DIV:
        raise FhirFormatError(f"{path}: narrative must be an XHTML div in namespace {XHTML_NS}")
    if all(node.prefix is None for node in el.iter() if tag_of(node) is not None):
        div = copy.deepcopy(el)
        div.tail = None
        etree.cleanup_namespaces(div)
    else:
        div = _rebuild_default_ns(el)
    open_empty_elements(div)
    return etree.tostring(div, encoding="unicode", with_tail=False)


def _rebuild_default_ns(el: etree._Element) -> etree._Element:
    """Copy an XHTML tree written with a namespace prefix into one using the default namespace."""

    def build(src: etree._Element, parent: etree._Element | None) -> etree._Element:
        qname = etree.QName(src)
        tag = f"{{{qname.namespace}}}{qname.localname}" if qname.namespace else qname.localname
        node = etree.Element(tag, nsmap=XHTML_NSMAP) if parent is None else etree.SubElement(parent, tag)
        for key, value in src.attrib.items():
            node.set(key, value)
        node.text = src.text
        for child in src:
            if tag_of(child) is not None:
                sub = build(child, node)
                sub.tail = child.tail
            elif len(node):
                node[-1].tail = (node[-1].tail or "") + (child.tail or "")
            else:
                node.text = (node.text or "") + (child.tail or "")
        return node

    return build(el, None)


def _resource_element_to_json(el: etree._Element, path: str, depth: int, max_depth: int) -> dict[str, Any]:
    """The JSON of a Resource-typed element: it wraps exactly one resource element."""
    _attributes(el, frozenset(), path)
    _no_text(el, path)
    inner = [child for child in el if tag_of(child) is not None]
    if len(inner) != 1:
        raise FhirFormatError(f"{path}: must contain exactly one resource, found {len(inner)}")
    return _resource_to_json(inner[0], path, depth + 1, max_depth)


def _resource_to_json(el: etree._Element, path: str, depth: int, max_depth: int) -> dict[str, Any]:
    resource_type = _local_name(el, path or "document")
    info = resource_info(resource_type, path)
    body = _complex_to_json(el, info, f"{path}.{resource_type}" if path else resource_type, depth, max_depth)
    out: dict[str, Any] = {"resourceType": resource_type}
    out.update(body)
    return out


def _complex_to_json(
    el: etree._Element, info: TypeInfo, path: str, depth: int, max_depth: int
) -> dict[str, Any]:
    if depth > max_depth:
        raise FhirFormatError(f"{path}: nesting deeper than {max_depth} levels")
    out: dict[str, Any] = {}
    if info.attributes:
        attrs = _attributes(el, info.attributes, path)
        out.update(attrs)
    else:
        _attributes(el, frozenset(), path)
    _no_text(el, path)
    groups: dict[str, list[etree._Element]] = {}
    elements = info.elements
    for child in el:
        tag = tag_of(child)
        if tag is None:
            continue
        if tag == XHTML_DIV and "div" in elements and elements["div"].kind == XHTML:
            name = "div"
        else:
            name = _local_name(child, path)
        if name not in elements or name in info.attributes:
            raise FhirFormatError(f"{path}: unknown element {name!r} in {info.name}")
        tail = child.tail
        if tail is not None and tail.strip():
            raise FhirFormatError(f"{path}: FHIR elements carry no text content")
        group = groups.get(name)
        if group is None:
            groups[name] = [child]
        else:
            group.append(child)
    if len(groups) > 1:
        index = info.index
        names = sorted(groups, key=index.__getitem__)
    else:
        names = list(groups)
    for name in names:
        children = groups[name]
        element = elements[name]
        child_path = f"{path}.{name}"
        if not element.repeats and len(children) > 1:
            raise FhirFormatError(f"{child_path}: element does not repeat but occurs {len(children)} times")
        kind = element.kind
        if kind == PRIMITIVE:
            if element.repeats:
                values: list[Any] = []
                exts: list[Any] = []
                for i, child in enumerate(children):
                    value, ext = _primitive_to_json(
                        child, element, f"{child_path}[{i}]", depth + 1, max_depth
                    )
                    values.append(value)
                    exts.append(ext)
                if any(v is not None for v in values):
                    out[name] = values
                if any(x is not None for x in exts):
                    out["_" + name] = exts
            else:
                value, ext = _primitive_to_json(children[0], element, child_path, depth + 1, max_depth)
                if value is not None:
                    out[name] = value
                if ext is not None:
                    out["_" + name] = ext
        elif kind == COMPLEX:
            sub = type_info(element.model)
            if element.repeats:
                out[name] = [
                    _complex_to_json(child, sub, f"{child_path}[{i}]", depth + 1, max_depth)
                    for i, child in enumerate(children)
                ]
            else:
                out[name] = _complex_to_json(children[0], sub, child_path, depth + 1, max_depth)
        elif kind == RESOURCE:
            if element.repeats:
                out[name] = [
                    _resource_element_to_json(child, f"{child_path}[{i}]", depth + 1, max_depth)
                    for i, child in enumerate(children)
                ]
            else:
                out[name] = _resource_element_to_json(children[0], child_path, depth + 1, max_depth)
        else:
            if children[0].tag != XHTML_DIV:
                raise FhirFormatError(f"{child_path}: narrative must be an XHTML div in namespace {XHTML_NS}")
            out[name] = _xhtml_to_string(children[0], child_path)
    return out


def element_to_json(root: etree._Element, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Convert a parsed FHIR resource element (from :func:`parse_xml`) to a FHIR JSON dict."""
    return _resource_to_json(root, "", 0, max_depth)


def xml_to_json(
    data: bytes | str, *, max_bytes: int = MAX_XML_BYTES, max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """Convert one FHIR XML resource document to its FHIR JSON dict (decimals as ``Decimal``)."""
    return element_to_json(parse_xml(data, max_bytes=max_bytes), max_depth=max_depth)
