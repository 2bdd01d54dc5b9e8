"""The hardened XML parser: no DTD, no entities, no network, bounded size, UTF-8 only."""

from __future__ import annotations

import re
from typing import Any, Final

from lxml import etree

from fhir_desens.errors import FhirFormatError

#: Default upper bound on the size of an XML document (bytes).
MAX_XML_BYTES: Final = 50 * 1024 * 1024
_DOCTYPE_RE: Final = re.compile(rb"<!\s*DOCTYPE|<!\s*ENTITY", re.IGNORECASE)
_XML_DECL_ENCODING_RE: Final = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?\bencoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']"
)
_UTF_ENCODINGS: Final = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


def hardened_parser() -> etree.XMLParser:
    """An lxml parser that loads no DTD and no entity, reaches no network and keeps no comments."""
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
        root = etree.fromstring(raw, parser=hardened_parser())
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
