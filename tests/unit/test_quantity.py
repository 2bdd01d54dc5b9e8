from decimal import Decimal

import pytest

from fhir_desens.errors import InputError, UnitError
from fhir_desens.protocol.quantity import Quantity, display, parse_quantity, plain


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("400mg", "400", "mg"),
        ("400 mg", "400", "mg"),
        ("2 g", "2000", "mg"),
        ("0.5mcg", "0.0005", "mg"),
        ("250 ug", "0.25", "mg"),
        ("1296700 units", "1296700", "[iU]"),
        ("600000 IU", "600000", "[iU]"),
        (".5 mg", "0.5", "mg"),
    ],
)
def test_parse_and_canonicalise(text, value, unit):
    quantity = parse_quantity(text, "--dose").canonical()
    assert quantity == Quantity(Decimal(value), unit)


@pytest.mark.parametrize("text", ["", "mg", "400 kg", "1,5 mg", "400 mg/kg/day", "abc", "1e3x"])
def test_refuses_bad_quantities(text):
    with pytest.raises(InputError) as error:
        parse_quantity(text, "--dose").canonical()
    assert error.value.field == "--dose"


def test_no_conversion_between_mass_and_units():
    with pytest.raises(UnitError, match="cannot convert"):
        parse_quantity("400 mg", "--dose").to("[iU]")


def test_floats_are_refused():
    with pytest.raises(TypeError):
        Quantity(0.1, "mg")  # type: ignore[arg-type]


def test_conversion_is_exact():
    assert parse_quantity("1 h", "t").to("min").value == 60
    assert parse_quantity("0.000001 g", "d").to("ug").value == Decimal("1")
    assert parse_quantity("7.5 mg/mL", "c").to("ug/mL").value == Decimal("7500")


def test_plain_and_display_rules():
    assert plain(Decimal("2000.000")) == "2000"
    assert plain(Decimal("1E+3")) == "1000"
    assert plain(Decimal("0.50")) == "0.5"
    assert display(Decimal("174.375"), 2) == "174.38"  # ROUND_HALF_UP, display only
    assert display(Decimal("0.0004"), 3) == "0"
