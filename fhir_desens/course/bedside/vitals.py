"""Vital signs at the bedside: what is impossible (refused), what is flagged, and when the next set is due.

Impossible values are refused with the field named (a typing error, not a patient). Flags are for the nurse's
eye, not decisions, and each says in words which way and past what (BED-14). The expected ranges are
DESIGN: the usual adult resting ranges by which tachycardia (> 100/min), tachypnoea (> 20/min) and
bradypnoea (< 10/min) are defined, SpO2 below 95 % (Brown's severe grade starts at 92 %, clinical.md S28: the
flag comes before it), systolic < 90 mmHg (hypotension, the same grading). The first ranges (heart rate to
120, respiratory rate to 24, SpO2 to 92 %) let a reaction's heart rate 104, respiratory rate 22 and SpO2 94
pass unflagged (walk session 8). A fall of systolic pressure by more than 20 % from the baseline set is
flagged too (hypotension is how anaphylaxis shows). Vitals are due every 15 minutes while a step runs and
every 30 in the final step (clinical.md S4; bedside.md 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir_desens.boundary.numbers import NumberField, parse_number
from fhir_desens.errors import InputError

EVERY = timedelta(minutes=15)
EVERY_IN_FINAL_STEP = timedelta(minutes=30)


@dataclass(frozen=True)
class Measure:
    field: str
    label: str
    unit: str  # UCUM
    possible: tuple[Decimal, Decimal]  # outside: refused as impossible
    expected: tuple[Decimal, Decimal]  # outside: flagged low/high

    @property
    def unit_text(self) -> str:
        """The unit as a nurse reads it ('mmHg', '°C'; the UCUM code stays in the record)."""
        return UNIT_WORDS.get(self.unit, self.unit)


UNIT_WORDS = {"mm[Hg]": "mmHg", "Cel": "°C"}


MEASURES = (
    Measure(
        "systolic",
        "Systolic blood pressure",
        "mm[Hg]",
        (Decimal(40), Decimal(300)),
        (Decimal(90), Decimal(180)),
    ),
    Measure(
        "diastolic",
        "Diastolic blood pressure",
        "mm[Hg]",
        (Decimal(20), Decimal(200)),
        (Decimal(50), Decimal(110)),
    ),
    Measure("heart_rate", "Heart rate", "/min", (Decimal(20), Decimal(300)), (Decimal(50), Decimal(100))),
    Measure(
        "respiratory_rate", "Respiratory rate", "/min", (Decimal(4), Decimal(80)), (Decimal(10), Decimal(20))
    ),
    Measure("spo2", "Oxygen saturation", "%", (Decimal(50), Decimal(100)), (Decimal(95), Decimal(100))),
    Measure(
        "temperature",
        "Body temperature",
        "Cel",
        (Decimal(30), Decimal(45)),
        (Decimal("35.5"), Decimal("38.0")),
    ),
    Measure(
        "peak_flow",
        "Peak expiratory flow",
        "L/min",
        (Decimal(30), Decimal(1000)),
        (Decimal(150), Decimal(900)),
    ),
)
BY_FIELD = {m.field: m for m in MEASURES}
#: The one number parser's bounds for each measure (no NaN, infinity, 1e-400 or 50 digits); the
#: physiologically possible range is checked after it, with its own message.
_WIDE_FIELDS = {
    m.field: NumberField(m.field, Decimal(-1000), Decimal(10_000), m.unit_text, minimum_inclusive=True)
    for m in MEASURES
}
REQUIRED = ("systolic", "diastolic", "heart_rate", "respiratory_rate", "spo2")


@dataclass(frozen=True)
class VitalSigns:
    values: dict[str, Decimal]

    def flags(self, baseline: VitalSigns | None = None) -> dict[str, str]:
        """``{field: "low"|"high"|"fall from baseline"}`` for values outside the expected range."""
        result: dict[str, str] = {}
        for name, value in self.values.items():
            low, high = BY_FIELD[name].expected
            if value < low:
                result[name] = "low"
            elif value > high:
                result[name] = "high"
        fell = (
            baseline is not None
            and "systolic" in baseline.values
            and self.values["systolic"] < baseline.values["systolic"] * Decimal("0.8")
        )
        if fell and "systolic" not in result:
            result["systolic"] = FALL_FROM_BASELINE
        return result


FALL_FROM_BASELINE = "fall from baseline"


def flag_words(field: str, flag: str) -> str:
    """A flag as the nurse reads it: which way and past what ('high, above 100 /min'; 'low, below 95 %';
    'fall of more than 20 % from the baseline')."""
    measure = BY_FIELD[field]
    low, high = measure.expected
    if flag == "high":
        return f"high, above {high} {measure.unit_text}"
    if flag == "low":
        return f"low, below {low} {measure.unit_text}"
    if flag == FALL_FROM_BASELINE:
        return "fall of more than 20 % from the baseline"
    return flag


def parse_vitals(data: dict[str, Any]) -> VitalSigns:
    """Parse a vitals form; impossible or missing required values raise InputError naming the field."""
    values: dict[str, Decimal] = {}
    for measure in MEASURES:
        raw = data.get(measure.field)
        if raw is None or str(raw).strip() == "":
            if measure.field in REQUIRED:
                raise InputError(measure.field, "is required", f"{measure.label} in {measure.unit_text}")
            continue
        low, high = measure.possible
        value = parse_number(str(raw), _WIDE_FIELDS[measure.field])
        if not low <= value <= high:
            raise InputError(
                measure.field,
                f"{raw} is not a possible {measure.label.lower()}",
                f"{low} to {high} {measure.unit_text}",
            )
        values[measure.field] = value
    if values["diastolic"] >= values["systolic"]:
        raise InputError(
            "diastolic", "must be lower than the systolic pressure", "a value below the systolic"
        )
    return VitalSigns(values)


def next_due(last: datetime | None, running_final_step: bool) -> datetime | None:
    """When the next set is due (``None``: no set yet, so one is due now)."""
    if last is None:
        return None
    return last + (EVERY_IN_FINAL_STEP if running_final_step else EVERY)


__all__ = ["MEASURES", "Measure", "VitalSigns", "flag_words", "next_due", "parse_vitals"]
