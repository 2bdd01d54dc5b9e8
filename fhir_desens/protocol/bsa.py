"""Body surface area and per-m² doses, exact on Decimal (pure).

Chemotherapy and monoclonal antibodies are often prescribed per square metre of body surface area
(e.g. paclitaxel 80 mg/m²). The BSA is computed to the 50 significant digits of the engine's working
precision: Mosteller with a correctly rounded Decimal square root, Du Bois through Decimal ln/exp
with guard digits. Rounding happens only in the ``display_*`` helpers, which say their rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal

from fhir_desens.errors import InputError
from fhir_desens.protocol.quantity import (
    ACCEPTED_DOSE_PER_AREA_UNITS,
    EXACT,
    Dimension,
    Quantity,
    display,
    display_significant,
    parse_decimal,
    per_area_dose_unit,
    per_weight_dose_unit,
    unit,
)

__all__ = [
    "BSA_DISPLAY_PLACES",
    "DOSE_ROUNDING_STEP",
    "FORMULAS",
    "HEIGHT_RANGE_CM",
    "WEIGHT_RANGE_KG",
    "BodySurfaceArea",
    "RoundedDose",
    "WeightDose",
    "body_surface_area",
    "display_bsa",
    "display_dose_for_bsa",
    "dose_for_bsa",
    "rounded_dose_for_bsa",
    "rounded_dose_for_weight",
]

#: Plausible adult and paediatric values (neonates to the tallest and heaviest adults). Outside
#: them the number is far more likely a unit or typing error (inches, pounds, grams) than a patient.
HEIGHT_RANGE_CM = (Decimal(30), Decimal(250))
WEIGHT_RANGE_KG = (Decimal(1), Decimal(350))
BSA_DISPLAY_PLACES = 2

FORMULAS = {
    "mosteller": "Mosteller: BSA (m²) = √(height (cm) × weight (kg) / 3600)",
    "du-bois": "Du Bois: BSA (m²) = 0.007184 × weight (kg)^0.425 × height (cm)^0.725",
}
_NAMES = {"mosteller": "Mosteller", "du-bois": "Du Bois"}
_ALIASES = {"mosteller": "mosteller", "du-bois": "du-bois", "dubois": "du-bois", "du bois": "du-bois"}

#: Guard digits for the intermediate ln/exp/product steps; the result is rounded once to EXACT.
_WIDE = Context(prec=EXACT.prec + 10, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class BodySurfaceArea:
    value_m2: Decimal
    formula: str  # "mosteller" | "du-bois"
    formula_text: str  # e.g. "Mosteller: BSA (m²) = √(height (cm) × weight (kg) / 3600)"

    @property
    def formula_name(self) -> str:
        """'Mosteller' or 'Du Bois', for sentences such as 'Body surface area by the Mosteller formula'."""
        return _NAMES[self.formula]


def _measure(
    value: Decimal | str | None, field: str, unit_text: str, bounds: tuple[Decimal, Decimal]
) -> Decimal:
    low, high = bounds
    accepted = f"a number of {unit_text} from {low} to {high}"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(field, "is missing", accepted)
    number = parse_decimal(value, field) if isinstance(value, str) else value
    if not isinstance(number, Decimal) or not number.is_finite():
        raise InputError(field, f"'{value}' is not a number", accepted)
    if number <= 0:
        raise InputError(field, f"must be positive, got {number}", accepted)
    if not low <= number <= high:
        raise InputError(field, f"{number} {unit_text} is not a plausible {field}", accepted)
    return number


def _formula(formula: str | None) -> str:
    key = _ALIASES.get((formula or "").strip().lower())
    if key is None:
        raise InputError("formula", f"unknown body-surface-area formula '{formula}'", "mosteller, du-bois")
    return key


def _mosteller(height: Decimal, weight: Decimal) -> Decimal:
    return EXACT.plus(_WIDE.sqrt(_WIDE.divide(_WIDE.multiply(height, weight), Decimal(3600))))


def _du_bois(height: Decimal, weight: Decimal) -> Decimal:
    exponent = _WIDE.add(
        _WIDE.multiply(Decimal("0.425"), _WIDE.ln(weight)), _WIDE.multiply(Decimal("0.725"), _WIDE.ln(height))
    )
    return EXACT.plus(_WIDE.multiply(Decimal("0.007184"), _WIDE.exp(exponent)))


def body_surface_area(
    height_cm: Decimal | str | None, weight_kg: Decimal | str | None, formula: str = "mosteller"
) -> BodySurfaceArea:
    """The BSA in m² by Mosteller (default) or Du Bois, to 50 significant digits.

    ``height_cm`` and ``weight_kg`` are Decimals (text is parsed, floats are refused). A missing,
    non-positive or implausible value raises :class:`InputError` naming ``height``, ``weight`` or
    ``formula`` and saying what is accepted.
    """
    key = _formula(formula)
    height = _measure(height_cm, "height", "cm", HEIGHT_RANGE_CM)
    weight = _measure(weight_kg, "weight", "kg", WEIGHT_RANGE_KG)
    value = _mosteller(height, weight) if key == "mosteller" else _du_bois(height, weight)
    return BodySurfaceArea(value_m2=value, formula=key, formula_text=FORMULAS[key])


def dose_for_bsa(dose_per_m2: Quantity, bsa: BodySurfaceArea) -> Quantity:
    """The exact absolute dose of a per-m² dose: 80 mg/m2 at 1.8 m² -> 144 mg (units kept: ug/m2 -> ug)."""
    if dose_per_m2.dimension is not Dimension.DOSE_PER_AREA:
        raise InputError(
            "dose", f"{dose_per_m2} is not a dose per m² of body surface area", ACCEPTED_DOSE_PER_AREA_UNITS
        )
    if dose_per_m2.value <= 0:
        raise InputError("dose", f"must be positive, got {dose_per_m2}", ACCEPTED_DOSE_PER_AREA_UNITS)
    absolute = per_area_dose_unit(unit(dose_per_m2.unit))
    return Quantity(EXACT.multiply(dose_per_m2.value, bsa.value_m2), absolute.code)


def display_bsa(bsa: BodySurfaceArea) -> str:
    """'1.82 m² (Mosteller; shown rounded half-up to 2 decimals, doses use the exact value)'. Display only."""
    shown = display(bsa.value_m2, BSA_DISPLAY_PLACES)
    return (
        f"{shown} m² ({bsa.formula_name}; shown rounded half-up to {BSA_DISPLAY_PLACES} decimals, "
        "doses use the exact value)"
    )


def display_dose_for_bsa(dose_per_m2: Quantity, bsa: BodySurfaceArea) -> str:
    """'80 mg/m² × 1.82 m² = 145.5 mg (rounded for display to 4 significant digits)'. Display only."""
    dose = dose_for_bsa(dose_per_m2, bsa)
    return (
        f"{dose_per_m2} × {display(bsa.value_m2, BSA_DISPLAY_PLACES)} m² = "
        f"{display_significant(dose.value)} {unit(dose.unit).display} (rounded for display to 4 significant "
        "digits; the plan uses the exact dose)"
    )


#: How a per-m² dose becomes the planned dose: the BSA as shown (2 decimals), times the dose per m²,
#: rounded half-up to a whole unit (1 mg, 1 mcg, 1 unit). Stated so a pharmacist can check it by
#: calculator: 375 mg/m² x 2.14 m² = 802.5 mg -> 803 mg. Everything after this is exact.
DOSE_ROUNDING_STEP = Decimal(1)


def _check_rounding_step(step: Decimal) -> None:
    if step <= 0:
        raise InputError("dose rounding", f"must be above 0, got {step}", "e.g. 1 (mg), 10, 50 (a vial size)")


def _rounded_to_step(product: Decimal, step: Decimal) -> Decimal:
    """The planned dose from an exact product (per m² x BSA, per kg x weight): rounded half-up to a whole
    number of ``step``, never below one step. The one rounding rule both prescriptions use."""
    steps = EXACT.divide(product, step).to_integral_value(rounding=ROUND_HALF_UP)
    return EXACT.multiply(max(steps, Decimal(1)), step)


def _rounding_rule(step: Decimal, dose_unit: str, rule_basis: str | None) -> str:
    """'rounded half-up to 1 mg' (and the monograph's reason for another step)."""
    from fhir_desens.protocol import display as shown

    rule = f"rounded half-up to {shown.grouped(step.normalize(EXACT))} {unit(dose_unit).display}"
    return f"{rule}: {rule_basis}" if rule_basis else rule


@dataclass(frozen=True)
class RoundedDose:
    """A per-m² dose turned into the dose to plan, with each number the check needs."""

    dose_per_m2: Quantity
    bsa_m2: Decimal  # the BSA as used (rounded to BSA_DISPLAY_PLACES)
    product: Quantity  # dose per m² x BSA as used, exact
    dose: Quantity  # the product rounded by the stated rule: the plan's target
    step: Decimal
    rule_basis: str | None = None  # where a step other than 1 comes from (the drug monograph's rule)

    @property
    def rule(self) -> str:
        """'rounded half-up to 1 mg' (and the monograph's reason for another step)."""
        return _rounding_rule(self.step, self.dose.unit, self.rule_basis)

    @property
    def text(self) -> str:
        """'375 mg/m² × 2.14 m² = 802.5 mg → 803 mg (rounded half-up to 1 mg)'.

        The dose per m² (as prescribed) and the product are written in full, so that a calculator gives
        the same figures; the BSA is the 2-decimal value the product was computed from."""
        from fhir_desens.protocol import display as shown

        dose_unit = unit(self.dose.unit).display
        per_m2 = (
            f"{shown.grouped(self.dose_per_m2.value.normalize(EXACT))} {unit(self.dose_per_m2.unit).display}"
        )
        product = shown.grouped(self.product.value.normalize(EXACT))
        return (
            f"{per_m2} × {shown.bsa_text(self.bsa_m2)} = {product} {dose_unit} → "
            f"{shown.grouped(self.dose.value.normalize(EXACT))} {dose_unit} ({self.rule})"
        )


def rounded_dose_for_bsa(
    dose_per_m2: Quantity,
    bsa: BodySurfaceArea,
    step: Decimal = DOSE_ROUNDING_STEP,
    rule_basis: str | None = None,
) -> RoundedDose:
    """The planned dose of a per-m² prescription by the stated rule (:data:`DOSE_ROUNDING_STEP`, or a
    step such as a vial size with ``rule_basis`` saying where it comes from)."""
    _check_rounding_step(step)
    bsa_used = bsa.value_m2.quantize(Decimal(1).scaleb(-BSA_DISPLAY_PLACES), rounding=ROUND_HALF_UP)
    shown_bsa = BodySurfaceArea(bsa_used, bsa.formula, bsa.formula_text)
    product = dose_for_bsa(dose_per_m2, shown_bsa)
    rounded = _rounded_to_step(product.value, step)
    return RoundedDose(dose_per_m2, bsa_used, product, Quantity(rounded, product.unit), step, rule_basis)


#: Weight as used for a per-kg dose: to 0.1 kg, the precision scales and the chart give.
WEIGHT_PLACES = 1


@dataclass(frozen=True)
class WeightDose:
    """A per-kg dose turned into the dose to plan: dose per kg x weight (as used) = product -> rounded."""

    dose_per_kg: Quantity
    weight_kg: Decimal  # as used (rounded half-up to WEIGHT_PLACES)
    product: Quantity  # exact
    dose: Quantity  # the product rounded by the stated rule: the plan's target
    step: Decimal
    rule_basis: str | None = None

    @property
    def rule(self) -> str:
        return _rounding_rule(self.step, self.dose.unit, self.rule_basis)

    @property
    def text(self) -> str:
        """'15 mg/kg × 72.4 kg = 1,086 mg → 1,086 mg (rounded half-up to 1 mg)'."""
        from fhir_desens.protocol import display as shown

        dose_unit = unit(self.dose.unit).display
        per_kg = (
            f"{shown.grouped(self.dose_per_kg.value.normalize(EXACT))} {unit(self.dose_per_kg.unit).display}"
        )
        return (
            f"{per_kg} × {shown.grouped(self.weight_kg.normalize(EXACT))} kg = "
            f"{shown.grouped(self.product.value.normalize(EXACT))} {dose_unit} → "
            f"{shown.grouped(self.dose.value.normalize(EXACT))} {dose_unit} ({self.rule})"
        )


def rounded_dose_for_weight(
    dose_per_kg: Quantity,
    weight_kg: Decimal | str | None,
    step: Decimal = DOSE_ROUNDING_STEP,
    rule_basis: str | None = None,
) -> WeightDose:
    """The planned dose of a per-kg prescription: the weight to 0.1 kg, times the dose per kg, rounded
    half-up to ``step`` (1 mg unless the monograph states another). Everything after is exact."""
    if dose_per_kg.dimension is not Dimension.DOSE_PER_WEIGHT:
        raise InputError(
            "dose", f"{dose_per_kg} is not a dose per kg of body weight", "mg/kg, mcg/kg, units/kg"
        )
    if dose_per_kg.value <= 0:
        raise InputError("dose", f"must be positive, got {dose_per_kg}", "mg/kg, mcg/kg, units/kg")
    _check_rounding_step(step)
    weight = _measure(weight_kg, "weight", "kg", WEIGHT_RANGE_KG)
    used = weight.quantize(Decimal(1).scaleb(-WEIGHT_PLACES), rounding=ROUND_HALF_UP)
    absolute = per_weight_dose_unit(unit(dose_per_kg.unit))
    product = Quantity(EXACT.multiply(dose_per_kg.value, used), absolute.code)
    rounded = _rounded_to_step(product.value, step)
    return WeightDose(dose_per_kg, used, product, Quantity(rounded, product.unit), step, rule_basis)
