"""The stated-value rule: when does a number a person printed agree with the exact arithmetic?

Tables and documents print rounded numbers (``221`` for 221.1755 mg, ``1845.362`` for 1845.36187...).
A stated value **agrees** when the exact computed value, rounded half-up to the stated value's own
number of decimals, equals it. So ``221`` and ``221.2`` agree with 221.1755 mg, ``221.17`` does
not (221.1755 rounds to 221.18), and ``0.35`` does not agree with 0.75.
A stated zero agrees only with an exact zero: "0 mg" for a dose that is not zero is a slip, not a
rounding. The same rule is used by ``fhir-desens author`` (printed tables) and by the clinical layer
of ``fhir-desens validate`` (exchanged PlanDefinitions); docs/stated-values.md explains it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from fhir_desens.protocol.quantity import EXACT

__all__ = ["agrees", "decimals_shown"]


def decimals_shown(stated: Decimal) -> int | None:
    """How many decimals a stated value shows (``221`` -> 0, ``0.0100`` -> 4); None if not finite."""
    exponent = stated.as_tuple().exponent
    if not isinstance(exponent, int):
        return None
    return max(0, -exponent)


def agrees(stated: Decimal, exact: Decimal) -> bool:
    """True when ``exact`` rounded half-up to the decimals ``stated`` shows equals ``stated``."""
    exponent = stated.as_tuple().exponent
    if not isinstance(exponent, int):
        return False  # NaN or infinity
    if stated.is_zero():
        return exact.is_zero()
    quantum = Decimal(1).scaleb(min(exponent, 0))
    try:
        rounded = exact.quantize(quantum, rounding=ROUND_HALF_UP, context=EXACT)
    except InvalidOperation:  # more digits than the 50-digit context: nothing left to round
        return stated == exact
    return rounded == stated
