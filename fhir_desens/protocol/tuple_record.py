"""Frozen records stored as a tuple: what a plan is made of, built in one C call each.

A :func:`~fhir_desens.protocol.record.record` instance keeps its fields in a ``__dict__``; building one
(``object.__new__`` plus one ``__dict__`` or one ``object.__setattr__`` per field) costs several times
the arithmetic of the number it holds, and a 12-step plan holds some forty of them (a step, its dose
and its cumulative dose, every step). ``@tuple_record`` makes the same frozen record as ``@record``
(same declaration, ``__init__`` parameters and defaults, ``__post_init__``, equality within one class,
hash of the fields' tuple, ``repr``, ``FrozenInstanceError`` on assignment, ``__match_args__``,
``dataclasses.fields/replace/asdict``, copying and pickling), but the instance *is* the tuple of its
fields, read by C-level getters, so the engine builds one with ``tuple.__new__(cls, (field, ...))``:
see :func:`built`. ``tests/unit/test_record.py`` holds these records to the frozen dataclass of
their declaration.

What a tuple would add is refused, so a record does not turn into a sequence by accident: it cannot be
iterated or unpacked, ordered (``<``), added or repeated. Indexing and ``len`` remain (a serializer
that takes any tuple would see it: none of the project's does, and ``tests/unit/test_tuple_record.py``
says so). No instance attributes beyond the fields (no ``cached_property``), no ``super()`` in methods,
no factory defaults.
"""

from __future__ import annotations

from _collections import _tuplegetter  # type: ignore[import-not-found]  # namedtuple's field getter (C)

from fhir_desens.protocol.record import (
    _REQUIRED,
    _bind,
    _checked_fields,
    _DataclassAttribute,
    _Factory,
    _frozen_error,
    _InitSignature,
    _signature_text,
)

TYPE_CHECKING = False  # mypy reads this block; typing costs ~3 ms to import at start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    _T = TypeVar("_T")
    _C = TypeVar("_C", bound=type)
else:

    def dataclass_transform(**_options: object) -> object:
        return lambda decorated: decorated


if TYPE_CHECKING:

    def built(cls: type[_T], fields: tuple[Any, ...], /) -> _T:
        """``cls`` from its fields' values in declaration order, unchecked (no ``__post_init__``).
        Only for values the engine computed and has checked (its tests prove each such object equals
        the one ``cls(...)`` builds)."""
        ...

else:
    built = tuple.__new__  # one C call
_tuple_eq = tuple.__eq__
_RESERVED = frozenset({"made", "self"})


def _new(cls: type, names: tuple[str, ...], defaults: dict[str, object]) -> Callable[..., object]:
    """``__new__`` taking the parameters a frozen dataclass's ``__init__`` takes (the same binding and
    ``TypeError`` as ``record``'s ``__init__``), without compiling a function per class (start-up)."""
    qualname = f"{cls.__qualname__}.__new__"
    count = len(names)
    post_init = "__post_init__" in cls.__dict__
    template = {name: defaults.get(name, _REQUIRED) for name in names}
    required = tuple(name for name in names if name not in defaults)
    # The common call with keywords, bound on a list by position (a dict per call costs twice as
    # much); anything unusual (unknown, repeated or missing arguments) goes to ``_bind``, which
    # binds it or raises the dataclass's TypeError.
    position = {name: index for index, name in enumerate(names)}
    filled = list(template.values())
    required_positions = tuple(position[name] for name in required)

    def __new__(made: type, *args: object, **kwargs: object) -> object:
        if kwargs or len(args) != count:
            given = len(args)
            values = [*args, *filled[given:]]
            bound = given <= count
            for name, value in kwargs.items():
                index = position.get(name, -1)
                if index < given:  # unknown (-1), or given by position too
                    bound = False
                    break
                values[index] = value
            for index in required_positions:
                if values[index] is _REQUIRED:
                    bound = False
            if bound:
                args = tuple(values)
            else:
                args = tuple(_bind(qualname, names, defaults, template, required, args, kwargs).values())
        self: Any = built(made, args)
        if post_init:
            self.__post_init__()
        return self

    __new__.__qualname__ = qualname
    __new__.__module__ = cls.__module__
    __new__.__wrapped__ = _InitSignature(cls, names, defaults)  # type: ignore[attr-defined]
    return __new__


