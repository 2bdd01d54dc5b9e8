"""``@tuple_record`` (protocol/tuple_record.py) makes the frozen record ``@record`` makes, stored as the
tuple of its fields: same ``__init__`` parameters, equality within one class, hash, repr, immutability,
``dataclasses`` functions, copying and pickling; and what a tuple would add is refused."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from decimal import Decimal
from functools import cached_property

import pytest

from fhir_desens.protocol import plan, quantity
from fhir_desens.protocol.record import field, record, replace
from fhir_desens.protocol.tuple_record import built, tuple_record


@tuple_record
class Dose:
    value: Decimal
    unit: str
    note: str | None = None

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")

    @property
    def text(self) -> str:
        return f"{self.value} {self.unit}"


@record
class DictDose:
    value: Decimal
    unit: str
    note: str | None = None

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")


@tuple_record
class Other:
    value: Decimal
    unit: str
    note: str | None = None


def test_a_tuple_record_behaves_as_the_record_of_its_declaration() -> None:
    ours, theirs = Dose(Decimal("1.50"), "mg"), DictDose(Decimal("1.50"), "mg")
    assert (
        repr(ours)
        == repr(theirs).replace("DictDose", "Dose")
        == "Dose(value=Decimal('1.50'), unit='mg', note=None)"
    )
    assert ours == Dose(Decimal("1.5"), "mg") and (ours != Dose(Decimal("1.5"), "mg")) is False
    assert ours != Dose(Decimal("1.5"), "g") and ours != Dose(Decimal("1.5"), "mg", "n")
    assert hash(ours) == hash(theirs) == hash(Dose(Decimal("1.5"), "mg"))
    assert ours != Other(Decimal("1.50"), "mg") and ours != theirs  # another class is never equal
    assert ours.text == "1.50 mg" and ours.note is None
    assert str(inspect.signature(Dose)) == str(inspect.signature(DictDose))
    assert Dose.__match_args__ == ("value", "unit", "note")  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="negative"):
        Dose(Decimal(-1), "mg")  # __post_init__ runs
    with pytest.raises(TypeError):
        Dose(Decimal(1))  # type: ignore[call-arg]
    for action in (
        lambda: setattr(ours, "unit", "g"),
        lambda: delattr(ours, "unit"),
        lambda: setattr(ours, "x", 1),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            action()


def test_dataclasses_functions_copy_and_pickle_work_on_tuple_records() -> None:
    dose = Dose(Decimal(2), "mg", "n")
    assert dataclasses.is_dataclass(dose)
    assert [f.name for f in dataclasses.fields(dose)] == ["value", "unit", "note"]
    assert dataclasses.asdict(dose) == dataclasses.asdict(DictDose(Decimal(2), "mg", "n"))
    assert dataclasses.replace(dose, unit="g") == replace(dose, unit="g") == Dose(Decimal(2), "g", "n")
    with pytest.raises(ValueError, match="negative"):
        dataclasses.replace(dose, value=Decimal(-1))  # through the constructor, so __post_init__ checks it
    assert pickle.loads(pickle.dumps(dose)) == dose  # noqa: S301 (our own bytes)
    assert copy.deepcopy(dose) == dose and copy.copy(dose) == dose
    assert type(copy.copy(dose)) is Dose


def test_a_tuple_record_is_not_a_sequence() -> None:
    dose = Dose(Decimal(2), "mg")
    with pytest.raises(TypeError, match="not a sequence"):
        list(dose)
    with pytest.raises(TypeError, match="not a sequence"):
        _value, _unit, _note = dose
    for operation in (lambda: dose < dose, lambda: dose >= dose, lambda: dose + dose, lambda: dose * 2):
        with pytest.raises(TypeError):
            operation()


def test_built_makes_the_record_its_constructor_makes_without_checking() -> None:
    assert built(Dose, (Decimal(2), "mg", None)) == Dose(Decimal(2), "mg")
    assert type(built(Dose, (Decimal(2), "mg", None))) is Dose
    unchecked = built(Dose, (Decimal(-2), "mg", None))  # for values the engine has checked only
    assert unchecked.value == Decimal(-2)


def test_what_a_tuple_record_cannot_hold_is_refused() -> None:
    with pytest.raises(TypeError, match="__dict__"):

        @tuple_record
        class Cached:
            value: int

            @cached_property
            def twice(self) -> int:
                return 2 * self.value

    with pytest.raises(TypeError, match="super"):

        @tuple_record
        class Super:
            value: int

            def __repr__(self) -> str:
                return super().__repr__()

    with pytest.raises(TypeError, match="not supported"):

        @tuple_record
        class Factory:
            tags: dict[str, str] = field(default_factory=dict)


@pytest.mark.parametrize(
    "cls", [quantity.Quantity, plan.PlanRequest, plan.PlannedSolution, plan.PlannedStep, plan.Plan]
)
def test_the_plans_records_are_tuple_records(cls: type) -> None:
    instance = built(cls, (None,) * len(cls.__match_args__))  # type: ignore[attr-defined]
    assert isinstance(instance, tuple) and not hasattr(instance, "__dict__")


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((Decimal(1),), {"unit": "mg"}),
        ((), {"value": Decimal(1), "unit": "mg", "note": "n"}),
        ((Decimal(1), "mg"), {"note": "n"}),
        ((), {"unit": "mg", "value": Decimal(1)}),  # keywords in any order
        ((Decimal(1),), {"value": Decimal(2), "unit": "mg"}),  # given twice
        ((Decimal(1),), {"unit": "mg", "colour": "red"}),  # unknown keyword
        ((), {"note": "n"}),  # two missing
        ((Decimal(1),), {"note": "n"}),  # one missing
        ((Decimal(1), "mg", "n", "extra"), {"note": "n"}),  # too many by position
    ],
)
def test_keyword_calls_bind_as_the_records_init_binds_them(args: tuple, kwargs: dict) -> None:
    """The keyword path of a tuple record's ``__new__`` (bound by position) gives the same record, or
    the same TypeError text, as the record's ``__init__``."""

    def outcome(cls: type) -> str:
        try:
            return repr(cls(*args, **kwargs)).replace(cls.__name__, "CLASS")
        except TypeError as error:
            return str(error).replace(cls.__name__, "CLASS").replace("__new__", "__init__")

    assert outcome(Dose) == outcome(DictDose)
