"""The flowsheet writes doses by the display policy (docs/display.md), like every other page."""

from __future__ import annotations

from decimal import Decimal

from smart_app.bedside.page import _dose


def test_flowsheet_doses_have_separators_four_figures_and_never_read_zero() -> None:
    assert _dose(Decimal(1296700)) == "1,296,700"
    assert _dose(Decimal("738.123456")) == "738.1"
    assert _dose(Decimal("0.0016")) == "0.0016"
    assert _dose(Decimal("0.0000012345")) == "0.000001235"  # a tiny dose is never "0"
    assert _dose(None) == "—"
