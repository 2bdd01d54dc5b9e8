"""Reading AllergyIntolerance into domain records (fhir_desens.fhir.allergy): targeted cases."""

from __future__ import annotations

import dataclasses

import pytest

from fhir_desens.errors import MappingError
from fhir_desens.fhir.allergy import (
    RXNORM,
    SNOMED,
    Allergy,
    Concept,
    allergies_from_bundle,
    allergy_from_fhir,
    sort_for_display,
)

CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"


def resource(**fields: object) -> dict[str, object]:
    return {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p"}, **fields}


def test_full_record() -> None:
    allergy = allergy_from_fhir(
        resource(
            id="a1",
            clinicalStatus={"coding": [{"system": CLINICAL, "code": "active"}]},
            verificationStatus={"coding": [{"system": VERIFICATION, "code": "confirmed"}], "text": "Active"},
            type="allergy",
            category=["medication"],
            criticality="high",
            code={
                "coding": [
                    {"system": RXNORM, "code": "7980", "display": "Penicillin G"},
                    {"system": SNOMED, "code": "764146007", "display": "Penicillin (substance)"},
                ],
                "text": "penicillin G",
            },
            onsetDateTime="2004",
            recordedDate="2010-03-01",
            lastOccurrence="2012-06",
            note=[{"text": "Tolerated via desensitization 2020"}, {"authorString": "x"}],
            reaction=[
                {
                    "manifestation": [
                        {"coding": [{"system": SNOMED, "code": "247472004", "display": "Hives"}]},
                        {"text": "wheeze"},
                    ],
                    "severity": "moderate",
                    "description": "Hives and wheeze 10 min into infusion",
                    "onset": "2012-06-12",
                    "exposureRoute": {"text": "IV"},
                    "substance": {"text": "penicillin G potassium"},
                    "note": [{"text": "treated with epinephrine"}],
                }
            ],
        )
    )
    assert allergy.id == "a1"
    assert allergy.substance_display == "penicillin G"
    assert allergy.rxnorm_codes == ("7980",)
    assert allergy.snomed_codes == ("764146007",)
    assert allergy.categories == ("medication",)
    assert (allergy.type, allergy.criticality) == ("allergy", "high")
    assert (allergy.clinical_status, allergy.verification_status) == ("active", "confirmed")
    assert allergy.is_drug and allergy.is_current
    assert not allergy.is_entered_in_error and not allergy.is_no_known_allergy
    assert allergy.onset == "2004" and allergy.onset_absent_reason is None
    assert allergy.notes == ("Tolerated via desensitization 2020",)
    (reaction,) = allergy.reactions
    assert [m.display for m in reaction.manifestations] == ["Hives", "wheeze"]
    assert reaction.severity == "moderate"
    assert reaction.exposure_route == Concept("IV")
    assert reaction.notes == ("treated with epinephrine",)
    assert allergy.patient_reference == "Patient/p"
    with pytest.raises(dataclasses.FrozenInstanceError):
        allergy.criticality = "low"  # type: ignore[misc]


def test_minimal_record_is_tolerated() -> None:
    allergy = allergy_from_fhir({"resourceType": "AllergyIntolerance"})
    assert allergy.substance_display == "(substance not recorded)"
    assert allergy.categories == () and allergy.type is None and allergy.criticality is None
    assert allergy.clinical_status is None and allergy.verification_status is None
    assert allergy.reactions == () and not allergy.is_drug and allergy.is_current


def test_data_absent_reason_onset() -> None:
    allergy = allergy_from_fhir(
        resource(
            _onsetDateTime={
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                        "valueCode": "unknown",
                    }
                ]
            }
        )
    )
    assert allergy.onset is None
    assert allergy.onset_absent_reason == "unknown"


@pytest.mark.parametrize(
    ("fields", "onset"),
    [
        ({"onsetAge": {"value": 5, "unit": "years"}}, "age 5 years"),
        ({"onsetPeriod": {"start": "2001", "end": "2003"}}, "2001 – 2003"),
        ({"onsetRange": {"low": {"value": 2, "unit": "a"}}}, "2 a – ?"),
        ({"onsetString": "childhood"}, "childhood"),
    ],
)
def test_onset_variants(fields: dict[str, object], onset: str) -> None:
    assert allergy_from_fhir(resource(**fields)).onset == onset


