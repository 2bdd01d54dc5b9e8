"""FHIR JSON reading and writing with exact decimals.

FHIR ``decimal`` values keep their precision: ``0.50`` is not ``0.5``. This module therefore reads
every non-integer JSON number into a :class:`decimal.Decimal` built from the exact source text and
writes every ``Decimal`` back as exactly that text. Integers stay :class:`int`.

Reading (:func:`loads`) is strict:

* input larger than ``max_bytes`` (default :data:`MAX_JSON_BYTES`) is refused before parsing;
* ``NaN``, ``Infinity`` and ``-Infinity`` are refused (they are not JSON and not FHIR);
* duplicate keys in one object are refused (FHIR JSON forbids them and they hide data);
* numbers whose decimal exponent is beyond ``±MAX_DECIMAL_EXPONENT`` are refused, so that a tiny
  input such as ``1e999999999`` cannot make the writer produce a gigantic digit string;
* ``bytes`` must be UTF-8 (a leading byte-order mark is tolerated and dropped).

Writing (:func:`dumps`) policy:

* ``Decimal`` is written in positional notation, never in exponent form: ``Decimal("0.50")`` →
  ``0.50``, ``Decimal("1E+3")`` (read from ``1e3``) → ``1000``, ``Decimal("1.5E-7")`` →
  ``0.00000015``. The written value is numerically identical to the read one; only the
  exponent spelling is normalised. Note that ``1000`` then reads back as the int ``1000``.
* ``float`` is refused: the project keeps FHIR decimals as ``Decimal`` end to end.
* ``NaN``/``Infinity`` Decimals are refused.
* non-ASCII text is written as is (``ensure_ascii`` off); the output is meant to be UTF-8.
* compact separators (``,`` and ``:``) without ``indent``; ``,`` and ``": "`` with it.

Every error is a :class:`~fhir_desens.errors.FhirFormatError` whose message names the problem.
"""

from __future__ import annotations

import json as _stdjson
import os
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fhir_desens.errors import FhirFormatError

__all__ = [
    "MAX_DECIMAL_EXPONENT",
    "MAX_JSON_BYTES",
    "dump_path",
    "dumps",
    "dumps_bytes",
    "is_object",
    "load_path",
    "loads",
]

#: Default upper bound on the size of a JSON document accepted by :func:`loads` (bytes, or
#: characters for ``str`` input).
MAX_JSON_BYTES = 50 * 1024 * 1024

#: Largest accepted magnitude of a number's adjusted decimal exponent (``1e1000`` is accepted,
#: ``1e1001`` is not).
MAX_DECIMAL_EXPONENT = 1000

_encode_string: Callable[[str], str] = _stdjson.encoder.encode_basestring

#: JSON leaves as :func:`loads` gives them: never an object.
_SCALARS = frozenset({str, int, float, bool, Decimal, type(None)})


def is_object(value: Any) -> bool:
    """Whether ``value`` is a JSON object (any ``Mapping``). Walkers of whole resources call this for
    every value: a ``dict`` or a leaf is answered without the (slow) abstract ``Mapping`` check."""
    kind = type(value)
    return kind is dict or (kind not in _SCALARS and isinstance(value, Mapping))


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _parse_float(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the JSON scanner only passes numbers
        raise FhirFormatError(f"invalid JSON number {text[:40]!r}") from exc
    if ("e" in text or "E" in text) and abs(value.adjusted()) > MAX_DECIMAL_EXPONENT:
        raise FhirFormatError(
            f"JSON number {text[:40]!r} is out of range (decimal exponent beyond ±{MAX_DECIMAL_EXPONENT})"
        )
    return value


def _parse_constant(name: str) -> Any:
    raise FhirFormatError(f"{name} is not allowed in FHIR JSON (not a JSON number)")


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise FhirFormatError(f"duplicate key {key!r} in a JSON object")
            seen.add(key)
    return obj


_DECODER = _stdjson.JSONDecoder(
    parse_float=_parse_float,
    parse_constant=_parse_constant,
    object_pairs_hook=_object_pairs,
)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: Any, policy: str) -> Any:
    """``\\ud800`` escapes that pair with no other half are not text: refused, or replaced by U+FFFD."""
    if isinstance(value, str):
        if not _LONE_SURROGATE.search(value):
            return value
        if policy == "refuse":
            raise FhirFormatError("invalid JSON: a string holds a lone surrogate escape (not Unicode text)")
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_lone_surrogates(item, policy) for item in value]
    if isinstance(value, dict):
        return {
            _without_lone_surrogates(key, policy): _without_lone_surrogates(item, policy)
            for key, item in value.items()
        }
    return value


