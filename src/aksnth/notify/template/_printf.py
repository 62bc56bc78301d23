"""Go's ``fmt`` for the values a template can hold: ``printf``, ``print`` and how ``{{ }}`` prints.

This follows Go's ``fmt`` package rule for rule, so that a payload prints what the Go original sent:
every verb (``%v %+v %#v %T %t %d %b %o %O %x %X %c %q %U %e %E %f %F %g %G %s %%``), every flag
(``+ - # 0`` and space), widths, precisions, ``*`` and argument indexes (``%[2]d``, ``%[1]*d``).
Like Go, a mistake never raises: it is written into the output (``%!d(string=abc)``, ``%!s(MISSING)``,
``%!(EXTRA int=1)``, ``%!d(BADINDEX)``), so a payload still goes out. The one verb Go prints that
cannot be reproduced is ``%p`` (a memory address): it is a template error that says so.

The value model (``_values``) stands in for Go's reflection: ``Record`` is a struct (a pointer to
one at the top level), a ``TypedMap`` a ``map[string]string``, a list of strings a ``[]string``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Final

from ._values import (
    NO_VALUE,
    FuncError,
    Record,
    go_quote,
    go_type_name,
    shortest_digits,
    sorted_items,
)

_TOO_LARGE: Final = 1_000_000  # Go's fmt refuses widths and precisions beyond this
_MASK64: Final = (1 << 64) - 1
_MAX_RUNE: Final = 0x10FFFF
_LOWER: Final = "0123456789abcdefx"
_UPPER: Final = "0123456789ABCDEFX"


def _is_nil(value: object) -> bool:
    return value is None or value is NO_VALUE


def _is_valid_rune(code: int) -> bool:
    return 0 <= code <= _MAX_RUNE and not 0xD800 <= code <= 0xDFFF


def _can_backquote(text: str) -> bool:
    """Go's ``strconv.CanBackquote``: no control characters but tab, no backquote, no BOM."""
    for ch in text:
        code = ord(ch)
        if ch == "\ufeff" or 0xD800 <= code <= 0xDFFF:
            return False
        if (code < 0x20 and ch != "\t") or ch == "`" or code == 0x7F:
            return False
    return True


