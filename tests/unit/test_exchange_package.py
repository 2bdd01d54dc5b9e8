"""FHIR NPM packages: layout, deterministic bytes, round trip, and refusing hostile archives."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from fhir_desens.cli import main
from fhir_desens.errors import FhirFormatError, InputError
from fhir_desens.exchange.load import load_bytes
from fhir_desens.exchange.package import (
    FhirPackage,
    PackageLimits,
    build_package,
    package_protocols,
    read_package,
)
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.plandefinition import library_bundle
from fhir_desens.protocol.library import builtin_protocols, get_protocol

MANIFEST = json.dumps({"name": "evil.package", "version": "1.0.0", "fhirVersions": ["4.0.1"]}).encode()


def library_resources() -> list[dict[str, Any]]:
    return [entry["resource"] for entry in library_bundle(list(builtin_protocols().values()))["entry"]]


def tgz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A gzip-compressed tar built member by member (for hostile archives)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue())


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special_member(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


# --- building -----------------------------------------------------------------------------------


def test_package_layout_manifest_and_index() -> None:
    package = read_package(package_protocols(list(builtin_protocols().values())))
    resources = library_resources()
    assert all(name.startswith("package/") for name in package.files)
    assert package.manifest["name"] == "fhir-desens.protocols"
    assert package.manifest["canonical"] == c.CANONICAL_BASE
    assert package.manifest["fhirVersions"] == ["4.0.1"]
    assert package.manifest["dependencies"]["hl7.fhir.r4.core"] == "4.0.1"
    assert package.manifest["type"]
    expected = {f"package/{r['resourceType']}-{r['id']}.json" for r in resources}
    assert set(package.resource_files()) == expected
    assert package.index is not None and package.index["index-version"] == 1
    by_file = {entry["filename"]: entry for entry in package.index["files"]}
    assert set(by_file) == {name.removeprefix("package/") for name in expected}
    step = by_file["ActivityDefinition-iv-12-step-3-bag-step-1.json"]
    assert step == {
        "filename": "ActivityDefinition-iv-12-step-3-bag-step-1.json",
        "resourceType": "ActivityDefinition",
        "id": "iv-12-step-3-bag-step-1",
        "url": c.activity_definition("iv-12-step-3-bag-step-1"),
        "version": "1.0.0",
        "kind": "MedicationRequest",
    }
    assert by_file["PlanDefinition-iv-12-step-3-bag.json"]["url"] == c.plan_definition("iv-12-step-3-bag")


def test_the_same_input_gives_the_same_bytes_whatever_the_order() -> None:
    resources = library_resources()
    first = build_package(resources, name="example.protocols", version="2.0.0")
    assert first == build_package(resources, name="example.protocols", version="2.0.0")
    assert first == build_package(list(reversed(resources)), name="example.protocols", version="2.0.0")
    assert first != build_package(resources, name="example.protocols", version="2.0.1")


def test_archive_metadata_is_fixed() -> None:
    data = build_package(library_resources()[:3])
    assert data[4:8] == b"\x00\x00\x00\x00"  # gzip header mtime 0
    assert not data[3] & 0x08  # no file name in the gzip header
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
        (499162500, 0, 0, "", "", 0o644)
    }


def test_round_trip_gives_back_every_resource() -> None:
    resources = library_resources()
    loaded = load_bytes(build_package(resources), "lib.tgz")
    by_key = {(item.resource["resourceType"], item.resource["id"]): item.resource for item in loaded}
    assert len(loaded) == len(resources)
    for resource in resources:
        assert by_key[(resource["resourceType"], resource["id"])] == resource
    assert all(item.source.startswith("lib.tgz!package/") for item in loaded)


def test_guide_travels_inside_when_asked() -> None:
    package = read_package(package_protocols([get_protocol("iv-12-step-3-bag")], include_guide=True))
    types = {name.removeprefix("package/").split("-", 1)[0] for name in package.resource_files()}
    assert {"StructureDefinition", "CodeSystem", "ValueSet", "PlanDefinition", "ActivityDefinition"} <= types
    assert c.IG_PACKAGE_NAME not in package.manifest["dependencies"]
    plain = read_package(package_protocols([get_protocol("iv-12-step-3-bag")]))
    assert plain.manifest["dependencies"][c.IG_PACKAGE_NAME] == c.IG_VERSION


def test_resources_need_a_unique_type_and_id() -> None:
    resource = {"resourceType": "PlanDefinition", "id": "x", "status": "draft"}
    with pytest.raises(InputError, match="two resources"):
        build_package([resource, dict(resource)])
    with pytest.raises(InputError, match="id"):
        build_package([{"resourceType": "PlanDefinition", "status": "draft"}])
    with pytest.raises(InputError, match="--name"):
        build_package([resource], name="Not A Name")


def test_package_command_writes_the_package(tmp_path: Path) -> None:
    out = tmp_path / "lib.tgz"
    assert main(["package", "--out", str(out), "--protocol", "iv-12-step-3-bag"]) == 0
    assert out.read_bytes() == package_protocols([get_protocol("iv-12-step-3-bag")])


def test_package_command_refuses_an_unknown_protocol(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lib.tgz"
    assert main(["package", "--out", str(out), "--protocol", "no-such-protocol"]) == 2
    assert "unknown protocol" in capsys.readouterr().err
    assert not out.exists()


# --- reading hostile archives -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (file_member("/etc/evil.json", b"{}"), "absolute"),
        (file_member("package/../../evil.json", b"{}"), "'..'"),
        (file_member("other/evil.json", b"{}"), "outside"),
        (file_member("package\\evil.json", b"{}"), "non-POSIX"),
        (special_member("package/link.json", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (special_member("package/hard.json", tarfile.LNKTYPE, "package/package.json"), "link"),
        (special_member("package/dev.json", tarfile.CHRTYPE), "device"),
        (special_member("package/fifo.json", tarfile.FIFOTYPE), "device"),
    ],
)
def test_unsafe_members_are_refused(member: tuple[tarfile.TarInfo, bytes | None], reason: str) -> None:
    data = tgz([file_member("package/package.json", MANIFEST), member])
    with pytest.raises(FhirFormatError, match="refused") as raised:
        read_package(data)
    assert reason in str(raised.value)


def test_nothing_is_ever_extracted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = tgz([file_member("package/package.json", MANIFEST), file_member("package/../escaped.json", b"{}")])
    with pytest.raises(FhirFormatError):
        read_package(data)
    package = read_package(tgz([file_member("package/package.json", MANIFEST)]))
    assert isinstance(package, FhirPackage)
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent / "escaped.json").exists()


def test_size_limits() -> None:
    limits = PackageLimits(max_member_bytes=1000, max_total_bytes=1500, max_members=3)
    big = tgz([file_member("package/package.json", MANIFEST), file_member("package/a.json", b" " * 1001)])
    with pytest.raises(FhirFormatError, match="limit 1000"):
        read_package(big, limits=limits)
    total = tgz(
        [file_member("package/package.json", MANIFEST)]
        + [file_member(f"package/{n}.json", b" " * 800) for n in "ab"]
    )
    with pytest.raises(FhirFormatError, match="1500 bytes of content"):
        read_package(total, limits=limits)
    many = tgz(
        [file_member("package/package.json", MANIFEST)]
        + [file_member(f"package/{n}.json", b"{}") for n in "abc"]
    )
    with pytest.raises(FhirFormatError, match="more than 3 members"):
        read_package(many, limits=limits)
    with pytest.raises(FhirFormatError, match="bytes"):
        read_package(big, limits=PackageLimits(max_compressed_bytes=10))


def test_a_gzip_bomb_stops_early() -> None:
    # A member header that is honest about its size is refused by the size limits; a pax header
    # record is read by tarfile before any member is seen, so the decompressed stream is bounded too.
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("package/package.json")
        info.pax_headers = {"comment": "a" * (32 * 1024 * 1024)}
        info.size = len(MANIFEST)
        tar.addfile(info, io.BytesIO(MANIFEST))
    bomb = gzip.compress(raw.getvalue(), compresslevel=9)
    assert len(bomb) < 200_000
    limits = PackageLimits(max_total_bytes=1024 * 1024, max_members=10)
    with pytest.raises(FhirFormatError, match="once decompressed"):
        read_package(bomb, limits=limits)
    honest = tgz(
        [
            file_member("package/package.json", MANIFEST),
            file_member("package/zeros.json", bytes(4 * 1024 * 1024)),
        ]
    )
    with pytest.raises(FhirFormatError, match="bytes of content"):
        read_package(honest, limits=limits)


def test_not_a_package() -> None:
    with pytest.raises(FhirFormatError, match="gzip"):
        read_package(b"PK\x03\x04 a zip file")
    with pytest.raises(FhirFormatError):
        read_package(b"\x1f\x8b" + b"corrupt" * 10)
    with pytest.raises(FhirFormatError, match=r"package\.json"):
        read_package(tgz([file_member("package/a.json", b"{}")]))
    with pytest.raises(FhirFormatError, match="twice"):
        read_package(tgz([file_member("package/package.json", MANIFEST)] * 2))
    r5 = json.dumps({"name": "r5.package", "version": "1.0.0", "fhirVersions": ["5.0.0"]}).encode()
    with pytest.raises(FhirFormatError, match="R4"):
        read_package(tgz([file_member("package/package.json", r5)]))


def test_only_top_level_package_files_are_resources() -> None:
    resource = json.dumps({"resourceType": "Basic", "id": "b", "code": {"text": "x"}}).encode()
    data = tgz(
        [
            file_member("package/package.json", MANIFEST),
            file_member("package/.index.json", b'{"index-version": 1, "files": []}'),
            file_member("package/Basic-b.json", resource),
            file_member("package/examples/Basic-c.json", resource),
            file_member("package/other/notes.txt", b"notes"),
        ]
    )
    assert read_package(data).resource_files() == ["package/Basic-b.json"]
    assert [item.resource["id"] for item in load_bytes(data, "p.tgz")] == ["b"]
