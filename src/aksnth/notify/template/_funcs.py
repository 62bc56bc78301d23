"""The fixed function table: Go's builtins and the sprig functions people use in payloads.

This table is the whole of what a template can call. Every function works on template values only
(``_values``): none reads attributes, calls methods, touches files, the clock or the environment.
Functions that build strings check the size before they build, so no call can exhaust memory.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ._limits import TemplateLimits
from ._printf import format_v, sprintf
from ._values import (
    NO_VALUE,
    FuncError,
    Record,
    TypedMap,
    go_quote,
    go_type_name,
    is_list,
    is_map,
    shortest_digits,
    sorted_items,
    truth,
)


class Budget:
    """How much string one render may still build, and how long any one string may be."""

    def __init__(self, limits: TemplateLimits) -> None:
        self.max_string = limits.max_output_chars
        self._max_work = limits.max_work_chars
        self._work_left = limits.max_work_chars

    def check(self, size: int) -> None:
        if size > self.max_string:
            raise FuncError(f"result would be longer than {self.max_string} characters")

    def charge(self, text: str) -> str:
        self.check(len(text))
        self._work_left -= len(text)
        if self._work_left < 0:
            raise FuncError(f"the template builds more than {self._max_work} characters in one render")
        return text


Call = Callable[[Budget, list[object]], object]


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    min_args: int
    max_args: int | None  # None: variadic
    usage: str
    call: Call | None  # None for "and"/"or", which the executor evaluates lazily (short-circuit)


# --- argument checks (Go's reflect.Value conversions, with its wording) ----------------------------------


def _string(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise FuncError("invalid value; expected string")
    raise FuncError(f"wrong type for value; expected string; got {go_type_name(value)}")


def _integer(value: object, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None:
        raise FuncError(f"cannot {what} with nil")
    raise FuncError(f"cannot {what} with type {go_type_name(value)}")


# --- Go builtins -----------------------------------------------------------------------------------------


def _not(_: Budget, args: list[object]) -> object:
    return not truth(args[0])


def _len(_: Budget, args: list[object]) -> object:
    item = args[0]
    if item is None:
        raise FuncError("len of untyped nil")
    if isinstance(item, str):
        return len(item.encode("utf-8", "replace"))  # Go counts bytes
    if is_list(item) or is_map(item):
        assert isinstance(item, Sequence | Mapping)
        return len(item)
    raise FuncError(f"len of type {go_type_name(item)}")


def _index(_: Budget, args: list[object]) -> object:
    item = args[0]
    for index in args[1:]:
        if item is None:
            raise FuncError("index of untyped nil")
        if isinstance(item, str):
            data = item.encode("utf-8", "replace")
            i = _integer(index, "index string")
            if not 0 <= i < len(data):
                raise FuncError(f"index out of range: {i}")
            item = data[i]  # Go gives the byte
        elif is_list(item):
            assert isinstance(item, Sequence)
            i = _integer(index, "index slice/array")
            if not 0 <= i < len(item):
                raise FuncError(f"index out of range: {i}")
            item = item[i]
        elif is_map(item):
            assert isinstance(item, Mapping)
            if index is None:
                raise FuncError("value is nil; should be of type string")
            if not isinstance(index, str | int) or isinstance(index, bool):
                raise FuncError(f"value has type {go_type_name(index)}; should be string")
            item = item[index] if index in item else _map_zero(item)
        else:
            raise FuncError(f"can't index item of type {go_type_name(item)}")
    return item


def _map_zero(mapping: Mapping[object, object]) -> object:
    """The zero value of a map's element type: ``""`` for a TypedMap of strings, nil otherwise."""
    return mapping.zero if isinstance(mapping, TypedMap) else None