class _Printer:
    """One ``Sprintf``: Go's ``pp`` (the argument walk) and ``fmt`` (the flags and padding) in one."""

    def __init__(self, check_size: Callable[[int], None]) -> None:
        self._out: list[str] = []
        self._size = 0
        self._check_size = check_size
        self.clear_flags()

    def clear_flags(self) -> None:
        self.plus = self.minus = self.sharp = self.space = self.zero = False
        self.plus_v = self.sharp_v = False
        self.wid = self.prec = 0
        self.wid_present = self.prec_present = False

    def text(self) -> str:
        return "".join(self._out)

    def write(self, text: str) -> None:
        if text:
            self._size += len(text)
            self._check_size(self._size)
            self._out.append(text)

    # --- padding (Go's fmt.pad, writePadding) ------------------------------------------------------

    def _padding(self, count: int) -> str:
        if count <= 0:
            return ""
        self._check_size(self._size + count)
        return ("0" if self.zero and not self.minus else " ") * count

    def pad(self, text: str) -> None:
        if not self.wid_present or self.wid == 0:
            self.write(text)
            return
        padding = self._padding(self.wid - len(text))
        self.write(text + padding if self.minus else padding + text)

    def _pad_no_zero(self, text: str) -> None:
        zero, self.zero = self.zero, False
        self.pad(text)
        self.zero = zero

    # --- scalars (Go's fmt.fmtX) --------------------------------------------------------------------

    def fmt_integer(self, value: int, base: int, verb: str, digits: str) -> None:
        negative = value < 0
        number = -value if negative else value
        precision = 0
        if self.prec_present:
            precision = self.prec
            if precision == 0 and number == 0:
                zero, self.zero = self.zero, False
                self.write(self._padding(self.wid))
                self.zero = zero
                return
        elif self.zero and not self.minus and self.wid_present:  # zero padding only to the left
            precision = self.wid - (1 if negative or self.plus or self.space else 0)
        if base == 10:
            body = str(number)
        else:
            body = ""
            while True:
                body = digits[number % base] + body
                number //= base
                if number == 0:
                    break
        if precision > len(body):
            self._check_size(self._size + precision)
            body = "0" * (precision - len(body)) + body
        if self.sharp:
            if base == 2:
                body = "0b" + body
            elif base == 8 and not body.startswith("0"):
                body = "0" + body
            elif base == 16:
                body = "0" + digits[16] + body
        if verb == "O":
            body = "0o" + body
        if negative:
            body = "-" + body
        elif self.plus:
            body = "+" + body
        elif self.space:
            body = " " + body
        self._pad_no_zero(body)

    def fmt_unicode(self, code: int) -> None:
        precision = self.prec if self.prec_present and self.prec > 4 else 4
        text = f"{code:X}".rjust(precision, "0")
        self._check_size(self._size + len(text))
        text = "U+" + text
        if self.sharp and _is_valid_rune(code) and chr(code).isprintable():
            text += f" '{chr(code)}'"
        self._pad_no_zero(text)

    def fmt_c(self, code: int) -> None:
        self.pad(chr(code) if _is_valid_rune(code) else "\ufffd")

    def fmt_qc(self, code: int) -> None:
        rune = chr(code) if _is_valid_rune(code) else "\ufffd"
        self.pad(go_quote(rune, "'", ascii_only=self.plus))

    def _truncate(self, text: str) -> str:
        return text[: self.prec] if self.prec_present else text

    def fmt_s(self, text: str) -> None:
        self.pad(self._truncate(text))

    def fmt_q(self, text: str) -> None:
        text = self._truncate(text)
        if self.sharp and _can_backquote(text):
            self.pad("`" + text + "`")
        else:
            self.pad(go_quote(text, ascii_only=self.plus))

    def fmt_sx(self, text: str, digits: str) -> None:
        """Hex of a string's UTF-8 bytes (``% x`` separates them, ``%#x`` prefixes 0x)."""
        data = text.encode("utf-8", "surrogatepass")
        length = min(len(data), self.prec) if self.prec_present else len(data)
        if length == 0:
            if self.wid_present:
                self.write(self._padding(self.wid))
            return
        prefix = "0" + digits[16] if self.sharp else ""
        parts = [digits[b >> 4] + digits[b & 0xF] for b in data[:length]]
        body = prefix + (" " + prefix).join(parts) if self.space else prefix + "".join(parts)
        self.pad(body)

    def fmt_float(self, value: float, verb: str, precision: int) -> None:
        if self.prec_present:
            precision = self.prec
        num = _format_float(value, verb, precision)
        num = num if num[0] in "+-" else "+" + num
        if self.space and num[0] == "+" and not self.plus:
            num = " " + num[1:]
        if num[1] in "IN":  # Inf, NaN: never zero-padded
            if num[1] == "N" and not self.space and not self.plus:
                num = num[1:]
            self._pad_no_zero(num)
            return
        if self.sharp and verb != "b":
            num = _alternate_float(num, verb, precision)
        if self.plus or num[0] != "+":
            if self.zero and not self.minus and self.wid_present and self.wid > len(num):
                self.write(num[0] + self._padding(self.wid - len(num)) + num[1:])
                return
            self.pad(num)
            return
        self.pad(num[1:])

    # --- the argument walk (Go's pp.printArg and printValue) ---------------------------------------

    def bad_verb(self, verb: str, value: object) -> None:
        """``%!verb(type=value)``: the value with ``%v`` and the flags given (as Go does)."""
        if _is_nil(value):
            self.write(f"%!{verb}(<nil>)")
        else:
            self.write(f"%!{verb}({go_type_name(value)}=")
            self.print_value(value, "v", 0)
            self.write(")")

    def print_arg(self, value: object, verb: str) -> None:
        if _is_nil(value):
            if verb in "Tv":
                self.pad("<nil>")
            else:
                self.bad_verb(verb, None)
            return
        if verb == "T":
            self.fmt_s(go_type_name(value))
            return
        if verb == "p":
            raise FuncError("%p prints a memory address, which only the Go program has: it is not supported")
        self.print_value(value, verb, 0)

    def print_value(self, value: object, verb: str, depth: int) -> None:
        if _is_nil(value):  # an interface{} holding nil, inside a list or map
            self.write("interface {}(nil)" if self.sharp_v else "<nil>")
        elif isinstance(value, bool):
            if verb in "tv":
                self.pad("true" if value else "false")
            else:
                self.bad_verb(verb, value)
        elif isinstance(value, int):
            self._integer(value, verb)
        elif isinstance(value, float):
            self._float(value, verb)
        elif isinstance(value, str):
            self._string(value, verb)
        elif isinstance(value, Record):
            self._record(value, verb, depth)
        elif isinstance(value, Mapping):
            self._map(value, verb, depth)
        elif isinstance(value, list | tuple):
            self._list(value, verb, depth)
        else:
            raise FuncError(f"can't print a value of {go_type_name(value)}")

    def _integer(self, value: int, verb: str) -> None:
        if verb in "vd":
            self.fmt_integer(value, 10, verb, _LOWER)
        elif verb == "b":
            self.fmt_integer(value, 2, verb, _LOWER)
        elif verb in "oO":
            self.fmt_integer(value, 8, verb, _LOWER)
        elif verb == "x":
            self.fmt_integer(value, 16, verb, _LOWER)
        elif verb == "X":
            self.fmt_integer(value, 16, verb, _UPPER)
        elif verb in "cqU":
            code = value & _MASK64  # Go converts the int to uint64 first
            if verb == "c":
                self.fmt_c(code)
            elif verb == "q":
                self.fmt_qc(code)
            else:
                self.fmt_unicode(code)
        else:
            self.bad_verb(verb, value)

    def _float(self, value: float, verb: str) -> None:
        if verb == "v":
            self.fmt_float(value, "g", -1)
        elif verb in "bgGxX":
            self.fmt_float(value, verb, -1)
        elif verb in "feE":
            self.fmt_float(value, verb, 6)
        elif verb == "F":
            self.fmt_float(value, "f", 6)
        else:
            self.bad_verb(verb, value)

    def _string(self, value: str, verb: str) -> None:
        if verb == "v":
            if self.sharp_v:
                self.fmt_q(value)
            else:
                self.fmt_s(value)
        elif verb == "s":
            self.fmt_s(value)
        elif verb in "xX":
            self.fmt_sx(value, _LOWER if verb == "x" else _UPPER)
        elif verb == "q":
            self.fmt_q(value)
        else:
            self.bad_verb(verb, value)

    def _record(self, record: Record, verb: str, depth: int) -> None:
        if record.pointer and depth == 0:
            self.write("&")
        if self.sharp_v:
            self.write(record.struct_name)
        self.write("{")
        for i, (name, field) in enumerate(record.items()):
            if i:
                self.write(", " if self.sharp_v else " ")
            if self.plus_v or self.sharp_v:
                self.write(f"{name}:")
            self.print_value(field, verb, depth + 1)
        self.write("}")

    def _map(self, mapping: Mapping[object, object], verb: str, depth: int) -> None:
        self.write(go_type_name(mapping) + "{" if self.sharp_v else "map[")
        for i, (key, item) in enumerate(sorted_items(mapping)):
            if i:
                self.write(", " if self.sharp_v else " ")
            self.print_value(key, verb, depth + 1)
            self.write(":")
            self.print_value(item, verb, depth + 1)
        self.write("}" if self.sharp_v else "]")

    def _list(self, items: Sequence[object], verb: str, depth: int) -> None:
        if self.sharp_v:
            self.write(go_type_name(items) + "{")
        else:
            self.write("[")
        for i, item in enumerate(items):
            if i:
                self.write(", " if self.sharp_v else " ")
            self.print_value(item, verb, depth + 1)
        self.write("}" if self.sharp_v else "]")


