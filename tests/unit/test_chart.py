"""Reading the chart for planning: drug candidates and the latest height and weight."""

from decimal import Decimal
from pathlib import Path

import pytest

from fhir_desens.fhir.allergy import allergy_from_fhir
from fhir_desens.fhir.chart.drugs import allergen_ref, drug_candidates, drug_ref
from fhir_desens.fhir.chart.measurements import latest_body_measurements
from fhir_desens.io.json import load_path
from fhir_desens.protocol.crossreactivity import match_allergies
from fhir_desens.protocol.quantity import Quantity

PATIENTS = Path(__file__).resolve().parents[2] / "fixtures" / "patients"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"


def chart(key):
    """The fixture bundle's resources by type; Conditions keyed by their fullUrl (the references used)."""
    entries = load_path(PATIENTS / f"{key}.json")["entry"]

    def of(kind):
        return [e["resource"] for e in entries if e["resource"]["resourceType"] == kind]

    conditions = {
        e["fullUrl"]: e["resource"] for e in entries if e["resource"]["resourceType"] == "Condition"
    }
    allergies = [allergy_from_fhir(r) for r in of("AllergyIntolerance")]
    return of("MedicationRequest"), allergies, conditions, of("Observation")


def candidates(key):
    requests, allergies, conditions, _ = chart(key)
    return drug_candidates(requests, allergies, conditions=conditions)


def test_carboplatin_patient_gets_the_carboplatin_order_first_with_indication_and_dose():
    first, *rest = candidates("carboplatin-ovarian")
    assert first.name == "Carboplatin"
    assert first.source == "order"
    assert first.rxnorm == ("40048",)
    assert first.route == "intravenous"
    assert first.dose == Quantity(Decimal(400), "mg")
    assert first.indication and "ovar" in first.indication.lower()
    assert first.text.startswith("Carboplatin 400 mg")
    assert rest == []  # the carboplatin allergy is the same drug: de-duplicated


def test_a_tablet_order_of_a_known_product_gives_its_dose_in_mg():
    """Walk 9: "1 tablet" of SMX/TMP DS (RxNorm 198335) left the start form's target dose empty; it is 800 mg
    of sulfamethoxazole, the component the protocol doses; a tablet of an unknown product stays unknown."""
    order = candidates("tmp-smx-hiv")[0]
    assert order.source == "order" and "198335" in order.rxnorm
    assert order.dose == Quantity(Decimal(800), "mg")
    requests, allergies, conditions, _ = chart("tmp-smx-hiv")
    for request in requests:
        for code in request.get("medicationCodeableConcept", {}).get("coding", []):
            code["code"] = "999999" if code["code"] == "198335" else code["code"]
    assert drug_candidates(requests, allergies, conditions=conditions)[0].dose is None


def test_carboplatin_patient_height_and_weight_with_dates():
    _, _, _, observations = chart("carboplatin-ovarian")
    measured = latest_body_measurements(observations)
    assert (measured.height.value, measured.height.unit) == (Decimal(165), "cm")
    assert (measured.weight.value, measured.weight.unit) == (Decimal(62), "kg")
    assert measured.height.date == "2026-11-18T09:10:00-05:00"


def test_sjs_patient_gets_the_on_hold_tmp_smx_order_then_the_sulfamethoxazole_allergy():
    found = candidates("sjs-sulfonamide")
    assert [(c.name, c.source) for c in found] == [
        ("Sulfamethoxazole / trimethoprim", "order"),
        ("Sulfamethoxazole", "allergy"),
    ]
    order = found[0]
    assert set(order.rxnorm) == {"198334", "10831"}
    assert order.route == "oral"
    assert order.dose == Quantity(Decimal(400), "mg")  # one SS tablet: 400 mg of sulfamethoxazole
    assert "transplant" in (order.indication or "").lower()


def test_sjs_order_matches_the_sulfamethoxazole_allergy_as_the_same_ingredient():
    requests, allergies, conditions, _ = chart("sjs-sulfonamide")
    order = drug_candidates(requests, allergies, conditions=conditions)[0]
    refs = [allergen_ref(a, f"a{i}") for i, a in enumerate(allergies)]
    (match,) = match_allergies(drug_ref(order), refs)
    assert match.kind == "same-drug" and match.allergen.key == "a0"


def test_nka_patient_has_no_allergy_candidate_only_the_order():
    found = candidates("nka")
    assert [c.source for c in found] == ["order"]
    assert found[0].name == "Oxaliplatin"
    _, allergies, _, _ = chart("nka")
    assert match_allergies(drug_ref(found[0]), [allergen_ref(a, "k") for a in allergies if a.is_drug]) == ()