def test_unknown_codes_and_garbage_are_dropped_not_fatal() -> None:
    allergy = allergy_from_fhir(
        resource(
            criticality="extreme",
            type="sensitivity",
            category="medication",  # a bare string instead of a list
            clinicalStatus="active",  # STU3 style
            verificationStatus={"text": "Confirmed"},
            reaction=[
                {"severity": "fatal", "manifestation": "hives"},
                "junk",
                {"manifestation": [{"foo": 1}]},
            ],
            code={"coding": [{"system": RXNORM}, "junk", {"code": "123"}]},
        )
    )
    assert allergy.criticality is None and allergy.type is None
    assert allergy.categories == ("medication",)
    assert allergy.clinical_status == "active"
    assert allergy.verification_status == "confirmed"
    assert len(allergy.reactions) == 2
    assert allergy.reactions[0].severity is None
    assert allergy.reactions[0].manifestations == ()
    assert allergy.substance_display == "123"


def test_entered_in_error_and_refuted() -> None:
    eie = allergy_from_fhir(
        resource(verificationStatus={"coding": [{"system": VERIFICATION, "code": "entered-in-error"}]})
    )
    assert eie.is_entered_in_error and not eie.is_current
    refuted = allergy_from_fhir(resource(verificationStatus={"coding": [{"code": "refuted"}]}))
    assert refuted.is_refuted and not refuted.is_current
    resolved = allergy_from_fhir(resource(clinicalStatus={"coding": [{"code": "resolved"}]}))
    assert not resolved.is_current


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (SNOMED, "716186003"),
        (SNOMED, "409137002"),
        (SNOMED, "429625007"),
        (SNOMED, "428607008"),
        (SNOMED, "716184000"),
        (SNOMED, "428197003"),
        ("http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips", "no-known-allergies"),
    ],
)
def test_no_known_allergy_codes(system: str, code: str) -> None:
    allergy = allergy_from_fhir(
        resource(category=["medication"], code={"coding": [{"system": system, "code": code}]})
    )
    assert allergy.is_no_known_allergy
    assert not allergy.is_drug


def test_no_information_is_not_no_known_allergy() -> None:
    allergy = allergy_from_fhir(
        resource(
            code={
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips",
                        "code": "no-allergy-info",
                    }
                ]
            }
        )
    )
    assert allergy.is_no_information and not allergy.is_no_known_allergy


def test_drug_detection() -> None:
    rx_only = allergy_from_fhir(resource(code={"coding": [{"system": RXNORM, "code": "7984"}]}))
    assert rx_only.is_drug  # no category: an RxNorm code says drug
    food_with_rx = allergy_from_fhir(
        resource(category=["food"], code={"coding": [{"system": RXNORM, "code": "1"}]})
    )
    assert not food_with_rx.is_drug  # the recorded category wins
    snomed_only = allergy_from_fhir(resource(code={"coding": [{"system": SNOMED, "code": "91935009"}]}))
    assert not snomed_only.is_drug


def test_sort_for_display_puts_drugs_first_then_current() -> None:
    def make(name: str, category: str, status: str = "active") -> Allergy:
        return allergy_from_fhir(
            resource(
                id=name,
                category=[category],
                code={"text": name},
                clinicalStatus={"coding": [{"code": status}]},
            )
        )

    items = [
        make("peanut", "food"),
        make("old-pen", "medication", "resolved"),
        make("latex", "environment"),
        make("sulfa", "medication"),
    ]
    assert [a.id for a in sort_for_display(items)] == ["sulfa", "old-pen", "peanut", "latex"]


def test_bundle_reading_skips_includes_and_other_types() -> None:
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": resource(id="a"), "search": {"mode": "match"}},
            {"resource": resource(id="b"), "search": {"mode": "include"}},
            {"resource": {"resourceType": "Patient", "id": "p"}},
            {"resource": resource(id="c")},
            "junk",
        ],
    }
    assert [a.id for a in allergies_from_bundle(bundle)] == ["a", "c"]


@pytest.mark.parametrize("bad", [{"resourceType": "Patient"}, {}, []])
def test_other_resources_are_refused(bad: object) -> None:
    with pytest.raises(MappingError):
        allergy_from_fhir(bad)  # type: ignore[arg-type]