# --- numbers: Go's strconv.FormatFloat -------------------------------------------------------------


def _decimal_digits(value: float, mode: str, precision: int) -> tuple[str, int]:
    """Digits ``d`` and decimal point ``dp`` (value = 0.d * 10**dp), rounded as strconv rounds.

    ``precision < 0`` is the shortest form that reads back exactly; otherwise ``mode`` says what the
    precision counts: digits after the first (``e``), decimals (``f``) or all digits (``g``). Rounding
    is of the exact binary value, half to even, as Go's strconv does.
    """
    if value == 0:
        return "", 0
    if precision < 0:
        return shortest_digits(value)
    _, digit_tuple, exponent = Decimal(abs(value)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    point = len(digits) + exponent
    keep = {"e": precision + 1, "g": max(precision, 1)}.get(mode, point + precision)
    if keep >= len(digits):
        return digits.rstrip("0"), point
    if keep < 0:
        return "", 0
    head, rest = digits[:keep], digits[keep:]
    tail_nonzero = rest[1:].strip("0") != ""
    odd = bool(head) and int(head[-1]) % 2 == 1
    if rest[0] > "5" or (rest[0] == "5" and (tail_nonzero or odd)):
        rounded = str(int(head or "0") + 1)
        if len(rounded) > len(head):  # 99 -> 100: one more digit before the point
            point += 1
        head = rounded
    head = head.rstrip("0")
    return (head, point) if head else ("", 0)


def _fmt_e(negative: bool, digits: str, point: int, precision: int, letter: str) -> str:
    out = ["-" if negative else "", digits[:1] or "0"]
    if precision > 0:
        out.append("." + digits[1 : precision + 1].ljust(precision, "0"))
    exponent = 0 if not digits else point - 1
    sign = "-" if exponent < 0 else "+"
    out.append(f"{letter}{sign}{abs(exponent):02d}")
    return "".join(out)


def _fmt_f(negative: bool, digits: str, point: int, precision: int) -> str:
    whole = (digits[:point].ljust(point, "0")) if point > 0 else "0"
    out = ["-" if negative else "", whole]
    if precision > 0:
        fraction = "".join(
            digits[point + i] if 0 <= point + i < len(digits) else "0" for i in range(precision)
        )
        out.append("." + fraction)
    return "".join(out)


def _format_float(value: float, verb: str, precision: int) -> str:
    """``strconv.FormatFloat(value, verb, precision, 64)``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    negative = math.copysign(1.0, value) < 0
    if verb == "b":
        return _format_binary(value, negative)
    if verb in "xX":
        return _format_hex(value, negative, precision, upper=verb == "X")
    if verb in "eE":
        digits, point = _decimal_digits(value, "e", precision)
        if precision < 0:
            precision = max(len(digits) - 1, 0)
        return _fmt_e(negative, digits, point, precision, verb)
    if verb == "f":
        digits, point = _decimal_digits(value, "f", precision)
        if precision < 0:
            precision = max(len(digits) - point, 0)
        return _fmt_f(negative, digits, point, precision)
    # g, G
    shortest = precision < 0
    if precision == 0:
        precision = 1
    digits, point = _decimal_digits(value, "g", precision)
    if shortest:
        precision = len(digits)
    eprec = precision
    if eprec > len(digits) and len(digits) >= point:
        eprec = len(digits)
    if shortest:
        eprec = 6
    exponent = point - 1
    if exponent < -4 or exponent >= eprec:
        precision = min(precision, len(digits))
        return _fmt_e(negative, digits, point, precision - 1, "e" if verb == "g" else "E")
    if precision > point:
        precision = len(digits)
    return _fmt_f(negative, digits, point, max(precision - point, 0))


def _float_bits(value: float) -> tuple[int, int]:
    """Mantissa (with the implicit bit) and binary exponent, as strconv takes a float64 apart."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", value))
    exponent = (bits >> 52) & 0x7FF
    mantissa = bits & ((1 << 52) - 1)
    if exponent == 0:
        exponent = 1  # denormal
    else:
        mantissa |= 1 << 52
    return mantissa, exponent - 1023


