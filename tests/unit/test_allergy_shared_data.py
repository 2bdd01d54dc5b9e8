"""Every AllergyIntolerance in ../shared/data read into domain records (JSON, NDJSON, bundles and XML)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_desens.fhir.allergy import Allergy, allergies_from_bundle, allergy_from_fhir

pytestmark = pytest.mark.shared_data

CATEGORIES = {"food", "medication", "environment", "biologic"}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every AllergyIntolerance in a JSON document, at any depth (bundles, batch responses...)."""
    if isinstance(node, dict):
        if node.get("resourceType") == "AllergyIntolerance":
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _json_resources(root: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(root.rglob("*.json")):
        items = list(_walk(json.loads(path.read_text(encoding="utf-8"))))
        if items:
            found[str(path.relative_to(root))] = items
    for path in sorted(root.rglob("*.ndjson")):
        items = [
            r
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
            for r in _walk(json.loads(line))
        ]
        if items:
            found[str(path.relative_to(root))] = items
    return found


@pytest.fixture(scope="module")
def json_resources(shared_data: Path) -> dict[str, list[dict[str, Any]]]:
    return _json_resources(shared_data)


def _check(allergy: Allergy, raw: dict[str, Any]) -> None:
    assert allergy.id == raw.get("id")
    assert allergy.substance.display, f"{allergy.id}: no substance label"
    assert set(allergy.categories) <= CATEGORIES
    assert allergy.criticality in (None, "low", "high", "unable-to-assess")
    assert allergy.type in (None, "allergy", "intolerance")
    assert allergy.clinical_status in (None, "active", "inactive", "resolved")
    assert allergy.verification_status in (
        None,
        "unconfirmed",
        "presumed",
        "confirmed",
        "refuted",
        "entered-in-error",
    )
    assert len(allergy.reactions) == len(raw.get("reaction") or [])
    for reaction, raw_reaction in zip(allergy.reactions, raw.get("reaction") or [], strict=True):
        assert len(reaction.manifestations) == len(raw_reaction["manifestation"])
        assert all(m.display for m in reaction.manifestations)
        assert reaction.severity == raw_reaction.get("severity")
    codes = [c for c in raw.get("code", {}).get("coding", [])]
    assert len(allergy.substance.codings) == len(codes)


def test_every_json_allergy_is_read(json_resources: dict[str, list[dict[str, Any]]]) -> None:
    total = 0
    for items in json_resources.values():
        for raw in items:
            _check(allergy_from_fhir(raw), raw)
            total += 1
    assert total >= 980, f"only {total} AllergyIntolerance resources found: is ../shared/data complete?"


def test_synthea_bulk_1000(json_resources: dict[str, list[dict[str, Any]]]) -> None:
    allergies = [
        allergy_from_fhir(r)
        for r in json_resources["synthea/bulk-ndjson-1000-patients/AllergyIntolerance.000.ndjson"]
    ]
    assert len(allergies) == 835
    drugs = [a for a in allergies if a.is_drug]
    assert len(drugs) == 91
    assert all(a.rxnorm_codes for a in drugs)
    assert Counter(a.rxnorm_codes[0] for a in drugs)["7984"] == 18  # penicillin V
    severities = Counter(r.severity for a in allergies for r in a.reactions)
    assert severities[None] == 82 and severities["severe"] == 37
    assert all(a.criticality == "low" and a.is_current for a in allergies)


def test_old_synthea_model_has_no_drugs(json_resources: dict[str, list[dict[str, Any]]]) -> None:
    allergies = [
        allergy_from_fhir(r)
        for name, items in json_resources.items()
        if name.startswith("synthea/generated-sample-data-r4/")
        for r in items
    ]
    assert len(allergies) == 104
    assert not [a for a in allergies if a.is_drug]
    assert Counter(a.clinical_status for a in allergies) == {"active": 102, "inactive": 2}


def test_spec_examples(json_resources: dict[str, list[dict[str, Any]]]) -> None:
    by_id = {
        r["id"]: allergy_from_fhir(r)
        for name, items in json_resources.items()
        if name.startswith("fhir-r4-examples/json/allergyintolerance-")
        for r in items
    }
    assert by_id["medication"].is_drug and by_id["medication"].rxnorm_codes == ("7980",)
    assert by_id["medication"].verification_status == "unconfirmed"
    assert by_id["medication"].reactions[0].severity is None
    assert {k for k, a in by_id.items() if a.is_no_known_allergy} == {"nka", "nkda", "nkla"}
    cashew = by_id["example"]
    assert cashew.criticality == "high" and cashew.type == "allergy" and not cashew.is_drug
    assert [r.severity for r in cashew.reactions] == ["severe", "moderate"]
    assert cashew.reactions[0].substance is not None
    assert cashew.onset == "2004" and cashew.notes


def test_us_core_and_inferno(json_resources: dict[str, list[dict[str, Any]]]) -> None:
    us_core = [
        allergy_from_fhir(r)
        for name, items in json_resources.items()
        if name.startswith("us-core-examples/")
        for r in items
    ]
    assert us_core
    sulfonamide = [a for a in us_core if "387406002" in a.snomed_codes]
    assert sulfonamide and all(a.is_drug for a in sulfonamide)
    assert all(a.type is None or a.type in ("allergy", "intolerance") for a in us_core)


def test_bundle_reader_agrees_with_walk(shared_data: Path) -> None:
    path = shared_data / "synthea/pathling-synthea-v3-bundles/json"
    total = 0
    for bundle_path in sorted(path.glob("*.json")):
        bundle = json.loads(bundle_path.read_text(encoding="utf-8"))
        total += len(allergies_from_bundle(bundle))
    assert total == 10


def _xml_files(root: Path) -> list[Path]:
    return [p for p in sorted(root.rglob("*.xml")) if b"AllergyIntolerance" in p.read_bytes()]


def test_every_xml_allergy_is_read(shared_data: Path) -> None:
    xml = pytest.importorskip(
        "fhir_desens.io.xml", reason="fhir_desens.io.xml (XML → JSON) is not available yet"
    )
    total = 0
    for path in _xml_files(shared_data):
        doc = xml.xml_to_json(path.read_bytes())
        for raw in _walk(doc):
            _check(allergy_from_fhir(raw), raw)
            total += 1
    assert total >= 20


def test_xml_and_json_twins_read_the_same(shared_data: Path) -> None:
    xml = pytest.importorskip(
        "fhir_desens.io.xml", reason="fhir_desens.io.xml (XML → JSON) is not available yet"
    )
    pairs = 0
    for xml_path in sorted((shared_data / "fhir-r4-examples/xml").glob("*allergy*.xml")):
        json_path = shared_data / "fhir-r4-examples/json" / (xml_path.stem + ".json")
        from_xml = [allergy_from_fhir(r) for r in _walk(xml.xml_to_json(xml_path.read_bytes()))]
        from_json = [allergy_from_fhir(r) for r in _walk(json.loads(json_path.read_text(encoding="utf-8")))]
        assert from_xml == from_json, xml_path.name
        pairs += 1
    assert pairs >= 6


def test_ips_edge_cases(shared_data: Path) -> None:
    xml = pytest.importorskip(
        "fhir_desens.io.xml", reason="fhir_desens.io.xml (XML → JSON) is not available yet"
    )
    ips = shared_data / "ips-examples"
    multi = allergy_from_fhir(xml.xml_to_json((ips / "allergyintolerance-multiple-codings.xml").read_bytes()))
    assert multi.rxnorm_codes == ("7984",)
    assert multi.snomed_codes == ("764146007", "91936005")
    assert len(multi.substance.codings) == 4  # the ATC code is kept too
    assert multi.is_drug  # no category, but an RxNorm code
    assert multi.onset is None and multi.onset_absent_reason == "unknown"
    abatement = allergy_from_fhir(
        xml.xml_to_json((ips / "allergyIntolerance-with-abatement.xml").read_bytes())
    )
    assert abatement.clinical_status == "resolved" and not abatement.is_current
    bundle = [allergy_from_fhir(r) for r in _walk(xml.xml_to_json((ips / "IPS-bundle-01.xml").read_bytes()))]
    assert any(a.is_no_known_allergy for a in bundle)
    assert any(a.is_drug and a.criticality == "high" for a in bundle)
    assert any(a.verification_status is None for a in bundle)