def test_entered_in_error_and_inactive_allergies_are_not_candidates():
    assert [c.source for c in candidates("allergy-status-edge")] == ["order"]


def test_penicillin_patient_im_order_has_no_oral_or_iv_route_and_a_units_dose():
    first, second = candidates("penicillin-pregnancy")
    assert first.name == "Penicillin G benzathine" and first.route is None
    assert first.dose == Quantity(Decimal(2400000), "[iU]")
    assert (second.name, second.source) == ("Penicillin V", "allergy")


def test_text_only_allergy_is_recognised_and_deduplicated_with_the_cisplatin_order():
    found = candidates("text-only-allergy")
    assert [(c.name, c.source) for c in found] == [("Cisplatin", "order")]


def test_drugs_outside_the_class_table_are_named_by_their_rxnorm_display():
    names = [c.name for c in candidates("paclitaxel-high-risk")]
    assert names == ["Paclitaxel", "Metoprolol"]


# ----------------------------------------------------------------------------------------------
# synthetic resources for the edge cases


def order(status="active", **fields):
    return {"resourceType": "MedicationRequest", "status": status, **fields}


def concept(text, *codes):
    return {"text": text, "coding": [{"system": RXNORM, "code": c} for c in codes]}


def test_status_order_and_filter():
    requests = [
        order("draft", id="d", medicationCodeableConcept=concept("docetaxel")),
        order("completed", id="c", medicationCodeableConcept=concept("cisplatin")),
        order("on-hold", id="h", medicationCodeableConcept=concept("rituximab")),
        order("active", id="a", medicationCodeableConcept=concept("carboplatin")),
        order("stopped", id="s", medicationCodeableConcept=concept("vancomycin")),
        order("active", id="n", doNotPerform=True, medicationCodeableConcept=concept("aspirin")),
    ]
    found = drug_candidates(requests, [])
    assert [c.order_reference for c in found] == [
        "MedicationRequest/a",
        "MedicationRequest/h",
        "MedicationRequest/d",
    ]


def test_medication_reference_resolved_from_medications_or_contained():
    medication = {
        "resourceType": "Medication",
        "id": "m1",
        "code": concept("Paraplatin 450 mg/45 mL", "40048"),
    }
    requests = [
        order(id="1", medicationReference={"reference": "Medication/m1"}),
        order(
            id="2",
            contained=[{"resourceType": "Medication", "id": "x", "code": concept("Taxotere 80 mg")}],
            medicationReference={"reference": "#x"},
        ),
        order(id="3", medicationReference={"reference": "Medication/missing", "display": "Zortamab"}),
        order(id="4", medicationReference={"reference": "Medication/missing"}),
    ]
    found = drug_candidates(requests, [], {"Medication/m1": medication})
    assert [(c.name, c.rxnorm) for c in found] == [
        ("Carboplatin", ("40048",)),
        ("Docetaxel", ()),
        ("Zortamab", ()),
    ]


