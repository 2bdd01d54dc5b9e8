"""Body surface area (Mosteller, Du Bois) and per-m² doses: exact Decimal, clear input errors."""

from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_desens.errors import InputError, UnitError
from fhir_desens.protocol.bsa import (
    BodySurfaceArea,
    body_surface_area,
    display_bsa,
    display_dose_for_bsa,
    dose_for_bsa,
)
from fhir_desens.protocol.quantity import EXACT, Dimension, Quantity, mul, parse_quantity

heights = st.decimals(min_value=30, max_value=250, places=1)
weights = st.decimals(min_value=1, max_value=350, places=1)


def test_mosteller_170_cm_70_kg_is_the_square_root_of_11900_over_3600():
    bsa = body_surface_area(Decimal(170), Decimal(70))
    with localcontext() as ctx:
        ctx.prec = 80
        reference = (Decimal(11900) / Decimal(3600)).sqrt()
    assert bsa.formula == "mosteller"
    assert bsa.value_m2 == EXACT.plus(reference)  # correctly rounded to 50 significant digits
    assert str(bsa.value_m2).startswith("1.81811868577261906858369241456215031213418895044")
    assert len(bsa.value_m2.as_tuple().digits) == 50
    assert "Mosteller" in bsa.formula_text and "3600" in bsa.formula_text


def test_mosteller_of_a_perfect_square_is_exact():
    # 180 cm x 80 kg / 3600 = 4 -> exactly 2 m²
    assert body_surface_area(Decimal(180), Decimal(80)).value_m2 == 2


def test_du_bois_matches_the_published_formula():
    bsa = body_surface_area(Decimal(170), Decimal(70), formula="du-bois")
    # 0.007184 x 70^0.425 x 170^0.725, recomputed here at 80 digits
    with localcontext() as ctx:
        ctx.prec = 80
        reference = (
            Decimal("0.007184")
            * (Decimal("0.425") * Decimal(70).ln() + Decimal("0.725") * Decimal(170).ln()).exp()
        )
    assert abs(bsa.value_m2 - reference) < Decimal("1e-45")
    assert str(bsa.value_m2).startswith("1.8097")
    assert bsa.formula == "du-bois" and "Du Bois" in bsa.formula_text


def test_text_values_are_accepted_and_formula_aliases_too():
    assert body_surface_area("170", "70").value_m2 == body_surface_area(Decimal(170), Decimal(70)).value_m2
    assert body_surface_area(Decimal(170), Decimal(70), "DuBois").formula == "du-bois"


@pytest.mark.parametrize(
    ("height", "weight", "formula", "field"),
    [
        (None, Decimal(70), "mosteller", "height"),
        ("", Decimal(70), "mosteller", "height"),
        (Decimal(170), None, "mosteller", "weight"),
        (Decimal(0), Decimal(70), "mosteller", "height"),
        (Decimal(-170), Decimal(70), "mosteller", "height"),
        (Decimal(170), Decimal(-1), "mosteller", "weight"),
        (Decimal("1.70"), Decimal(70), "mosteller", "height"),  # metres typed as centimetres
        (Decimal(170), Decimal(154000), "mosteller", "weight"),  # grams typed as kilograms
        (Decimal(170), Decimal("NaN"), "mosteller", "weight"),
        ("1,70", Decimal(70), "mosteller", "height"),
        ("tall", Decimal(70), "mosteller", "height"),
        (Decimal(170), Decimal(70), "haycock", "formula"),
        (Decimal(170), Decimal(70), "", "formula"),
    ],
)
def test_bad_input_names_the_field_and_what_is_accepted(height, weight, formula, field):
    with pytest.raises(InputError) as caught:
        body_surface_area(height, weight, formula)
    assert caught.value.field == field
    assert caught.value.accepted


def test_floats_are_refused():
    with pytest.raises(InputError) as caught:
        body_surface_area(170.0, Decimal(70))  # type: ignore[arg-type]
    assert caught.value.field == "height"


@given(heights, heights, weights)
def test_monotone_in_height(h1, h2, w):
    low, high = sorted((h1, h2))
    for formula in ("mosteller", "du-bois"):
        assert body_surface_area(low, w, formula).value_m2 <= body_surface_area(high, w, formula).value_m2


@given(heights, weights, weights)
def test_monotone_in_weight(h, w1, w2):
    low, high = sorted((w1, w2))
    for formula in ("mosteller", "du-bois"):
        assert body_surface_area(h, low, formula).value_m2 <= body_surface_area(h, high, formula).value_m2


@given(heights, weights)
def test_mosteller_squared_gives_back_height_times_weight_over_3600(h, w):
    bsa = body_surface_area(h, w).value_m2
    assert abs(bsa * bsa - h * w / 3600) < Decimal("1e-40")


@given(st.decimals(min_value="0.001", max_value=5000, places=3), heights, weights)
def test_dose_for_bsa_is_the_exact_product(per_m2, h, w):
    bsa = body_surface_area(h, w)
    dose = dose_for_bsa(Quantity(per_m2, "mg/m2"), bsa)
    assert dose == Quantity(mul(per_m2, bsa.value_m2), "mg")


