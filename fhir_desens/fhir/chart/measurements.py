"""Height and weight from the chart: the latest plausible body measurements, converted exactly.

LOINC 8302-2 (also 8306-3 lying, 8308-9 standing) and 29463-7 (also 3141-9); status final, amended
or corrected; the latest by ``effectiveDateTime``, ``effectivePeriod.end`` (else start),
``effectiveInstant`` or ``issued``; undated ones only when no dated one exists. Units are converted
exactly to cm and kg (1 in = 2.54 cm, 1 lb = 0.45359237 kg, both exact by definition). An
Observation that is no usable measurement (not final, no quantity, unknown unit) is skipped; one
the app will not pre-fill (future, implausible, unit and code disagreeing) is named in ``notes``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir_desens.fhir.chart.values import codings, json_decimal
from fhir_desens.fhir.raw import text_or_none
from fhir_desens.protocol.quantity import EXACT, plain

__all__ = [
    "HEIGHT_CODES",
    "LOINC",
    "WEIGHT_CODES",
    "BodyMeasurements",
    "Measurement",
    "latest_body_measurements",
]

LOINC = "http://loinc.org"
HEIGHT_CODES = frozenset({"8302-2", "8306-3", "8308-9"})  # body height; lying; standing
WEIGHT_CODES = frozenset({"29463-7", "3141-9"})  # body weight; measured
_USABLE_OBSERVATION = frozenset({"final", "amended", "corrected"})

#: people recorded. Anything outside is a typing or unit error and is never pre-filled.
HEIGHT_RANGE_CM = (Decimal(20), Decimal(280))
WEIGHT_RANGE_KG = (Decimal("0.3"), Decimal(650))
#: A measurement dated up to a day ahead is a time zone east of UTC, not the future.
FUTURE_TOLERANCE = timedelta(days=1)

#: Exact factors to cm and kg, by UCUM code (and the common non-UCUM spellings).
_TO_CM = {
    "cm": Decimal(1),
    "m": Decimal(100),
    "mm": Decimal("0.1"),
    "[in_i]": Decimal("2.54"),
    "in": Decimal("2.54"),
    "[in_us]": Decimal("2.54"),
    "centimeter": Decimal(1),
    "centimeters": Decimal(1),
    "centimetre": Decimal(1),
    "centimetres": Decimal(1),
    "meter": Decimal(100),
    "meters": Decimal(100),
    "metre": Decimal(100),
    "metres": Decimal(100),
    "inch": Decimal("2.54"),
    "inches": Decimal("2.54"),
}
_TO_KG = {
    "kg": Decimal(1),
    "g": Decimal("0.001"),
    "[lb_av]": Decimal("0.45359237"),
    "lb": Decimal("0.45359237"),
    "lbs": Decimal("0.45359237"),
    "[oz_av]": Decimal("0.028349523125"),
    "oz": Decimal("0.028349523125"),
    "kilogram": Decimal(1),
    "kilograms": Decimal(1),
    "kgs": Decimal(1),
    "gram": Decimal("0.001"),
    "grams": Decimal("0.001"),
    "pound": Decimal("0.45359237"),
    "pounds": Decimal("0.45359237"),
}


@dataclass(frozen=True)
class Measurement:
    value: Decimal
    unit: str  # "cm" | "kg"
    date: str | None
    reference: str | None


@dataclass(frozen=True)
class BodyMeasurements:
    height: Measurement | None
    weight: Measurement | None
    notes: tuple[str, ...] = ()  # measurements in the chart that were not used, and why


def _when(observation: Mapping[str, Any]) -> str | None:
    period = observation.get("effectivePeriod")
    candidates = [
        observation.get("effectiveDateTime"),
        period.get("end") if isinstance(period, Mapping) else None,
        period.get("start") if isinstance(period, Mapping) else None,
        observation.get("effectiveInstant"),
        observation.get("issued"),
    ]
    return next((text for text in map(text_or_none, candidates) if text and _instant(text) is not None), None)


_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")


def _instant(text: str) -> datetime | None:
    """A FHIR date or dateTime as an aware datetime (partial dates at their start; no zone means UTC)."""
    match = _PARTIAL_DATE.match(text)
    try:
        if match:
            year, month, day = (int(part) if part else 1 for part in match.groups())
            return datetime(year, month, day, tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _has_code(observation: Mapping[str, Any], codes: frozenset[str]) -> bool:
    return any(
        c.get("system") == LOINC and text_or_none(c.get("code")) in codes
        for c in codings(observation.get("code"))
    )


def _factor(spelling: str | None, factors: Mapping[str, Decimal]) -> Decimal | None:
    if spelling is None:
        return None
    return factors.get(spelling) or factors.get(spelling.lower())


def _shown(value: Decimal) -> str:
    """A chart number for a note: plain when it is of human size, else as the EHR's exponent form."""
    return plain(value) if -7 < value.adjusted() < 10 else str(value)


