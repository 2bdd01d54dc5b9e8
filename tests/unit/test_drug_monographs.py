"""The packaged drug monographs: complete, sourced, and never emitting an unverified code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_desens.drugs.monograph import diluents, monographs, read_monograph
from fhir_desens.errors import ProtocolDefinitionError

REQUIRED = {
    "carboplatin",
    "cisplatin",
    "oxaliplatin",
    "paclitaxel",
    "docetaxel",
    "rituximab",
    "vancomycin",
    "ceftriaxone",
    "ceftazidime",
    "penicillin-v-potassium",
    "penicillin-g-benzathine",
    "penicillin-g-aqueous",
    "sulfamethoxazole-trimethoprim",
    "aspirin",
    "amiodarone",
}
DATA = Path(__file__).parents[2] / "fhir_desens" / "drugs" / "data" / "monographs"
#: Codes that fixtures/README.md or drug_classes.json list as UNVERIFIED: never emitted.
UNVERIFIED = {"72962", "2191", "10829", "703"}


def test_every_required_drug_has_a_monograph() -> None:
    assert set(monographs()) >= REQUIRED


@pytest.mark.parametrize("drug_id", sorted(REQUIRED))
def test_every_monograph_cites_dated_sources(drug_id: str) -> None:
    item = monographs()[drug_id]
    assert item.sources
    for source in item.sources:
        assert source.date[:4].isdigit(), source
        assert source.citation and source.read
    assert item.source(item.dose.source) is not None


@pytest.mark.invariant("DRUG-CODE-1")
def test_unverified_codes_are_kept_but_never_emitted() -> None:
    emitted = {
        c.code for m in monographs().values() for c in (*m.codes, *(c for p in m.products for c in p.codes))
    }
    recorded = {c.code for m in monographs().values() for p in m.products for c in p.rxnorm}
    assert not emitted & UNVERIFIED
    assert {"72962", "2191", "703"} <= recorded  # recorded for a later check
    docetaxel = monographs()["docetaxel"]
    assert docetaxel.codes == ()
    assert all(not p.codes for p in docetaxel.products)


def test_paclitaxel_needs_a_non_pvc_bag_and_a_0_22_micron_filter() -> None:
    infusion = monographs()["paclitaxel"].infusion
    assert infusion is not None
    assert infusion.container is not None and "non-pvc" in infusion.container.lower()
    assert infusion.filter is not None and "0.22 micron" in infusion.filter


def test_oxaliplatin_refuses_chloride_diluents() -> None:
    infusion = monographs()["oxaliplatin"].infusion
    assert infusion is not None
    assert infusion.compatible_diluents == ("d5w",)
    refused = {i.diluent for i in infusion.incompatible_diluents}
    assert refused == {d.id for d in diluents().values() if d.chloride}


def test_combination_components_are_recorded() -> None:
    combo = monographs()["sulfamethoxazole-trimethoprim"].combination
    assert combo is not None
    assert [c.abbreviation for c in combo.components] == ["SMX", "TMP"]
    assert combo.dose_component == "sulfamethoxazole"


def test_penicillin_v_oral_solution_is_the_wendel_protocol_product_and_coded() -> None:
    product = monographs()["penicillin-v-potassium"].product("penicillin-v-potassium-oral-solution")
    assert product.route == "oral"
    assert "penicillin-v-oral-wendel" in product.protocols
    assert [c.code for c in product.codes] == ["7984"]


def _raw(drug_id: str) -> dict:
    return json.loads((DATA / f"{drug_id}.json").read_text("utf-8"))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["dose"].update(plausible_max="99999"), "dose"),
        (lambda d: d.update(sources=[]), "sources"),
        (lambda d: d["infusion"].update(default_diluent="ringer"), "diluents"),
        (lambda d: d["products"][0].update(route="intrathecal"), "route"),
        (lambda d: d["products"][0]["rxnorm"][0].update(verified="yes"), "rxnorm"),
        (lambda d: d["dose"].update(source="nowhere"), "sources"),
        (
            lambda d: d.update(dose_rounding={"step": "5 mL", "basis": "b", "source": "pi-carboplatin"}),
            "step",
        ),
        (lambda d: d.update(dose_rounding={"step": "10 mg", "basis": "b", "source": "nowhere"}), "sources"),
        (lambda d: d["beyond_use"].update(source="nowhere"), "sources"),
        (lambda d: d["beyond_use"].update(room_temperature_hours=None), "beyond_use"),
        (lambda d: d["beyond_use"].update(verified="yes"), "verified"),
        (lambda d: d["beyond_use"].update(room_temperature_hours="-8"), "room_temperature_hours"),
    ],
)
def test_a_malformed_monograph_is_refused_naming_the_field(mutate, field: str) -> None:
    raw = _raw("carboplatin")
    mutate(raw)
    with pytest.raises(ProtocolDefinitionError, match=field):
        read_monograph(raw, "carboplatin.json", diluents())


def test_beyond_use_facts_cite_a_listed_source_and_say_whether_it_was_re_read() -> None:
    """The labels print the beyond-use time from here (issue 10 §3): hours with a source, verified or not."""
    from decimal import Decimal

    stated = {m.id: m.beyond_use for m in monographs().values() if m.beyond_use is not None}
    assert {"carboplatin", "oxaliplatin", "paclitaxel", "docetaxel", "rituximab"} <= stated.keys()
    carboplatin = stated["carboplatin"]
    assert (
        carboplatin is not None and carboplatin.room_temperature_hours == Decimal(8) and carboplatin.verified
    )
    for drug_id, fact in stated.items():
        assert fact is not None and fact.basis and fact.applies_to, drug_id
        assert monographs()[drug_id].source(fact.source) is not None, drug_id
    assert stated["docetaxel"] is not None and not stated["docetaxel"].verified  # secondary copies only


def test_a_stated_dose_rounding_rule_is_read_and_used_for_per_m2_doses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A monograph may state the step a per-m² dose is rounded to (a vial-size rule); without one it is 1 mg."""
    from decimal import Decimal

    from fhir_desens.course import drug_review
    from fhir_desens.drugs.names import NameResolution

    raw = _raw("carboplatin")
    source = raw["sources"][0]["id"]
    raw["dose_rounding"] = {"step": "10 mg", "basis": "round to the nearest 10 mg", "source": source}
    stated = read_monograph(raw, "carboplatin.json", diluents())
    assert stated.dose_rounding is not None and str(stated.dose_rounding.step) == "10 mg"
    assert drug_review.dose_rounding_for("carboplatin", (), "mg") == (Decimal(1), None)
    monkeypatch.setattr(
        drug_review, "resolution_for", lambda drug, codes: NameResolution("carboplatin", stated, (), "name")
    )
    step, basis = drug_review.dose_rounding_for("carboplatin", (), "mg")
    assert step == Decimal(10) and basis == "round to the nearest 10 mg (carboplatin monograph)"
    assert drug_review.dose_rounding_for("carboplatin", (), "ug") == (Decimal(10000), basis)
