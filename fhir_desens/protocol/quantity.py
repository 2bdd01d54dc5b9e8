"""Exact, unit-bearing quantities on Decimal.

Every dose, concentration, volume, rate and duration is a :class:`Quantity`: a Decimal value with a
UCUM unit code. Conversions are exact (powers of ten, and 60 min per hour); anything else, such as
milligrams to units, is an error and never a guess. Arithmetic uses a 50-digit context; rounding
happens only in :func:`display`, which states its rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from enum import Enum

from fhir_desens.errors import InputError, UnitError
from fhir_desens.protocol.record import record
from fhir_desens.protocol.tuple_record import tuple_record

#: Working precision: far beyond any pump or balance, so division (e.g. a final-step duration of
#: 232.5 mL at 70 mL/h) loses nothing a person could measure.
EXACT = Context(prec=50, rounding=ROUND_HALF_UP, traps=[InvalidOperation, DivisionByZero, Overflow])


class Dimension(Enum):
    MASS = "mass"
    ACTIVITY = "activity"  # international units, e.g. penicillin
    VOLUME = "volume"
    TIME = "time"
    RATE = "rate"  # volume per time
    CONCENTRATION = "concentration"  # dose per volume
    DOSE_PER_AREA = "dose-per-area"  # dose per m² of body surface area (prescribing only, never infused)
    DOSE_PER_WEIGHT = "dose-per-weight"  # dose per kg of body weight (prescribing only, never infused)


@record
class Unit:
    code: str  # UCUM code written to FHIR
    display: str  # what a nurse reads
    dimension: Dimension
    factor: Decimal  # multiply by this to get the dimension's canonical unit


_UNITS: dict[str, Unit] = {}


def _define(code: str, display: str, dimension: Dimension, factor: str, *aliases: str) -> None:
    unit = Unit(code, display, dimension, Decimal(factor))
    for name in (code, display, *aliases):
        _UNITS[name.lower()] = unit


_define("mg", "mg", Dimension.MASS, "1", "milligram", "milligrams")
_define("g", "g", Dimension.MASS, "1000", "gram", "grams")
_define("ug", "mcg", Dimension.MASS, "0.001", "µg", "μg", "microgram", "micrograms")
_define("[iU]", "units", Dimension.ACTIVITY, "1", "unit", "iu", "u", "international units")
_define("mL", "mL", Dimension.VOLUME, "1", "milliliter", "millilitre", "cc")
_define("L", "L", Dimension.VOLUME, "1000", "liter", "litre")
_define("min", "min", Dimension.TIME, "1", "minute", "minutes", "mins")
_define("h", "h", Dimension.TIME, "60", "hr", "hour", "hours", "hrs")
_define("mL/h", "mL/h", Dimension.RATE, "1", "ml/hr", "ml/hour")
_define("mg/mL", "mg/mL", Dimension.CONCENTRATION, "1")
_define("g/mL", "g/mL", Dimension.CONCENTRATION, "1000")
_define("ug/mL", "mcg/mL", Dimension.CONCENTRATION, "0.001", "µg/ml", "μg/ml")
_define("[iU]/mL", "units/mL", Dimension.CONCENTRATION, "1", "unit/ml", "iu/ml", "u/ml")
_define("mg/m2", "mg/m²", Dimension.DOSE_PER_AREA, "1", "mg/m^2")
_define("g/m2", "g/m²", Dimension.DOSE_PER_AREA, "1000", "g/m^2")
_define("ug/m2", "mcg/m²", Dimension.DOSE_PER_AREA, "0.001", "mcg/m2", "µg/m2", "μg/m2", "µg/m²", "μg/m²")
_define("[iU]/m2", "units/m²", Dimension.DOSE_PER_AREA, "1", "units/m2", "unit/m2", "iu/m2", "u/m2")
_define("mg/kg", "mg/kg", Dimension.DOSE_PER_WEIGHT, "1")
_define("ug/kg", "mcg/kg", Dimension.DOSE_PER_WEIGHT, "0.001", "mcg/kg", "µg/kg", "μg/kg")
_define("[iU]/kg", "units/kg", Dimension.DOSE_PER_WEIGHT, "1", "units/kg", "unit/kg", "iu/kg", "u/kg")

#: The canonical unit of each dose dimension and of the concentration made from it.
_BY_CODE: dict[str, Unit] = {u.code: u for u in _UNITS.values()}
CANONICAL_DOSE = {Dimension.MASS: _UNITS["mg"], Dimension.ACTIVITY: _UNITS["[iu]"]}
CANONICAL_CONCENTRATION = {Dimension.MASS: _UNITS["mg/ml"], Dimension.ACTIVITY: _UNITS["[iu]/ml"]}

_CONCENTRATION_BASE = {"mg/mL": Dimension.MASS, "g/mL": Dimension.MASS, "ug/mL": Dimension.MASS}
#: The dose dimension and the absolute dose unit of each per-m² unit (mg/m2 x m² = mg).
_PER_AREA_DOSE = {
    "mg/m2": (Dimension.MASS, "mg"),
    "g/m2": (Dimension.MASS, "g"),
    "ug/m2": (Dimension.MASS, "ug"),
    "[iU]/m2": (Dimension.ACTIVITY, "[iU]"),
}
CANONICAL_DOSE_PER_AREA = {Dimension.MASS: "mg/m2", Dimension.ACTIVITY: "[iU]/m2"}
#: The dose dimension and the absolute dose unit of each per-kg unit (mg/kg x kg = mg).
_PER_WEIGHT_DOSE = {
    "mg/kg": (Dimension.MASS, "mg"),
    "ug/kg": (Dimension.MASS, "ug"),
    "[iU]/kg": (Dimension.ACTIVITY, "[iU]"),
}
CANONICAL_DOSE_PER_WEIGHT = {Dimension.MASS: "mg/kg", Dimension.ACTIVITY: "[iU]/kg"}
ACCEPTED_DOSE_PER_WEIGHT_UNITS = "mg/kg, mcg/kg (ug/kg), units/kg ([iU]/kg)"
ACCEPTED_DOSE_PER_AREA_UNITS = "mg/m2, g/m2, mcg/m2 (ug/m2), units/m2 ([iU]/m2)"
ACCEPTED_DOSE_UNITS = "mg, g, mcg (ug), units ([iU])"
_QUANTITY_TEXT = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*([^\s\d].*?)?\s*$")


def unit(code: str) -> Unit:
    known = _BY_CODE.get(code)  # fast path: the exact UCUM code, as every Quantity carries
    if known is not None:
        return known
    try:
        return _UNITS[code.strip().lower()]
    except KeyError:
        accepted = ", ".join(sorted({u.code for u in _UNITS.values()}))
        raise UnitError("unit", f"unknown unit '{code}'", accepted) from None


def concentration_base(u: Unit) -> Dimension:
    """The dose dimension a concentration unit is made of (mg/mL -> mass, units/mL -> activity)."""
    return _CONCENTRATION_BASE.get(u.code, Dimension.ACTIVITY)


def per_weight_dose_unit(u: Unit) -> Unit:
    """The absolute dose unit of a per-kg unit (mg/kg -> mg, units/kg -> units)."""
    if u.dimension is not Dimension.DOSE_PER_WEIGHT:
        raise UnitError("unit", f"{u.display} is not a dose per kg", ACCEPTED_DOSE_PER_WEIGHT_UNITS)
    return unit(_PER_WEIGHT_DOSE[u.code][1])


def per_area_dose_unit(u: Unit) -> Unit:
    """The absolute dose unit of a per-m² unit (mg/m2 -> mg, units/m2 -> units)."""
    if u.dimension is not Dimension.DOSE_PER_AREA:
        raise UnitError("unit", f"{u.display} is not a dose per m²", ACCEPTED_DOSE_PER_AREA_UNITS)
    return unit(_PER_AREA_DOSE[u.code][1])


@tuple_record
class Quantity:
    value: Decimal
    unit: str  # UCUM code

    def __post_init__(self) -> None:
        if not isinstance(self.value, Decimal):
            raise TypeError(f"Quantity value must be Decimal, got {type(self.value).__name__}")
        unit(self.unit)  # validates the code

    @property
    def dimension(self) -> Dimension:
        return unit(self.unit).dimension

    def to(self, code: str) -> Quantity:
        """Exact conversion to another unit of the same dimension."""
        source, target = unit(self.unit), unit(code)
        if source.dimension is not target.dimension:
            raise UnitError(
                "unit",
                f"cannot convert {source.display} ({source.dimension.value}) to "
                f"{target.display} ({target.dimension.value})",
            )
        if source.dimension is Dimension.CONCENTRATION and concentration_base(
            source
        ) is not concentration_base(target):
            raise UnitError("unit", f"cannot convert {source.display} to {target.display}")
        if (
            source.dimension is Dimension.DOSE_PER_AREA
            and per_area_dose_unit(source).dimension is not per_area_dose_unit(target).dimension
        ):
            raise UnitError("unit", f"cannot convert {source.display} to {target.display}")
        if (
            source.dimension is Dimension.DOSE_PER_WEIGHT
            and per_weight_dose_unit(source).dimension is not per_weight_dose_unit(target).dimension
        ):
            raise UnitError("unit", f"cannot convert {source.display} to {target.display}")
        value = EXACT.divide(EXACT.multiply(self.value, source.factor), target.factor)
        return Quantity(value, target.code)

    def canonical(self) -> Quantity:
        """The same quantity in the canonical unit of its dimension (mg, [iU], mL, min, mL/h, mg/mL)."""
        u = unit(self.unit)
        if u.dimension in CANONICAL_DOSE:
            return self.to(CANONICAL_DOSE[u.dimension].code)
        if u.dimension is Dimension.CONCENTRATION:
            return self.to(CANONICAL_CONCENTRATION[concentration_base(u)].code)
        if u.dimension is Dimension.DOSE_PER_AREA:
            return self.to(CANONICAL_DOSE_PER_AREA[per_area_dose_unit(u).dimension])
        if u.dimension is Dimension.DOSE_PER_WEIGHT:
            return self.to(CANONICAL_DOSE_PER_WEIGHT[per_weight_dose_unit(u).dimension])
        canonical = {Dimension.VOLUME: "mL", Dimension.TIME: "min", Dimension.RATE: "mL/h"}[u.dimension]
        return self.to(canonical)

    def __str__(self) -> str:
        return f"{plain(self.value)} {unit(self.unit).display}"


def parse_decimal(text: str, field: str) -> Decimal:
    """A Decimal from user text; a float or anything else is refused."""
    if not isinstance(text, str):
        raise InputError(field, f"expected a number as text, got {type(text).__name__}")
    cleaned = text.strip()
    if "," in cleaned:
        raise InputError(
            field, f"'{text}' contains a comma", "a plain number with a decimal point, e.g. 1296700"
        )
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise InputError(
            field, f"'{text}' is not a number", "a plain decimal number, e.g. 75 or 0.5"
        ) from None
    if not value.is_finite():
        raise InputError(field, f"'{text}' is not a finite number")
    return value


def parse_quantity(text: str, field: str, default_unit: str | None = None) -> Quantity:
    """Parse '400mg', '400 mg', '1.2 g', '600000 units'. Commas are refused (decimal-comma ambiguity)."""
    match = _QUANTITY_TEXT.match(text or "")
    if not match or "," in text:
        raise InputError(
            field, f"'{text}' is not a quantity", "a number and a unit, e.g. 400mg or 1296700 units"
        )
    number, code = match.group(1), match.group(2) or default_unit
    if not code:
        raise InputError(field, f"'{text}' has no unit", ACCEPTED_DOSE_UNITS)
    try:
        u = unit(code)
    except UnitError:
        raise UnitError(field, f"unknown unit '{code}'", ACCEPTED_DOSE_UNITS) from None
    return Quantity(Decimal(number), u.code)


def mul(first: Decimal, second: Decimal, *more: Decimal) -> Decimal:
    result = EXACT.multiply(first, second)
    for value in more:
        result = EXACT.multiply(result, value)
    return result


def div(numerator: Decimal, denominator: Decimal) -> Decimal:
    return EXACT.divide(numerator, denominator)


def add(first: Decimal, second: Decimal, *more: Decimal) -> Decimal:
    result = EXACT.add(first, second)
    for value in more:
        result = EXACT.add(result, value)
    return result


def sub(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.subtract(a, b)


def plain(value: Decimal) -> str:
    """Exact text of a Decimal without exponent and without insignificant trailing zeros."""
    if value == 0:
        return "0"
    text = format(value.normalize(EXACT), "f")
    return text


def display(value: Decimal, places: int = 3) -> str:
    """Rounded for people: ROUND_HALF_UP to ``places`` decimals, trailing zeros trimmed. Display only."""
    quantum = Decimal(1).scaleb(-places)
    rounded = value.quantize(quantum, rounding=ROUND_HALF_UP, context=EXACT)
    text = format(rounded, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def display_significant(value: Decimal, digits: int = 4, max_places: int = 6) -> str:
    """Small doses need significant digits, not fixed places: 0.0012345 mg -> '0.001235'."""
    if value == 0:
        return "0"
    exponent = value.adjusted()
    places = max(0, min(max_places, digits - 1 - exponent))
    return display(value, places)


def total(values: Iterable[Decimal]) -> Decimal:
    """The exact sum of ``values`` (0 for none), in the engine's exact context."""
    result = Decimal(0)
    for value in values:
        result = add(result, value)
    return result
