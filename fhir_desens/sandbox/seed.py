"""Seed the sandbox FHIR server with the fixture patients and practitioners.

Each file under ``fixtures/patients/`` and ``fixtures/practitioners.json`` is one FHIR ``transaction``
Bundle whose entries are conditional creates (``ifNoneExist``), so posting them again creates nothing:
seeding is idempotent. The summary maps each patient's stable key (the Bundle's
``identifier`` in the ``.../fixture-bundle`` system, else the file name) to the Patient id the server
assigned and a display name; practitioners are keyed by their identifier value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_desens.client.fhir_rest import FhirClient
from fhir_desens.errors import ConfigurationError, FhirServerError
from fhir_desens.io.json import loads
from fhir_desens.sandbox.compartment import reference_id

log = logging.getLogger(__name__)

FIXTURE_BUNDLE_SYSTEM_SUFFIX = "/fixture-bundle"


@dataclass(frozen=True)
class SeededResource:
    key: str
    id: str
    display: str


@dataclass(frozen=True)
class SeedSummary:
    patients: dict[str, SeededResource] = field(default_factory=dict)
    practitioners: dict[str, SeededResource] = field(default_factory=dict)
    created: int = 0  # entries the server answered 201 Created (0 on a repeat)
    matched: int = 0  # entries that matched existing resources (200 OK)

    def patient_id(self, key_or_id: str) -> str:
        """A fixture key (``carboplatin-ovarian``) or a Patient id -> the Patient id."""
        seeded = self.patients.get(key_or_id)
        return seeded.id if seeded else key_or_id


def default_fixtures_dir() -> Path:
    """``<repo>/fixtures`` next to the package (a source checkout)."""
    return Path(__file__).resolve().parents[2] / "fixtures"


def human_name(resource: Mapping[str, Any]) -> str:
    names = resource.get("name")
    if not isinstance(names, list) or not names:
        return str(resource.get("id") or "(no name)")
    official = next((n for n in names if isinstance(n, dict) and n.get("use") == "official"), names[0])
    if not isinstance(official, dict):
        return "(no name)"
    if official.get("text"):
        return str(official["text"])
    parts = [*official.get("prefix", []), *official.get("given", []), official.get("family", "")]
    return " ".join(str(p) for p in parts if p) or "(no name)"


def _bundle_key(bundle: Mapping[str, Any], path: Path) -> str:
    identifier = bundle.get("identifier")
    if isinstance(identifier, dict):
        system = str(identifier.get("system", ""))
        if system.endswith(FIXTURE_BUNDLE_SYSTEM_SUFFIX) and identifier.get("value"):
            return str(identifier["value"])
    return path.stem


def _identifier_value(resource: Mapping[str, Any]) -> str | None:
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("value"):
            return str(identifier["value"])
    return None


def _load(path: Path) -> dict[str, Any]:
    try:
        data = loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigurationError(f"cannot read fixture {path}: {error}") from error
    if (
        not isinstance(data, dict)
        or data.get("resourceType") != "Bundle"
        or data.get("type") != "transaction"
    ):
        raise ConfigurationError(f"fixture {path} is not a transaction Bundle")
    return data


def _post(client: FhirClient, bundle: Mapping[str, Any], path: Path) -> list[tuple[dict[str, Any], str, int]]:
    """Post one bundle; returns (request resource, assigned id, HTTP status) per entry."""
    response = client.transaction(bundle)
    requested = bundle.get("entry") or []
    answered = response.get("entry") or []
    if len(answered) != len(requested):
        raise FhirServerError(f"seeding {path.name}: {len(requested)} entries sent, {len(answered)} answered")
    results: list[tuple[dict[str, Any], str, int]] = []
    for sent, got in zip(requested, answered, strict=True):
        resource = sent.get("resource") or {}
        reply = got.get("response") or {}
        status_text = str(reply.get("status", ""))
        status = int(status_text.split()[0]) if status_text[:3].isdigit() else 0
        resource_type = str(resource.get("resourceType", ""))
        resource_id = reference_id(str(reply.get("location", "")), resource_type)
        returned = got.get("resource")
        if resource_id is None and isinstance(returned, dict):
            resource_id = returned.get("id")
        if not resource_id:
            raise FhirServerError(f"seeding {path.name}: no id for a {resource_type} entry")
        results.append((resource, str(resource_id), status))
    return results


def seed(client: FhirClient, fixtures_dir: Path | None = None) -> SeedSummary:
    """Post every fixture bundle (practitioners first); idempotent. Returns what is there."""
    root = fixtures_dir or default_fixtures_dir()
    files: list[Path] = []
    practitioners_file = root / "practitioners.json"
    if practitioners_file.is_file():
        files.append(practitioners_file)
    patient_files: Sequence[Path] = sorted((root / "patients").glob("*.json"))
    files.extend(patient_files)
    if not files:
        raise ConfigurationError(
            f"no fixtures found under {root} (expected practitioners.json and patients/)"
        )
    summary = SeedSummary()
    created = matched = 0
    for path in files:
        bundle = _load(path)
        for resource, resource_id, status in _post(client, bundle, path):
            created += status == 201
            matched += status == 200
            kind = resource.get("resourceType")
            if kind == "Patient" and path in patient_files:
                key = _bundle_key(bundle, path)
                summary.patients[key] = SeededResource(key, resource_id, human_name(resource))
            elif kind == "Practitioner":
                key = _identifier_value(resource) or resource_id
                summary.practitioners[key] = SeededResource(key, resource_id, human_name(resource))
    log.info(
        "seeded %d patients and %d practitioners (%d created, %d already there)",
        len(summary.patients),
        len(summary.practitioners),
        created,
        matched,
    )
    return SeedSummary(summary.patients, summary.practitioners, created, matched)
