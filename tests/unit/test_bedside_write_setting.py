"""What the bedside writes to each EHR: the per-server setting, the CapabilityStatement and the scopes, with the
reason each other type stays in the app (shown on the flowsheet)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_desens.errors import ConfigurationError
from smart_app.bedside.write_setting import (
    NOT_GRANTED,
    NOT_OFFERED,
    NOT_SET,
    WriteSetting,
    effective_capabilities,
)

ALL = "user/*.cruds"


def statement(**types: tuple[str, ...]) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {"type": t, "interaction": [{"code": code} for code in codes]}
                    for t, codes in types.items()
                ],
            }
        ],
    }


EVERYTHING = statement(
    Procedure=("read", "create", "update"),
    MedicationAdministration=("read", "create", "update"),
    Observation=("read", "create", "update"),
    AdverseEvent=("read", "create", "update"),
    Provenance=("read", "create"),
)
EPIC_LIKE = statement(Observation=("read", "search-type", "create"), MedicationAdministration=("read",))


def test_auto_writes_what_the_ehr_offers_and_says_why_the_rest_is_not() -> None:
    caps = effective_capabilities(EPIC_LIKE, WriteSetting.parse("auto").for_server("https://ehr/fhir"), ALL)
    assert caps.can_create("Observation") and not caps.can_update("Observation")
    assert not caps.can_create("MedicationAdministration")
    assert caps.why_not("MedicationAdministration") == NOT_OFFERED
    assert caps.why_not("Procedure") == NOT_OFFERED


def test_a_setting_per_server_narrows_what_is_written_there_only() -> None:
    setting = WriteSetting.parse(
        "https://EHR-A.example:443/fhir/=Observation:create; *=Observation,Procedure"
    )
    a = effective_capabilities(EVERYTHING, setting.for_server("https://ehr-a.example/fhir"), ALL)
    assert a.interactions == {"Observation": frozenset({"create"})}  # create only: sent once final
    assert a.why_not("Procedure") == NOT_SET and a.why_not("AdverseEvent") == NOT_SET
    other = effective_capabilities(EVERYTHING, setting.for_server("https://ehr-b.example/fhir"), ALL)
    assert other.interactions == {
        "Observation": frozenset({"create", "update"}),
        "Procedure": frozenset({"create", "update"}),
    }


def test_none_writes_nothing_and_the_scopes_still_decide() -> None:
    nothing = effective_capabilities(EVERYTHING, WriteSetting.parse("none").for_server("https://x/fhir"), ALL)
    assert nothing.interactions == {} and nothing.why_not("Observation") == NOT_SET
    read_only = effective_capabilities(EVERYTHING, None, "user/*.rs user/Observation.c")
    assert read_only.interactions == {"Observation": frozenset({"create"})}
    assert read_only.why_not("Procedure") == NOT_GRANTED


def test_a_list_from_a_test_configuration_applies_to_every_server() -> None:
    setting = WriteSetting.parse(["Observation", "Procedure:create"])
    assert setting.for_server("https://any/fhir") == {
        "Observation": frozenset({"create", "update"}),
        "Procedure": frozenset({"create"}),
    }


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ("Observations", "'Observations'"),
        ("Observation:delete", "create or update"),
        ("ehr.example/fhir=Observation", "not a FHIR base URL"),
        ("https://ehr/fhir=Observation; Procedure", "<FHIR base>=<types>"),
    ],
)
def test_a_bad_setting_stops_the_app_naming_what_is_wrong(raw: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        WriteSetting.parse(raw)
    assert "FHIR_DESENS_BEDSIDE_WRITE_TYPES" in str(refused.value) and named in str(refused.value)
