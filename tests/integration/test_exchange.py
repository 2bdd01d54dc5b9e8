"""Protocol exchange against the real FHIR server process: package, validate, import, fetch, the CLI.

Tests share the session's server: each uses protocols with a fresh id (``-<tag>``), so its canonical
urls are its own. Servers of their own (``fhir_server_factory``) are only started to break them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fhir_desens.cli import main
from fhir_desens.client.fhir_rest import FhirClient, Versioned
from fhir_desens.errors import ConflictError, FhirServerError, InputError, NotFoundError, ValidationFailed
from fhir_desens.exchange.content import first_difference
from fhir_desens.exchange.fetch import fetch_protocol
from fhir_desens.exchange.importer import (
    ALREADY_PRESENT,
    CONFLICT,
    CREATED,
    FAILED,
    NOT_ATTEMPTED,
    ImportReport,
    import_resources,
)
from fhir_desens.exchange.load import Loaded, load_bytes, load_path
from fhir_desens.exchange.package import package_protocols
from fhir_desens.exchange.validate import medplum_validator
from fhir_desens.fhir import canonical as c
from fhir_desens.fhir.plandefinition import library_bundle, protocol_from_plan_definition
from fhir_desens.io.formats import write_resource
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import get_protocol
from fhir_desens.protocol.model import Protocol
from fhir_desens.protocol.quantity import Quantity
from fhir_desens.sandbox.fhir_server import FhirServerProcess, validate_resources


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


def own(protocol_id: str, tag: str, version: str = "1.0.0") -> Protocol:
    """A built-in protocol under an id (and so canonical urls) of this test only."""
    return replace(get_protocol(protocol_id), id=f"{protocol_id}-{tag}", version=version)


def loaded_of(*protocols: Protocol) -> list[Loaded]:
    return load_bytes(package_protocols(list(protocols), name="test.protocols"), "test.tgz")


def on_server(client: FhirClient, resource_type: str, url: str) -> list[dict[str, Any]]:
    return [r for r in client.search_all(resource_type, [("url", url)]) if r.get("url") == url]


def statuses(report: Any) -> dict[str, int]:
    return {s: report.count(s) for s in (CREATED, ALREADY_PRESENT, CONFLICT, FAILED, NOT_ATTEMPTED)}


def doses(protocol: Protocol) -> list[tuple[Decimal, Decimal, Decimal]]:
    target = None if protocol.fixed_doses else Quantity(Decimal(400), "mg")
    plan = compute_plan(PlanRequest(protocol, "carboplatin", target))
    return [(s.dose.value, s.cumulative_dose.value, s.minutes) for s in plan.steps]


# --- package -> import -> import again -> conflict -> fetch ---------------------------------------


def test_import_twice_then_a_conflict_then_fetch_the_same_protocol(
    server_client: FhirClient, tag: str
) -> None:
    twelve, penicillin = own("iv-12-step-3-bag", tag), own("penicillin-v-oral-wendel", tag)
    loaded = loaded_of(twelve, penicillin)
    first = import_resources(server_client, loaded, structural=medplum_validator())
    assert first.error is None and first.validation.valid, first.text_lines()
    assert statuses(first)[CREATED] == len(loaded) == 13 + 15
    order = [item.resource_type for item in first.items]
    assert order == sorted(order)  # every ActivityDefinition before any PlanDefinition
    url = c.plan_definition(twelve.id)
    [stored] = on_server(server_client, "PlanDefinition", url)

    again = import_resources(server_client, loaded, structural=None)
    assert (
        again.error is None
        and statuses(again)[ALREADY_PRESENT] == len(loaded)
        and statuses(again)[CREATED] == 0
    )
    assert len(on_server(server_client, "PlanDefinition", url)) == 1
    assert (
        len(on_server(server_client, "ActivityDefinition", c.activity_definition(f"{twelve.id}-step-12")))
        == 1
    )

    changed = loaded_of(replace(twelve, description="Someone else's 12 steps"), penicillin)
    conflict = import_resources(server_client, changed, structural=None)
    assert isinstance(conflict.error, ConflictError) and conflict.exit_code == 6
    [item] = [i for i in conflict.items if i.status == CONFLICT]
    assert item.url == url and "description" in (item.detail or "") and item.server_id == stored["id"]
    assert statuses(conflict)[CREATED] == 0
    [after] = on_server(server_client, "PlanDefinition", url)
    assert (
        after["description"] == twelve.description
        and after["meta"]["versionId"] == stored["meta"]["versionId"]
    )

    fetched = fetch_protocol(server_client, url, structural=medplum_validator())
    assert fetched.protocol == twelve and fetched.report.valid
    assert doses(fetched.protocol) == doses(twelve)
    assert first_difference(fetched.bundle, library_bundle([twelve])) is None
    assert fetched.server_ids[f"{url}|1.0.0"] == f"PlanDefinition/{stored['id']}"


def test_fetch_takes_the_newest_version_unless_told(server_client: FhirClient, tag: str) -> None:
    versions = ("1.0.0", "1.10.0", "1.2.0", "1.10.0-draft")
    loaded = [item for v in versions for item in loaded_of(own("aspirin-aerd-90-min", tag, v))]
    assert import_resources(server_client, loaded, structural=None).error is None
    url = c.plan_definition(f"aspirin-aerd-90-min-{tag}")
    assert fetch_protocol(server_client, url, structural=None).protocol.version == "1.10.0"
    pinned = fetch_protocol(server_client, url, "1.2.0", structural=None)
    assert pinned.protocol == own("aspirin-aerd-90-min", tag, "1.2.0")
    with pytest.raises(NotFoundError, match=r"9\.9\.9"):
        fetch_protocol(server_client, url, "9.9.9", structural=None)


def test_fetch_reports_ambiguity(server_client: FhirClient, tag: str) -> None:
    odd = [item for v in ("spring", "autumn") for item in loaded_of(own("aspirin-aerd-90-min", tag, v))]
    assert import_resources(server_client, odd, structural=None).error is None
    with pytest.raises(InputError, match="cannot be ordered"):
        fetch_protocol(server_client, c.plan_definition(f"aspirin-aerd-90-min-{tag}"), structural=None)
    twin = own("tmp-smx-oral-hourly", tag)
    pd = library_bundle([twin])["entry"][0]["resource"]
    server_client.create(pd)
    server_client.create({**pd, "title": "a different protocol under the same url and version"})
    with pytest.raises(FhirServerError, match="different resources"):
        fetch_protocol(server_client, pd["url"], "1.0.0", structural=None)


def test_fetch_refuses_an_inconsistent_protocol(server_client: FhirClient, tag: str, tmp_path: Path) -> None:
    protocol = own("penicillin-v-oral-wendel", tag)
    resources = [e["resource"] for e in library_bundle([protocol])["entry"]]
    resources[3]["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] = Decimal("0.5")  # step 3: 0.4 mL
    for resource in resources:  # published as is by a careless partner: structurally fine
        server_client.create(resource)
    with pytest.raises(ValidationFailed) as raised:
        fetch_protocol(server_client, resources[0]["url"], structural=None)
    assert any("expected 0.4 mL" in i["details"]["text"] for i in raised.value.issues)
    out = tmp_path / "fetched.json"
    assert (
        main(["fetch", "--server", server_client.base_url, "--url", resources[0]["url"], "--out", str(out)])
        == 1
    )
    assert not out.exists()


# --- failures halfway ---------------------------------------------------------------------------


def test_a_server_refusing_one_resource(
    fhir_server_factory: Callable[..., FhirServerProcess], tag: str
) -> None:
    server = fhir_server_factory(max_body_bytes=4000)  # step activities fit, PlanDefinitions do not
    loaded = loaded_of(own("aspirin-aerd-90-min", tag), own("iv-8-step-2-bag", tag))
    with FhirClient(server.base_url) as client:
        report = import_resources(client, loaded, structural=None)
        assert isinstance(report.error, FhirServerError) and report.exit_code == 4
        assert statuses(report) == {
            CREATED: 4 + 8,
            ALREADY_PRESENT: 0,
            CONFLICT: 0,
            FAILED: 1,
            NOT_ATTEMPTED: 1,
        }
        [failed] = [i for i in report.items if i.status == FAILED]
        assert failed.resource_type == "PlanDefinition" and "413" in (failed.detail or "")
        created = {(i.url, i.server_id) for i in report.items if i.status == CREATED}
        stored = {(r["url"], r["id"]) for r in client.search_all("ActivityDefinition", {"_count": "100"})}
        assert stored == created and client.search_all("PlanDefinition") == []
        lines = report.text_lines()
        assert lines[-1].endswith("12 created, 0 already present, 0 conflict, 1 failed, 1 not attempted")
        assert "NOT complete" in lines[-1]


class _StopsAfter(FhirClient):
    """A client whose server dies after a number of creates, or of batches (a crash mid-import)."""

    def __init__(self, server: FhirServerProcess, writes: int) -> None:
        super().__init__(server.base_url)
        self.server, self.left = server, writes

    def _count_down(self) -> None:
        if self.left == 0:
            self.server.stop()
        self.left -= 1

    def create(self, resource: Mapping[str, Any], **options: Any) -> Versioned:
        self._count_down()
        return super().create(resource, **options)

    def batch(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        self._count_down()
        return super().batch(bundle)


def test_a_server_dying_halfway(fhir_server_factory: Callable[..., FhirServerProcess], tag: str) -> None:
    loaded = loaded_of(own("tmp-smx-oral-hourly", tag))
    with _StopsAfter(fhir_server_factory(), writes=3) as client:
        report = import_resources(client, loaded, structural=None, batch_size=1)
    assert report.exit_code == 5, report.text_lines()
    assert statuses(report) == {CREATED: 3, ALREADY_PRESENT: 0, CONFLICT: 0, FAILED: 1, NOT_ATTEMPTED: 3}
    assert [i.status for i in report.items][:4] == [CREATED, CREATED, CREATED, FAILED]
    assert all(i.server_id for i in report.items[:3])


def test_a_server_dying_between_batches(
    fhir_server_factory: Callable[..., FhirServerProcess], tag: str
) -> None:
    loaded = loaded_of(own("tmp-smx-oral-hourly", tag))  # 6 step activities, then the protocol
    with _StopsAfter(fhir_server_factory(), writes=1) as client:
        report = import_resources(client, loaded, structural=None, batch_size=2)
    assert report.exit_code == 5, report.text_lines()
    assert [i.status for i in report.items] == [CREATED] * 2 + [FAILED] * 2 + [NOT_ATTEMPTED] * 3
    assert all(i.server_id for i in report.items[:2])
    assert "running the import again completes it" in (report.items[2].detail or "")


class _Meddling(FhirClient):
    """Alters the second batch on its way: an invalid date in one entry, or someone else's copy of
    one entry's resource written just before the batch arrives."""

    def __init__(self, base_url: str, *, invalid: bool = False, written_meanwhile: bool = False) -> None:
        super().__init__(base_url)
        self.batches, self.invalid, self.written_meanwhile = 0, invalid, written_meanwhile

    def batch(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        self.batches += 1
        if self.batches == 2:
            entry = bundle["entry"][1]
            if self.invalid:
                entry["resource"] = {**entry["resource"], "date": "yesterday"}
            if self.written_meanwhile:
                super().create({**entry["resource"], "title": "someone else's step"})
        return super().batch(bundle)


def _import_meddled_with(fhir_client: FhirClient, loaded: Sequence[Loaded], **meddling: bool) -> ImportReport:
    """``loaded`` imported in batches of 2 through a :class:`_Meddling` server."""
    with _Meddling(fhir_client.base_url, **meddling) as client:
        return import_resources(client, loaded, structural=None, batch_size=2)


def _stopped_at_the_fourth(status: str) -> list[str]:
    """The statuses of a 7-resource import whose 4th resource (the second batch's second) ended ``status``:
    the ones after it are not attempted."""
    return [CREATED] * 3 + [status] + [NOT_ATTEMPTED] * 3


def test_a_batch_entry_the_server_refuses_names_the_resource_and_the_field(
    fhir_client: FhirClient, tag: str
) -> None:
    loaded = loaded_of(own("tmp-smx-oral-hourly", tag))
    report = _import_meddled_with(fhir_client, loaded, invalid=True)
    assert isinstance(report.error, FhirServerError) and report.exit_code == 4, report.text_lines()
    assert [i.status for i in report.items] == _stopped_at_the_fourth(FAILED)
    failed = report.items[3]
    detail = failed.detail or ""
    assert "create ActivityDefinition" in detail and "HTTP 4" in detail, detail
    assert "ActivityDefinition.date" in detail, detail
    assert failed.line().startswith(f"failed          ActivityDefinition {failed.url}|1.0.0")
    assert on_server(fhir_client, "ActivityDefinition", failed.url) == []
    assert on_server(fhir_client, "PlanDefinition", c.plan_definition(f"tmp-smx-oral-hourly-{tag}")) == []
    again = import_resources(fhir_client, loaded, structural=None, batch_size=2)
    assert again.error is None and statuses(again)[ALREADY_PRESENT] == 3 and statuses(again)[CREATED] == 4


def test_a_resource_written_meanwhile_with_other_content_is_a_conflict_in_a_batch(
    fhir_client: FhirClient, tag: str
) -> None:
    report = _import_meddled_with(
        fhir_client, loaded_of(own("tmp-smx-oral-hourly", tag)), written_meanwhile=True
    )
    assert isinstance(report.error, ConflictError) and report.exit_code == 6, report.text_lines()
    assert [i.status for i in report.items] == _stopped_at_the_fourth(CONFLICT)
    conflict = report.items[3]
    assert "title" in (conflict.detail or "") and conflict.server_id
    [theirs] = on_server(fhir_client, "ActivityDefinition", conflict.url)
    assert theirs["title"] == "someone else's step" and theirs["meta"]["versionId"] == "1"


class _NoBatch(FhirClient):
    """A server whose CapabilityStatement lists neither batch nor transaction."""

    def capabilities(self) -> dict[str, Any]:
        statement = super().capabilities()
        for rest in statement["rest"]:
            rest["interaction"] = [
                i for i in rest.get("interaction", []) if i.get("code") not in ("batch", "transaction")
            ]
        return statement

    def batch(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        raise AssertionError("no batch to a server without batch")


def test_a_server_without_batch_gets_one_create_per_resource(fhir_client: FhirClient, tag: str) -> None:
    loaded = loaded_of(own("tmp-smx-oral-hourly", tag))
    with _NoBatch(fhir_client.base_url) as client:
        report = import_resources(client, loaded, structural=None)
    assert report.error is None and statuses(report)[CREATED] == len(loaded) == 7


# --- the command line ---------------------------------------------------------------------------


def test_cli_package_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    package = tmp_path / "library.tgz"
    assert main(["package", "--out", str(package)]) == 0
    assert main(["validate", str(package)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("valid: 91 resource(s)")

    bundle = library_bundle([get_protocol("penicillin-v-oral-wendel")])
    bundle["entry"][3]["resource"]["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] = Decimal("0.5")
    bundle["entry"][0]["resource"]["unknownElement"] = True
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(write_resource(bundle))
    assert main(["validate", str(tampered), "--format", "json"]) == 1
    outcome = json.loads(capsys.readouterr().out)
    texts = [issue["details"]["text"] for issue in outcome["issue"]]
    assert any("unknownElement" in t for t in texts) and any("expected 0.4 mL" in t for t in texts)
    assert validate_resources([outcome])[0]["issue"][0]["severity"] == "information"  # valid FHIR itself

    garbage = tmp_path / "garbage.json"
    garbage.write_text("not FHIR")
    assert main(["validate", str(garbage)]) == 2
    assert capsys.readouterr().out.startswith(f"fatal       {garbage}")


def test_cli_import_and_fetch(
    fhir_base_url: str,
    tmp_path: Path,
    tag: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    protocol = own("iv-16-step-4-bag", tag)
    package = tmp_path / "ours.tgz"
    package.write_bytes(package_protocols([protocol]))
    monkeypatch.setenv("PARTNER_TOKEN", "s3cr3t-token-value")
    server = ["--server", fhir_base_url, "--bearer-token-env", "PARTNER_TOKEN"]
    assert main(["import", str(package), *server]) == 0
    out = capsys.readouterr()
    assert "17 created, 0 already present" in out.out and "s3cr3t" not in out.out + out.err
    assert main(["import", str(package), *server, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["complete"] and report["counts"] == {
        "created": 0,
        "already present": 17,
        "conflict": 0,
        "failed": 0,
        "not attempted": 0,
    }

    fetched = tmp_path / "fetched.xml"
    url = c.plan_definition(protocol.id)
    assert main(["fetch", *server, "--url", url, "--format", "xml", "--out", str(fetched)]) == 0
    assert fetched.read_bytes().startswith(b"<")
    [pd] = [item.resource for item in load_path(fetched) if item.resource_type == "PlanDefinition"]
    assert protocol_from_plan_definition(pd) == protocol


def test_cli_import_writes_nothing_when_invalid(
    fhir_client: FhirClient, tmp_path: Path, tag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = library_bundle([own("penicillin-v-oral-wendel", tag)])
    bundle["entry"][0]["resource"]["action"][0]["action"][5]["extension"][0]["extension"][1]["valueQuantity"][
        "value"
    ] = Decimal("0.1")  # step 6 below step 5: INV-04
    path = tmp_path / "bad.json"
    path.write_bytes(write_resource(bundle))
    assert main(["import", str(path), "--server", fhir_client.base_url]) == 1
    captured = capsys.readouterr()
    assert "INV-04" in captured.out and "nothing was written" in captured.err
    assert on_server(fhir_client, "ActivityDefinition", bundle["entry"][1]["resource"]["url"]) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--server", "http://fhir.example.org/fhir"], "plain http"),
        (["--server", "ftp://127.0.0.1/fhir"], "not a FHIR base URL"),
        (["--server", "http://127.0.0.1:9/fhir", "--bearer-token-env", "NO_SUCH_VARIABLE_X"], "not set"),
    ],
)
def test_cli_refuses_unsafe_or_incomplete_server_options(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = tmp_path / "p.tgz"
    package.write_bytes(package_protocols([get_protocol("aspirin-aerd-90-min")]))
    assert main(["import", str(package), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert main(["fetch", "--url", c.plan_definition("x"), *arguments]) == 2
    assert message in capsys.readouterr().err
