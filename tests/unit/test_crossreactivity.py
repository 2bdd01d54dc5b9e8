"""Drug-allergy matching by ingredient and documented cross-reactive class, and the class data file."""

import json
import re
from importlib import resources

import pytest

from fhir_desens.protocol.crossreactivity import (
    AllergenRef,
    DrugRef,
    classes_of,
    drug_classes,
    ingredients_of,
    known_drug_name,
    match_allergies,
)

CARBOPLATIN_ALLERGY = AllergenRef("a-carbo", "Carboplatin", rxnorm=("40048",))


def _data():
    return json.loads(
        resources.files("fhir_desens.protocol").joinpath("data/drug_classes.json").read_text("utf-8")
    )


def _one(drug, allergen):
    matches = match_allergies(drug, [allergen])
    assert len(matches) == 1, matches
    return matches[0]


def test_carboplatin_allergy_matches_a_carboplatin_order_as_the_same_drug():
    match = _one(DrugRef("Carboplatin 400 mg (AUC 5) in 250 mL D5W IV", ("40048",)), CARBOPLATIN_ALLERGY)
    assert match.kind == "same-drug"
    assert match.allergen is CARBOPLATIN_ALLERGY
    assert "carboplatin" in match.explanation


def test_carboplatin_allergy_matches_a_cisplatin_order_through_the_platinum_class():
    match = _one(DrugRef("cisplatin", ("2555",)), CARBOPLATIN_ALLERGY)
    assert match.kind == "same-class"
    assert match.drug_class is not None and match.drug_class.id == "platinum"
    assert "platinum compounds" in match.explanation
    assert "Caiado" in match.drug_class.source


def test_a_text_only_allergy_is_recognised_by_brand_and_generic_name():
    allergy = AllergenRef("t", "PLATINOL (CISplatin) - hives + throat tightness wk 3 (outside hosp)")
    assert _one(DrugRef("Cisplatin 65 mg", ("2555",)), allergy).kind == "same-drug"
    assert _one(DrugRef("Oxaliplatin"), allergy).kind == "same-class"


def test_tmp_smx_order_matches_a_sulfamethoxazole_allergy_and_vice_versa():
    order = DrugRef("Sulfamethoxazole-trimethoprim SS 400/80 mg tablet", ("198334", "10831"))
    sulfa = AllergenRef("s", "Sulfamethoxazole (sulfonamide antibiotic)", rxnorm=("10180",))
    assert _one(order, sulfa).kind == "same-drug"
    combination_allergy = AllergenRef("c", "Sulfamethoxazole-trimethoprim (Bactrim)", rxnorm=("10831",))
    assert _one(DrugRef("sulfamethoxazole", ("10180",)), combination_allergy).kind == "same-drug"
    by_name_only = AllergenRef("n", "TMP/SMX")
    assert _one(DrugRef("sulfamethoxazole"), by_name_only).kind == "same-drug"


def test_trimethoprim_alone_matches_a_combination_allergy_and_says_the_culprit_is_unknown():
    allergy = AllergenRef("c", "Bactrim", rxnorm=("10831",))
    match = _one(DrugRef("trimethoprim"), allergy)
    assert match.kind == "same-drug"
    assert "does not say which ingredient" in match.explanation


def test_a_combination_allergy_reaches_the_class_of_its_sulfonamide_ingredient():
    match = _one(DrugRef("sulfadiazine", ("10171",)), AllergenRef("c", "co-trimoxazole"))
    assert match.kind == "same-class"
    assert match.drug_class.id == "sulfonamide-antibiotics"


def test_amoxicillin_allergy_matches_penicillin_orders_through_the_class():
    amoxicillin = AllergenRef("a", "Amoxicillin", rxnorm=("723",))
    for order in (DrugRef("penicillin G benzathine", ("7982",)), DrugRef("Penicillin VK 500 mg tablet")):
        match = _one(order, amoxicillin)
        assert match.kind == "same-class"
        assert match.drug_class.id == "penicillins"
    assert _one(DrugRef("Augmentin 875 mg"), amoxicillin).kind == "same-drug"


def test_r1_side_chain_links_amoxicillin_to_cephalexin_but_not_to_cefazolin():
    amoxicillin = AllergenRef("a", "Amoxicillin", rxnorm=("723",))
    match = _one(DrugRef("Keflex 500 mg"), amoxicillin)
    assert match.drug_class.id == "aminopenicillin-r1"
    assert "R1" in match.explanation
    assert match_allergies(DrugRef("cefazolin"), [amoxicillin]) == ()


