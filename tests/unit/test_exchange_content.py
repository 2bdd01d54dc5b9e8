"""What "the same protocol" means for numbers a FHIR server may have kept as doubles (exchange/content.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_desens.exchange.content import first_difference

EXACT_QUOTIENT = Decimal("0.0099219145326282159405478881204917300842370543820136")  # 0.016 x 250 / 403.148


def test_an_exact_quotient_equals_the_double_a_javascript_server_kept() -> None:
    assert (
        first_difference({"valueDecimal": EXACT_QUOTIENT}, {"valueDecimal": Decimal("0.009921914532628216")})
        is None
    )


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("0.0125", "0.01"),  # a shorter value is another value, never a rounding of ours
        ("0.123456789012345", "0.123456789012346"),  # 15 digits survive a double: a real difference
        (str(EXACT_QUOTIENT), "0.009921914532628"),  # rounded further than any double: changed
    ],
)
def test_numbers_a_double_keeps_exactly_still_differ(ours: str, theirs: str) -> None:
    assert first_difference({"v": Decimal(ours)}, {"v": Decimal(theirs)}) == "v"
