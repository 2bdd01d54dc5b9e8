"""SMART scope syntax: writing requests (v2/v1) and reading grants (fhir_desens.client.scopes)."""

from __future__ import annotations

import pytest

from fhir_desens.client.scopes import GrantedScopes, ScopeNeed, render_scopes
from fhir_desens.client.smart import DEFAULT_NEEDS, ORDER_WRITES, SmartSession


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


# -- what the app asks for, and what it may then do ---------------------------------------------------


def test_default_needs_ask_for_planning_reads_and_order_writes() -> None:
    scopes = render_scopes([], DEFAULT_NEEDS, v2=True).split()
    assert scopes == [
        "patient/Patient.rs",
        "patient/AllergyIntolerance.rs",
        "patient/AllergyIntolerance.cu",
        "patient/MedicationRequest.crus",
        "patient/Medication.crs",
        "patient/Condition.rs",
        "patient/Observation.rs",
        "patient/RequestGroup.crus",
        "patient/Provenance.cu",
        "patient/Provenance.rs",  # the outcome write-back searches before it writes
        "patient/DocumentReference.crs",
        "patient/MedicationAdministration.rs",
        "patient/Consent.rs",  # the bedside pre-start checklist shows a consent on file
        "patient/Observation.c",  # the bedside record writes what the EHR accepts
        "patient/MedicationAdministration.cu",
        "patient/Procedure.crus",
        "patient/AdverseEvent.crus",
    ]
    assert not any(s.endswith((".d", "ud", "cruds")) for s in scopes)  # never delete
    v1 = render_scopes([], DEFAULT_NEEDS, v2=False).split()
    assert "patient/Provenance.write" in v1 and "patient/DocumentReference.write" in v1


def _session(scope: str) -> SmartSession:
    return SmartSession(
        fhir_base="https://ehr.example.org/fhir",
        token_endpoint="https://ehr.example.org/token",
        client_id="app",
        auth_method="none",
        access_token="a",
        expires_at=None,
        scope=scope,
    )


ALL_GRANTED = render_scopes(["launch", "openid"], DEFAULT_NEEDS, v2=True)


@pytest.mark.parametrize(
    ("scope", "sign", "allergy_write"),
    [
        (ALL_GRANTED, True, True),
        (render_scopes([], DEFAULT_NEEDS, v2=False), True, True),
        ("patient/*.cruds", True, True),
        ("user/*.cu", True, True),
        ("patient/*.rs", False, False),
        (ALL_GRANTED.replace("patient/Provenance.cu", "patient/Provenance.c"), False, True),
        (ALL_GRANTED.replace("patient/Medication.crs", "patient/Medication.rs"), False, True),
        (
            ALL_GRANTED.replace("patient/RequestGroup.crus", "patient/RequestGroup.crus?status=active"),
            False,
            True,
        ),
        (
            "patient/RequestGroup.c patient/MedicationRequest.c patient/Medication.c patient/Provenance.cu",
            True,
            False,
        ),
    ],
    ids=[
        "asked",
        "v1",
        "patient-wildcard",
        "user-wildcard",
        "read-only",
        "provenance-create-only",
        "no-medication-create",
        "granular-write",
        "orders-only",
    ],
)
def test_can_sign_orders_needs_every_write_of_the_transaction(
    scope: str, sign: bool, allergy_write: bool
) -> None:
    session = _session(scope)
    assert session.can_sign_orders is sign
    assert session.can_write is allergy_write
    assert {resource for resource, _ in ORDER_WRITES} == {
        "RequestGroup",
        "MedicationRequest",
        "Medication",
        "Provenance",
    }