def _format_binary(value: float, negative: bool) -> str:
    mantissa, exponent = _float_bits(value)
    exponent -= 52
    return f"{'-' if negative else ''}{mantissa}p{'+' if exponent >= 0 else ''}{exponent}"


def _format_hex(value: float, negative: bool, precision: int, *, upper: bool) -> str:
    mantissa, exponent = _float_bits(value)
    if mantissa == 0:
        exponent = 0
    mantissa <<= 60 - 52
    while mantissa and not mantissa & (1 << 60):
        mantissa <<= 1
        exponent -= 1
    if 0 <= precision < 15:  # round to the precision, half to even
        shift = precision * 4
        extra = (mantissa << shift) & ((1 << 60) - 1)
        mantissa >>= 60 - shift
        if extra | (mantissa & 1) > 1 << 59:
            mantissa += 1
        mantissa <<= 60 - shift
        if mantissa & (1 << 61):
            mantissa >>= 1
            exponent += 1
    hexdigits = _UPPER if upper else _LOWER
    out = ["-" if negative else "", "0", "X" if upper else "x", str((mantissa >> 60) & 1)]
    mantissa = (mantissa << 4) & ((1 << 64) - 1)
    if precision < 0 and mantissa:
        out.append(".")
        while mantissa:
            out.append(hexdigits[(mantissa >> 60) & 15])
            mantissa = (mantissa << 4) & ((1 << 64) - 1)
    elif precision > 0:
        out.append(".")
        for _ in range(precision):
            out.append(hexdigits[(mantissa >> 60) & 15])
            mantissa = (mantissa << 4) & ((1 << 64) - 1)
    out.append("P" if upper else "p")
    out.append("-" if exponent < 0 else "+")
    out.append(f"{abs(exponent):02d}")
    return "".join(out)


