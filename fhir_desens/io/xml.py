"""FHIR XML ⇄ FHIR JSON (dict) conversion, with a hardened XML parser.

The conversion follows the FHIR R4 XML and JSON representation rules:

* every FHIR element is in the namespace ``http://hl7.org/fhir``; a resource is an element named by
  its type (``<Patient>``), which JSON spells ``"resourceType": "Patient"``;
* a primitive is an element with a ``value`` attribute; its ``id`` attribute and ``<extension>``
  children are JSON's ``_name`` object, and for repeating primitives the ``name``/``_name`` arrays
  are aligned with ``null`` where one side is missing;
* ``decimal`` becomes a JSON number held as an exact :class:`~decimal.Decimal`, ``integer``,
  ``positiveInt`` and ``unsignedInt`` become ``int``, ``boolean`` becomes ``true``/``false``, every
  other primitive stays a string;
* an element that may repeat is a JSON array, even with one item;
* ``Element.id`` and ``Extension.url`` are XML attributes (a resource's own ``id`` is an element);
* ``Narrative.div`` is the XHTML ``div`` element, in JSON an XHTML string declaring the XHTML
  namespace as the default namespace;
* a ``Resource``-typed element (``contained``, ``Bundle.entry.resource``, ``Parameters.parameter
  .resource``, ``Bundle.entry.response.outcome``) wraps the resource element;
* choice elements carry their type in the name (``valueQuantity``);
* XML output is in the FHIR-defined element order (the XML format requires it).

What repeats, what each primitive's type is, and the element order are read, lazily and cached
per type, from the fhir.resources R4B pydantic models (field alias, list annotation, type and
``elements_sequence``), through :mod:`fhir_desens.fhir.models`.

The parser is hardened: no DTD (any ``DOCTYPE`` is refused, so no entity can be declared, let
alone expanded), no network, no entity resolution, bounded input size and nesting depth, UTF-8
only. Everything it refuses raises :class:`~fhir_desens.errors.FhirFormatError`, and the message
never quotes the document.

Unknown elements and attributes are refused, not dropped: the conversion is lossless or fails.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from lxml import etree

from fhir_desens.errors import FhirFormatError, MappingError
from fhir_desens.fhir.models import element_model_class, is_resource_type

__all__ = [
    "FHIR_NS",
    "MAX_DEPTH",
    "MAX_XML_BYTES",
    "XHTML_NS",
    "element_to_json",
    "json_to_xml",
    "parse_xml",
    "resource_to_element",
    "xml_to_json",
]

FHIR_NS: Final = "http://hl7.org/fhir"
XHTML_NS: Final = "http://www.w3.org/1999/xhtml"
#: Default upper bound on the size of an XML document (bytes).
MAX_XML_BYTES: Final = 50 * 1024 * 1024
#: Default upper bound on FHIR element nesting (libxml2 itself stops at 256 levels).
MAX_DEPTH: Final = 100
#: Largest accepted magnitude of a decimal's exponent (as in :mod:`fhir_desens.io.json`).
MAX_DECIMAL_EXPONENT: Final = 1000

_FHIR_PREFIX: Final = "{" + FHIR_NS + "}"
_XHTML_DIV: Final = "{" + XHTML_NS + "}div"
_EXTENSION_TAG: Final = _FHIR_PREFIX + "extension"
_XHTML_VOID: Final = frozenset(
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
_FHIR_NSMAP: Final[Any] = {None: FHIR_NS}
_XHTML_NSMAP: Final[Any] = {None: XHTML_NS}

# element kinds
_PRIMITIVE: Final = 0
_COMPLEX: Final = 1
_RESOURCE: Final = 2
_XHTML: Final = 3

# JSON representation of a primitive
_J_STRING: Final = 0
_J_BOOLEAN: Final = 1
_J_INTEGER: Final = 2
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
    "boolean": _J_BOOLEAN,
    "integer": _J_INTEGER,
    "positiveInt": _J_INTEGER,
    "unsignedInt": _J_INTEGER,
    "decimal": _J_DECIMAL,
}

_INTEGER_RE: Final = re.compile(r"-?[0-9]+\Z")
_DECIMAL_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")
_DOCTYPE_RE: Final = re.compile(rb"<!\s*DOCTYPE|<!\s*ENTITY", re.IGNORECASE)
_XML_DECL_ENCODING_RE: Final = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?\bencoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']"
)
_UTF_ENCODINGS: Final = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


# --------------------------------------------------------------------------------------------
# element metadata, introspected from the R4B models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Element:
    name: str
    tag: str
    repeats: bool
    kind: int
    json_type: int
    fhir_type: str
    model: Any  # the element's model class for _COMPLEX, else None


@dataclass(frozen=True, slots=True)
class _Type:
    name: str
    is_resource: bool
    elements: dict[str, _Element]  # in FHIR order
    index: dict[str, int]
    attributes: frozenset[str]  # element names that XML writes as attributes


_TYPES: dict[Any, _Type] = {}


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
            return repeats, _XHTML, "xhtml", None
        primitive = _PRIMITIVE_BY_MARKER.get(marker_name)
        if primitive:
            return repeats, _PRIMITIVE, primitive, None
    get_klass = getattr(base, "get_model_klass", None)
    if get_klass is not None:
        klass = get_klass()
        if klass.has_resource_base():
            return repeats, _RESOURCE, "Resource", None
        return repeats, _COMPLEX, klass.__name__, klass
    if base is bool:
        return repeats, _PRIMITIVE, "boolean", None
    if base is int:
        return repeats, _PRIMITIVE, "integer", None
    if base is Decimal:
        return repeats, _PRIMITIVE, "decimal", None
    return repeats, _PRIMITIVE, "string", None


def _type_info(model: Any) -> _Type:
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
    elements: dict[str, _Element] = {}
    for alias in model.elements_sequence():
        field = by_alias.get(alias)
        if field is None:  # pragma: no cover - the models list only their own fields
            continue
        repeats, kind, fhir_type, klass = _classify(field.annotation)
        elements[alias] = _Element(
            name=alias,
            tag=_FHIR_PREFIX + alias,
            repeats=repeats,
            kind=kind,
            json_type=_J_BY_PRIMITIVE.get(fhir_type, _J_STRING),
            fhir_type=fhir_type,
            model=klass,
        )
    attributes: set[str] = set()
    if not is_resource and "id" in elements:
        attributes.add("id")
    if model.__name__ == "Extension" and "url" in elements:
        attributes.add("url")
    info = _Type(
        name=model.__name__,
        is_resource=is_resource,
        elements=elements,
        index={name: i for i, name in enumerate(elements)},
        attributes=frozenset(attributes),
    )
    _TYPES[model] = info
    return info


def _resource_info(resource_type: Any, path: str) -> _Type:
    if not isinstance(resource_type, str) or not is_resource_type(resource_type):
        raise FhirFormatError(f"{path or 'document'}: {resource_type!r} is not a FHIR resource type")
    try:
        return _type_info(element_model_class(resource_type))
    except MappingError as exc:  # pragma: no cover - is_resource_type said it exists
        raise FhirFormatError(str(exc)) from exc


def _extension_info() -> _Type:
    return _type_info(element_model_class("Extension"))


# --------------------------------------------------------------------------------------------
# hardened parsing
# --------------------------------------------------------------------------------------------


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        strip_cdata=True,
    )


def _check_document(data: bytes | str, max_bytes: int) -> bytes:
    if isinstance(data, str):
        if len(data) > max_bytes:
            raise FhirFormatError(f"XML document too large: {len(data)} characters (limit {max_bytes} bytes)")
        raw = data.encode("utf-8", errors="surrogatepass")
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
    else:
        raise FhirFormatError(f"XML input must be str or bytes, not {type(data).__name__}")
    if len(raw) > max_bytes:
        raise FhirFormatError(f"XML document too large: {len(raw)} bytes (limit {max_bytes} bytes)")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\x00<", b"<\x00")):
        raise FhirFormatError("FHIR XML must be encoded in UTF-8 (found a UTF-16/32 document)")
    decl = _XML_DECL_ENCODING_RE.match(raw)
    if decl and decl.group(1).decode("ascii").lower() not in _UTF_ENCODINGS:
        raise FhirFormatError(
            f"FHIR XML must be encoded in UTF-8 (declared encoding {decl.group(1).decode('ascii')!r})"
        )
    if _DOCTYPE_RE.search(raw):
        raise FhirFormatError("DOCTYPE is not allowed in FHIR XML (DTDs and entity declarations are refused)")
    return raw


def parse_xml(data: bytes | str, *, max_bytes: int = MAX_XML_BYTES) -> etree._Element:
    """Parse XML with the hardened parser and return the root element.

    Refuses a DOCTYPE (so no entity, internal or external, and no DTD), non-UTF-8 documents and
    documents over ``max_bytes``; never touches the network or the local disk.
    """
    raw = _check_document(data, max_bytes)
    try:
        root = etree.fromstring(raw, parser=_parser())
    except etree.XMLSyntaxError as exc:
        line = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        reason = str(exc.msg) if getattr(exc, "msg", None) else "syntax error"
        raise FhirFormatError(f"not well-formed XML{line}: {reason[:200]}") from exc
    except ValueError as exc:
        raise FhirFormatError(f"not well-formed XML: {str(exc)[:200]}") from exc
    if root is None:  # pragma: no cover - lxml raises on an empty document
        raise FhirFormatError("XML document has no root element")
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise FhirFormatError("DOCTYPE is not allowed in FHIR XML (DTDs and entity declarations are refused)")
    return root


# --------------------------------------------------------------------------------------------
# XML -> JSON
# --------------------------------------------------------------------------------------------


def _tag(node: etree._Element) -> str | None:
    """The Clark-notation tag of an element, None for any other node."""
    tag: object = node.tag
    return tag if isinstance(tag, str) else None


def _local_name(el: etree._Element, path: str) -> str:
    tag = _tag(el)
    if tag is None or not tag.startswith(_FHIR_PREFIX):
        shown = tag or "a non-element node"
        raise FhirFormatError(f"{path}: element {shown} is not in the FHIR namespace {FHIR_NS}")
    return tag[len(_FHIR_PREFIX) :]


def _no_text(el: etree._Element, path: str) -> None:
    text = el.text
    if text is not None and text.strip():
        raise FhirFormatError(f"{path}: FHIR elements carry no text content (use the value attribute)")


def _primitive_value(text: str, element: _Element, path: str) -> Any:
    json_type = element.json_type
    if json_type == _J_STRING:
        return text
    if json_type == _J_BOOLEAN:
        if text == "true":
            return True
        if text == "false":
            return False
        raise FhirFormatError(f"{path}: boolean value must be true or false")
    if json_type == _J_INTEGER:
        if not _INTEGER_RE.match(text) or len(text) > 40:
            raise FhirFormatError(f"{path}: {element.fhir_type} value is not an integer")
        return int(text)
    if not _DECIMAL_RE.match(text) or len(text) > 4000:
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
    el: etree._Element, element: _Element, path: str, depth: int, max_depth: int
) -> tuple[Any, dict[str, Any] | None]:
    attrs = _attributes(el, _PRIMITIVE_ATTRS, path)
    _no_text(el, path)
    value = attrs.get("value")
    converted = None if value is None else _primitive_value(value, element, path)
    extension: list[Any] = []
    ext_info: _Type | None = None
    for child in el:
        if _tag(child) is None:
            continue
        name = _local_name(child, path)
        if name != "extension":
            raise FhirFormatError(f"{path}: a primitive element may only contain extension, not {name}")
        if ext_info is None:
            ext_info = _extension_info()
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
    if el.tag != _XHTML_DIV:
        raise FhirFormatError(f"{path}: narrative must be an XHTML div in namespace {XHTML_NS}")
    if all(node.prefix is None for node in el.iter() if _tag(node) is not None):
        div = copy.deepcopy(el)
        div.tail = None
        etree.cleanup_namespaces(div)
    else:
        div = _rebuild_default_ns(el)
    _open_empty_elements(div)
    return etree.tostring(div, encoding="unicode", with_tail=False)


def _open_empty_elements(div: etree._Element) -> None:
    """Write empty non-void XHTML elements as ``<span></span>``, not ``<span/>``.

    Both are the same XML, but a browser parsing the narrative as HTML reads ``<span/>`` as an
    unclosed start tag. Void elements (``<br/>``) stay self-closed.
    """
    for node in div.iter():
        tag = _tag(node)
        if tag is None or node.text is not None or len(node):
            continue
        if etree.QName(tag).localname not in _XHTML_VOID:
            node.text = ""


def _rebuild_default_ns(el: etree._Element) -> etree._Element:
    """Copy an XHTML tree written with a namespace prefix into one using the default namespace."""

    def build(src: etree._Element, parent: etree._Element | None) -> etree._Element:
        qname = etree.QName(src)
        tag = f"{{{qname.namespace}}}{qname.localname}" if qname.namespace else qname.localname
        node = etree.Element(tag, nsmap=_XHTML_NSMAP) if parent is None else etree.SubElement(parent, tag)
        for key, value in src.attrib.items():
            node.set(key, value)
        node.text = src.text
        for child in src:
            if _tag(child) is not None:
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
    inner = [child for child in el if _tag(child) is not None]
    if len(inner) != 1:
        raise FhirFormatError(f"{path}: must contain exactly one resource, found {len(inner)}")
    return _resource_to_json(inner[0], path, depth + 1, max_depth)


def _resource_to_json(el: etree._Element, path: str, depth: int, max_depth: int) -> dict[str, Any]:
    resource_type = _local_name(el, path or "document")
    info = _resource_info(resource_type, path)
    body = _complex_to_json(el, info, f"{path}.{resource_type}" if path else resource_type, depth, max_depth)
    out: dict[str, Any] = {"resourceType": resource_type}
    out.update(body)
    return out


def _complex_to_json(
    el: etree._Element, info: _Type, path: str, depth: int, max_depth: int
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
        tag = _tag(child)
        if tag is None:
            continue
        if tag == _XHTML_DIV and "div" in elements and elements["div"].kind == _XHTML:
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
        if kind == _PRIMITIVE:
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
        elif kind == _COMPLEX:
            sub = _type_info(element.model)
            if element.repeats:
                out[name] = [
                    _complex_to_json(child, sub, f"{child_path}[{i}]", depth + 1, max_depth)
                    for i, child in enumerate(children)
                ]
            else:
                out[name] = _complex_to_json(children[0], sub, child_path, depth + 1, max_depth)
        elif kind == _RESOURCE:
            if element.repeats:
                out[name] = [
                    _resource_element_to_json(child, f"{child_path}[{i}]", depth + 1, max_depth)
                    for i, child in enumerate(children)
                ]
            else:
                out[name] = _resource_element_to_json(children[0], child_path, depth + 1, max_depth)
        else:
            if children[0].tag != _XHTML_DIV:
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


# --------------------------------------------------------------------------------------------
# JSON -> XML
# --------------------------------------------------------------------------------------------


def _format_primitive(value: Any, element: _Element, path: str) -> str:
    json_type = element.json_type
    if json_type == _J_STRING:
        if isinstance(value, str):
            return value
    elif json_type == _J_BOOLEAN:
        if value is True:
            return "true"
        if value is False:
            return "false"
    elif json_type == _J_INTEGER:
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


def _as_list(value: Any, element: _Element, path: str) -> list[Any]:
    if element.repeats:
        if not isinstance(value, list):
            raise FhirFormatError(f"{path}: element repeats and must be a JSON array")
        return value
    if isinstance(value, list):
        raise FhirFormatError(f"{path}: element does not repeat and must not be a JSON array")
    return [value]


def _write_primitive(
    parent: etree._Element,
    element: _Element,
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
        ext_info = _extension_info()
        for i, item in enumerate(extensions):
            item_path = f"_{path}.extension[{i}]"
            sub = etree.SubElement(node, _EXTENSION_TAG)
            _write_complex(sub, _as_object(item, item_path), ext_info, item_path, depth + 1, max_depth)


def _write_xhtml(parent: etree._Element, value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise FhirFormatError(f"{path}: narrative div must be a string of XHTML")
    try:
        div = parse_xml(value)
    except FhirFormatError as exc:
        raise FhirFormatError(f"{path}: narrative div is not well-formed XHTML: {exc.message}") from exc
    if div.tag != _XHTML_DIV:
        raise FhirFormatError(f"{path}: narrative must be an XHTML div in namespace {XHTML_NS}")
    _open_empty_elements(div)
    parent.append(div)


def _write_complex(
    node: etree._Element,
    obj: Mapping[str, Any],
    info: _Type,
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
        if key is not name and (element.kind != _PRIMITIVE or name in info.attributes):
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
        if kind == _PRIMITIVE:
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
        elif kind == _COMPLEX:
            sub_info = _type_info(element.model)
            items = _as_list(value, element, child_path)
            for i, item in enumerate(items):
                item_path = f"{child_path}[{i}]" if element.repeats else child_path
                sub = etree.SubElement(node, element.tag)
                _write_complex(sub, _as_object(item, item_path), sub_info, item_path, depth + 1, max_depth)
        elif kind == _RESOURCE:
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
    info = _resource_info(resource_type, path)
    tag = _FHIR_PREFIX + info.name
    node = etree.Element(tag, nsmap=_FHIR_NSMAP) if parent is None else etree.SubElement(parent, tag)
    _write_complex(node, obj, info, f"{path}.{info.name}" if path else info.name, depth, max_depth)
    return node


def _indent(node: etree._Element, level: int, unit: str) -> None:
    """Pretty-print FHIR elements in place, leaving every XHTML narrative exactly as it is."""
    children = [child for child in node if _tag(child) is not None]
    if not children:
        return
    inner = "\n" + unit * (level + 1)
    node.text = inner
    for child in children:
        child.tail = inner
        if child.tag != _XHTML_DIV:
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
