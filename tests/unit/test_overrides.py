"""Overrides of a contraindication: allergists only (OVERRIDE-1), substantive reasons (OVERRIDE-2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_desens.drugs.overrides import (
    OverrideAuthority,
    allergist_role_text,
    check_override_authority,
    check_override_reason,
)
from fhir_desens.errors import InputError

GOOD = "PJP treatment is essential; atovaquone failed and ID and allergy agreed to desensitize."


@pytest.mark.invariant("OVERRIDE-2")
@pytest.mark.parametrize(
    "reason",
    [
        "",
        "   ",
        "xxxxxxxxxxxxxxxxxxxxxxxxx",
        "asdf asdf asdf asdf asdf",
        "ok ok ok ok ok ok ok ok",
        "aaaaaaaaa bbbbbbbbbbb cc",
        "too short",
        "1234567890 1234567890 12",
    ],
)
def test_meaningless_reasons_are_refused(reason: str) -> None:
    with pytest.raises(InputError) as error:
        check_override_reason(reason)
    assert error.value.field == "override_reason"


@pytest.mark.invariant("OVERRIDE-2")
def test_a_real_reason_is_kept_with_spacing_normalised() -> None:
    assert check_override_reason("  " + GOOD.replace(" ", "   ") + "\n") == GOOD


@pytest.mark.invariant("OVERRIDE-2")
@given(st.characters(), st.integers(min_value=20, max_value=300))
def test_one_repeated_character_is_never_a_reason(char: str, count: int) -> None:
    with pytest.raises(InputError):
        check_override_reason(char * count)


@pytest.mark.invariant("OVERRIDE-1")
def test_an_allergist_may_override() -> None:
    authority = OverrideAuthority("Practitioner/a", "PractitionerRole: Allergy and Immunology")
    assert "allergist" in check_override_authority(authority)


@pytest.mark.invariant("OVERRIDE-1")
def test_a_non_allergist_is_refused_unless_an_allergist_cosigns() -> None:
    with pytest.raises(InputError, match="only an allergist"):
        check_override_authority(OverrideAuthority("Practitioner/onc", None))
    with pytest.raises(InputError, match="not recorded as an allergist"):
        check_override_authority(OverrideAuthority("Practitioner/onc", None, "Dr. Nobody", None))
    text = check_override_authority(
        OverrideAuthority("Practitioner/onc", None, "Dr. Lindqvist-Okoro", "configured allergist list")
    )
    assert "co-signature" in text and "Lindqvist-Okoro" in text


@pytest.mark.parametrize(
    ("texts", "found"),
    [
        (["Board certification: Allergy and Immunology (sandbox allergist)"], True),
        (["Board certification: Medical Oncology", "Cardiology"], False),
        ([None, "Clinical immunology"], True),
        ([], False),
    ],
)
def test_allergist_role_text(texts: list[str | None], found: bool) -> None:
    assert (allergist_role_text(texts) is not None) is found