def test_dose_for_bsa_keeps_the_dose_unit_and_dimension():
    bsa = BodySurfaceArea(Decimal(2), "mosteller", "")
    assert dose_for_bsa(parse_quantity("80 mg/m2", "dose"), bsa) == Quantity(Decimal(160), "mg")
    assert dose_for_bsa(parse_quantity("375mg/m²", "dose"), bsa) == Quantity(Decimal(750), "mg")
    assert dose_for_bsa(parse_quantity("10 mcg/m2", "dose"), bsa) == Quantity(Decimal(20), "ug")
    assert dose_for_bsa(parse_quantity("1000 units/m2", "dose"), bsa) == Quantity(Decimal(2000), "[iU]")
    assert dose_for_bsa(parse_quantity("1 g/m2", "dose"), bsa) == Quantity(Decimal(2), "g")


def test_per_m2_units_convert_exactly_within_their_base_and_never_across():
    assert parse_quantity("1 g/m2", "dose").canonical() == Quantity(Decimal(1000), "mg/m2")
    assert parse_quantity("500 ug/m2", "dose").to("mg/m2") == Quantity(Decimal("0.5"), "mg/m2")
    assert parse_quantity("80 mg/m2", "dose").dimension is Dimension.DOSE_PER_AREA
    with pytest.raises(UnitError):
        parse_quantity("80 mg/m2", "dose").to("[iU]/m2")
    with pytest.raises(UnitError):
        parse_quantity("80 mg/m2", "dose").to("mg")


@pytest.mark.parametrize("dose", ["400 mg", "2 mg/mL", "-80 mg/m2", "0 mg/m2"])
def test_dose_for_bsa_refuses_non_per_m2_or_non_positive_doses(dose):
    with pytest.raises(InputError) as caught:
        dose_for_bsa(parse_quantity(dose, "dose"), body_surface_area(Decimal(170), Decimal(70)))
    assert caught.value.field == "dose"


def test_display_states_the_rounding_rule_and_never_feeds_the_dose():
    bsa = body_surface_area(Decimal(170), Decimal(70))
    text = display_bsa(bsa)
    assert text.startswith("1.82 m² (Mosteller")
    assert "2 decimals" in text
    shown = display_dose_for_bsa(Quantity(Decimal(80), "mg/m2"), bsa)
    assert "= 145.4 mg" in shown and "exact" in shown
    assert dose_for_bsa(Quantity(Decimal(80), "mg/m2"), bsa).value != Decimal("145.6")  # 80 x 1.82
    assert bsa.formula_name == "Mosteller"


def test_a_per_m2_dose_is_rounded_by_the_stated_rule_and_checks_by_calculator() -> None:
    from fhir_desens.protocol.bsa import BodySurfaceArea, rounded_dose_for_bsa

    bsa = BodySurfaceArea(Decimal("2.1412345"), "mosteller", "Mosteller")
    rounded = rounded_dose_for_bsa(Quantity(Decimal(375), "mg/m2"), bsa)
    assert rounded.bsa_m2 == Decimal("2.14")
    assert rounded.product.value == Decimal("802.5")
    assert rounded.dose == Quantity(Decimal(803), "mg")
    assert rounded.text == "375 mg/m² × 2.14 m² = 802.5 mg → 803 mg (rounded half-up to 1 mg)"
    vial = rounded_dose_for_bsa(Quantity(Decimal(375), "mg/m2"), bsa, step=Decimal(10))
    assert vial.dose.value == Decimal(800)


def test_a_per_kg_dose_is_rounded_by_the_stated_rule_and_checks_by_calculator() -> None:
    from fhir_desens.protocol.bsa import rounded_dose_for_weight

    rounded = rounded_dose_for_weight(Quantity(Decimal(15), "mg/kg"), Decimal("72.43"))
    assert rounded.weight_kg == Decimal("72.4")  # to 0.1 kg, as used
    assert rounded.product == Quantity(Decimal("1086.0"), "mg")
    assert rounded.dose == Quantity(Decimal(1086), "mg")
    assert rounded.text == "15 mg/kg × 72.4 kg = 1,086 mg → 1,086 mg (rounded half-up to 1 mg)"
    assert rounded_dose_for_weight(Quantity(Decimal("5.5"), "mg/kg"), "61.3").text == (
        "5.5 mg/kg × 61.3 kg = 337.15 mg → 337 mg (rounded half-up to 1 mg)"
    )
    assert Quantity(Decimal(15), "mg/kg").canonical() == Quantity(Decimal(15), "mg/kg")
    with pytest.raises(InputError, match="weight"):
        rounded_dose_for_weight(Quantity(Decimal(15), "mg/kg"), "720")  # pounds typed as kg
    with pytest.raises(InputError, match="not a dose per kg"):
        rounded_dose_for_weight(Quantity(Decimal(15), "mg"), "72")
    with pytest.raises(UnitError):
        Quantity(Decimal(15), "mg/kg").to("[iU]/kg")
