"""The sandbox patients in fixtures/: transaction Bundles that seed the development EHR.

Checks that every fixture is a loadable, idempotent FHIR R4 transaction (urn:uuid fullUrls, conditional
POST on a business identifier, internal references only), that it parses with the R4B models, that the
AllergyIntolerance records keep the US Core invariants, and that the clinical cases the app relies on are
present by key. See fixtures/README.md for the cases and the provenance of every code.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "fixtures"
PATIENT_DIR = FIXTURES / "patients"
PRACTITIONERS_FILE = FIXTURES / "practitioners.json"

ID_SYSTEM = "https://sandbox.fhir-desens.org/id"
MRN_SYSTEM = "https://sandbox.fhir-desens.org/mrn"
KEY_SYSTEM = "https://sandbox.fhir-desens.org/patient-key"
PRACTITIONER_SYSTEM = "https://sandbox.fhir-desens.org/practitioner"
SANDBOX_ALLERGIST = "PR-0001"

SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
AI_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
AI_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"

NO_KNOWN_ALLERGY = "716186003"
STEVENS_JOHNSON = "73442001"

# The eight cases the brief requires (issue 4, section 1), by patient key.
REQUIRED_KEYS = {
    "carboplatin-ovarian",
    "penicillin-pregnancy",
    "rituximab-lymphoma",
    "aspirin-aerd",
    "tmp-smx-hiv",
    "vancomycin-mrsa",
    "sjs-sulfonamide",
    "nka",
}

# key -> (RxNorm codes the active allergy must carry, RxNorm code of the requested drug)
DRUG_CASES = {
    "carboplatin-ovarian": ({"40048"}, "40048"),
    "penicillin-pregnancy": ({"7984"}, "7982"),  # penicillin V allergy, penicillin G benzathine ordered
    "rituximab-lymphoma": ({"121191"}, "121191"),
    "aspirin-aerd": ({"1191"}, "1191"),
    "tmp-smx-hiv": ({"10831"}, "10831"),
    "vancomycin-mrsa": ({"11124"}, "11124"),
    "sjs-sulfonamide": ({"10180"}, "10831"),  # sulfamethoxazole SJS, TMP-SMX requested
    "paclitaxel-high-risk": ({"56946"}, "56946"),
}

URN_UUID = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicates = [k for k, n in Counter(keys).items() if n > 1]
    if duplicates:
        raise ValueError(f"duplicate JSON keys: {duplicates}")
    return dict(pairs)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    return data


PATIENT_FILES = sorted(PATIENT_DIR.glob("*.json"))
ALL_FILES = [*PATIENT_FILES, PRACTITIONERS_FILE]


def _ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(FIXTURES).as_posix() for p in paths]


@pytest.fixture(scope="module")
def bundles() -> dict[str, dict[str, Any]]:
    """Every patient bundle, keyed by the file stem (the patient key)."""
    return {p.stem: _load(p) for p in PATIENT_FILES}


@pytest.fixture(scope="module")
def practitioners_bundle() -> dict[str, Any]:
    return _load(PRACTITIONERS_FILE)


def _resources(bundle: dict[str, Any], resource_type: str | None = None) -> list[dict[str, Any]]:
    out = [e["resource"] for e in bundle["entry"]]
    return [r for r in out if resource_type is None or r["resourceType"] == resource_type]


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _codes(concept: dict[str, Any], system: str) -> set[str]:
    return {c["code"] for c in concept.get("coding", []) if c.get("system") == system}


def _status(concept: dict[str, Any] | None, system: str) -> str | None:
    if concept is None:
        return None
    codes = _codes(concept, system)
    assert len(codes) == 1, f"expected one {system} code, got {codes}"
    return codes.pop()


def _identifier_tokens(resource: dict[str, Any]) -> set[str]:
    return {f"{i['system']}|{i['value']}" for i in resource.get("identifier", [])}


def _patient(bundle: dict[str, Any]) -> dict[str, Any]:
    patients = _resources(bundle, "Patient")
    assert len(patients) == 1
    return patients[0]


# --------------------------------------------------------------------------- structure of every file


def test_fixture_files_exist() -> None:
    assert PRACTITIONERS_FILE.is_file()
    assert len(PATIENT_FILES) >= 8


@pytest.mark.parametrize("path", ALL_FILES, ids=_ids(ALL_FILES))
def test_file_is_a_transaction_bundle(path: Path) -> None:
    bundle = _load(path)
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "transaction"
    assert bundle["entry"], "empty bundle"


@pytest.mark.parametrize("path", ALL_FILES, ids=_ids(ALL_FILES))
def test_every_entry_is_an_idempotent_conditional_post(path: Path) -> None:
    bundle = _load(path)
    full_urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(full_urls) == len(set(full_urls)), "duplicate fullUrl"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert URN_UUID.match(entry["fullUrl"]), entry["fullUrl"]
        uuid.UUID(entry["fullUrl"].removeprefix("urn:uuid:"))
        assert "id" not in resource, "seed resources are created by POST and carry no id"
        request = entry["request"]
        assert request["method"] == "POST"
        assert request["url"] == resource["resourceType"]
        condition = request["ifNoneExist"]
        assert condition.startswith("identifier="), condition
        token = condition.removeprefix("identifier=")
        assert token in _identifier_tokens(resource), (
            f"ifNoneExist {token} is not an identifier of the resource"
        )
        system = token.split("|", 1)[0]
        assert system.startswith("https://sandbox.fhir-desens.org/"), (
            "business identifiers use project systems"
        )


@pytest.mark.parametrize("path", ALL_FILES, ids=_ids(ALL_FILES))
def test_parses_with_r4b_models(path: Path) -> None:
    Bundle.model_validate_json(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", ALL_FILES, ids=_ids(ALL_FILES))
def test_every_reference_resolves_inside_the_bundle(path: Path) -> None:
    bundle = _load(path)
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    for entry in bundle["entry"]:
        for reference in _references(entry["resource"]):
            assert reference in full_urls, f"{entry['fullUrl']} refers to {reference} outside the bundle"


@pytest.mark.parametrize("path", ALL_FILES, ids=_ids(ALL_FILES))
def test_every_resource_is_marked_as_test_data(path: Path) -> None:
    bundle = _load(path)
    for resource in _resources(bundle):
        security = {(s["system"], s["code"]) for s in resource["meta"]["security"]}
        assert ("http://terminology.hl7.org/CodeSystem/v3-ActReason", "HTEST") in security
        for identifier in resource.get("identifier", []):
            assert identifier["system"] != "http://hl7.org/fhir/sid/us-npi", (
                "no NPIs: they belong to real people"
            )
        for telecom in resource.get("telecom", []):
            if telecom["system"] == "phone":
                assert re.search(r"555-01\d\d$", telecom["value"]), "use the fictional 555-01xx range"


# --------------------------------------------------------------------------- across files


def test_shared_practitioners_are_identical_everywhere(
    bundles: dict[str, dict[str, Any]], practitioners_bundle: dict[str, Any]
) -> None:
    """A Practitioner embedded in a patient bundle must equal the copy in practitioners.json (same fullUrl,
    same ifNoneExist, same content), so seeding in any order creates one resource per practitioner."""
    shared = {e["request"]["ifNoneExist"]: e for e in practitioners_bundle["entry"]}
    assert all(e["resource"]["resourceType"] == "Practitioner" for e in shared.values())
    assert f"identifier={PRACTITIONER_SYSTEM}|{SANDBOX_ALLERGIST}" in shared
    for key, bundle in bundles.items():
        embedded = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Practitioner"]
        assert any(SANDBOX_ALLERGIST in e["request"]["ifNoneExist"] for e in embedded), key
        for entry in embedded:
            reference = shared[entry["request"]["ifNoneExist"]]
            assert entry == reference, f"{key}: practitioner differs from practitioners.json"


def test_business_identifiers_and_full_urls_are_unique_across_fixtures(
    bundles: dict[str, dict[str, Any]],
) -> None:
    seen: dict[str, tuple[str, str]] = {}
    for key, bundle in bundles.items():
        for entry in bundle["entry"]:
            condition = entry["request"]["ifNoneExist"]
            if entry["resource"]["resourceType"] == "Practitioner":
                continue
            assert condition not in seen, f"{condition} in both {seen[condition][0]} and {key}"
            seen[condition] = (key, entry["fullUrl"])
    full_urls = [full_url for _, full_url in seen.values()]
    assert len(full_urls) == len(set(full_urls))


# --------------------------------------------------------------------------- patients and cases


def test_required_cases_are_present(bundles: dict[str, dict[str, Any]]) -> None:
    missing = REQUIRED_KEYS - set(bundles)
    assert not missing, f"missing required cases: {sorted(missing)}"


@pytest.mark.parametrize("path", PATIENT_FILES, ids=_ids(PATIENT_FILES))
def test_patient_is_identified_by_key_and_mrn(path: Path) -> None:
    bundle = _load(path)
    patient = _patient(bundle)
    tokens = _identifier_tokens(patient)
    assert f"{KEY_SYSTEM}|{path.stem}" in tokens
    mrns = [i for i in patient["identifier"] if i["system"] == MRN_SYSTEM]
    assert len(mrns) == 1
    assert patient["gender"] in {"female", "male"}
    assert patient["birthDate"] <= "2008-11-22", "adults only"
    assert patient["name"][0]["family"] and patient["name"][0]["given"]


def test_mrns_are_unique(bundles: dict[str, dict[str, Any]]) -> None:
    mrns = [
        i["value"] for b in bundles.values() for i in _patient(b)["identifier"] if i["system"] == MRN_SYSTEM
    ]
    assert len(mrns) == len(set(mrns))


@pytest.mark.parametrize("path", PATIENT_FILES, ids=_ids(PATIENT_FILES))
def test_height_and_weight_for_body_surface_area(path: Path) -> None:
    bundle = _load(path)
    by_code = {}
    for obs in _resources(bundle, "Observation"):
        for code in _codes(obs["code"], LOINC):
            by_code[code] = obs
    for loinc, unit in (("8302-2", "cm"), ("29463-7", "kg")):
        obs = by_code[loinc]
        assert obs["status"] == "final"
        quantity = obs["valueQuantity"]
        assert (quantity["system"], quantity["code"]) == (UCUM, unit)
        assert quantity["value"] > 0


@pytest.mark.parametrize("path", PATIENT_FILES, ids=_ids(PATIENT_FILES))
def test_us_core_allergy_intolerance_invariants(path: Path) -> None:
    bundle = _load(path)
    allergies = _resources(bundle, "AllergyIntolerance")
    assert allergies, "every sandbox patient has an allergy list entry (even if it is NKA)"
    patient_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    for allergy in allergies:
        assert allergy["patient"]["reference"] == patient_url
        code = allergy["code"]
        assert code.get("coding") or code.get("text"), "code is required (US Core)"
        for coding in code.get("coding", []):
            assert coding["system"] in {RXNORM, SNOMED}
        verification = _status(allergy.get("verificationStatus"), AI_VERIFICATION)
        if verification == "entered-in-error":
            assert "clinicalStatus" not in allergy, "ait-2: no clinicalStatus when entered-in-error"
        else:
            assert _status(allergy.get("clinicalStatus"), AI_CLINICAL) in {"active", "inactive", "resolved"}
        assert "recordedDate" in allergy
        assert "recorder" in allergy
        for reaction in allergy.get("reaction", []):
            assert reaction["manifestation"], "reaction.manifestation is 1..*"
            for manifestation in reaction["manifestation"]:
                assert manifestation.get("coding") or manifestation.get("text")
                for coding in manifestation.get("coding", []):
                    assert coding["system"] == SNOMED


@pytest.mark.parametrize("path", PATIENT_FILES, ids=_ids(PATIENT_FILES))
def test_medication_requests_carry_what_the_planner_needs(path: Path) -> None:
    bundle = _load(path)
    requests = _resources(bundle, "MedicationRequest")
    assert requests
    for request in requests:
        assert request["status"] in {"active", "on-hold"}
        assert request["intent"] == "order"
        assert _codes(request["medicationCodeableConcept"], RXNORM)
        assert request["authoredOn"]
        assert request["requester"]["reference"]
        assert request["reasonReference"]
        for dosage in request["dosageInstruction"]:
            assert dosage["route"]["coding"][0]["system"] == SNOMED
            dose = dosage["doseAndRate"][0]["doseQuantity"]
            assert dose["system"] == UCUM
            assert dose["value"] > 0
    conditions = {e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition"}
    for request in requests:
        for reason in request["reasonReference"]:
            assert reason["reference"] in conditions


@pytest.mark.parametrize(("key", "case"), sorted(DRUG_CASES.items()), ids=sorted(DRUG_CASES))
def test_allergy_and_requested_drug_of_each_case(
    bundles: dict[str, dict[str, Any]], key: str, case: tuple[set[str], str]
) -> None:
    allergy_codes, drug = case
    bundle = bundles[key]
    active = [
        a
        for a in _resources(bundle, "AllergyIntolerance")
        if _status(a.get("clinicalStatus"), AI_CLINICAL) == "active"
        and _status(a.get("verificationStatus"), AI_VERIFICATION) == "confirmed"
    ]
    assert any(allergy_codes <= _codes(a["code"], RXNORM) for a in active)
    requested = set().union(
        *(_codes(r["medicationCodeableConcept"], RXNORM) for r in _resources(bundle, "MedicationRequest"))
    )
    assert drug in requested


def test_carboplatin_headline_case_has_the_target_dose(bundles: dict[str, dict[str, Any]]) -> None:
    bundle = bundles["carboplatin-ovarian"]
    (request,) = [
        r
        for r in _resources(bundle, "MedicationRequest")
        if "40048" in _codes(r["medicationCodeableConcept"], RXNORM)
    ]
    assert request["status"] == "active"
    dose = request["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert (dose["value"], dose["code"]) == (400, "mg")


def test_pregnancy_is_on_the_problem_list(bundles: dict[str, dict[str, Any]]) -> None:
    codes = set().union(
        *(_codes(c["code"], SNOMED) for c in _resources(bundles["penicillin-pregnancy"], "Condition"))
    )
    assert "77386006" in codes


def test_sjs_patient_allergy_has_an_sjs_manifestation(bundles: dict[str, dict[str, Any]]) -> None:
    (allergy,) = _resources(bundles["sjs-sulfonamide"], "AllergyIntolerance")
    assert _status(allergy["clinicalStatus"], AI_CLINICAL) == "active"
    assert _status(allergy["verificationStatus"], AI_VERIFICATION) == "confirmed"
    assert allergy["criticality"] == "high"
    manifestations = set().union(
        *(_codes(m, SNOMED) for r in allergy["reaction"] for m in r["manifestation"])
    )
    assert STEVENS_JOHNSON in manifestations


def test_nka_patient_has_only_the_no_known_allergy_record(bundles: dict[str, dict[str, Any]]) -> None:
    bundle = bundles["nka"]
    (allergy,) = _resources(bundle, "AllergyIntolerance")
    assert _codes(allergy["code"], SNOMED) == {NO_KNOWN_ALLERGY}
    assert _status(allergy["verificationStatus"], AI_VERIFICATION) == "confirmed"
    assert _status(allergy["clinicalStatus"], AI_CLINICAL) == "active"
    assert "reaction" not in allergy
    # the requested drug is therefore not on the allergy list
    (request,) = _resources(bundle, "MedicationRequest")
    assert _codes(request["medicationCodeableConcept"], RXNORM) == {"32592"}


def test_no_other_patient_mixes_nka_with_real_allergies(bundles: dict[str, dict[str, Any]]) -> None:
    for key, bundle in bundles.items():
        allergies = _resources(bundle, "AllergyIntolerance")
        if any(NO_KNOWN_ALLERGY in _codes(a["code"], SNOMED) for a in allergies):
            assert len(allergies) == 1, key


def test_status_edge_cases_are_real(bundles: dict[str, dict[str, Any]]) -> None:
    allergies = _resources(bundles["allergy-status-edge"], "AllergyIntolerance")
    verification = Counter(_status(a["verificationStatus"], AI_VERIFICATION) for a in allergies)
    clinical = Counter(_status(a.get("clinicalStatus"), AI_CLINICAL) for a in allergies)
    assert verification["entered-in-error"] == 1
    assert clinical["inactive"] == 1
    assert clinical["active"] == 0, "no active allergy: nothing here should trigger desensitization"


def test_text_only_allergy_has_no_coding(bundles: dict[str, dict[str, Any]]) -> None:
    (allergy,) = _resources(bundles["text-only-allergy"], "AllergyIntolerance")
    assert "coding" not in allergy["code"]
    assert "cisplatin" in allergy["code"]["text"].lower()


def test_high_risk_case_has_a_beta_blocker_and_cardiac_disease(bundles: dict[str, dict[str, Any]]) -> None:
    bundle = bundles["paclitaxel-high-risk"]
    drugs = set().union(
        *(_codes(r["medicationCodeableConcept"], RXNORM) for r in _resources(bundle, "MedicationRequest"))
    )
    assert "6918" in drugs  # metoprolol
    (allergy,) = _resources(bundle, "AllergyIntolerance")
    assert any(r["severity"] == "severe" for r in allergy["reaction"])
