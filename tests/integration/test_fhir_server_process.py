"""The development FHIR server (fhir_desens/sandbox/fhir_server) as a process: start-up, metadata, stop, CLI.

Wire helpers shared by the test_fhir_server_*.py files are in fhir_wire.py; the client has its own
tests in test_fhir_client.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from fhir_desens.cli import build_parser
from fhir_desens.errors import ConfigurationError, FhirServerError
from fhir_desens.sandbox import fhir_server as fhir_server_module
from fhir_desens.sandbox.fhir_server import FhirServerProcess
from tests.integration.fhir_wire import (
    FHIR_JSON,
    TIMEOUT,
    errors,
    issues_text,
    port_open,
    post,
)

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------- process and metadata


def test_listening_line_gives_base_url_on_loopback(fhir_server: FhirServerProcess) -> None:
    assert fhir_server.base_url == f"http://127.0.0.1:{fhir_server.info['port']}/fhir/R4"
    assert fhir_server.info["pid"] == fhir_server.pid
    assert fhir_server.startup_seconds is not None and fhir_server.startup_seconds < 20


def test_capability_statement_describes_the_server(fhir_base_url: str, http: requests.Session) -> None:
    response = http.get(f"{fhir_base_url}/metadata", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    cs = response.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"
    assert cs["implementation"]["url"] == fhir_base_url
    rest = cs["rest"][0]
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch"}
    by_type = {r["type"]: r for r in rest["resource"]}
    assert "SubscriptionStatus" not in by_type  # R4B, not R4
    assert {"AllergyIntolerance", "PlanDefinition", "RequestGroup", "MedicationRequest"} <= set(by_type)
    ai = by_type["AllergyIntolerance"]
    assert {i["code"] for i in ai["interaction"]} >= {
        "read",
        "vread",
        "create",
        "update",
        "delete",
        "search-type",
    }
    assert ai["conditionalCreate"] is True and ai["versioning"] == "versioned-update"
    assert "patient" in {p["name"] for p in ai["searchParam"]}
    assert {
        "name": "validate",
        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
    } in ai["operation"]
    # the statement is itself valid R4
    outcome = post(http, f"{fhir_base_url}/CapabilityStatement/$validate", cs).json()
    assert errors(outcome) == [], issues_text(outcome)


def test_paths_outside_the_base_are_404_with_an_outcome(
    fhir_server: FhirServerProcess, http: requests.Session
) -> None:
    root = fhir_server.base_url.removesuffix("/fhir/R4")
    response = http.get(f"{root}/Patient", timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("resource_type", ["SubscriptionStatus", "Project", "Nope"])
def test_types_that_are_not_r4_are_refused(
    fhir_base_url: str, http: requests.Session, resource_type: str
) -> None:
    assert http.get(f"{fhir_base_url}/{resource_type}", timeout=TIMEOUT).status_code == 404
    response = post(http, f"{fhir_base_url}/{resource_type}", {"resourceType": resource_type})
    assert response.status_code == 404
    assert "Unknown resource type" in issues_text(response.json())


# ---------------------------------------------------------------------------------- process handling


def test_stop_terminates_the_process_and_frees_the_port(
    fhir_server_factory: Callable[..., FhirServerProcess],
) -> None:
    server = fhir_server_factory()
    port = int(server.info["port"])
    assert port_open(port)
    process = server._process
    assert process is not None
    server.stop()
    assert process.returncode == 0  # SIGTERM is a graceful exit
    assert not port_open(port)
    server.stop()  # idempotent
    with pytest.raises(FhirServerError):
        _ = server.base_url


def test_the_server_exits_when_its_parent_goes_away(
    fhir_server_factory: Callable[..., FhirServerProcess],
) -> None:
    server = fhir_server_factory()
    process = server._process
    assert process is not None and process.stdin is not None
    process.stdin.close()  # what the OS does when the Python process dies, even by SIGKILL
    assert process.wait(timeout=10) == 0


def test_missing_node_or_packages_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FHIR_DESENS_NODE", str(tmp_path / "no-node"))
    with pytest.raises(ConfigurationError, match="make node"):
        FhirServerProcess(port=0).start()
    monkeypatch.delenv("FHIR_DESENS_NODE")
    monkeypatch.setattr(fhir_server_module, "SERVER_DIR", tmp_path)
    with pytest.raises(ConfigurationError, match="make node"):
        FhirServerProcess(port=0).start()


def test_cli_parses_the_fhir_server_command() -> None:
    args = build_parser().parse_args(["fhir-server", "--port", "0", "--host", "127.0.0.1"])
    assert (args.command, args.port, args.host, args.profiles) == ("fhir-server", 0, "127.0.0.1", None)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["fhir-server", "--port", "70000"])
    assert exit_info.value.code == 2


def test_cli_serves_in_the_foreground_until_interrupted(http: requests.Session) -> None:
    command = [sys.executable, "-m", "fhir_desens.cli", "fhir-server", "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as cli:
        try:
            assert cli.stdout is not None
            line = cli.stdout.readline()
            assert line.startswith("FHIR R4 server at http://127.0.0.1:"), line
            base_url = line.split()[4]
            assert http.get(f"{base_url}/metadata", timeout=TIMEOUT).status_code == 200
            cli.send_signal(signal.SIGINT)
            assert cli.wait(timeout=15) == 0
            port = int(base_url.split(":")[2].split("/")[0])
            assert not port_open(port)  # the node child was stopped too
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