def _slice(_: Budget, args: list[object]) -> object:
    item, indexes = args[0], [_integer(i, "slice") for i in args[1:]]
    if item is None:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise FuncError("cannot 3-index slice a string")
        data = item.encode("utf-8", "replace")
        low, high = _bounds(indexes, len(data), len(data))
        return data[low:high].decode("utf-8", "replace")
    if is_list(item):
        assert isinstance(item, Sequence)
        low, high = _bounds(indexes, len(item), len(item))
        return list(item[low:high])
    raise FuncError(f"can't slice item of type {go_type_name(item)}")


def _bounds(indexes: list[int], length: int, capacity: int) -> tuple[int, int]:
    for i in indexes:
        if not 0 <= i <= capacity:
            raise FuncError(f"index out of range: {i}")
    low = indexes[0] if indexes else 0
    high = indexes[1] if len(indexes) > 1 else length
    if low > high:
        raise FuncError(f"invalid slice index: {low} > {high}")
    if len(indexes) == 3 and indexes[1] > indexes[2]:
        raise FuncError(f"invalid slice index: {indexes[1]} > {indexes[2]}")
    return low, high


def sprint(budget: Budget, args: Sequence[object], *, spaces: bool = False) -> str:
    """``fmt.Sprint`` (spaces between operands when neither is a string) or ``Sprintln`` (always)."""
    parts: list[str] = []
    size = 0
    previous_string = False
    for i, arg in enumerate(args):
        is_string = isinstance(arg, str)
        if i and (spaces or (not is_string and not previous_string)):
            parts.append(" ")
        text = format_v(arg)
        size += len(text) + 1
        budget.check(size)
        parts.append(text)
        previous_string = is_string
    return "".join(parts)


def _print(budget: Budget, args: list[object]) -> object:
    return sprint(budget, args)


def _println(budget: Budget, args: list[object]) -> object:
    return sprint(budget, args, spaces=True) + "\n"


def _printf(budget: Budget, args: list[object]) -> object:
    return sprintf(_string(args[0]), args[1:], check_size=budget.check)


def _kind(value: object) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def _equal(left: object, right: object) -> bool:
    k1, k2 = _kind(left), _kind(right)
    if k1 != k2:
        if left is not None and right is not None:
            raise FuncError("incompatible types for comparison")
        return False
    if k1 == "other":
        raise FuncError(f"non-comparable types {go_type_name(left)} and {go_type_name(right)}")
    return left == right


def _eq(_: Budget, args: list[object]) -> object:
    return any(_equal(args[0], other) for other in args[1:])


def _ne(_: Budget, args: list[object]) -> object:
    return not _equal(args[0], args[1])


def _less(left: object, right: object) -> bool:
    k1, k2 = _kind(left), _kind(right)
    if k1 not in ("int", "float", "string") or k2 not in ("int", "float", "string"):
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        raise FuncError("incompatible types for comparison")
    assert isinstance(left, int | float | str) and isinstance(right, int | float | str)
    return left < right  # type: ignore[operator]  # same kind, checked above


def _lt(_: Budget, args: list[object]) -> object:
    return _less(args[0], args[1])


def _le(_: Budget, args: list[object]) -> object:
    return _less(args[0], args[1]) or _equal(args[0], args[1])


def _gt(_: Budget, args: list[object]) -> object:
    return not (_less(args[0], args[1]) or _equal(args[0], args[1]))


def _ge(_: Budget, args: list[object]) -> object:
    return not _less(args[0], args[1])


def _eval_args(budget: Budget, args: list[object]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(budget, args)


_HTML_ESCAPES: Final = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}
_JS_ESCAPES: Final = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "<": "\\u003C",
    ">": "\\u003E",
    "&": "\\u0026",
    "=": "\\u003D",
}


def _html(budget: Budget, args: list[object]) -> object:
    text = _eval_args(budget, args)
    budget.check(len(text) * 6)
    return "".join(_HTML_ESCAPES.get(ch, ch) for ch in text)


