"""A bedside session as FHIR R4 resources: what each resource says, and that each parses as R4."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from fhir_desens.course.bedside.fhir_map import Outgoing, session_resources
from fhir_desens.fhir.models import try_parse
from tests.bedside_session import Bedside


@pytest.fixture(scope="module")
def resources() -> list[Outgoing]:
    bedside = Bedside()
    bedside.reaction_at_step_11()
    return session_resources(bedside.state)


def strip_items(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip_items(v) for k, v in node.items() if k != "_item"}
    if isinstance(node, list):
        return [strip_items(v) for v in node]
    return node


def of_type(resources: list[Outgoing], resource_type: str) -> list[dict[str, Any]]:
    return [o.resource for o in resources if o.resource_type == resource_type]


def test_every_resource_is_valid_r4(resources: list[Outgoing]) -> None:
    for outgoing in resources:
        model, issues = try_parse(strip_items(outgoing.resource))
        assert model is not None, (outgoing.key, issues)


def test_keys_and_identifiers_are_unique_and_stable(resources: list[Outgoing]) -> None:
    keys = [o.key for o in resources]
    assert len(keys) == len(set(keys))
    values = [o.identifier["value"] for o in resources]
    assert len(values) == len(set(values))


def test_the_session_is_a_completed_procedure_with_cpt_95180(resources: list[Outgoing]) -> None:
    [procedure] = of_type(resources, "Procedure")
    assert procedure["status"] == "completed"
    assert procedure["code"]["coding"][0] == {
        "system": "http://www.ama-assn.org/go/cpt",
        "code": "95180",
        "display": "Rapid desensitization procedure, each hour",
    }
    assert {c["coding"][0]["code"] for c in procedure["complication"]} == {"418290006", "247472004"}


def test_one_administration_per_rate_segment(resources: list[Outgoing]) -> None:
    steps = [r for r in of_type(resources, "MedicationAdministration") if "effectivePeriod" in r]
    assert len(steps) == 14  # 12 planned, the paused step 11, then steps 10 and 11 again and 12
    assert [r["status"] for r in steps].count("stopped") == 1
    paused = next(r for r in steps if r["status"] == "stopped")
    assert paused["request"] == {"reference": "MedicationRequest/mr11"}
    assert paused["dosage"]["rateQuantity"] == {
        "value": Decimal("40.0"),
        "unit": "mL/h",
        "system": "http://unitsofmeasure.org",
        "code": "mL/h",
    }
    assert paused["dosage"]["dose"]["value"] == Decimal("6.3496320")
    assert all(r["partOf"][0]["_item"] == "procedure" for r in steps)
    total = sum((r["dosage"]["dose"]["value"] for r in steps), Decimal(0))
    assert total == Decimal(400)
    rescue = [r for r in of_type(resources, "MedicationAdministration") if "effectiveDateTime" in r]
    assert {r["medicationCodeableConcept"]["text"] for r in rescue} >= {"diphenhydramine", "famotidine"}
    # the antihistamine given for the reaction (not reasonReference: R4 does not allow an AdverseEvent there)
    assert any(s["type"] == "AdverseEvent" for r in rescue for s in r.get("supportingInformation", []))
    assert not any("reasonReference" in r for r in rescue)


def test_vital_signs_carry_the_r4_profiles_and_us_core_codes(resources: list[Outgoing]) -> None:
    observations = of_type(resources, "Observation")
    spo2 = next(
        o
        for o in observations
        if o["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/oxygensat"]
    )
    assert [c["code"] for c in spo2["code"]["coding"]] == ["59408-5", "2708-6"]
    bp = next(o for o in observations if o["code"]["coding"][0]["code"] == "85354-9")
    assert [c["code"]["coding"][0]["code"] for c in bp["component"]] == ["8480-6", "8462-4"]
    assert all(
        o["status"] == "final" and o["encounter"] == {"reference": "Encounter/e1"} for o in observations
    )
    during = [o for o in observations if "partOf" in o]
    assert during and all(o["partOf"][0]["type"] == "MedicationAdministration" for o in during)


def test_the_reaction_is_an_adverse_event_on_the_paused_administration(resources: list[Outgoing]) -> None:
    [event] = of_type(resources, "AdverseEvent")
    assert event["actuality"] == "actual"
    assert event["severity"]["coding"][0]["code"] == "mild"
    assert event["suspectEntity"][0]["instance"]["type"] == "MedicationAdministration"
    manifestations = [
        e["valueCodeableConcept"]["coding"][0]["code"]
        for e in event["extension"]
        if "valueCodeableConcept" in e
    ]
    assert manifestations == ["418290006", "247472004"]
    assert event["outcome"]["coding"][0]["code"] == "resolved"


def test_provenance_covers_the_whole_record(resources: list[Outgoing]) -> None:
    [provenance] = of_type(resources, "Provenance")
    assert len(provenance["target"]) == len(resources) - 1
    assert {a["who"]["reference"] for a in provenance["agent"]} == {"Practitioner/nurse-1"}


def test_every_symptom_code_names_where_it_was_verified() -> None:
    from fhir_desens.course.bedside.reactions import SYMPTOMS

    for symptom in SYMPTOMS:
        assert symptom.source.strip(), f"{symptom.key}: no source; mark it unverified (text only) instead"
        assert symptom.concept()["coding"] == [
            {"system": "http://snomed.info/sct", "code": symptom.code, "display": symptom.display}
        ]


def test_an_unverified_symptom_code_is_written_as_text_only() -> None:
    from fhir_desens.course.bedside.reactions import Symptom

    unverified = Symptom("odd", "Odd feeling", "999999999", "Odd feeling (finding)", "")
    assert unverified.concept() == {"text": "Odd feeling"}
    assert unverified.coding() == []


def test_every_resource_passes_our_profile_checks(resources: list[Outgoing]) -> None:
    """Our extensions on the AdverseEvent are defined in profiles/ and used in their context."""
    from fhir_desens.fhir.profiles import EXTENSIONS, profile_checks

    for outgoing in resources:
        issues = [i for i in profile_checks(strip_items(outgoing.resource)) if i["severity"] == "error"]
        assert issues == [], (outgoing.key, issues)
    written = {e["url"] for r in of_type(resources, "AdverseEvent") for e in r.get("extension", [])}
    assert written and written <= {x.url for x in EXTENSIONS}


def test_a_reaction_extension_out_of_its_context_is_refused(resources: list[Outgoing]) -> None:
    from fhir_desens.fhir.profiles import profile_checks

    [event] = of_type(resources, "AdverseEvent")
    [procedure] = of_type(resources, "Procedure")
    misplaced = {**strip_items(procedure), "extension": [event["extension"][-1]]}
    assert any("not allowed on Procedure" in i["details"]["text"] for i in profile_checks(misplaced))
