"""SMART scope parsing, granting and checking (fhir_desens.sandbox.scopes)."""

from __future__ import annotations

import pytest

from fhir_desens.sandbox.scopes import ScopeSet, grant, parse_scope, split_scope


@pytest.mark.parametrize(
    ("scope", "level", "resource_type", "permissions", "version"),
    [
        ("patient/AllergyIntolerance.read", "patient", "AllergyIntolerance", "rs", 1),
        ("patient/AllergyIntolerance.write", "patient", "AllergyIntolerance", "cud", 1),
        ("user/*.*", "user", "*", "cruds", 1),
        ("patient/Observation.rs", "patient", "Observation", "rs", 2),
        ("system/Patient.cruds", "system", "Patient", "cruds", 2),
        ("user/MedicationRequest.cu", "user", "MedicationRequest", "cu", 2),
    ],
)
def test_resource_scopes_parse_into_v2_permissions(
    scope: str, level: str, resource_type: str, permissions: str, version: int
) -> None:
    parsed = parse_scope(scope)
    assert parsed is not None
    assert (parsed.level, parsed.resource_type, parsed.version) == (level, resource_type, version)
    assert parsed.permissions == frozenset(permissions)
    assert parsed.render() == scope


@pytest.mark.parametrize(
    "scope",
    [
        "launch",
        "openid",
        "patient/Observation.sr",  # v2 permissions must be in cruds order
        "patient/Observation.rr",
        "patient/Observation.x",
        "patient/Observation.",
        "practitioner/Observation.rs",
        "patient/observation.rs",
        "patient/Observation.read?category=x",  # granular scopes are v2 only
    ],
)
def test_non_resource_or_malformed_scopes_are_not_resource_scopes(scope: str) -> None:
    assert parse_scope(scope) is None


def test_granular_v2_scopes_parse_but_are_never_granted() -> None:
    parsed = parse_scope("patient/Observation.rs?category=laboratory")
    assert parsed is not None and parsed.query == "category=laboratory"
    assert grant("patient/Observation.rs?category=laboratory", "patient/*.cruds") == ""
    assert not ScopeSet("patient/Observation.rs?category=laboratory").access("Observation", "r")


def test_grant_narrows_to_the_ceiling_and_keeps_the_request_order() -> None:
    ceiling = "launch openid fhirUser patient/*.rs user/Practitioner.read"
    requested = "openid launch patient/AllergyIntolerance.cruds user/Practitioner.rs online_access patient/Patient.read"
    assert grant(requested, ceiling).split() == [
        "openid",
        "launch",
        "patient/AllergyIntolerance.rs",
        "user/Practitioner.rs",
        "patient/Patient.read",
    ]


def test_grant_drops_scopes_of_another_level_and_unknown_scopes() -> None:
    assert (
        grant("user/Observation.rs patient/Observation.rs banana", "patient/*.rs") == "patient/Observation.rs"
    )
    assert grant("system/*.rs", "patient/*.cruds user/*.cruds") == ""


def test_a_v1_scope_narrowed_to_a_non_v1_set_is_written_in_v2() -> None:
    assert grant("patient/AllergyIntolerance.write", "patient/*.cu") == "patient/AllergyIntolerance.cu"
    assert grant("patient/AllergyIntolerance.*", "patient/*.rs") == "patient/AllergyIntolerance.read"


def test_override_replaces_the_resource_scopes_but_not_the_context_scopes() -> None:
    granted = grant(
        "launch openid patient/AllergyIntolerance.cruds", "launch openid patient/*.cruds", "patient/*.rs"
    )
    assert granted.split() == ["launch", "openid", "patient/*.rs"]


def test_split_scope_removes_duplicates_and_blanks() -> None:
    assert split_scope("  a b  a\tc ") == ["a", "b", "c"]
    assert split_scope(None) == []


def test_scope_set_access_prefers_unrestricted_grants() -> None:
    scopes = ScopeSet("patient/*.rs user/Practitioner.read patient/AllergyIntolerance.c")
    assert scopes.access("Observation", "r") == "patient"
    assert scopes.access("Practitioner", "s") == "unrestricted"
    assert scopes.access("AllergyIntolerance", "c") == "patient"
    assert scopes.access("AllergyIntolerance", "u") is None
    assert scopes.access("AllergyIntolerance", "d") is None
    assert scopes.access("*", "s") == "patient"  # the gateway refuses this: not unrestricted
    assert ScopeSet("patient/Observation.rs").access("*", "s") is None
    assert ScopeSet("user/*.rs").access("*", "s") == "unrestricted"
    with pytest.raises(ValueError, match="permission"):
        scopes.access("Observation", "read")