def _js(budget: Budget, args: list[object]) -> object:
    text = _eval_args(budget, args)
    budget.check(len(text) * 10)
    out: list[str] = []
    for ch in text:
        if ch in _JS_ESCAPES:
            out.append(_JS_ESCAPES[ch])
        elif ord(ch) < 0x20 or (ord(ch) >= 0x80 and not ch.isprintable()):
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _urlquery(budget: Budget, args: list[object]) -> object:
    text = _eval_args(budget, args)
    budget.check(len(text) * 12)
    return urllib.parse.quote_plus(text, safe="")


# --- sprig -----------------------------------------------------------------------------------------------


def _strval(value: object) -> str:
    return value if isinstance(value, str) else format_v(value)


def _join(budget: Budget, args: list[object]) -> object:
    sep, items = _string(args[0]), args[1]
    if items is None:
        parts: list[str] = []
    elif is_list(items):
        assert isinstance(items, Sequence)
        parts = [_strval(v) for v in items if v is not None]
    else:
        parts = [_strval(items)]
    budget.check(sum(len(p) for p in parts) + len(sep) * max(len(parts) - 1, 0))
    return sep.join(parts)


def _empty(value: object) -> bool:
    return not truth(value) if not isinstance(value, Record) else False


def _default(_: Budget, args: list[object]) -> object:
    fallback, given = args[0], args[1:]
    if not given or _empty(given[0]):
        return fallback
    return given[0]


def _simple_case(text: str, convert: Callable[[str], str]) -> str:
    """Go maps case rune by rune; Python's full mappings may change the length ("ß" → "SS")."""
    out = []
    for ch in text:
        mapped = convert(ch)
        out.append(mapped if len(mapped) == 1 else ch)
    return "".join(out)


def _upper(_: Budget, args: list[object]) -> object:
    return _simple_case(_string(args[0]), str.upper)


def _lower(_: Budget, args: list[object]) -> object:
    return _simple_case(_string(args[0]), str.lower)


def _is_separator(ch: str) -> bool:
    """Go's strings.Title word boundary."""
    if ord(ch) <= 0x7F:
        return not (ch.isalnum() or ch == "_")
    if ch.isalpha() or ch.isdigit():
        return False
    return ch.isspace()


def _title(_: Budget, args: list[object]) -> object:
    out: list[str] = []
    previous = " "
    for ch in _string(args[0]):
        out.append(_simple_case(ch, str.title) if _is_separator(previous) else ch)
        previous = ch
    return "".join(out)


# Go's unicode.IsSpace (Python's str.strip() would also strip \x1c-\x1f).
_GO_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)


def _trim(_: Budget, args: list[object]) -> object:
    return _string(args[0]).strip(_GO_SPACE)


def _quote(budget: Budget, args: list[object]) -> object:
    parts = [go_quote(_strval(v)) for v in args if v is not None]
    return budget.charge(" ".join(parts))


def _squote(budget: Budget, args: list[object]) -> object:
    parts = [f"'{_strval(v)}'" for v in args if v is not None]
    return budget.charge(" ".join(parts))


def _replace(budget: Budget, args: list[object]) -> object:
    old, new, src = _string(args[0]), _string(args[1]), _string(args[2])
    count = len(src) + 1 if old == "" else src.count(old)
    budget.check(len(src) + count * (len(new) - len(old)))
    return src.replace(old, new)


def _contains(_: Budget, args: list[object]) -> object:
    return _string(args[0]) in _string(args[1])


def _has_prefix(_: Budget, args: list[object]) -> object:
    return _string(args[1]).startswith(_string(args[0]))


def _has_suffix(_: Budget, args: list[object]) -> object:
    return _string(args[1]).endswith(_string(args[0]))


def _trim_prefix(_: Budget, args: list[object]) -> object:
    prefix, text = _string(args[0]), _string(args[1])
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def _trim_suffix(_: Budget, args: list[object]) -> object:
    suffix, text = _string(args[0]), _string(args[1])
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


class _NotJson(Exception):
    pass