def loads(
    data: str | bytes | bytearray, *, max_bytes: int = MAX_JSON_BYTES, lone_surrogates: str = "refuse"
) -> Any:
    """Parse FHIR JSON: non-integer numbers become exact ``Decimal``, integers ``int``.

    ``max_bytes`` bounds the input (bytes for ``bytes``, characters for ``str``). A string holding a
    lone surrogate escape (``"\\ud800"``) is refused, or with ``lone_surrogates="replace"`` (what
    servers send the app) has it replaced by U+FFFD.
    Raises :class:`FhirFormatError` for anything that is not strict JSON.
    """
    if isinstance(data, bytes | bytearray):
        if len(data) > max_bytes:
            raise FhirFormatError(f"JSON document too large: {len(data)} bytes (limit {max_bytes} bytes)")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FhirFormatError(f"JSON document is not valid UTF-8 (byte {exc.start})") from exc
    elif isinstance(data, str):
        if len(data) > max_bytes:
            raise FhirFormatError(
                f"JSON document too large: {len(data)} characters (limit {max_bytes} bytes)"
            )
        text = data
    else:
        raise FhirFormatError(f"JSON input must be str or bytes, not {type(data).__name__}")
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = _DECODER.decode(text)
        if _SURROGATE_ESCAPE.search(text) or (isinstance(data, str) and _LONE_SURROGATE.search(text)):
            value = _without_lone_surrogates(value, lone_surrogates)
        return value
    except FhirFormatError:
        raise
    except _stdjson.JSONDecodeError as exc:
        raise FhirFormatError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise FhirFormatError("invalid JSON: nesting too deep") from exc
    except ValueError as exc:  # e.g. an integer beyond the interpreter's digit limit
        raise FhirFormatError(f"invalid JSON: {exc}") from exc


def load_path(path: str | os.PathLike[str], *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read and parse a FHIR JSON file (size checked before reading)."""
    from fhir_desens.errors import InputError
    from fhir_desens.io.files import read_regular_file

    try:
        data = read_regular_file(Path(path), max_bytes=max_bytes)
    except InputError as error:
        raise FhirFormatError(f"cannot read JSON file {Path(path).name}: {error.problem}") from None
    return loads(data, max_bytes=max_bytes)


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        raise FhirFormatError(f"Decimal {value} is not allowed in FHIR JSON (not a finite number)")
    return format(value, "f")


def _bad_value(value: object) -> FhirFormatError:
    if isinstance(value, float):
        return FhirFormatError(
            f"float {value!r} cannot be written as FHIR JSON: use decimal.Decimal for FHIR decimals"
        )
    return FhirFormatError(f"object of type {type(value).__name__} cannot be written as FHIR JSON")


def _bad_key(key: object) -> FhirFormatError:
    return FhirFormatError(f"JSON object keys must be str, not {type(key).__name__} ({key!r})")


def _make_writer(parts: list[str], sort_keys: bool, indent: str | None) -> Callable[[Any, int], None]:
    append = parts.append
    esc = _encode_string
    dec_text = _decimal_text
    key_sep = ": " if indent is not None else ":"

    def write(o: Any, level: int) -> None:
        cls = o.__class__
        if cls is str:
            append(esc(o))
        elif cls is Decimal:
            append(dec_text(o))
        elif o is None:
            append("null")
        elif o is True:
            append("true")
        elif o is False:
            append("false")
        elif cls is int:
            append(int.__repr__(o))
        elif cls is dict or (isinstance(o, Mapping) and cls is not str):
            if not o:
                append("{}")
                return
            if indent is None:
                inner = ""
                sep = ","
                close = "}"
            else:
                inner = "\n" + indent * (level + 1)
                sep = "," + inner
                close = "\n" + indent * level + "}"
            append("{" + inner)
            items = sorted(o.items()) if sort_keys else o.items()
            first = True
            for key, value in items:
                if key.__class__ is not str:
                    if not isinstance(key, str):
                        raise _bad_key(key)
                    key = str(key)
                if first:
                    first = False
                else:
                    append(sep)
                append(esc(key))
                append(key_sep)
                write(value, level + 1)
            append(close)
        elif cls is list or cls is tuple:
            if not o:
                append("[]")
                return
            if indent is None:
                append("[")
                sep = ","
                close = "]"
            else:
                inner = "\n" + indent * (level + 1)
                append("[" + inner)
                sep = "," + inner
                close = "\n" + indent * level + "]"
            first = True
            for value in o:
                if first:
                    first = False
                else:
                    append(sep)
                write(value, level + 1)
            append(close)
        elif isinstance(o, str):
            append(esc(str(o)))
        elif isinstance(o, bool):  # pragma: no cover - True/False are singletons
            append("true" if o else "false")
        elif isinstance(o, int):
            append(int.__repr__(o))
        elif isinstance(o, Decimal):
            append(dec_text(o))
        elif isinstance(o, list | tuple):
            write(list(o), level)
        else:
            raise _bad_value(o)

    return write


def dumps(obj: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """Serialise to FHIR JSON text; ``Decimal`` is written exactly (see the module policy)."""
    parts: list[str] = []
    write = _make_writer(parts, sort_keys, None if indent is None else " " * indent)
    try:
        write(obj, 0)
    except RecursionError as exc:
        raise FhirFormatError("cannot write JSON: nesting too deep") from exc
    except TypeError as exc:  # e.g. sort_keys over mixed or unorderable keys
        raise FhirFormatError(f"cannot write JSON: {exc}") from exc
    return "".join(parts)


def dumps_bytes(obj: Any, *, indent: int | None = None, sort_keys: bool = False) -> bytes:
    """:func:`dumps` encoded as UTF-8."""
    text = dumps(obj, indent=indent, sort_keys=sort_keys)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FhirFormatError("cannot write JSON: text contains a lone surrogate") from exc


def dump_path(
    path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> None:
    """Write ``obj`` as UTF-8 FHIR JSON (with a final newline) to ``path``, replacing it atomically."""
    p = Path(path)
    data = dumps_bytes(obj, indent=indent, sort_keys=sort_keys) + b"\n"
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FhirFormatError(f"cannot write JSON file {p.name}: {exc.strerror or exc}") from exc
