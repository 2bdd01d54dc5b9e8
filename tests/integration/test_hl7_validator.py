"""The HL7 validator's engine (java/validator) on everything we publish or send, and what Medplum misses.

Our guide, every example in profiles/, the exported protocol library, an $apply bundle and the sandbox
fixtures must give 0 errors. The regression list holds resources Medplum's validator accepts and the
HL7 engine rejects: each must stay rejected (and our own layers catch what they can).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fhir_desens.exchange.load import Loaded, load_bytes, load_path
from fhir_desens.exchange.validate import ValidationReport, medplum_validator, validate_loaded
from fhir_desens.fhir.apply import ApplyContext, apply_plan
from fhir_desens.fhir.plandefinition import library_bundle
from fhir_desens.io import json as fhir_json
from fhir_desens.io.formats import write_resource
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import builtin_protocols
from fhir_desens.protocol.quantity import Quantity
from fhir_desens.sandbox.fhir_server import validate_resources
from fhir_desens.sandbox.java_services import hl7_validator

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "profiles"


def hl7_report(url: str, loaded: Sequence[Loaded]) -> ValidationReport:
    return validate_loaded(loaded, structural=hl7_validator(url), r4_bindings=False)


def errors(report: ValidationReport) -> list[str]:
    return [issue.line() for issue in report.errors()]


def test_our_guide_is_valid(hl7_validator_url: str) -> None:
    """0 errors; what the engine cannot do offline is reported as information, with the reason."""
    loaded = [item for path in sorted(PROFILES.glob("*-*.json")) for item in load_path(path)]
    assert len(loaded) > 25
    assert errors(hl7_report(hl7_validator_url, loaded)) == []
    outcomes = hl7_validator(hl7_validator_url)([item.resource for item in loaded])
    limitations = [i for i in _issues(outcomes) if i["details"]["text"].startswith("HL7-engine limitation")]
    assert limitations and {i["severity"] for i in limitations} == {"information"}


def test_every_example_is_valid(hl7_validator_url: str) -> None:
    loaded = load_path(PROFILES / "examples")
    assert len(loaded) > 15
    assert errors(hl7_report(hl7_validator_url, loaded)) == []


def test_the_exported_library_is_valid(hl7_validator_url: str) -> None:
    bundle = library_bundle(list(builtin_protocols().values()))
    loaded = load_bytes(write_resource(bundle), "library.json")
    report = hl7_report(hl7_validator_url, loaded)
    assert errors(report) == []
    assert len(report.protocols) == len(builtin_protocols())


def test_an_apply_bundle_is_valid_without_reference_noise(hl7_validator_url: str) -> None:
    plan = compute_plan(
        PlanRequest(builtin_protocols()["iv-12-step-3-bag"], "carboplatin", Quantity(Decimal(400), "mg"))
    )
    context = ApplyContext("Patient/p1", "Practitioner/d1", authored=datetime(2026, 12, 2, 9, tzinfo=UTC))
    loaded = load_bytes(write_resource(apply_plan(plan, context)), "apply.json")
    report = hl7_report(hl7_validator_url, loaded)
    assert errors(report) == []
    assert not [i for i in report.issues if "urn:uuid" in i.message]


def test_the_sandbox_fixtures_are_valid(hl7_validator_url: str) -> None:
    files = sorted((REPO / "fixtures").rglob("*.json"))
    loaded = [item for path in files for item in load_path(path)]
    assert len(loaded) > 10
    assert errors(hl7_report(hl7_validator_url, loaded)) == []


# --- what Medplum accepts and the HL7 engine rejects (regression cases) ---------------------------


def _example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = fhir_json.loads((PROFILES / "examples" / name).read_bytes())
    return data


def _allergy(**fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "patient": {"reference": "Patient/p1"},
        **fields,
    }


def _with(resource: dict[str, Any], change: Any) -> dict[str, Any]:
    changed = copy.deepcopy(resource)
    change(changed)
    return changed


def _set_relationship(pd: dict[str, Any]) -> None:
    pd["action"][0]["action"][1]["relatedAction"][0]["relationship"] = "afterwards"


def _set_unit(order: dict[str, Any]) -> None:
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["code"] = "mgs"


def _step_extension_on_root(pd: dict[str, Any]) -> None:
    pd["extension"].append(pd["action"][0]["action"][0]["extension"][0])


#: (name, resource, what the HL7 engine says): Medplum's validator reports no error on any of them.
MEDPLUM_ACCEPTS_HL7_REJECTS: list[tuple[str, dict[str, Any], str]] = [
    ("criticality outside its required value set", _allergy(criticality="extreme"), "criticality"),
    ("allergy status outside its value set", _allergy(type="sensitivity"), "type"),
    (
        "plan status outside its required value set",
        _with(_example("PlanDefinition-aspirin-aerd-90-min.json"), lambda r: r.update(status="not-a-status")),
        "status",
    ),
    (
        "relatedAction relationship outside its value set",
        _with(_example("PlanDefinition-aspirin-aerd-90-min.json"), _set_relationship),
        "relationship",
    ),
    (
        "an order's unit that is not UCUM",
        _with(_example("MedicationRequest-example-session-1-step-1.json"), _set_unit),
        "mgs",
    ),
    (
        "our step extension outside its context",
        _with(_example("PlanDefinition-aspirin-aerd-90-min.json"), _step_extension_on_root),
        "desens-step",
    ),
]


@pytest.mark.parametrize(
    ("resource", "expected"),
    [pytest.param(r, e, id=name) for name, r, e in MEDPLUM_ACCEPTS_HL7_REJECTS],
)
def test_medplum_accepts_and_the_hl7_engine_rejects(
    hl7_validator_url: str, resource: dict[str, Any], expected: str
) -> None:
    [medplum] = validate_resources([resource])
    assert not [i for i in medplum.get("issue") or [] if i.get("severity") in ("error", "fatal")]
    [outcome] = hl7_validator(hl7_validator_url)([resource])
    found = [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]
    assert found, json.dumps(outcome)[:2000]
    assert any(expected in json.dumps(issue) for issue in found), json.dumps(found)[:2000]


def test_validate_command_with_the_hl7_engine(
    hl7_validator_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fhir_desens.cli import main

    bad = tmp_path / "bad.json"
    bad.write_bytes(write_resource(_allergy(criticality="extreme")))
    monkeypatch.setenv("FHIR_DESENS_HL7_VALIDATOR", hl7_validator_url)
    assert main(["validate", "--engine", "hl7", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "criticality" in out and "invalid:" in out
    assert main(["validate", "--engine", "hl7", str(PROFILES / "examples")]) == 0


def _issues(outcomes: Sequence[Mapping[str, Any]]) -> list[Any]:
    return [i for o in outcomes for i in o.get("issue") or []]


def test_what_the_bedside_writes_is_valid(hl7_validator_url: str) -> None:
    """Every resource of a session with a reaction (our reaction profile and extensions included): 0 errors
    in the HL7 engine and in our own layers (`fhir-desens validate`'s checks)."""
    from fhir_desens.course.bedside.fhir_map import session_resources
    from fhir_desens.fhir.canonical import PROFILE_BEDSIDE_REACTION
    from tests.bedside_session import Bedside

    bedside = Bedside()
    bedside.reaction_at_step_11()
    resources = [_without_items(o.resource) for o in session_resources(bedside.state)]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    loaded = load_bytes(write_resource(bundle), "bedside.json")
    assert errors(hl7_report(hl7_validator_url, loaded)) == []
    assert errors(validate_loaded(loaded, structural=medplum_validator())) == []  # the default engine
    [event] = [r for r in resources if r["resourceType"] == "AdverseEvent"]
    assert event["meta"]["profile"] == [PROFILE_BEDSIDE_REACTION]
    # the profile is enforced: a reaction without a manifestation is refused
    bare = {**event, "extension": [e for e in event["extension"] if "manifestation" not in e["url"]]}
    [outcome] = hl7_validator(hl7_validator_url)([bare])
    assert [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")], json.dumps(outcome)[:2000]


def _without_items(node: Any) -> Any:
    """Logical references as the EHR gets them when the target is not there (the outbox's `_item` key off)."""
    if isinstance(node, dict):
        return {k: _without_items(v) for k, v in node.items() if k != "_item"}
    if isinstance(node, list):
        return [_without_items(v) for v in node]
    return node