def test_cephalosporins_cross_match_within_the_class_with_the_side_chain_stated():
    match = _one(DrugRef("ceftriaxone", ("2193",)), AllergenRef("c", "Cefazolin"))
    assert match.kind == "same-class" and match.drug_class.id == "cephalosporins"
    assert "R1 side chain" in match.drug_class.cross_reactivity


def test_penicillin_allergy_does_not_match_carbapenems():
    assert match_allergies(DrugRef("meropenem"), [AllergenRef("p", "Penicillin")]) == ()


@pytest.mark.parametrize("non_antibiotic", ["furosemide", "Hydrochlorothiazide", "celecoxib", "Lasix"])
def test_non_antibiotic_sulfonamides_do_not_match_sulfonamide_antibiotic_allergies(non_antibiotic):
    allergens = [
        AllergenRef("1", "Sulfamethoxazole", rxnorm=("10180",)),
        AllergenRef("2", "Sulfa drugs"),
        AllergenRef("3", "sulfamethoxazole / trimethoprim", rxnorm=("10831",)),
    ]
    assert (
        match_allergies(
            DrugRef(non_antibiotic, ("4603",) if non_antibiotic == "furosemide" else ()), allergens
        )
        == ()
    )
    assert classes_of(DrugRef(non_antibiotic)) == ()


def test_furosemide_allergy_does_not_match_tmp_smx():
    assert match_allergies(DrugRef("TMP-SMX", ("10831",)), [AllergenRef("f", "Furosemide", ("4603",))]) == ()


def test_a_class_named_by_the_allergy_list_matches_its_members():
    match = _one(DrugRef("Sulfamethoxazole-trimethoprim DS", ("198335",)), AllergenRef("s", "Sulfa"))
    assert match.kind == "same-class"
    assert "names the class" in match.explanation
    aspirin_record = AllergenRef("a", "Aspirin (and other COX-1 inhibiting NSAIDs)", rxnorm=("1191",))
    assert _one(DrugRef("naproxen"), aspirin_record).drug_class.id == "nsaids-cox1"


def test_exact_matches_come_first_then_class_matches_in_the_callers_order():
    allergens = [
        AllergenRef("oxali", "Oxaliplatin"),
        AllergenRef("unrelated", "Latex"),
        AllergenRef("carbo", "Carboplatin", ("40048",)),
        AllergenRef("cis", "cisplatin"),
    ]
    matches = match_allergies(DrugRef("carboplatin", ("40048",)), allergens)
    assert [(m.allergen.key, m.kind) for m in matches] == [
        ("carbo", "same-drug"),
        ("oxali", "same-class"),
        ("cis", "same-class"),
    ]


def test_unknown_drugs_match_by_identical_code_or_name_only():
    assert (
        _one(DrugRef("Zortamab 10 mg", ("999001",)), AllergenRef("z", "zortamab", ("999001",))).kind
        == "same-drug"
    )
    assert _one(DrugRef("Zortamab 10 mg in 100 mL"), AllergenRef("z", "Zortamab")).kind == "same-drug"
    assert _one(DrugRef("x", snomed=("123",)), AllergenRef("z", "y", snomed=("123",))).kind == "same-drug"
    assert match_allergies(DrugRef("Zortamab"), [AllergenRef("q", "Quintamab")]) == ()
    assert match_allergies(DrugRef("IV fluid"), [AllergenRef("q", "IV contrast")]) == ()


def test_unverified_codes_are_never_used_for_matching():
    # 733 (ampicillin) is listed as an UNVERIFIED candidate code: a drug known only by it is unknown
    assert ingredients_of(DrugRef("Drug X", ("733",))) == frozenset()
    assert match_allergies(DrugRef("Drug X", ("733",)), [AllergenRef("p", "Penicillin")]) == ()


def test_known_drug_name():
    assert known_drug_name(("40048",)) == "carboplatin"
    assert known_drug_name(("198334", "10831")) == "sulfamethoxazole / trimethoprim"
    assert known_drug_name((), "Cisplatin 65 mg (40 mg/m2) in 500 mL 0.9% sodium chloride IV") == "cisplatin"
    assert known_drug_name((), "carboplatin then paclitaxel") is None
    assert known_drug_name((), "Metoprolol succinate 50 mg") is None


def test_classes_of_reports_every_documented_class():
    assert [c.id for c in classes_of(DrugRef("amoxicillin"))] == ["penicillins", "aminopenicillin-r1"]
    assert [c.id for c in classes_of(DrugRef("Gazyva"))] == ["anti-cd20"]
    assert [c.id for c in classes_of(DrugRef("Taxotere"))] == ["taxanes"]
    assert [c.id for c in classes_of(DrugRef("Vancocin"))] == ["glycopeptides"]