@pytest.mark.parametrize(
    ("route", "kind"),
    [
        ({"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]}, "oral"),
        ({"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]}, "intravenous"),
        ({"text": "PO"}, "oral"),
        ({"text": "IV"}, "intravenous"),
        ({"coding": [{"system": "http://snomed.info/sct", "code": "78421000"}], "text": "IM"}, None),
        (None, None),
    ],
)
def test_route(route, kind):
    dosage = [{"route": route}] if route else []
    (found,) = drug_candidates([order(medicationCodeableConcept=concept("x"), dosageInstruction=dosage)], [])
    assert found.route == kind


def test_indication_from_reason_code_and_reference_display():
    request = order(
        medicationCodeableConcept=concept("oxaliplatin"),
        reasonCode=[{"coding": [{"system": "x", "code": "C18.7", "display": "Sigmoid colon cancer"}]}],
        reasonReference=[
            {"reference": "Condition/9", "display": "Liver metastases"},
            {"reference": "Condition/8"},
        ],
    )
    (found,) = drug_candidates([request], [], conditions={"Condition/8": {"code": {"text": "Stage IIIB"}}})
    assert found.indication == "Sigmoid colon cancer; Liver metastases; Stage IIIB"


def test_candidates_deduplicate_by_code_or_normalized_name():
    requests = [
        order(medicationCodeableConcept=concept("Vancomycin 1 g IV", "11124")),
        order(medicationCodeableConcept=concept("vancomycin 1500 mg", "11124")),
        order(medicationCodeableConcept=concept("Zortamab")),
        order(medicationCodeableConcept=concept("zortamab")),
    ]
    assert [c.name for c in drug_candidates(requests, [])] == ["Vancomycin", "Zortamab"]


def obs(code, value, unit, status="final", **fields):
    return {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "valueQuantity": {"value": value, "code": unit},
        **fields,
    }


@pytest.mark.parametrize(
    ("code", "value", "unit", "expected", "target"),
    [
        ("8302-2", Decimal("1.72"), "m", Decimal("172.00"), "height"),
        ("8302-2", Decimal(70), "[in_i]", Decimal("177.80"), "height"),
        ("8308-9", Decimal(69), "in", Decimal("175.26"), "height"),
        ("8306-3", Decimal(520), "mm", Decimal("52.0"), "height"),
        ("29463-7", Decimal(154), "[lb_av]", Decimal("69.85322498"), "weight"),
        ("3141-9", Decimal(3500), "g", Decimal("3.500"), "weight"),
        ("29463-7", Decimal(10), "lb", Decimal("4.5359237"), "weight"),
        ("29463-7", 70, "kg", Decimal(70), "weight"),
        ("29463-7", 70.5, "kg", Decimal("70.5"), "weight"),
    ],
)
def test_unit_conversion_is_exact(code, value, unit, expected, target):
    measured = latest_body_measurements([obs(code, value, unit, effectiveDateTime="2026-01-01")])
    measurement = getattr(measured, target)
    assert measurement.value == expected
    assert measurement.unit == ("cm" if target == "height" else "kg")


def test_preliminary_entered_in_error_unknown_unit_and_nonsense_values_are_skipped():
    observations = [
        obs("29463-7", Decimal(60), "kg", effectiveDateTime="2026-01-01T08:00:00Z", id="ok"),
        obs("29463-7", Decimal(99), "kg", status="preliminary", effectiveDateTime="2026-06-01"),
        obs("29463-7", Decimal(98), "kg", status="entered-in-error", effectiveDateTime="2026-06-02"),
        obs("29463-7", Decimal(97), "stone", effectiveDateTime="2026-06-03"),
        obs("29463-7", Decimal(-5), "kg", effectiveDateTime="2026-06-04"),
        obs("29463-7", True, "kg", effectiveDateTime="2026-06-05"),
        obs("8867-4", Decimal(80), "/min", effectiveDateTime="2026-06-06"),  # heart rate
    ]
    measured = latest_body_measurements(observations)
    assert measured.weight.value == 60 and measured.weight.reference == "Observation/ok"
    assert measured.height is None


def test_amended_and_corrected_count_and_the_latest_wins_across_time_zones():
    observations = [
        obs("8302-2", Decimal(160), "cm", status="amended", effectiveDateTime="2026-03-01T10:00:00+01:00"),
        obs("8302-2", Decimal(161), "cm", status="corrected", effectiveDateTime="2026-03-01T09:30:00Z"),
        obs("8302-2", Decimal(150), "cm", effectiveDateTime="2025-12"),
    ]
    assert latest_body_measurements(observations).height.value == 161  # 09:30Z is after 09:00Z


def test_dates_from_period_instant_or_issued_and_undated_only_as_a_last_resort():
    observations = [
        obs("29463-7", Decimal(1), "kg"),  # undated
        obs("29463-7", Decimal(2), "kg", effectivePeriod={"start": "2026-01-01", "end": "2026-02-01"}),
        obs("29463-7", Decimal(3), "kg", issued="2026-01-15T00:00:00Z"),
        obs("29463-7", Decimal(4), "kg", effectivePeriod={"start": "2026-01-20"}),
    ]
    weight = latest_body_measurements(observations).weight
    assert (weight.value, weight.date) == (2, "2026-02-01")
    undated = latest_body_measurements([obs("29463-7", Decimal(5), "kg")]).weight
    assert (undated.value, undated.date) == (5, None)
    bad_date = latest_body_measurements([obs("29463-7", Decimal(6), "kg", effectiveDateTime="soon")]).weight
    assert (bad_date.value, bad_date.date) == (6, None)


def test_no_observations_gives_nothing():
    assert latest_body_measurements([]).height is None
    assert latest_body_measurements([{"resourceType": "Observation"}, "junk"]).weight is None


def test_allergen_ref_carries_codes_text_and_displays():
    allergy = allergy_from_fhir(
        {
            "resourceType": "AllergyIntolerance",
            "id": "x",
            "code": {
                "text": "Bactrim",
                "coding": [{"system": RXNORM, "code": "10831", "display": "SMX / TMP"}],
            },
        }
    )
    ref = allergen_ref(allergy, "AllergyIntolerance/x")
    assert (ref.key, ref.name, ref.rxnorm) == ("AllergyIntolerance/x", "Bactrim", ("10831",))
    assert "SMX / TMP" in ref.text
