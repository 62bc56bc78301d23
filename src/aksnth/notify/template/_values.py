"""What a template can see: struct-like records, maps, lists and scalars, and how Go prints them.

A Go template reads Go values through reflection; we model the two kinds of container that matter to
template authors explicitly instead of reflecting on Python objects:

* ``Record`` is a Go struct: fixed, ordered fields; reading a field it does not have is an error.
* any other ``Mapping`` is a Go map: reading a missing key gives "no value" (printed as nothing, as
  the Go original's ``html/template`` does). ``TypedMap`` is a map whose element type has a zero value
  (Go's ``map[string]string`` gives ``""`` from ``index`` on a missing key).

Everything else a template may touch is ``None`` (nil), ``bool``, ``int``, ``float``, ``str`` (or a
``NamedString``, a string of a named Go type) or a list/tuple of those. Types carry the Go names the
original's data has (``types.ScheduledEventsEvent``, ``[]string``, ``map[string]string``), because
``printf "%T"`` and ``"%#v"`` print them. Nothing here ever reads an attribute of a Python object.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Final, final


class FuncError(Exception):
    """Raised inside the engine when an operation fails; the executor adds the position."""


@final
class _NoValue:
    """Go's invalid ``reflect.Value``: the result of reading a missing map key."""

    __slots__ = ()
    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


NO_VALUE: Final = _NoValue()


class NamedString(str):
    """A string of a named Go string type, e.g. ``types.ScheduledEventsEventType``.

    It is a string everywhere (comparisons, functions, printing); only ``%T`` and the type shown in
    ``printf``'s error forms (``%!d(types.ScheduledEventsEventType=Preempt)``) name its type.
    """

    go_type: str

    def __new__(cls, value: str, go_type: str) -> NamedString:
        instance = super().__new__(cls, value)
        instance.go_type = go_type
        return instance


class Record(Mapping[str, object]):
    """An immutable struct-like value: its fields are fixed and ordered; a missing field is an error.

    ``pointer`` marks a pointer to the struct (the Go original executes its templates with a
    ``*template.MessageType``): ``printf "%v"`` then prints ``&{...}`` and ``%T`` a ``*``.
    """

    __slots__ = ("_fields", "_pointer", "_type_name")

    def __init__(
        self, fields: Mapping[str, object], *, type_name: str = "Record", pointer: bool = False
    ) -> None:
        self._fields: dict[str, object] = dict(fields)
        self._type_name = type_name
        self._pointer = pointer

    @property
    def type_name(self) -> str:
        """The Go type name, as error messages and ``%T`` show it (``*`` for a pointer)."""
        return ("*" if self._pointer else "") + self._type_name

    @property
    def struct_name(self) -> str:
        """The Go name of the struct type itself (what ``%#v`` writes before the braces)."""
        return self._type_name

    @property
    def pointer(self) -> bool:
        return self._pointer

    def replace(self, changes: Mapping[str, object]) -> Record:
        """A copy with some fields changed or added (the same type)."""
        return Record({**self._fields, **changes}, type_name=self._type_name, pointer=self._pointer)

    def __getitem__(self, key: str) -> object:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._fields.items())
        return f"{self.type_name}({inner})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return self.type_name == other.type_name and self._fields == other._fields
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._type_name, tuple(self._fields)))


class TypedMap(Mapping[str, object]):
    """An immutable map whose element type has a zero value, e.g. ``TypedMap(labels, zero="")``."""

    __slots__ = ("_items", "_zero")

    def __init__(self, items: Mapping[str, object], *, zero: object = None) -> None:
        self._items: dict[str, object] = dict(items)
        self._zero = zero

    @property
    def zero(self) -> object:
        return self._zero

    def __getitem__(self, key: str) -> object:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"TypedMap({self._items!r}, zero={self._zero!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TypedMap):
            return self._items == other._items and self._zero == other._zero
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._items))


def is_map(value: object) -> bool:
    """A Go map: any mapping that is not a struct-like record."""
    return isinstance(value, Mapping) and not isinstance(value, Record)


def is_list(value: object) -> bool:
    return isinstance(value, list | tuple)


def go_type_name(value: object) -> str:
    """The Go type name, as ``%T`` and Go's messages write it.

    A list of strings is a ``[]string`` (every list of the handler's data is one: ``.NodePods``,
    ``.Event.Resources``); any other list is a ``[]interface {}``.
    """
    if value is None or value is NO_VALUE:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, NamedString):
        return value.go_type
    if isinstance(value, str):
        return "string"
    if isinstance(value, Record):
        return value.type_name
    if isinstance(value, TypedMap) and isinstance(value.zero, str):
        return "map[string]string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, list | tuple):
        return "[]string" if all(isinstance(v, str) for v in value) else "[]interface {}"
    return f"unsupported Python type {type(value).__name__}"


def truth(value: object) -> bool:
    """Go's truth: false, 0, nil, "" and empty collections are false; a struct is always true."""
    if value is None or value is NO_VALUE:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, Record):
        return True
    if isinstance(value, str | list | tuple | Mapping):
        return len(value) > 0
    raise FuncError(f"can't test the truth of a value of {go_type_name(value)}")


def sorted_items(mapping: Mapping[object, object]) -> list[tuple[object, object]]:
    """Map entries in Go's printing and ranging order: keys sorted (numbers numerically, strings by byte)."""

    def key(item: tuple[object, object]) -> tuple[int, object]:
        k = item[0]
        if isinstance(k, bool):
            return (0, int(k))
        if isinstance(k, int | float):
            return (1, k)
        if isinstance(k, str):
            return (2, k)
        return (3, repr(k))

    return sorted(mapping.items(), key=key)


# --- number and string forms shared by printf and toJson ------------------------------------------


def shortest_digits(value: float) -> tuple[str, int]:
    """The shortest decimal digits that round-trip, and the decimal point position (Go's ``digs.dp``)."""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    if not digits:
        return "0", 1
    # Decimal's exponent counts from the last digit; re-base it to the stripped digit string.
    stripped = len(digit_tuple) - len(digits)
    return digits, exponent + stripped + len(digits)


def _special_float(value: float) -> str | None:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return None


def format_float_g(value: float) -> str:
    """Go's ``%v`` of a float64 (strconv ``'g'``, shortest): ``1.5``, ``12``, ``1e+06``, ``1e-05``."""
    special = _special_float(value)
    if special is not None:
        return special
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    digits, point = shortest_digits(value)
    exponent = point - 1
    # strconv: "if precision was the shortest possible, use precision 6 for this decision".
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


_QUOTE_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
}


def go_quote(text: str, quote: str = '"', *, ascii_only: bool = False) -> str:
    """Go's ``strconv.Quote`` (``QuoteRune`` with ``quote="'"``; ``QuoteToASCII`` with ``ascii_only``)."""
    out = [quote]
    for ch in text:
        if ch == quote:
            out.append("\\" + ch)
        elif ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif ch.isprintable() and not (ascii_only and ord(ch) > 0x7E):
            out.append(ch)
        else:
            code = ord(ch)
            if code < 0x20 or code == 0x7F:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    out.append(quote)
    return "".join(out)