def _json_float(value: float) -> str:
    """encoding/json's float64: shortest digits, exponent form outside [1e-6, 1e21)."""
    if math.isnan(value) or math.isinf(value):
        raise _NotJson
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    digits, point = shortest_digits(value)
    if 1e-6 <= abs(value) < 1e21:
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        return f"{sign}{digits[:point]}.{digits[point:]}"
    exponent = point - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent)}"


def _json_string(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        encoded = encoded.replace(raw, escaped)
    return encoded


def go_json(value: object) -> str:
    """Go's ``json.Marshal``: records keep their field order, map keys are sorted, <>& are escaped."""
    if value is None or value is NO_VALUE:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, Record):
        return "{" + ",".join(f"{_json_string(k)}:{go_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Mapping):
        items = sorted((_strval(k), v) for k, v in sorted_items(value))
        return "{" + ",".join(f"{_json_string(k)}:{go_json(v)}" for k, v in items) + "}"
    raise _NotJson


def _to_json(budget: Budget, args: list[object]) -> object:
    try:
        return budget.charge(go_json(args[0]))
    except _NotJson:
        return ""  # sprig's toJson swallows marshalling errors


def _fn(
    name: str, min_args: int, max_args: int | None, usage: str, call: Call | None
) -> tuple[str, Function]:
    return name, Function(name, min_args, max_args, usage, call)


FUNCTIONS: Final[Mapping[str, Function]] = dict(
    [
        # Go's builtins.
        _fn("and", 1, None, "and X Y ...", None),
        _fn("or", 1, None, "or X Y ...", None),
        _fn("not", 1, 1, "not X", _not),
        _fn("len", 1, 1, "len X", _len),
        _fn("index", 1, None, "index COLLECTION KEY ...", _index),
        _fn("slice", 1, 4, "slice X [LOW [HIGH [MAX]]]", _slice),
        _fn("print", 0, None, "print ARGS...", _print),
        _fn("println", 0, None, "println ARGS...", _println),
        _fn("printf", 1, None, 'printf "FORMAT" ARGS...', _printf),
        _fn("eq", 2, None, "eq X Y ...", _eq),
        _fn("ne", 2, 2, "ne X Y", _ne),
        _fn("lt", 2, 2, "lt X Y", _lt),
        _fn("le", 2, 2, "le X Y", _le),
        _fn("gt", 2, 2, "gt X Y", _gt),
        _fn("ge", 2, 2, "ge X Y", _ge),
        _fn("html", 0, None, "html ARGS...", _html),
        _fn("js", 0, None, "js ARGS...", _js),
        _fn("urlquery", 0, None, "urlquery ARGS...", _urlquery),
        # sprig, with sprig's argument order (the piped value is the last argument).
        _fn("join", 2, 2, 'join ", " LIST', _join),
        _fn("default", 1, None, 'default "FALLBACK" VALUE', _default),
        _fn("upper", 1, 1, "upper STRING", _upper),
        _fn("lower", 1, 1, "lower STRING", _lower),
        _fn("title", 1, 1, "title STRING", _title),
        _fn("trim", 1, 1, "trim STRING", _trim),
        _fn("trimPrefix", 2, 2, 'trimPrefix "PREFIX" STRING', _trim_prefix),
        _fn("trimSuffix", 2, 2, 'trimSuffix "SUFFIX" STRING', _trim_suffix),
        _fn("quote", 0, None, "quote ARGS...", _quote),
        _fn("squote", 0, None, "squote ARGS...", _squote),
        _fn("replace", 3, 3, 'replace "OLD" "NEW" STRING', _replace),
        _fn("contains", 2, 2, 'contains "PART" STRING', _contains),
        _fn("hasPrefix", 2, 2, 'hasPrefix "PREFIX" STRING', _has_prefix),
        _fn("hasSuffix", 2, 2, 'hasSuffix "SUFFIX" STRING', _has_suffix),
        _fn("toJson", 1, 1, "toJson VALUE", _to_json),
    ]
)
