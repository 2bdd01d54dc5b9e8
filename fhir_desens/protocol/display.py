"""The one display policy: how every number a person reads is written (pure, display only).

Plans are exact (Decimal, 50 digits). People read rounded text, and every page, print sheet, PDF,
CLI table and human-readable FHIR text (``dosageInstruction.text``, notes, ``Medication`` names)
goes through this module, so the same dose reads the same everywhere. Structured values (JSON,
FHIR ``Quantity.value``) stay exact and never pass through here. The rules and their reasons are in
docs/display.md:

* doses and concentrations: :data:`SIGNIFICANT_FIGURES` significant figures, never fewer than the
  whole number (1,296,700 units stays whole; 804.33396... mg reads 804.3 mg);
* volumes: to what a syringe or pump can measure (0.01 mL below 1 mL, 0.1 mL above);
* rates: at the pump's resolution (default 0.1 mL/h);
* thousands separators ("1,296,700"), a leading zero ("0.5"), no trailing zeros ("4 mg", not
  "4.0 mg"), and never "0" for an amount that is not zero ("< 0.01 mL");
* units always written next to the number.

Rounding is ROUND_HALF_UP (what a calculator and a pharmacist do).
"""

from __future__ import annotations

from decimal import Decimal

from fhir_desens.protocol.quantity import EXACT, Quantity, unit

TYPE_CHECKING = False  # mypy reads this block; datetime is imported where a chart time is shown
if TYPE_CHECKING:
    from datetime import date, datetime, tzinfo

__all__ = [
    "BSA_PLACES",
    "DEFAULT_PUMP_RESOLUTION_ML_H",
    "SIGNIFICANT_FIGURES",
    "bsa_text",
    "chart_date_text",
    "chart_time_text",
    "clock_text",
    "concentration_text",
    "count_text",
    "date_text",
    "dose_number",
    "dose_text",
    "given_of_target_text",
    "grouped",
    "minutes_text",
    "moment_text",
    "quantity_text",
    "rate_number",
    "rate_text",
    "resolution_places",
    "significant",
    "unit_text",
    "volume_number",
    "volume_text",
]

#: Doses and concentrations: four significant figures resolve 0.1% of a dose, finer than any
#: balance, pump or syringe, and short enough to read aloud and check by calculator.
SIGNIFICANT_FIGURES = 4
#: Many infusion pumps are programmed in steps of 0.1 mL/h (a site setting may say otherwise).
DEFAULT_PUMP_RESOLUTION_ML_H = Decimal("0.1")
#: Body surface area in m² to two decimals, the precision doses are computed from.
BSA_PLACES = 2
#: Volumes below 1 mL are drawn in a 1 mL syringe graduated in 0.01 mL; larger ones to 0.1 mL
#: (a pump's volume to be infused, or a 3-10 mL syringe read to its finest mark).
_FINE_VOLUME_BELOW_ML = Decimal(1)
_FINE_VOLUME_PLACES = 2
_VOLUME_PLACES = 1


#: 1, 0.1, 0.01, ... : the quantum of each number of decimal places, made once.
_QUANTA = tuple(Decimal(1).scaleb(-places) for places in range(30))


def _rounded(value: Decimal, places: int) -> Decimal:
    """``value`` rounded half-up to ``places`` decimals (EXACT's rounding is ROUND_HALF_UP)."""
    quantum = _QUANTA[places] if places < len(_QUANTA) else Decimal(1).scaleb(-places)
    return EXACT.quantize(value, quantum)


def grouped(value: Decimal) -> str:
    """An already-rounded Decimal as text: thousands separators, leading zero, no trailing zeros."""
    text = str(value)  # the same text as format(value, "f") unless it has an exponent (and cheaper)
    if "E" in text:
        text = format(value, "f")
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0")
    if len(whole) > 3:  # below 1,000 there is nothing to group
        whole = f"{int(whole):,}"
    body = f"{whole}.{fraction}" if fraction else whole
    return "0" if body == "0" else sign + body


def _places_for(value: Decimal, figures: int) -> int:
    """Decimal places that give ``figures`` significant figures, never cutting the whole part."""
    return max(0, figures - 1 - value.adjusted())


def significant(value: Decimal, figures: int = SIGNIFICANT_FIGURES) -> str:
    """``figures`` significant figures (whole numbers kept whole), grouped: 804.334 -> '804.3'."""
    if value == 0:
        return "0"
    rounded = _rounded(value, _places_for(value, figures))
    if rounded.adjusted() > value.adjusted():  # 9.9996 -> 10.00: one place fewer keeps 4 figures
        rounded = _rounded(value, _places_for(rounded, figures))
    return grouped(rounded)


def unit_text(code: str) -> str:
    """What a person reads for a UCUM code ('[iU]' -> 'units', 'ug' -> 'mcg')."""
    return unit(code).display


def dose_number(value: Decimal) -> str:
    """A dose without its unit (for a table column whose header names the unit)."""
    return significant(value)


def dose_text(value: Decimal, unit_code: str) -> str:
    """'802.5 mg', '1,296,700 units', '0.01609 mg'."""
    return f"{dose_number(value)} {unit_text(unit_code)}"