# ----------------------------------------------------------------------------------------------
# the data file


REQUIRED = {
    "penicillins": {"penicillin V", "amoxicillin", "penicillin G benzathine"},
    "cephalosporins": {"cefazolin", "ceftriaxone", "cephalexin"},
    "carbapenems": {"meropenem", "imipenem", "ertapenem"},
    "platinum": {"carboplatin", "cisplatin", "oxaliplatin"},
    "taxanes": {"paclitaxel", "docetaxel", "cabazitaxel"},
    "sulfonamide-antibiotics": {"sulfamethoxazole", "sulfadiazine"},
    "nsaids-cox1": {"aspirin", "ibuprofen", "naproxen"},
    "glycopeptides": {"vancomycin"},
    "anti-cd20": {"rituximab", "obinutuzumab", "ofatumumab"},
}


def test_required_classes_and_members_are_present():
    classes = {c.id: c for c in drug_classes()}
    for class_id, members in REQUIRED.items():
        assert members <= set(classes[class_id].members), class_id


def test_every_class_states_its_cross_reactivity_and_cites_a_dated_source():
    for drug_class in drug_classes():
        assert len(drug_class.cross_reactivity) > 40, drug_class.id
        assert re.search(r"\b(19|20)\d\d\b", drug_class.source), drug_class.id


def test_cephalosporin_statement_names_the_r1_side_chain_and_beta_lactams_cite_the_2022_parameter():
    classes = {c.id: c for c in drug_classes()}
    assert "R1 side chain" in classes["cephalosporins"].cross_reactivity
    for class_id in ("penicillins", "cephalosporins", "carbapenems", "sulfonamide-antibiotics"):
        assert "Khan DA" in classes[class_id].source and "2022" in classes[class_id].source


def test_members_are_known_ingredients_and_belong_to_one_drug_class():
    data = _data()
    ingredients = {i["name"] for i in data["ingredients"]}
    owner: dict[str, str] = {}
    for item in data["classes"]:
        assert set(item["members"]) <= ingredients, item["id"]
        assert not set(item.get("not_members", [])) & set(item["members"])
        if item["kind"] == "drug-class":
            for member in item["members"]:
                assert member not in owner, f"{member} in {owner.get(member)} and {item['id']}"
                owner[member] = item["id"]
    side_chain_members = {
        m for item in data["classes"] if item["kind"] == "side-chain-group" for m in item["members"]
    }
    assert side_chain_members - set(owner) == {"aztreonam"}  # the monobactam is in no drug class of its own
    for combination in data["combinations"]:
        assert set(combination["ingredients"]) <= ingredients


def test_codes_are_digits_unique_and_the_fixture_verified_ones_are_used_as_they_are():
    data = _data()
    entries = [(i["name"], c) for i in data["ingredients"] for c in i["rxnorm"]]
    entries += [(c["name"], code) for c in data["combinations"] for code in c["rxnorm"]]
    codes = [c["code"] for _, c in entries]
    assert all(code.isdigit() for code in codes)
    assert len(codes) == len(set(codes))
    assert all(isinstance(c["verified"], bool) and c["verification"] for _, c in entries)
    verified = {name: c["code"] for name, c in entries if c["verified"]}
    for name, code in {
        "carboplatin": "40048",
        "cisplatin": "2555",
        "oxaliplatin": "32592",
        "paclitaxel": "56946",
        "rituximab": "121191",
        "penicillin V": "7984",
        "penicillin G benzathine": "7982",
        "amoxicillin": "723",
        "ceftriaxone": "2193",
        "vancomycin": "11124",
        "aspirin": "1191",
        "sulfamethoxazole": "10180",
    }.items():
        assert verified[name] == code
    unverified = {c["code"] for _, c in entries if not c["verified"]}
    assert {"2191", "2180", "10829"} <= unverified  # UNVERIFIED in fixtures/README.md
    assert all(code in " ".join(data["unverified_codes"]) for code in unverified)


def test_no_synonym_names_two_different_drugs():
    data = _data()
    seen: dict[tuple[str, ...], str] = {}
    items = [(i["name"], [i["name"], *i["synonyms"]]) for i in data["ingredients"]]
    items += [(c["name"], [c["name"], *c["synonyms"]]) for c in data["combinations"]]
    items += [("class:" + c["id"], c.get("aliases", [])) for c in data["classes"]]
    for owner, names in items:
        for name in names:
            words = tuple(re.findall(r"[a-z0-9]+", name.lower()))
            assert seen.setdefault(words, owner) == owner, f"'{name}' names {seen[words]} and {owner}"