def _alternate_float(num: str, verb: str, precision: int) -> str:
    """The ``#`` flag: always a decimal point, and %g keeps its trailing zeros (Go's fmtFloat)."""
    digits = (precision if precision != -1 else 6) if verb in "vgGx" else 0  # not X: as in Go
    tail = ""
    body = num
    has_point = False
    seen_nonzero = False
    for i in range(1, len(num)):
        ch = num[i]
        if ch == ".":
            has_point = True
        elif ch in "pP" or (ch in "eE" and verb not in "xX"):
            tail, body = num[i:], num[:i]
            break
        else:
            if ch != "0":
                seen_nonzero = True
            if seen_nonzero:
                digits -= 1
    if not has_point:
        if len(body) == 2 and body[1] == "0":
            digits -= 1
        body += "."
    if digits > 0:
        body += "0" * digits
    return body + tail


# --- entry points --------------------------------------------------------------------------------


def _parse_number(fmt: str, i: int, end: int) -> tuple[int, bool, int]:
    """Go's ``parsenum``: a run of digits; an absurdly long one swallows the rest of the format."""
    number, found = 0, False
    while i < end and "0" <= fmt[i] <= "9":
        if number > _TOO_LARGE:
            return 0, False, end
        number = number * 10 + ord(fmt[i]) - 48
        found = True
        i += 1
    return number, found, i


def _int_from_arg(args: Sequence[object], index: int) -> tuple[int, bool, int]:
    if index >= len(args):
        return 0, False, index
    value = args[index]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _TOO_LARGE:
        return value, True, index + 1
    return 0, False, index + 1


