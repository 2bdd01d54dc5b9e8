"""FHIR NPM packages (``package.tgz``): build one deterministically, read one safely.

Layout (https://hl7.org/fhir/packages.html): a gzip-compressed tar whose members all live under
``package/``: ``package/package.json`` (name, version, canonical, fhirVersions, type, dependencies),
one JSON file per resource named ``<Type>-<id>.json``, and ``package/.index.json`` (index-version 1:
filename, resourceType, id, url, version, and kind/type where the resource has them).

Building is deterministic: members sorted by name, fixed mtime/owner/mode, a gzip header without
time or file name, so the same resources always give the same bytes (a package can be checksummed
and compared). Reading never touches the disk and refuses anything a hostile archive could use:
absolute paths, ``..``, links, devices and FIFOs, members outside ``package/``, duplicate names, and
sizes beyond :class:`PackageLimits` (per member, in total, in member count, and the decompressed
stream itself, so a gzip bomb stops early).
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO, Any, Final

from fhir_desens.errors import FhirFormatError, InputError
from fhir_desens.fhir import canonical as c
from fhir_desens.io import json as fhir_json

__all__ = [
    "DEFAULT_PACKAGE_NAME",
    "GZIP_MAGIC",
    "FhirPackage",
    "PackageLimits",
    "build_package",
    "index_entry",
    "package_protocols",
    "read_package",
    "resource_filename",
]

GZIP_MAGIC: Final = b"\x1f\x8b"
DEFAULT_PACKAGE_NAME: Final = "fhir-desens.protocols"
PACKAGE_TYPE: Final = "Conformance"  # a package of artifacts, not an implementation guide
#: The mtime npm itself gives every member of a reproducible tarball (1985-10-26T08:15:00Z).
_FIXED_MTIME: Final = 499162500
_ROOT: Final = "package"
_MANIFEST: Final = "package/package.json"
_INDEX: Final = "package/.index.json"
#: Conformance resources of our own guide a package may carry along with the protocols.
_GUIDE_TYPES: Final = ("StructureDefinition", "CodeSystem", "ValueSet")


@dataclass(frozen=True)
class PackageLimits:
    """What :func:`read_package` accepts; anything larger is refused before it is read."""

    max_compressed_bytes: int = 64 * 1024 * 1024
    max_member_bytes: int = 16 * 1024 * 1024
    max_total_bytes: int = 256 * 1024 * 1024
    max_members: int = 50_000

    @property
    def max_stream_bytes(self) -> int:
        """The decompressed tar stream: contents, a header and padding per member, the end record."""
        return self.max_total_bytes + 1024 * (self.max_members + 2) + 2 * tarfile.RECORDSIZE


@dataclass(frozen=True)
class FhirPackage:
    """A package read into memory: its manifest, its index (if any) and its files by member name."""

    manifest: dict[str, Any]
    index: dict[str, Any] | None
    files: dict[str, bytes] = field(repr=False)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", ""))

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", ""))

    def resource_files(self) -> list[str]:
        """Member names of the resources: ``package/*.json`` except the manifest and the index.

        Sub-folders (``examples/``, ``other/``) are not part of what the package publishes.
        """
        names = []
        for name in self.files:
            path = PurePosixPath(name)
            top_level = len(path.parts) == 2 and path.suffix == ".json"
            if top_level and not path.name.startswith(".") and name != _MANIFEST:
                names.append(name)
        return sorted(names)


# --- building -----------------------------------------------------------------------------------


def resource_filename(resource: Mapping[str, Any]) -> str:
    """``<Type>-<id>.json``; the resource needs a type and an id."""
    resource_type, resource_id = resource.get("resourceType"), resource.get("id")
    if not isinstance(resource_type, str) or not isinstance(resource_id, str) or not resource_id:
        raise InputError("resource", "every resource of a package needs a resourceType and an id")
    if "/" in resource_id or resource_id.startswith("."):
        raise InputError(f"{resource_type}.id", f"{resource_id!r} cannot name a file", "a FHIR id")
    return f"{resource_type}-{resource_id}.json"


def index_entry(filename: str, resource: Mapping[str, Any]) -> dict[str, Any]:
    """One ``.index.json`` entry: the identity of the resource, and its kind/type where it has them."""
    entry: dict[str, Any] = {
        "filename": filename,
        "resourceType": resource["resourceType"],
        "id": resource["id"],
    }
    for key in ("url", "version"):
        if isinstance(resource.get(key), str):
            entry[key] = resource[key]
    if isinstance(resource.get("kind"), str):  # StructureDefinition.kind, ActivityDefinition.kind
        entry["kind"] = resource["kind"]
    if resource["resourceType"] == "StructureDefinition" and isinstance(resource.get("type"), str):
        entry["type"] = resource["type"]
    if resource["resourceType"] == "CodeSystem" and isinstance(resource.get("content"), str):
        entry["content"] = resource["content"]
    return entry


def _manifest(
    name: str, version: str, title: str | None, description: str | None, dependencies: Mapping[str, str]
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "name": name,
        "version": version,
        "canonical": c.CANONICAL_BASE,
        "fhirVersions": [c.FHIR_VERSION],
        "type": PACKAGE_TYPE,
        "dependencies": {"hl7.fhir.r4.core": c.FHIR_VERSION, **dependencies},
        "author": "fhir-desens",
    }
    if title:
        manifest["title"] = title
    if description:
        manifest["description"] = description
    return manifest


def _check_name(name: str, version: str) -> None:
    # npm rules that matter to FHIR package registries: lower case, no spaces, a version.
    if not name or name != name.lower() or any(ch.isspace() or ch in "/\\" for ch in name):
        raise InputError("--name", f"{name!r} is not a package name", "lower case, e.g. example.protocols")
    if not version or any(ch.isspace() for ch in version):
        raise InputError("--package-version", f"{version!r} is not a version", "e.g. 1.0.0")


def build_package(
    resources: Iterable[Mapping[str, Any]],
    *,
    name: str = DEFAULT_PACKAGE_NAME,
    version: str = c.IG_VERSION,
    title: str | None = None,
    description: str | None = None,
    dependencies: Mapping[str, str] | None = None,
) -> bytes:
    """The ``.tgz`` bytes of a package of ``resources``; the same input always gives the same bytes."""
    _check_name(name, version)
    files: dict[str, bytes] = {}
    index: list[dict[str, Any]] = []
    for resource in resources:
        filename = resource_filename(resource)
        member = f"{_ROOT}/{filename}"
        if member in files:
            raise InputError("resources", f"two resources would both be {filename}", "unique type and id")
        files[member] = fhir_json.dumps_bytes(resource, indent=2) + b"\n"
        index.append(index_entry(filename, resource))
    index.sort(key=lambda entry: str(entry["filename"]))
    manifest = _manifest(name, version, title, description, dependencies or {})
    files[_MANIFEST] = fhir_json.dumps_bytes(manifest, indent=2) + b"\n"
    files[_INDEX] = fhir_json.dumps_bytes({"index-version": 1, "files": index}, indent=2) + b"\n"
    return _tgz(files)


def _tgz(files: Mapping[str, bytes]) -> bytes:
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member_name in sorted(files):
            data = files[member_name]
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            info.mtime = _FIXED_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as archive:
        archive.write(tar_bytes.getvalue())
    return out.getvalue()


def package_protocols(
    protocols: Sequence[Any],
    *,
    name: str = DEFAULT_PACKAGE_NAME,
    version: str = c.IG_VERSION,
    include_guide: bool = False,
) -> bytes:
    """A package of protocols (PlanDefinitions + ActivityDefinitions), optionally with our guide.

    Without the guide the package depends on ``fhir-desens.ig``; with it, the guide's
    StructureDefinitions, CodeSystems and ValueSets travel inside the package.
    """
    from fhir_desens.fhir.plandefinition import library_bundle

    resources = [entry["resource"] for entry in library_bundle(protocols)["entry"]]
    dependencies = {} if include_guide else {c.IG_PACKAGE_NAME: c.IG_VERSION}
    if include_guide:
        resources += _guide_resources()
    titles = ", ".join(sorted(p.id for p in protocols))
    return build_package(
        resources,
        name=name,
        version=version,
        title="Rapid drug desensitization protocols",
        description=f"fhir-desens protocols: {titles}",
        dependencies=dependencies,
    )


def _guide_resources() -> list[dict[str, Any]]:
    from fhir_desens.fhir.profiles import default_profiles_dir

    folder = default_profiles_dir()
    if not folder.is_dir():
        raise InputError("--include-guide", f"the guide's folder {folder} is missing")
    resources = []
    for path in sorted(folder.glob("*-*.json")):
        if path.name.split("-", 1)[0] in _GUIDE_TYPES:
            resource = fhir_json.load_path(path)
            if isinstance(resource, dict):
                resources.append(resource)
    return resources


# --- reading ------------------------------------------------------------------------------------


class _BoundedReader(io.RawIOBase):
    """Decompresses a gzip stream and refuses to produce more than ``limit`` bytes (gzip bombs)."""

    def __init__(self, data: bytes, limit: int) -> None:
        self._gzip = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
        self._limit = limit
        self._produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            chunk = self._gzip.read(min(len(view), self._limit - self._produced + 1))
        except (OSError, EOFError, zlib.error) as exc:
            raise FhirFormatError(f"package: the gzip data is corrupt ({exc})") from None
        self._produced += len(chunk)
        if self._produced > self._limit:
            raise FhirFormatError(f"package: more than {self._limit} bytes once decompressed")
        view[: len(chunk)] = chunk
        return len(chunk)


def _member_problem(member: tarfile.TarInfo) -> str | None:
    name = member.name
    path = PurePosixPath(name)
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return "an absolute or non-POSIX path"
    if ".." in path.parts:
        return "a '..' path"
    if path.parts[:1] != (_ROOT,):
        return f"outside the {_ROOT}/ folder"
    if member.issym() or member.islnk():
        return "a link"
    if not (member.isfile() or member.isdir()):
        return "a device, FIFO or other special file"
    return None


def read_package(data: bytes, *, limits: PackageLimits | None = None, source: str = "package") -> FhirPackage:
    """Read a package's members into memory, refusing anything unsafe (see the module documentation).

    Raises :class:`FhirFormatError` naming the member and the reason; nothing is ever extracted to disk.
    """
    limits = limits or PackageLimits()
    if len(data) > limits.max_compressed_bytes:
        raise FhirFormatError(f"{source}: {len(data)} bytes (limit {limits.max_compressed_bytes} bytes)")
    if not data.startswith(GZIP_MAGIC):
        raise FhirFormatError(f"{source}: not a gzip-compressed FHIR package (.tgz)")
    stream: IO[bytes] = io.BufferedReader(_BoundedReader(data, limits.max_stream_bytes))
    files: dict[str, bytes] = {}
    total = count = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                count += 1
                if count > limits.max_members:
                    raise FhirFormatError(f"{source}: more than {limits.max_members} members")
                problem = _member_problem(member)
                if problem:
                    raise FhirFormatError(f"{source}: member {member.name[:200]!r} refused: {problem}")
                if member.isdir():
                    continue
                if member.size > limits.max_member_bytes:
                    raise FhirFormatError(
                        f"{source}: member {member.name!r} is {member.size} bytes "
                        f"(limit {limits.max_member_bytes} bytes)"
                    )
                total += member.size
                if total > limits.max_total_bytes:
                    raise FhirFormatError(f"{source}: more than {limits.max_total_bytes} bytes of content")
                name = str(PurePosixPath(member.name))
                if name in files:
                    raise FhirFormatError(f"{source}: member {name!r} appears twice")
                handle = tar.extractfile(member)
                files[name] = handle.read() if handle is not None else b""
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise FhirFormatError(f"{source}: not a readable tar archive ({exc})") from None
    return FhirPackage(_read_manifest(files, source), _read_index(files, source), files)


def _read_manifest(files: Mapping[str, bytes], source: str) -> dict[str, Any]:
    if _MANIFEST not in files:
        raise FhirFormatError(f"{source}: no {_MANIFEST} (not a FHIR package)")
    manifest = fhir_json.loads(files[_MANIFEST])
    if not isinstance(manifest, dict) or not manifest.get("name") or not manifest.get("version"):
        raise FhirFormatError(f"{source}: {_MANIFEST} needs a name and a version")
    versions = manifest.get("fhirVersions") or manifest.get("fhir-version-list") or []
    if isinstance(versions, str):
        versions = [versions]
    if versions and not any(str(v).startswith("4.0") for v in versions):
        raise FhirFormatError(
            f"{source}: a package for FHIR {', '.join(map(str, versions))}; only FHIR R4 (4.0.x) is accepted"
        )
    return manifest


def _read_index(files: Mapping[str, bytes], source: str) -> dict[str, Any] | None:
    if _INDEX not in files:
        return None
    index = fhir_json.loads(files[_INDEX])
    if not isinstance(index, dict):
        raise FhirFormatError(f"{source}: {_INDEX} is not a JSON object")
    return index
