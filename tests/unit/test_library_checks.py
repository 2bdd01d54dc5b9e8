"""Structural checks of protocol definitions (``library.check_protocol``), as applied to imported protocols."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_desens.errors import ProtocolDefinitionError
from fhir_desens.protocol.library import (
    builtin_protocols,
    check_protocol,
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


@pytest.mark.parametrize("dimensions", [["volume"], ["rate"], ["mass", "time"], ["dose-per-area"], []])
def test_dose_dimensions_other_than_mass_or_activity_are_refused(dimensions: list[str]) -> None:
    with pytest.raises(ProtocolDefinitionError, match="dose_dimensions must be mass and/or activity"):
        check_protocol(protocol_from_dict(_damaged({"dose_dimensions": dimensions})))