def _not_a_sequence(self: object, *_other: object) -> Any:
    return NotImplemented


def _methods(cls: type, names: tuple[str, ...]) -> dict[str, object]:
    """Equality, hash, repr and immutability of a frozen dataclass; no sequence operations."""

    def __eq__(self: tuple[object, ...], other: object) -> bool:
        if other.__class__ is self.__class__:
            return _tuple_eq(self, other)
        return NotImplemented

    def __ne__(self: tuple[object, ...], other: object) -> bool:
        if other.__class__ is self.__class__:
            return not _tuple_eq(self, other)
        return NotImplemented

    def __repr__(self: object) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({shown})"

    def __setattr__(self: object, name: str, value: object) -> None:
        raise _frozen_error(name)

    def __delattr__(self: object, name: str) -> None:
        raise _frozen_error(name)

    def __iter__(self: object) -> Any:
        raise TypeError(f"a {cls.__name__} is a record, not a sequence: read its fields by name")

    def __getnewargs__(self: tuple[object, ...]) -> tuple[object, ...]:
        return self[:]  # a plain tuple of the fields: copy and pickle call __new__ with them

    methods: dict[str, object] = {
        "__eq__": __eq__,
        "__ne__": __ne__,
        "__hash__": tuple.__hash__,  # the hash of the fields' tuple, as a frozen dataclass's
        "__repr__": __repr__,
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
        "__iter__": __iter__,
        "__getnewargs__": __getnewargs__,
    }
    for method in methods.values():
        if not isinstance(method, type(tuple.__hash__)):
            method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"  # type: ignore[attr-defined]
    for operator in ("__lt__", "__le__", "__gt__", "__ge__", "__add__", "__mul__", "__rmul__"):
        methods[operator] = _not_a_sequence
    return methods


def _refuse_unsupported(cls: type, names: tuple[str, ...], defaults: dict[str, object]) -> None:
    for name in names:
        if name in _RESERVED or isinstance(defaults.get(name), _Factory):
            raise TypeError(f"tuple record {cls.__name__}: field {name!r} is not supported")
    for name, value in cls.__dict__.items():
        function = getattr(value, "fget", getattr(value, "func", value))
        code = getattr(function, "__code__", None)
        if code is not None and "__class__" in code.co_freevars:
            raise TypeError(f"tuple record {cls.__name__}: {name} uses super() or __class__")
        if type(value).__name__ == "cached_property":
            raise TypeError(f"tuple record {cls.__name__}: {name} needs an instance __dict__")


@dataclass_transform(frozen_default=True)
def tuple_record(cls: _C) -> _C:
    """``cls`` as a frozen record whose instances are the tuple of their fields (see the module)."""
    names, defaults = _checked_fields(cls)
    _refuse_unsupported(cls, names, defaults)
    namespace: dict[str, Any] = {
        name: value
        for name, value in cls.__dict__.items()
        if name not in names and name not in ("__dict__", "__weakref__")
    }
    namespace["__slots__"] = ()
    for index, name in enumerate(names):
        namespace[name] = _tuplegetter(index, f"Field {index}: {name}")
    for method_name, method in _methods(cls, names).items():
        namespace.setdefault(method_name, method)
    if cls.__doc__ is None:
        namespace["__doc__"] = _signature_text(cls, names, defaults)
    namespace["__match_args__"] = names
    namespace["__record_defaults__"] = defaults
    namespace["__dataclass_fields__"] = _DataclassAttribute("__dataclass_fields__")
    namespace["__dataclass_params__"] = _DataclassAttribute("__dataclass_params__")
    namespace["__new__"] = _new(cls, names, defaults)
    made: Any = type(cls.__name__, (tuple,), namespace)
    return made  # type: ignore[no-any-return]
