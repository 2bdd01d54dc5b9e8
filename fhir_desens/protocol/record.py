"""Frozen records: the engine's frozen dataclasses, without what ``dataclasses`` costs at start-up.

``@dataclass(frozen=True)`` compiles six generated methods per class while the class is defined, and
importing ``dataclasses`` imports ``inspect`` (with ``ast``, ``dis`` and ``tokenize``). For the value
types every command uses (units, quantities, protocols, plans) that was about 30 ms of each start of
``fhir-desens plan`` (``benchmarks/bench_cold_start.py``). ``@record`` makes the same class:

* fields are the class's annotations in order, with their defaults (``= value``, or
  :func:`field` with ``default_factory``); ``__post_init__`` runs after ``__init__`` as in a dataclass;
* ``__init__`` takes the parameters a frozen dataclass's generated one takes (same names, order and
  defaults, the same ``TypeError``), without compiling a function per class; ``__eq__`` compares the fields' tuple within one class, ``__hash__``
  hashes it, ``__repr__`` is ``Name(field=value, ...)``; assigning or deleting a field raises
  ``dataclasses.FrozenInstanceError``; ``__match_args__`` lists the fields;
* ``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` work on it unchanged: its
  ``__dataclass_fields__`` (and ``__dataclass_params__``) are made by ``dataclasses`` itself, from the
  same declaration, the first time anything asks for them.

Only what the engine uses is supported: no inheritance between records, no ``ClassVar``/``InitVar``
fields, no per-field ``repr``/``compare`` options. ``tests/unit/test_record.py`` compares each record
with the frozen dataclass of the same declaration.
"""

from __future__ import annotations

from itertools import pairwise
from operator import attrgetter

TYPE_CHECKING = False  # mypy takes any ``if TYPE_CHECKING:`` as true; ``typing`` costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    _T = TypeVar("_T")
    _C = TypeVar("_C", bound=type)
else:

    def dataclass_transform(**_options: object) -> object:
        return lambda decorated: decorated


_set = object.__setattr__
_REQUIRED = object()  # an __init__ parameter without a default
_RESERVED = frozenset({"self"})


class _Factory:
    """What :func:`field` leaves in the class body: a default made anew for each instance."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make

    def __repr__(self) -> str:
        return "<factory>"  # as a dataclass's signature shows such a default


def field(*, default_factory: Callable[[], _T]) -> _T:
    """A field whose default is made anew for each instance (``dataclasses.field(default_factory=...)``)."""
    return _Factory(default_factory)  # type: ignore[return-value]


class _DataclassAttribute:
    """``__dataclass_fields__`` / ``__dataclass_params__``, made by ``dataclasses`` on first use."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type) -> Any:
        for name, value in _shadow_dataclass(owner).items():
            setattr(owner, name, value)  # replaces these descriptors: made once per class
        return owner.__dict__[self.name]


def _shadow_dataclass(owner: type) -> dict[str, Any]:
    """The ``dataclasses`` attributes of the frozen dataclass declared like ``owner``."""
    import dataclasses

    namespace: dict[str, Any] = {
        "__annotations__": owner.__annotations__,
        "__module__": owner.__module__,
        "__qualname__": owner.__qualname__,
        "__doc__": owner.__doc__,
    }
    for name, default in owner.__record_defaults__.items():  # type: ignore[attr-defined]
        if isinstance(default, _Factory):
            default = dataclasses.field(default_factory=default.make)
        namespace[name] = default
    shadow: type = dataclasses.dataclass(frozen=True)(type(owner.__name__, (), namespace))
    return {name: shadow.__dict__[name] for name in ("__dataclass_fields__", "__dataclass_params__")}


def _frozen_error(name: str) -> Exception:
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError(f"cannot assign to field {name!r}")


