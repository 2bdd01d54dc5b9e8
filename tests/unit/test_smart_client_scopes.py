"""SMART scope syntax: writing requests (v2/v1) and reading grants (fhir_desens.client.scopes)."""

from __future__ import annotations

import pytest

from fhir_desens.client.scopes import GrantedScopes, ScopeNeed, render_scopes


def test_need_renders_v2_letters_in_cruds_order() -> None:
    assert ScopeNeed("patient", "AllergyIntolerance", "sr").v2() == "patient/AllergyIntolerance.rs"
    assert ScopeNeed("user", "PlanDefinition", "suc").v2() == "user/PlanDefinition.cus"


def test_need_renders_v1() -> None:
    assert ScopeNeed("patient", "AllergyIntolerance", "rs").v1() == ["patient/AllergyIntolerance.read"]
    assert ScopeNeed("patient", "AllergyIntolerance", "cu").v1() == ["patient/AllergyIntolerance.write"]
    assert ScopeNeed("patient", "X", "cruds").v1() == ["patient/X.read", "patient/X.write"]


@pytest.mark.parametrize(("context", "perms"), [("group", "rs"), ("patient", ""), ("patient", "rx")])
def test_need_rejects_bad_input(context: str, perms: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        ScopeNeed(context, "Patient", perms)


def test_render_scopes_dedupes_and_keeps_order() -> None:
    needs = [
        ScopeNeed("patient", "A", "rs"),
        ScopeNeed("patient", "A", "rs"),
        ScopeNeed("patient", "B", "cu"),
    ]
    assert (
        render_scopes(["launch", "openid", "launch"], needs, v2=True)
        == "launch openid patient/A.rs patient/B.cu"
    )
    assert render_scopes(["launch"], needs, v2=False) == "launch patient/A.read patient/B.write"


@pytest.mark.parametrize(
    ("scope", "read", "write"),
    [
        ("patient/AllergyIntolerance.rs", True, False),
        ("patient/AllergyIntolerance.cruds", True, True),
        ("patient/AllergyIntolerance.u", False, True),
        ("patient/AllergyIntolerance.read", True, False),
        ("patient/AllergyIntolerance.write", False, True),
        ("patient/AllergyIntolerance.*", True, True),
        ("patient/*.read", True, False),
        ("user/*.*", True, True),
        ("system/AllergyIntolerance.cruds", False, False),  # not a user-facing context
        ("patient/Observation.cruds", False, False),
        ("patient/AllergyIntolerance.rs?clinical-status=active", True, False),
        ("patient/AllergyIntolerance.cu?category=food", False, False),  # granular writes: not trusted
        ("patient/AllergyIntolerance.sr", False, False),  # letters out of order: malformed, ignored
        ("", False, False),
    ],
)
def test_granted_scopes(scope: str, read: bool, write: bool) -> None:
    granted = GrantedScopes(scope)
    assert granted.can_read("AllergyIntolerance") is read
    assert granted.can_write("AllergyIntolerance") is write


def test_granted_scopes_membership_and_text() -> None:
    granted = GrantedScopes("openid  fhirUser launch openid")
    assert "openid" in granted and "launch" in granted and "profile" not in granted
    assert str(granted) == "openid fhirUser launch"
    assert GrantedScopes(None).raw == ()
    with pytest.raises(ValueError):  # noqa: PT011
        granted.allows("Patient", "x")
