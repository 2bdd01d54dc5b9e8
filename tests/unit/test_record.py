"""``@record`` (protocol/record.py) makes the class a frozen dataclass of the same declaration would be:
same ``__init__``, equality, hash, repr, immutability, ``dataclasses`` functions, pickling."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from decimal import Decimal
from functools import cached_property
from typing import Any

import pytest

from fhir_desens.protocol import invariants, model, plan, quantity, replan, syringes
from fhir_desens.protocol.quantity import Quantity
from fhir_desens.protocol.record import field, record, replace

ENGINE_RECORDS = [
    quantity.Unit,
    quantity.Quantity,
    model.Source,
    model.Preparation,
    model.SolutionDefinition,
    model.StepDefinition,
    model.Premedication,
    model.ProtocolDefaults,
    model.Protocol,
    plan.PlanRequest,
    plan.PlannedSolution,
    plan.PlannedStep,
    plan.Plan,
    syringes.Syringe,
    invariants.Invariant,
    invariants.Violation,
    replan.Interruption,
    replan.Replan,
    replan._Segment,
]


@record
class Dose:
    value: Decimal
    unit: str
    note: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")

    @cached_property
    def text(self) -> str:
        return f"{self.value} {self.unit}"


@dataclasses.dataclass(frozen=True)
class DoseDataclass:
    value: Decimal
    unit: str
    note: str | None = None
    tags: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")


@record
class One:
    """A record of one field."""

    value: int


def same_declaration_dataclass(cls: type) -> Any:
    """The frozen dataclass declared like the record ``cls`` (its annotations and defaults)."""
    namespace: dict[str, Any] = {"__annotations__": cls.__annotations__, "__module__": cls.__module__}
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            namespace[f.name] = dataclasses.field(default_factory=f.default_factory)
        elif f.default is not dataclasses.MISSING:
            namespace[f.name] = f.default
    return dataclasses.dataclass(frozen=True)(type(cls.__name__, (), namespace))


@pytest.mark.parametrize("cls", ENGINE_RECORDS, ids=lambda c: c.__name__)
def test_engine_records_have_the_init_their_frozen_dataclass_would_have(cls: type) -> None:
    ours = inspect.signature(cls).parameters
    theirs = inspect.signature(same_declaration_dataclass(cls)).parameters
    assert list(ours) == list(theirs)
    for name, parameter in ours.items():
        other = theirs[name]
        assert (parameter.kind, parameter.annotation) == (other.kind, other.annotation)
        assert (parameter.default is inspect.Parameter.empty) == (other.default is inspect.Parameter.empty)
        if not isinstance(other.default, type(dataclasses.MISSING)) and repr(other.default) != "<factory>":
            assert parameter.default == other.default
    assert cls.__match_args__ == tuple(ours)  # type: ignore[attr-defined]
    assert dataclasses.is_dataclass(cls)


def test_a_record_behaves_as_the_frozen_dataclass_of_its_declaration() -> None:
    ours, theirs = Dose(Decimal("1.50"), "mg"), DoseDataclass(Decimal("1.50"), "mg")
    assert repr(ours) == repr(theirs).replace("DoseDataclass", "Dose")
    assert ours == Dose(Decimal("1.5"), "mg")
    for made in (ours, theirs):  # the hash covers every field, as a dataclass's: a dict is unhashable
        with pytest.raises(TypeError, match="unhashable"):
            hash(made)
    assert hash(One(1)) == hash(One(1)) and hash(quantity.Quantity(Decimal(1), "mg")) == hash(
        (Decimal(1), "mg")
    )
    assert ours != Dose(Decimal("1.5"), "g") and ours != theirs  # another class is never equal
    assert ours.tags == {} and ours.tags is not Dose(Decimal(1), "mg").tags  # a new dict each time
    assert "tags" not in Dose.__dict__  # no class attribute for a factory default, as a dataclass
    assert ours.text == "1.50 mg"  # cached_property still works on a frozen record
    with pytest.raises(ValueError, match="negative"):
        Dose(Decimal(-1), "mg")  # __post_init__ runs
    for action in (lambda: setattr(ours, "unit", "g"), lambda: delattr(ours, "unit")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            action()
    with pytest.raises(TypeError):
        Dose(Decimal(1))  # type: ignore[call-arg]


WRONG_CALLS = [
    ((), {}),
    ((Decimal(1),), {}),
    ((Decimal(1), "mg", "n", {}, "extra"), {}),
    ((Decimal(1), "mg", "n", {}, "extra"), {"note": "n"}),
    ((Decimal(1),), {"value": Decimal(2), "unit": "mg"}),
    ((Decimal(1),), {"colour": "red"}),
    ((), {"unit": "mg", "tags": {}}),
]


@pytest.mark.parametrize(("args", "kwargs"), WRONG_CALLS)
def test_a_wrong_call_raises_the_type_error_of_the_dataclass(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    messages = []
    for cls in (Dose, DoseDataclass):
        with pytest.raises(TypeError) as raised:
            cls(*args, **kwargs)
        messages.append(str(raised.value).replace(cls.__qualname__, "Dose"))
    assert messages[0] == messages[1]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((Decimal(1), "mg"), {}),
        ((Decimal(1),), {"unit": "mg", "tags": {"a": "b"}}),
        ((), {"unit": "g", "value": 2}),
    ],
)
def test_a_record_binds_positions_keywords_and_defaults_as_the_dataclass(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    ours, theirs = Dose(*args, **kwargs), DoseDataclass(*args, **kwargs)
    assert vars(ours) == vars(theirs) and list(vars(ours)) == list(vars(theirs))  # same fields, same order


def test_dataclasses_functions_work_on_records() -> None:
    dose = Dose(Decimal(2), "mg", "n", {"a": "b"})
    assert [f.name for f in dataclasses.fields(dose)] == ["value", "unit", "note", "tags"]
    assert dataclasses.asdict(dose) == dataclasses.asdict(DoseDataclass(Decimal(2), "mg", "n", {"a": "b"}))
    assert dataclasses.replace(dose, unit="g") == Dose(Decimal(2), "g", "n", {"a": "b"})
    assert replace(dose, unit="g") == dataclasses.replace(dose, unit="g")
    with pytest.raises(ValueError, match="negative"):
        replace(dose, value=Decimal(-1))  # through __init__, so __post_init__ checks it
    with pytest.raises(TypeError):
        replace(dose, colour="red")


def test_records_copy_and_pickle_as_dataclasses_do() -> None:
    dose = Dose(Decimal(2), "mg")
    assert pickle.loads(pickle.dumps(dose)) == dose  # noqa: S301 (our own bytes)
    assert copy.deepcopy(dose) == dose and copy.copy(dose) == dose
    q = Quantity(Decimal("437.5"), "mg")
    assert pickle.loads(pickle.dumps(q)) == q  # noqa: S301 (our own bytes)


def test_a_one_field_record_compares_and_hashes_its_fields_tuple() -> None:
    assert One(1) == One(1) and One(1) != One(2)
    assert hash(One(1)) == hash((1,))  # as a dataclass: the hash of the fields' tuple
    assert repr(One(1)) == "One(value=1)"
    assert One.__doc__ == "A record of one field."


def test_a_record_without_a_docstring_gets_the_one_a_dataclass_would() -> None:
    theirs = same_declaration_dataclass(quantity.Unit)
    assert quantity.Unit.__doc__ == theirs.__doc__
    assert model.Protocol.__doc__ == same_declaration_dataclass(model.Protocol).__doc__


def test_what_a_record_does_not_support_is_refused() -> None:
    class Base:
        pass

    with pytest.raises(TypeError, match="inherit"):

        @record
        class Child(Base):
            value: int

    with pytest.raises(TypeError, match="follows a default"):

        @record
        class Order:
            first: int = 1
            second: int
