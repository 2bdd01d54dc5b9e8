"""Read and write one FHIR resource in either FHIR format (JSON or XML).

:func:`read_resource` takes a path or the document's bytes, tells JSON from XML by the first
significant character (``{`` or ``<``; the file name plays no part) and returns the FHIR JSON
dict, decimals as exact :class:`~decimal.Decimal`. :func:`write_resource` writes a FHIR JSON dict
as UTF-8 JSON or XML bytes. lxml is imported only when XML is read or written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from fhir_desens.errors import FhirFormatError, InputError
from fhir_desens.io import json as fhir_json
from fhir_desens.io.files import read_regular_file

__all__ = ["MAX_DOCUMENT_BYTES", "Format", "detect_format", "read_resource", "write_resource"]

Format = Literal["json", "xml"]

#: Default upper bound on the size of a document read by :func:`read_resource`.
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"


def detect_format(data: bytes) -> Format:
    """``"json"`` or ``"xml"`` from the first significant byte; :class:`FhirFormatError` otherwise."""
    head = data[:4096]
    if head.startswith(_BOM):
        head = head[len(_BOM) :]
    head = head.lstrip(_WHITESPACE)
    if head.startswith(b"{"):
        return "json"
    if head.startswith(b"<"):
        return "xml"
    if not head:
        raise FhirFormatError("empty document: expected FHIR JSON or FHIR XML")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FhirFormatError("FHIR documents must be UTF-8 (found UTF-16)")
    raise FhirFormatError("not a FHIR document: expected a JSON object ('{') or an XML element ('<')")


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    return read_regular_file(path, max_bytes=max_bytes)


def read_resource(
    path_or_bytes: str | os.PathLike[str] | bytes | bytearray,
    *,
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> dict[str, Any]:
    """Read one FHIR resource from a file path (``str``/``PathLike``) or from document bytes.

    Returns the FHIR JSON dict. Raises :class:`FhirFormatError` if the document is not FHIR JSON
    or FHIR XML (or is refused by the hardened XML parser), and :class:`InputError` if the file
    cannot be read.
    """
    if isinstance(path_or_bytes, bytes | bytearray):
        data = bytes(path_or_bytes)
        if len(data) > max_bytes:
            raise FhirFormatError(f"document too large: {len(data)} bytes (limit {max_bytes} bytes)")
    elif isinstance(path_or_bytes, str | os.PathLike):
        data = _read_bytes(Path(path_or_bytes), max_bytes)
    else:
        raise InputError("resource", f"expected a path or bytes, not {type(path_or_bytes).__name__}")
    if detect_format(data) == "xml":
        from fhir_desens.io.xml import xml_to_json  # lxml only when XML is met

        return xml_to_json(data, max_bytes=max_bytes)
    resource = fhir_json.loads(data, max_bytes=max_bytes)
    if not isinstance(resource, dict):
        raise FhirFormatError("a FHIR resource must be a JSON object")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise FhirFormatError("resourceType: missing or not a string")
    return resource


def write_resource(resource: Mapping[str, Any], fmt: Format = "json", *, pretty: bool = True) -> bytes:
    """Write a FHIR JSON resource dict as UTF-8 ``"json"`` or ``"xml"`` bytes.

    JSON keeps every ``Decimal``'s text (see :mod:`fhir_desens.io.json`); XML is in FHIR element
    order (see :mod:`fhir_desens.io.xml`). ``pretty`` indents by two spaces.
    """
    if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
        raise FhirFormatError("a FHIR resource must be a JSON object with a resourceType")
    if fmt == "json":
        body = fhir_json.dumps_bytes(resource, indent=2 if pretty else None)
        return body + b"\n" if pretty else body
    if fmt == "xml":
        from fhir_desens.io.xml import json_to_xml  # lxml only when XML is asked for

        return json_to_xml(resource, pretty=pretty)
    raise InputError("format", f"unknown format {fmt!r}", "json, xml")
