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

The package: :mod:`~fhir_desens.io.xml.elements` (namespaces and each element's metadata from the
models), :mod:`~fhir_desens.io.xml.parser` (the hardened parser), :mod:`~fhir_desens.io.xml.to_json`
(XML -> JSON) and :mod:`~fhir_desens.io.xml.to_xml` (JSON -> XML). Import from here.
"""

from __future__ import annotations

from fhir_desens.io.xml.elements import FHIR_NS, MAX_DEPTH, XHTML_NS
from fhir_desens.io.xml.parser import MAX_XML_BYTES, parse_xml
from fhir_desens.io.xml.to_json import element_to_json, xml_to_json
from fhir_desens.io.xml.to_xml import json_to_xml, resource_to_element

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