def _init(cls: type, names: tuple[str, ...], defaults: dict[str, object]) -> Callable[..., None]:
    """The ``__init__`` of a frozen dataclass of these fields, without compiling one per class.

    A dataclass generates and compiles its ``__init__`` from source; for the engine's records that was
    most of their cost at import (half a millisecond a class). This one binds its arguments as that
    function would (positions, keywords, defaults, factories; the same ``TypeError`` for a missing,
    unknown or repeated argument), gives the instance its fields in declaration order and runs
    ``__post_init__``. ``inspect.signature`` reports the generated function's parameters (see
    :class:`_InitSignature`).
    """
    qualname = f"{cls.__qualname__}.__init__"
    count = len(names)
    post_init = "__post_init__" in cls.__dict__
    # Every field in declaration order: its default, or _REQUIRED; the fields to look at once bound:
    template = {name: defaults.get(name, _REQUIRED) for name in names}
    unfilled = tuple(
        name for name in names if template[name] is _REQUIRED or isinstance(template[name], _Factory)
    )

    def __init__(self: object, *args: object, **kwargs: object) -> None:
        if kwargs or len(args) != count:
            values = _bind(qualname, names, defaults, template, unfilled, args, kwargs)
        else:  # every field by position: the common call
            values = dict(zip(names, args, strict=True))
        _set(self, "__dict__", values)
        if post_init:
            self.__post_init__()  # type: ignore[attr-defined]

    __init__.__qualname__ = qualname
    __init__.__module__ = cls.__module__
    __init__.__wrapped__ = _InitSignature(cls, names, defaults)  # type: ignore[attr-defined]
    return __init__


def _bind(
    qualname: str,
    names: tuple[str, ...],
    defaults: dict[str, object],
    template: dict[str, object],
    unfilled: tuple[str, ...],
    args: tuple[object, ...],
    kwargs: dict[str, object],
) -> dict[str, object]:
    """Every field's value from a call with keywords or defaults, bound as a frozen dataclass binds it
    (``template``: each field's default or ``_REQUIRED``; ``unfilled``: the fields required or made by a
    factory); the dataclass's ``TypeError`` otherwise. Shared by ``record`` and ``tuple_record``."""
    values = template.copy()
    values.update(zip(names, args, strict=False))  # too many: refused below
    values.update(kwargs)
    if (
        len(values) != len(names)
        or len(args) > len(names)
        or (args and kwargs and not kwargs.keys().isdisjoint(names[: len(args)]))
    ):
        raise _binding_error(qualname, names, defaults, args, kwargs)
    for name in unfilled:
        value = values[name]
        if value is template[name]:  # not given: required, or made by its factory
            if value is _REQUIRED:
                raise _binding_error(qualname, names, defaults, args, kwargs)
            values[name] = value.make()  # type: ignore[attr-defined]
    return values


def _binding_error(
    qualname: str,
    names: tuple[str, ...],
    defaults: dict[str, object],
    args: tuple[object, ...],
    kwargs: dict[str, object],
) -> TypeError:
    """The ``TypeError`` Python raises when ``args`` and ``kwargs`` do not fit the parameters (checked
    in Python's order: each keyword, then the count of positions, then what is missing)."""
    for name in kwargs:
        if name in names[: len(args)]:
            return TypeError(f"{qualname}() got multiple values for argument '{name}'")
        if name not in names:
            return TypeError(f"{qualname}() got an unexpected keyword argument '{name}'")
    if len(args) > len(names):
        required = sum(name not in defaults for name in names)
        accepted = (
            str(len(names) + 1) if required == len(names) else f"from {required + 1} to {len(names) + 1}"
        )
        return TypeError(f"{qualname}() takes {accepted} positional arguments but {len(args) + 1} were given")
    missing = [repr(name) for name in names[len(args) :] if name not in kwargs and name not in defaults]
    listed = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " and " + missing[-1]
    plural = "argument" if len(missing) == 1 else "arguments"
    return TypeError(f"{qualname}() missing {len(missing)} required positional {plural}: {listed}")


class _InitSignature:
    """What ``inspect.signature`` reads for a record's ``__init__`` (it follows ``__wrapped__`` here):
    the parameters of the frozen dataclass's generated ``__init__``, made when first asked for."""

    def __init__(self, cls: type, names: tuple[str, ...], defaults: dict[str, object]) -> None:
        self.cls, self.names, self.defaults = cls, names, defaults

    @property
    def __signature__(self) -> Any:
        import inspect

        keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
        parameters = [inspect.Parameter("self", keyword)]
        for name in self.names:
            default = self.defaults.get(name, inspect.Parameter.empty)
            annotation = self.cls.__annotations__[name]
            parameters.append(inspect.Parameter(name, keyword, default=default, annotation=annotation))
        return inspect.Signature(parameters, return_annotation=None)