def sprintf(fmt: str, args: Sequence[object], *, check_size: Callable[[int], None]) -> str:
    """Go's ``fmt.Sprintf``; ``check_size`` is called with the length so far and raises when too long."""
    p = _Printer(check_size)
    end = len(fmt)
    arg_num = 0
    after_index = False
    reordered = False
    i = 0

    def arg_number(arg_num: int, i: int) -> tuple[int, int, bool, bool]:
        """An explicit ``[n]`` at ``i``: (argument, next i, found, good)."""
        nonlocal reordered
        if i >= end or fmt[i] != "[":
            return arg_num, i, False, True
        reordered = True
        close = fmt.find("]", i + 1)
        if len(fmt) - i < 3 or close < 0:
            return arg_num, i + 1, False, False
        number, ok, stop = _parse_number(fmt, i + 1, close)
        if not ok or stop != close:
            return arg_num, close + 1, False, False
        index = number - 1
        if 0 <= index < len(args):
            return index, close + 1, True, True
        return arg_num, close + 1, True, False

    while i < end:
        good = True
        percent = fmt.find("%", i)
        if percent < 0:
            p.write(fmt[i:])
            break
        p.write(fmt[i:percent])
        i = percent + 1
        p.clear_flags()
        while i < end and fmt[i] in "#0+- ":
            flag = fmt[i]
            if flag == "#":
                p.sharp = True
            elif flag == "0":
                p.zero = True
            elif flag == "+":
                p.plus = True
            elif flag == "-":
                p.minus = True
            else:
                p.space = True
            i += 1

        arg_num, i, after_index, ok = arg_number(arg_num, i)
        good = good and ok
        if i < end and fmt[i] == "*":
            i += 1
            p.wid, p.wid_present, arg_num = _int_from_arg(args, arg_num)
            if not p.wid_present:
                p.write("%!(BADWIDTH)")
            if p.wid < 0:
                p.wid, p.minus, p.zero = -p.wid, True, False
            after_index = False
        else:
            p.wid, p.wid_present, i = _parse_number(fmt, i, end)
            if after_index and p.wid_present:  # "%[3]2d"
                good = False
        if i + 1 < end and fmt[i] == ".":
            i += 1
            if after_index:  # "%[3].2d"
                good = False
            arg_num, i, after_index, ok = arg_number(arg_num, i)
            good = good and ok
            if i < end and fmt[i] == "*":
                i += 1
                p.prec, p.prec_present, arg_num = _int_from_arg(args, arg_num)
                if p.prec < 0:
                    p.prec, p.prec_present = 0, False
                if not p.prec_present:
                    p.write("%!(BADPREC)")
                after_index = False
            else:
                p.prec, p.prec_present, i = _parse_number(fmt, i, end)
                if not p.prec_present:
                    p.prec, p.prec_present = 0, True
        if not after_index:
            arg_num, i, after_index, ok = arg_number(arg_num, i)
            good = good and ok
        if i >= end:
            p.write("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":  # takes no argument and ignores width and precision
            p.write("%")
        elif not good:
            p.write(f"%!{verb}(BADINDEX)")
        elif arg_num >= len(args):
            p.write(f"%!{verb}(MISSING)")
        else:
            if verb in "vw":
                p.sharp_v, p.sharp = p.sharp, False
                p.plus_v, p.plus = p.plus, False
            if verb == "w":  # Sprintf wraps no errors: %w is a bad verb for every value
                p.bad_verb(verb, args[arg_num])
            else:
                p.print_arg(args[arg_num], verb)
            arg_num += 1

    if not reordered and arg_num < len(args):
        p.clear_flags()
        p.write("%!(EXTRA ")
        for n, arg in enumerate(args[arg_num:]):
            if n:
                p.write(", ")
            if _is_nil(arg):
                p.write("<nil>")
            else:
                p.write(f"{go_type_name(arg)}=")
                p.print_arg(arg, "v")
        p.write(")")
    return p.text()


def _unlimited(_: int) -> None:
    return None


def format_v(value: object, *, check_size: Callable[[int], None] = _unlimited) -> str:
    """Go's ``%v`` (``fmt.Sprint`` of one value): ``[a b]``, ``map[k:v]``, ``{a b}``, ``&{…}``."""
    p = _Printer(check_size)
    p.print_arg(value, "v")
    return p.text()


def print_value(value: object, *, check_size: Callable[[int], None] = _unlimited) -> str:
    """What ``{{ pipeline }}`` writes, as in the Go original's ``html/template`` (escaping aside).

    A missing value (a map key that is not there) or nil prints as nothing, not ``<no value>``:
    html/template drops untyped nil before printing. A pointer prints as what it points to.
    """
    if _is_nil(value):
        return ""
    if isinstance(value, Record) and value.pointer:
        value = Record(value, type_name=value.struct_name)
    return format_v(value, check_size=check_size)
