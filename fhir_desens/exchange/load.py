"""Read any exchange input into a flat list of resources, each with where it came from.

Accepted: one resource, a Bundle (``collection``, ``transaction``, ``batch``, ``searchset``: its
entries' resources) or a FHIR package ``.tgz`` (its ``package/*.json`` resources, each of which may
itself be a Bundle); JSON or XML. The format is sniffed from the content (gzip magic bytes, ``{`` or
``<``), never from the file name. A folder is read file by file (``*.json``, ``*.xml``, ``*.tgz``,
sorted by name). Anything unreadable raises :class:`~fhir_desens.errors.FhirFormatError` or
:class:`~fhir_desens.errors.InputError` (exit status 2).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fhir_desens.errors import FhirFormatError, InputError
from fhir_desens.exchange.package import GZIP_MAGIC, PackageLimits, read_package
from fhir_desens.io.files import read_regular_file
from fhir_desens.io.formats import MAX_DOCUMENT_BYTES, read_resource

__all__ = ["BUNDLE_TYPES", "FOLDER_SUFFIXES", "Loaded", "load_bytes", "load_path", "load_paths"]

#: Bundle types whose entries are read as resources; any other Bundle type is refused.
BUNDLE_TYPES: Final = frozenset({"collection", "transaction", "batch", "searchset"})
#: What a folder contributes (other files are ignored).
FOLDER_SUFFIXES: Final = (".json", ".xml", ".tgz")


@dataclass(frozen=True)
class Loaded:
    """One resource and its origin: the file (``file!member`` inside a package) and Bundle entry."""

    source: str
    resource: dict[str, Any]
    entry: int | None = None
    full_url: str | None = None  # Bundle.entry.fullUrl (urn:uuid references resolve against it)

    @property
    def resource_type(self) -> str:
        return str(self.resource.get("resourceType", ""))

    @property
    def label(self) -> str:
        """``Type/id``, or ``Type url|version`` when that is more telling, for messages."""
        url, version = self.resource.get("url"), self.resource.get("version")
        if isinstance(url, str) and url:
            return f"{self.resource_type} {url}" + (f"|{version}" if isinstance(version, str) else "")
        resource_id = self.resource.get("id")
        return f"{self.resource_type}/{resource_id}" if resource_id else self.resource_type

    @property
    def location(self) -> str:
        return self.source + (f" entry[{self.entry}]" if self.entry is not None else "")


def _entries(resource: dict[str, Any], source: str) -> list[Loaded]:
    if resource.get("resourceType") != "Bundle":
        return [Loaded(source, resource)]
    kind = resource.get("type")
    if not isinstance(kind, str) or kind not in BUNDLE_TYPES:
        raise FhirFormatError(
            f"{source}: a Bundle of type {kind!r} is not an exchange file (accepted: {', '.join(sorted(BUNDLE_TYPES))})"
        )
    loaded = []
    entries = resource.get("entry") or []
    if not isinstance(entries, list):
        raise FhirFormatError(f"{source}: Bundle.entry must be a list")
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise FhirFormatError(f"{source}: Bundle.entry[{index}] is not an object")
        search = entry.get("search")
        if isinstance(search, Mapping) and search.get("mode") == "outcome":
            continue  # a searchset's OperationOutcome about the search, not content
        inner = entry.get("resource")
        if inner is None:
            continue  # e.g. a DELETE in a transaction: nothing to validate or import
        if not isinstance(inner, dict) or not isinstance(inner.get("resourceType"), str):
            raise FhirFormatError(f"{source}: Bundle.entry[{index}].resource is not a FHIR resource")
        full_url = entry.get("fullUrl")
        loaded.append(Loaded(source, inner, index, full_url if isinstance(full_url, str) else None))
    return loaded


def load_bytes(data: bytes, source: str, *, limits: PackageLimits | None = None) -> list[Loaded]:
    """The resources in one document or package (``source`` names it in locations and errors)."""
    if data.startswith(GZIP_MAGIC):
        package = read_package(data, limits=limits, source=source)
        loaded: list[Loaded] = []
        for member in package.resource_files():
            member_source = f"{source}!{member}"
            try:
                loaded += _entries(read_resource(package.files[member]), member_source)
            except FhirFormatError as exc:
                raise FhirFormatError(f"{member_source}: {exc}") from None
        return loaded
    try:
        resource = read_resource(data)
    except FhirFormatError as exc:
        raise FhirFormatError(f"{source}: {exc}") from None
    return _entries(resource, source)


def _read_file(path: Path, max_bytes: int) -> bytes:
    return read_regular_file(path, max_bytes=max_bytes)


def load_path(path: str | os.PathLike[str], *, limits: PackageLimits | None = None) -> list[Loaded]:
    """The resources of a file, or of every ``*.json``/``*.xml``/``*.tgz`` file in a folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES)
        if not files:
            raise InputError(str(path), "the folder holds no .json, .xml or .tgz file")
        return [item for file in files for item in load_path(file, limits=limits)]
    if not path.exists():
        raise InputError(str(path), "no such file or folder")
    max_bytes = (limits or PackageLimits()).max_compressed_bytes
    return load_bytes(_read_file(path, max(max_bytes, MAX_DOCUMENT_BYTES)), str(path), limits=limits)


def load_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Loaded]:
    """:func:`load_path` of each path, in order."""
    return [item for path in paths for item in load_path(path)]