def _methods(cls: Any, names: tuple[str, ...]) -> dict[str, Callable[..., object]]:
    """``__eq__``, ``__hash__``, ``__repr__``, ``__setattr__`` and ``__delattr__`` of a frozen dataclass."""
    values: Callable[[object], tuple[object, ...]]
    if len(names) > 1:
        values = attrgetter(*names)  # the fields' tuple, in C
    else:

        def values(instance: object) -> tuple[object, ...]:
            return tuple(getattr(instance, name) for name in names)

    field_names = frozenset(names)

    def __eq__(self: object, other: object) -> bool:
        if other.__class__ is self.__class__:
            return bool(values(self) == values(other))
        return NotImplemented

    def __hash__(self: object) -> int:
        return hash(values(self))

    def __repr__(self: object) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({shown})"

    def __setattr__(self: Any, name: str, value: object) -> None:
        if type(self) is cls or name in field_names:
            raise _frozen_error(name)
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in field_names:
            raise _frozen_error(name)
        super(cls, self).__delattr__(name)

    methods: dict[str, Callable[..., object]] = {"__eq__": __eq__, "__hash__": __hash__, "__repr__": __repr__}
    methods |= {"__setattr__": __setattr__, "__delattr__": __delattr__}
    for method_name, method in methods.items():
        method.__qualname__ = f"{cls.__qualname__}.{method_name}"
    return dict(methods)


def _checked_fields(cls: type) -> tuple[tuple[str, ...], dict[str, object]]:
    """The fields and their defaults, refusing what :func:`record` does not do like a dataclass."""
    if cls.__bases__ != (object,):
        raise TypeError(f"record {cls.__name__}: records do not inherit")
    annotations: dict[str, str] = cls.__annotations__  # its own: a record has no base class
    names = tuple(annotations)
    defaults = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
    for name, annotation in annotations.items():
        if name in _RESERVED or "ClassVar" in str(annotation) or "InitVar" in str(annotation):
            raise TypeError(f"record {cls.__name__}: field {name!r} is not supported")
    for before, after in pairwise(names):
        if before in defaults and after not in defaults:
            raise TypeError(f"record {cls.__name__}: non-default field {after!r} follows a default")
    return names, defaults


def _signature_text(cls: type, names: tuple[str, ...], defaults: dict[str, object]) -> str:
    """The ``__doc__`` a dataclass without a docstring gets: ``Name(field: 'type' = default, ...)``."""
    annotations = cls.__annotations__
    parameters = []
    for name in names:
        text = f"{name}: {annotations[name]!r}"
        if name in defaults:
            default = defaults[name]
            text += " = <factory>" if isinstance(default, _Factory) else f" = {default!r}"
        parameters.append(text)
    return f"{cls.__name__}({', '.join(parameters)})"


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: _C) -> _C:
    """``cls`` as a frozen dataclass (see the module's description)."""
    names, defaults = _checked_fields(cls)
    made: Any = cls  # the class being given its generated attributes
    for name, default in defaults.items():
        if isinstance(default, _Factory):
            delattr(made, name)  # as a dataclass: no class attribute for a factory default
    made.__init__ = _init(made, names, defaults)
    for method_name, method in _methods(made, names).items():
        if method_name not in made.__dict__:
            setattr(made, method_name, method)
    if made.__doc__ is None:
        made.__doc__ = _signature_text(made, names, defaults)
    made.__match_args__ = names  # type: ignore[misc]  # (mypy: read-only on classes it knows)
    made.__record_defaults__ = defaults
    made.__dataclass_fields__ = _DataclassAttribute("__dataclass_fields__")
    made.__dataclass_params__ = _DataclassAttribute("__dataclass_params__")
    return cls


def replace(obj: _T, /, **changes: Any) -> _T:
    """``dataclasses.replace`` for a record, without importing ``dataclasses``: a new
    instance through ``__init__`` (so ``__post_init__`` checks it), with ``changes`` for some fields."""
    values = {name: getattr(obj, name) for name in obj.__match_args__}  # type: ignore[attr-defined]
    values.update(changes)
    return obj.__class__(**values)
