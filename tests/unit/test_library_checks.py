"""Structural checks of protocol definitions (``library.check_protocol``), as applied to imported protocols."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_desens.errors import InputError, ProtocolDefinitionError
from fhir_desens.protocol.library import (
    builtin_protocols,
    check_protocol,
    get_protocol,
    protocol_from_dict,
    protocol_to_dict,
)


def _damaged(change: dict[str, Any]) -> dict[str, Any]:
    raw = protocol_to_dict(builtin_protocols()["iv-12-step-3-bag"])
    raw.update(change)
    return raw


def test_every_builtin_protocol_passes() -> None:
    for protocol in builtin_protocols().values():
        check_protocol(protocol)


def test_a_protocol_read_by_id_is_the_one_the_library_lists() -> None:
    """get_protocol reads only the requested template; it is the very object builtin_protocols holds."""
    library = builtin_protocols()
    assert len(library) == 9  # in the order of their file names, as before
    for protocol_id, protocol in library.items():
        assert get_protocol(protocol_id) is protocol
    imported = protocol_from_dict({**protocol_to_dict(library["iv-8-step-2-bag"]), "title": "Imported copy"})
    assert get_protocol("iv-8-step-2-bag", {"iv-8-step-2-bag": imported}) is imported  # extra comes first


@pytest.mark.parametrize("protocol_id", ["nope", "../templates/iv-8-step-2-bag", "iv-8-step-2-bag.json", ""])
def test_an_unknown_protocol_id_names_every_protocol(protocol_id: str) -> None:
    with pytest.raises(InputError, match="unknown protocol") as raised:
        get_protocol(protocol_id, {"mine": builtin_protocols()["iv-8-step-2-bag"]})
    assert raised.value.accepted is not None
    assert raised.value.accepted.split(", ") == [*builtin_protocols(), "mine"]


@pytest.mark.parametrize("dimensions", [["volume"], ["rate"], ["mass", "time"], ["dose-per-area"], []])
def test_dose_dimensions_other_than_mass_or_activity_are_refused(dimensions: list[str]) -> None:
    with pytest.raises(ProtocolDefinitionError, match="dose_dimensions must be mass and/or activity"):
        check_protocol(protocol_from_dict(_damaged({"dose_dimensions": dimensions})))
