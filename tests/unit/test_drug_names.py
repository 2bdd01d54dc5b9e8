"""Typed drug names resolve against the monographs, with "did you mean" for near misses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_desens.drugs.monograph import monographs
from fhir_desens.drugs.names import resolve_name


@pytest.mark.invariant("DRUG-NAME-1")
@pytest.mark.parametrize(
    ("typed", "drug_id"),
    [
        ("carboplatin", "carboplatin"),
        ("  CARBOPLATIN ", "carboplatin"),
        ("Paraplatin", "carboplatin"),
        ("Bactrim DS", "sulfamethoxazole-trimethoprim"),
        ("TMP-SMX", "sulfamethoxazole-trimethoprim"),
        ("co-trimoxazole", "sulfamethoxazole-trimethoprim"),
        ("Bicillin L-A", "penicillin-g-benzathine"),
        ("pen VK", "penicillin-v-potassium"),
        ("Carboplatin 400 mg (AUC 5) in 250 mL D5W IV", "carboplatin"),
        ("Penicillin G benzathine 2.4 million units IM (Bicillin L-A)", "penicillin-g-benzathine"),
    ],
)
def test_names_synonyms_brands_and_order_texts_resolve(typed: str, drug_id: str) -> None:
    resolution = resolve_name(typed)
    assert resolution.monograph is not None
    assert resolution.monograph.id == drug_id


@pytest.mark.invariant("DRUG-NAME-1")
@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("carboplatn", "carboplatin"),
        ("paclitaxle", "paclitaxel"),
        ("vancomicin", "vancomycin"),
        ("oxaliplatine", "oxaliplatin"),
    ],
)
def test_a_near_miss_is_not_resolved_but_suggested(typed: str, meant: str) -> None:
    resolution = resolve_name(typed)
    assert not resolution.resolved
    assert resolution.suggestions[0].id == meant
    assert f"Did you mean '{resolution.suggestions[0].name}'" in resolution.message


def test_a_verified_code_resolves_an_unknown_text() -> None:
    assert (
        resolve_name("Some local product name", ["198334", "10831"]).monograph.id
        == "sulfamethoxazole-trimethoprim"
    )  # type: ignore[union-attr]


def test_an_unverified_code_resolves_nothing() -> None:
    assert not resolve_name("local product xq", ["72962"]).resolved


@pytest.mark.invariant("DRUG-NAME-2")
def test_an_unknown_name_says_it_can_only_be_planned_uncoded() -> None:
    resolution = resolve_name("zzyzx")
    assert not resolution.resolved and not resolution.suggestions
    assert "uncoded" in resolution.message


def test_two_drugs_in_one_text_resolve_to_neither() -> None:
    assert not resolve_name("carboplatin then paclitaxel").resolved


_NAMES = sorted({n for m in monographs().values() for n in m.names})


@pytest.mark.invariant("DRUG-NAME-1")
@given(st.sampled_from(_NAMES), st.sampled_from(["", " ", "  "]), st.booleans())
def test_every_vocabulary_name_resolves_whatever_its_case_and_spacing(
    name: str, pad: str, upper: bool
) -> None:
    typed = pad + (name.upper() if upper else name) + pad
    resolution = resolve_name(typed)
    assert resolution.monograph is not None
    assert name in resolution.monograph.names or name.lower() in {
        n.lower() for n in resolution.monograph.names
    }


@given(
    st.sampled_from([m.name for m in monographs().values() if len(m.name) >= 8 and " " not in m.name]),
    st.data(),
)
def test_one_deleted_letter_is_suggested_never_silently_resolved(name: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=1, max_value=len(name) - 2))
    typo = name[:index] + name[index + 1 :]
    resolution = resolve_name(typo)
    if resolution.resolved:  # the typo happens to be another real name
        assert resolution.by in ("name", "synonym", "text")
        return
    assert name in [m.name for m in resolution.suggestions]
