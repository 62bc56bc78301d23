"""Go's ``fmt.Sprintf`` for the values a template can hold, including its in-band error forms.

Like Go, a wrong verb or a missing argument never raises: it is written into the output
(``%!d(string=abc)``, ``%!s(MISSING)``, ``%!(EXTRA int=1)``), so a payload still goes out.
Supported verbs: ``%v %s %d %q %t %f %F %e %E %g %G %x %X %o %O %b %c %U %T %%`` with the flags
``- + # 0 space``, widths and precisions (also ``*``). Argument indexes (``%[2]d``) are not supported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ._values import NO_VALUE, Record, format_float_g, go_quote, go_type_name, sorted_items

_TOO_LARGE: Final = 1_000_000  # Go's fmt refuses widths and precisions beyond this: %!(BADWIDTH)


@dataclass(slots=True)
class _Spec:
    verb: str = "v"
    minus: bool = False
    plus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    width: int | None = None
    precision: int | None = None


def sprintf(fmt: str, args: Sequence[object], *, check_size: Callable[[int], None]) -> str:
    """Format like Go; ``check_size`` is called with the length so far and raises when it is too long."""
    out: list[str] = []
    size = 0
    arg_index = 0
    i, end = 0, len(fmt)

    def emit(text: str) -> None:
        nonlocal size
        out.append(text)
        size += len(text)
        check_size(size)

    while i < end:
        percent = fmt.find("%", i)
        if percent < 0:
            emit(fmt[i:])
            break
        emit(fmt[i:percent])
        i = percent + 1
        spec = _Spec()
        while i < end and fmt[i] in "-+# 0":
            flag = fmt[i]
            spec.minus |= flag == "-"
            spec.plus |= flag == "+"
            spec.sharp |= flag == "#"
            spec.space |= flag == " "
            spec.zero |= flag == "0"
            i += 1
        bad_width = bad_precision = False
        if i < end and fmt[i] == "*":
            i += 1
            width, arg_index, bad_width = _star(args, arg_index)
            if width is not None and width < 0:
                spec.minus, width = True, -width
            spec.width = width
        else:
            spec.width, i = _digits(fmt, i)
        if i < end and fmt[i] == ".":
            i += 1
            if i < end and fmt[i] == "*":
                i += 1
                precision, arg_index, bad_precision = _star(args, arg_index)
                spec.precision = precision if precision is None or precision >= 0 else None
            else:
                spec.precision, i = _digits(fmt, i)
                spec.precision = spec.precision or 0
        if (spec.width or 0) > _TOO_LARGE:
            bad_width, spec.width = True, None
        if (spec.precision or 0) > _TOO_LARGE:
            bad_precision, spec.precision = True, None
        if bad_width:
            emit("%!(BADWIDTH)")
        if bad_precision:
            emit("%!(BADPREC)")
        if i >= end:
            emit("%!(NOVERB)")
            break
        spec.verb = fmt[i]
        i += 1
        if spec.verb == "%":
            emit("%")
            continue
        if arg_index >= len(args):
            emit(f"%!{spec.verb}(MISSING)")
            continue
        emit(format_arg(args[arg_index], spec))
        arg_index += 1
    if arg_index < len(args):
        extra = ", ".join(_typed(a) for a in args[arg_index:])
        emit(f"%!(EXTRA {extra})")
    return "".join(out)


def _digits(fmt: str, i: int) -> tuple[int | None, int]:
    start = i
    while i < len(fmt) and fmt[i].isdigit():
        i += 1
    if i == start:
        return None, i
    return (int(fmt[start:i]) if i - start <= 8 else _TOO_LARGE + 1), i


def _star(args: Sequence[object], index: int) -> tuple[int | None, int, bool]:
    if index >= len(args):
        return None, index, True
    value = args[index]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _TOO_LARGE:
        return value, index + 1, False
    return None, index + 1, True


def _typed(value: object) -> str:
    if value is None or value is NO_VALUE:
        return "<nil>"
    return f"{go_type_name(value)}={format_arg(value, _Spec())}"


def _bad_verb(value: object, spec: _Spec) -> str:
    if value is None or value is NO_VALUE:
        return f"%!{spec.verb}(<nil>)"
    return f"%!{spec.verb}({_typed(value)})"


def _pad(text: str, spec: _Spec, *, numeric: bool = False) -> str:
    width = spec.width
    if width is None or len(text) >= width:
        return text
    if spec.minus:
        return text + " " * (width - len(text))
    if spec.zero and (not numeric or spec.precision is None):
        sign = text[0] if numeric and text[:1] in ("+", "-", " ") else ""
        return sign + text[len(sign) :].rjust(width - len(sign), "0")
    return text.rjust(width)


def format_arg(value: object, spec: _Spec) -> str:
    verb = spec.verb
    if verb == "T":
        return _pad("<nil>" if value is None or value is NO_VALUE else go_type_name(value), spec)
    if value is None or value is NO_VALUE:
        return _pad("<nil>", spec) if verb == "v" else _bad_verb(value, spec)
    if isinstance(value, bool):
        return _pad("true" if value else "false", spec) if verb in "vt" else _bad_verb(value, spec)
    if isinstance(value, int):
        return _format_int(value, spec)
    if isinstance(value, float):
        return _format_float(value, spec)
    if isinstance(value, str):
        return _format_str(value, spec)
    if isinstance(value, list | tuple):
        return "[" + " ".join(format_arg(v, spec) for v in value) + "]"
    if isinstance(value, Record):
        if verb == "v" and spec.plus:
            return "{" + " ".join(f"{k}:{format_arg(v, spec)}" for k, v in value.items()) + "}"
        return "{" + " ".join(format_arg(v, spec) for v in value.values()) + "}"
    if isinstance(value, Mapping):
        parts = (f"{format_arg(k, spec)}:{format_arg(v, spec)}" for k, v in sorted_items(value))
        return "map[" + " ".join(parts) + "]"
    return f"%!{verb}(unsupported value)"


def _sign(negative: bool, spec: _Spec) -> str:
    if negative:
        return "-"
    return "+" if spec.plus else (" " if spec.space else "")


def _format_int(value: int, spec: _Spec) -> str:
    verb = spec.verb
    if verb == "c":
        return _pad(chr(value) if 0 <= value <= 0x10FFFF else "\ufffd", spec)
    if verb == "q":
        return _pad(go_quote(chr(value) if 0 <= value <= 0x10FFFF else "\ufffd", "'"), spec)
    if verb == "U":
        return _pad(f"U+{value:04X}", spec)
    bases = {
        "v": (10, ""),
        "d": (10, ""),
        "x": (16, "0x"),
        "X": (16, "0X"),
        "o": (8, "0"),
        "O": (8, "0o"),
        "b": (2, ""),
    }
    if verb not in bases:
        return _bad_verb(value, spec)
    base, prefix = bases[verb]
    digits = {10: "{:d}", 16: "{:x}", 8: "{:o}", 2: "{:b}"}[base].format(abs(value))
    if verb == "X":
        digits = digits.upper()
    if spec.precision is not None:
        digits = digits.rjust(spec.precision, "0") if spec.precision or value else ""
    if verb == "O" or (spec.sharp and verb in "xXo"):
        digits = prefix + digits if not (verb == "o" and digits.startswith("0")) else digits
    return _pad(_sign(value < 0, spec) + digits, spec, numeric=True)


def _format_float(value: float, spec: _Spec) -> str:
    verb = spec.verb
    if verb not in "vgGeEfF":
        return _bad_verb(value, spec)
    if math.isnan(value) or math.isinf(value):
        text = "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
        if text == "+Inf" and not spec.plus:
            text = " Inf" if spec.space else "+Inf"
        padded = _Spec(width=spec.width, minus=spec.minus)  # never zero-padded
        return _pad(text, padded)
    negative = value < 0 or (value == 0 and str(value).startswith("-"))
    magnitude = abs(value)
    if verb in "vgG" and spec.precision is None:
        digits = format_float_g(magnitude)
    else:
        precision = 6 if spec.precision is None else spec.precision
        kind = {"v": "g", "F": "f"}.get(verb, verb)
        digits = format(magnitude, f".{precision}{kind}")
    if verb in "EG":
        digits = digits.upper()
    return _pad(_sign(negative, spec) + digits, spec, numeric=True)


def _format_str(value: str, spec: _Spec) -> str:
    verb = spec.verb
    if verb in "vs":
        text = value if spec.precision is None else value[: spec.precision]
        return _pad(text, spec)
    if verb == "q":
        text = value if spec.precision is None else value[: spec.precision]
        return _pad(go_quote(text), spec)
    if verb in "xX":
        data = value.encode("utf-8", "replace")
        if spec.precision is not None:
            data = data[: spec.precision]
        pattern = "{:02x}" if verb == "x" else "{:02X}"
        sep = " " if spec.space else ""
        return _pad(sep.join(pattern.format(b) for b in data), spec)
    return _bad_verb(value, spec)