@dataclass(frozen=True)
class _Kind:
    label: str  # "Height" | "Weight"
    codes: frozenset[str]
    factors: Mapping[str, Decimal]
    unit: str  # "cm" | "kg"
    plausible: tuple[Decimal, Decimal]  # inclusive, in ``unit``


_HEIGHT = _Kind("Height", HEIGHT_CODES, _TO_CM, "cm", HEIGHT_RANGE_CM)
_WEIGHT = _Kind("Weight", WEIGHT_CODES, _TO_KG, "kg", WEIGHT_RANGE_KG)


def _reading(observation: Mapping[str, Any], kind: _Kind, now: datetime) -> Measurement | str | None:
    """The observation as a measurement; a note (str) when it is a measurement the app will not use;
    None when it is no usable measurement at all (not final, no quantity)."""
    if text_or_none(observation.get("status")) not in _USABLE_OBSERVATION:
        return None
    quantity = observation.get("valueQuantity")
    if not isinstance(quantity, Mapping):
        return None
    value = json_decimal(quantity.get("value"))
    code, unit_text = text_or_none(quantity.get("code")), text_or_none(quantity.get("unit"))
    by_code, by_unit = _factor(code, kind.factors), _factor(unit_text, kind.factors)
    factor = by_code or by_unit
    if value is None or factor is None:
        return None
    observation_id = text_or_none(observation.get("id"))
    where = ", ".join(
        filter(None, [f"Observation/{observation_id}" if observation_id else None, _when(observation)])
    )
    said = f"{kind.label} {_shown(value)} {unit_text or code}" + (f" ({where})" if where else "")
    if by_code is not None and by_unit is not None and by_code != by_unit:
        return f"{said} not used: its unit '{unit_text}' and code '{code}' disagree"
    date = _when(observation)
    moment = _instant(date) if date else None
    if moment is not None and moment > now + FUTURE_TOLERANCE:
        return f"{said} not used: dated in the future"
    low, high = kind.plausible
    converted = EXACT.multiply(value, factor) if -20 < value.adjusted() < 20 else None
    if converted is None or not low <= converted <= high:
        return f"{said} not used: outside {plain(low)}\u2013{plain(high)} {kind.unit}"
    return Measurement(
        value=converted,
        unit=kind.unit,
        date=date,
        reference=f"Observation/{observation_id}" if observation_id else None,
    )


def _latest(
    observations: Sequence[Mapping[str, Any]], kind: _Kind, now: datetime
) -> tuple[Measurement | None, list[str]]:
    readings = [_reading(o, kind, now) for o in observations if _has_code(o, kind.codes)]
    found = [r for r in readings if isinstance(r, Measurement)]
    notes = [r for r in readings if isinstance(r, str)]
    dated = [(moment, m) for m in found if m.date and (moment := _instant(m.date)) is not None]
    if dated:
        return max(dated, key=lambda pair: pair[0])[1], notes
    return (found[0] if found else None), notes


def latest_body_measurements(
    observations: Iterable[Mapping[str, Any]], *, now: datetime | None = None
) -> BodyMeasurements:
    """The latest plausible height (cm) and weight (kg) Observations, converted exactly.

    Future-dated (beyond a day's time-zone slack), implausible and self-contradicting ones (unit
    and code naming different units) are not used; each is named in ``notes`` for the person.
    """
    items = [o for o in observations if isinstance(o, Mapping)]
    moment = now or datetime.now(UTC)
    height, height_notes = _latest(items, _HEIGHT, moment)
    weight, weight_notes = _latest(items, _WEIGHT, moment)
    return BodyMeasurements(height=height, weight=weight, notes=tuple(height_notes + weight_notes))
