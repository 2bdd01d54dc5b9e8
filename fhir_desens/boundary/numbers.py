"""The one parser for numbers typed into forms and command lines.

A number field names itself and its bounds; :func:`parse_number` returns an exact Decimal inside
them or raises :class:`~fhir_desens.errors.InputError` naming the field and what is accepted. It
refuses NaN, infinities, thousands separators, exponents beyond ``±MAX_EXPONENT`` (``1e-400``
would reach the arithmetic as a value no pump or balance can deliver) and more significant digits
than anyone measures, so a stored draft holds only values every page can show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation

from fhir_desens.errors import InputError

__all__ = ["MAX_EXPONENT", "MAX_SIGNIFICANT_DIGITS", "NumberField", "parse_number", "plain_number"]

#: Largest accepted magnitude of a typed number's decimal exponent.
MAX_EXPONENT = 12
#: More digits than any dose, rate or volume is measured to.
MAX_SIGNIFICANT_DIGITS = 20
_MAX_TEXT = 40
_WIDE = Context(prec=100)  # wide enough that normalising never rounds a 40-character number
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?$")


def plain_number(value: Decimal) -> str:
    """Exact text of a Decimal without exponent and without insignificant trailing zeros."""
    if value == 0:
        return "0"
    text = format(value.normalize(_WIDE), "f")
    return text


@dataclass(frozen=True)
class NumberField:
    """A numeric field: its name as the person sees it, its unit and its bounds."""

    name: str
    minimum: Decimal
    maximum: Decimal
    unit: str = ""
    minimum_inclusive: bool = False  # most fields: strictly above the minimum (a dose of 0 is no dose)

    @property
    def accepted(self) -> str:
        low = "from" if self.minimum_inclusive else "above"
        unit = f" {self.unit}" if self.unit else ""
        return f"a number {low} {plain_number(self.minimum)} and at most {plain_number(self.maximum)}{unit}"

    def contains(self, value: Decimal) -> bool:
        above = value >= self.minimum if self.minimum_inclusive else value > self.minimum
        return above and value <= self.maximum


def _decimal(text: str, field: NumberField) -> Decimal:
    cleaned = text.strip()
    if not cleaned:
        raise InputError(field.name, "no number given", field.accepted)
    if len(cleaned) > _MAX_TEXT:
        raise InputError(field.name, f"{len(cleaned)} characters is too long for a number", field.accepted)
    if "," in cleaned:
        raise InputError(field.name, f"'{cleaned}' contains a comma", "a plain number with a decimal point")
    if not _NUMBER.match(cleaned):
        raise InputError(field.name, f"'{cleaned}' is not a number", field.accepted)
    try:
        return Decimal(cleaned)
    except InvalidOperation:  # pragma: no cover - the pattern only lets numbers through
        raise InputError(field.name, f"'{cleaned}' is not a number", field.accepted) from None


def parse_number(text: object, field: NumberField) -> Decimal:
    """An exact Decimal within the field's bounds, or :class:`InputError` naming the field."""
    if isinstance(text, Decimal | int) and not isinstance(text, bool):
        value = Decimal(text)
        if not value.is_finite():
            raise InputError(field.name, "not a finite number", field.accepted)
    elif isinstance(text, str):
        value = _decimal(text, field)
    else:
        raise InputError(field.name, f"expected a number, got {type(text).__name__}", field.accepted)
    if value != 0 and abs(value.adjusted()) > MAX_EXPONENT:
        raise InputError(field.name, f"{text} is out of range", field.accepted)
    if len(value.normalize(_WIDE).as_tuple().digits) > MAX_SIGNIFICANT_DIGITS:
        raise InputError(field.name, f"more than {MAX_SIGNIFICANT_DIGITS} significant digits", field.accepted)
    if not field.contains(value):
        shown = plain_number(value) + (f" {field.unit}" if field.unit else "")
        raise InputError(field.name, f"{shown} is out of range", field.accepted)
    return value