def given_of_target_text(given: Decimal, target: Decimal, unit_code: str) -> str:
    """How much of the target is given, each amount with its unit: '0.01467 mg of 400 mg'. Both are doses
    by the one rule (four significant figures), so the bedside reads as the worksheet's cumulative column."""
    return f"{dose_text(given, unit_code)} of {dose_text(target, unit_code)}"


def quantity_text(quantity: Quantity) -> str:
    """Any dose, concentration or dose-per-area quantity with its unit."""
    return f"{significant(quantity.value)} {unit_text(quantity.unit)}"


def concentration_text(value: Decimal, unit_code: str) -> str:
    """'0.01609 mg/mL' (four significant figures, like doses)."""
    return f"{significant(value)} {unit_text(unit_code)}"


def volume_number(value_ml: Decimal) -> str:
    """A volume in mL to what can be measured; '< 0.01' for a tiny volume that is not zero."""
    if value_ml == 0:
        return "0"
    places = _FINE_VOLUME_PLACES if abs(value_ml) < _FINE_VOLUME_BELOW_ML else _VOLUME_PLACES
    rounded = _rounded(value_ml, places)
    if rounded == 0:
        return f"< {grouped(Decimal(1).scaleb(-places))}"
    return grouped(rounded)


def volume_text(value_ml: Decimal) -> str:
    """'8.7 mL', '0.25 mL', '250 mL'."""
    return f"{volume_number(value_ml)} mL"


def resolution_places(resolution_ml_h: Decimal) -> int:
    """Decimal places of a pump resolution (0.1 -> 1, 1 -> 0, 0.01 -> 2)."""
    exponent = resolution_ml_h.normalize(EXACT).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def rate_number(value_ml_h: Decimal, resolution_ml_h: Decimal = DEFAULT_PUMP_RESOLUTION_ML_H) -> str:
    """A rate as the pump is programmed: to the pump's resolution, never '0' for a running pump."""
    places = resolution_places(resolution_ml_h)
    rounded = _rounded(value_ml_h, places)
    if rounded == 0 and value_ml_h != 0:
        return f"< {grouped(Decimal(1).scaleb(-places))}"
    return grouped(rounded)


def rate_text(value_ml_h: Decimal, resolution_ml_h: Decimal = DEFAULT_PUMP_RESOLUTION_ML_H) -> str:
    """'4.7 mL/h' at the default 0.1 mL/h resolution."""
    return f"{rate_number(value_ml_h, resolution_ml_h)} mL/h"


def minutes_text(minutes: Decimal) -> str:
    """Durations to the whole minute ('174 min'); '< 1 min' when shorter but not zero."""
    whole = _rounded(minutes, 0)
    if whole == 0 and minutes != 0:
        return "< 1 min"
    return f"{grouped(whole)} min"


def clock_text(minutes: Decimal) -> str:
    """'5 h 39 min' (rounded to the minute)."""
    whole = int(_rounded(minutes, 0))
    hours, rest = divmod(whole, 60)
    return f"{hours} h {rest:02d} min" if hours else f"{rest} min"


def count_text(count: Decimal, singular: str, plural: str | None = None) -> str:
    """Tablets and the like: '1 tablet', '0.5 tablet', '2 tablets' (to 2 decimals)."""
    number = grouped(_rounded(count, 2))
    word = singular if count <= 1 else (plural or singular + "s")
    return f"{number} {word}"


def bsa_text(value_m2: Decimal) -> str:
    """'2.14 m²'."""
    return f"{grouped(_rounded(value_m2, BSA_PLACES))} m²"


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def date_text(day: date) -> str:
    """A date for people, as :func:`moment_text` writes its date: "18 Nov 2026"."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def moment_text(moment: datetime, zone: tzinfo | None = None) -> str:
    """A date and time for people, the one way every page and sheet writes it: "3 Dec 2026 15:12 CET" (the
    month in letters, so never read as 12/03 or 03/12; 24-hour clock; the zone named), converted to ``zone``
    when given and the moment carries its offset."""
    if zone is not None and moment.tzinfo is not None:
        moment = moment.astimezone(zone)
    zone_name = f" {moment.tzname()}" if moment.tzinfo is not None and moment.tzname() else ""
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year} {moment:%H:%M}{zone_name}"


def chart_time_text(value: str, zone: tzinfo) -> str:
    """A FHIR ``date`` or ``dateTime`` from the chart, for people: "14 Oct 2026", or "14 Oct 2026 17:22 CET"
    in the site's zone when the chart gives a time with its offset. Partial dates ("2019", "2019-03") stay as
    written; anything unparseable is returned unchanged rather than hidden."""
    from datetime import datetime  # here: the plan command never shows a chart time

    text = value.strip()
    try:
        if len(text) <= 10:
            return chart_date_text(value)
        if "T" in text:
            return moment_text(datetime.fromisoformat(text.replace("Z", "+00:00")), zone)
    except ValueError:
        return value
    return value


def chart_date_text(value: str) -> str:
    """A FHIR ``date`` from the chart (a birth date), for people: "2 Mar 1975". Partial dates ("1975",
    "1975-03") stay as written; anything unparseable is returned unchanged rather than hidden."""
    from datetime import date  # here: the plan command never shows a chart date

    text = value.strip()
    if len(text) != 10:
        return value
    try:
        return date_text(date.fromisoformat(text))
    except ValueError:
        return value
