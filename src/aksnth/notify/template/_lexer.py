"""Go text/template's lexer: text, ``{{ }}`` actions with their trim markers, comments and tokens.

A generator, pulled by the parser one token at a time, so that errors come out in the order of the
text, as Go's do. Positions are character offsets into the source; ``Source`` turns them into
1-based line and column numbers for messages.
"""

from __future__ import annotations

import bisect
import enum
import re
import string
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Final

from aksnth.errors import TemplateError

LEFT_DELIM: Final = "{{"
RIGHT_DELIM: Final = "}}"
_SPACE: Final = " \t\r\n"  # Go's isSpace: the only characters around trim markers and between tokens

KEYWORDS: Final = frozenset(
    {"block", "break", "continue", "define", "else", "end", "if", "range", "template", "with"}
)


class Kind(enum.Enum):
    TEXT = "text"
    LEFT = "{{"
    RIGHT = "}}"
    EOF = "end of template"
    PIPE = "|"
    LPAREN = "("
    RPAREN = ")"
    DECLARE = ":="
    ASSIGN = "="
    COMMA = ","
    DOT = "."
    FIELD = "field"
    VARIABLE = "variable"
    IDENTIFIER = "identifier"
    KEYWORD = "keyword"
    STRING = "string"
    NUMBER = "number"
    BOOL = "bool"
    NIL = "nil"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str  # as written (a field or variable without its leading "." / with its "$")
    pos: int
    spaced: bool = False  # preceded by white space inside an action (Go separates arguments by it)
    value: object = None  # decoded literal: str, int, float or bool


class Source:
    """The template text with its name, for turning offsets into ``name:line:col`` errors."""

    def __init__(self, text: str, name: str) -> None:
        self.text = text
        self.name = name
        self._line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def position(self, pos: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._line_starts, pos)
        return line, pos - self._line_starts[line - 1] + 1

    def error(self, message: str, pos: int) -> TemplateError:
        line, column = self.position(pos)
        return TemplateError(message, name=self.name, line=line, column=column)


# Go's scanNumber: optional sign, base prefix, digits with underscores, fraction, exponent, "i".
_NUMBER: Final = re.compile(
    r"""[+-]?(?:
        0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?
      | 0[oO][0-7_]*
      | 0[bB][01_]*
      | [0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?
    )i?""",
    re.VERBOSE,
)
_ESCAPES: Final = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalnum()


class Lexer:
    def __init__(self, source: Source) -> None:
        self._src = source
        self._text = source.text

    def _error(self, message: str, pos: int) -> TemplateError:
        return self._src.error(message, pos)

    def tokens(self) -> Iterator[Token]:
        text, pos, end = self._text, 0, len(self._text)
        while True:
            start = text.find(LEFT_DELIM, pos)
            if start < 0:
                if pos < end:
                    yield Token(Kind.TEXT, text[pos:], pos)
                yield Token(Kind.EOF, "", end)
                return
            trim_left = text.startswith("-", start + 2) and text[start + 3 : start + 4] in tuple(_SPACE)
            chunk = text[pos:start]
            if trim_left:
                chunk = chunk.rstrip(_SPACE)
            if chunk:
                yield Token(Kind.TEXT, chunk, pos)
            inside = start + (4 if trim_left else 2)
            if text.startswith("/*", inside):
                pos, trim_right = self._comment(start, inside)
            else:
                yield Token(Kind.LEFT, LEFT_DELIM, start)
                pos, trim_right = yield from self._action(start, inside)
            if trim_right:
                while pos < end and text[pos] in _SPACE:
                    pos += 1

    def _right_delim(self, pos: int) -> tuple[bool, int, bool]:
        """At ``}}`` or `` -}}``? Returns (found, position after it, trim)."""
        text = self._text
        if text.startswith(RIGHT_DELIM, pos):
            return True, pos + 2, False
        if text[pos : pos + 1] in tuple(_SPACE) and text.startswith("-" + RIGHT_DELIM, pos + 1):
            return True, pos + 4, True
        return False, pos, False

    def _comment(self, start: int, inside: int) -> tuple[int, bool]:
        close = self._text.find("*/", inside + 2)
        if close < 0:
            raise self._error("unclosed comment", start)
        found, after, trim = self._right_delim(close + 2)
        if not found:
            raise self._error("comment ends before closing delimiter: write */}}", close + 2)
        return after, trim

    def _action(self, start: int, pos: int) -> Generator[Token, None, tuple[int, bool]]:
        text, end = self._text, len(self._text)
        depth = 0
        spaced = False
        while True:
            found, after, trim = self._right_delim(pos)
            if found:
                if depth:
                    raise self._error("unclosed left paren", pos)
                yield Token(Kind.RIGHT, RIGHT_DELIM, pos, spaced)
                return after, trim
            if pos >= end:
                raise self._error("unclosed action: missing }}", start)
            ch = text[pos]
            if ch in _SPACE:
                while pos < end and text[pos] in _SPACE and not self._right_delim(pos)[0]:
                    pos += 1
                spaced = True
                continue
            token, pos = self._token(ch, pos, spaced)
            if token.kind is Kind.LPAREN:
                depth += 1
            elif token.kind is Kind.RPAREN:
                depth -= 1
                if depth < 0:
                    raise self._error("unexpected right paren", token.pos)
            yield token
            spaced = False

    def _token(self, ch: str, pos: int, spaced: bool) -> tuple[Token, int]:
        text = self._text
        simple = {"|": Kind.PIPE, "(": Kind.LPAREN, ")": Kind.RPAREN, ",": Kind.COMMA, "=": Kind.ASSIGN}
        if ch in simple:
            return Token(simple[ch], ch, pos, spaced), pos + 1
        if ch == ":":
            if text.startswith(":=", pos):
                return Token(Kind.DECLARE, ":=", pos, spaced), pos + 2
            raise self._error("expected :=", pos)
        if ch == '"':
            return self._quoted(pos, spaced)
        if ch == "`":
            close = text.find("`", pos + 1)
            if close < 0:
                raise self._error("unterminated raw quoted string", pos)
            raw = text[pos + 1 : close].replace("\r", "")  # Go discards CR in raw strings
            return Token(Kind.STRING, text[pos : close + 1], pos, spaced, raw), close + 1
        if ch == "'":
            return self._char(pos, spaced)
        if ch == "$":
            stop = self._alnum_run(pos + 1)
            return Token(Kind.VARIABLE, text[pos:stop], pos, spaced), stop
        if ch == "." and not text[pos + 1 : pos + 2].isdigit():
            stop = self._alnum_run(pos + 1)
            if stop == pos + 1:
                return Token(Kind.DOT, ".", pos, spaced), stop
            return Token(Kind.FIELD, text[pos + 1 : stop], pos, spaced), stop
        if ch in "+-." or ch.isdigit():
            return self._number(pos, spaced)
        if _is_alnum(ch):
            stop = self._alnum_run(pos)
            word = text[pos:stop]
            if stop < len(text) and not self._at_terminator(stop):
                raise self._error(f"bad character {text[stop]!r} after {word}", stop)
            if word in ("true", "false"):
                return Token(Kind.BOOL, word, pos, spaced, word == "true"), stop
            if word == "nil":
                return Token(Kind.NIL, word, pos, spaced), stop
            kind = Kind.KEYWORD if word in KEYWORDS else Kind.IDENTIFIER
            return Token(kind, word, pos, spaced), stop
        raise self._error(f"unexpected character {ch!r} in action", pos)

    def _alnum_run(self, pos: int) -> int:
        text = self._text
        while pos < len(text) and _is_alnum(text[pos]):
            pos += 1
        return pos

    def _at_terminator(self, pos: int) -> bool:
        ch = self._text[pos]
        return ch in _SPACE or ch in ".,|:()" or self._text.startswith(RIGHT_DELIM, pos)

    def _number(self, pos: int, spaced: bool) -> tuple[Token, int]:
        match = _NUMBER.match(self._text, pos)
        stop = match.end() if match else pos
        if stop < len(self._text) and _is_alnum(self._text[stop]):
            stop = self._alnum_run(stop)
            raise self._error(f"bad number syntax: {self._text[pos:stop]}", pos)
        literal = self._text[pos:stop]
        value = self._number_value(literal, pos)
        return Token(Kind.NUMBER, literal, pos, spaced, value), stop

    def _number_value(self, literal: str, pos: int) -> int | float:
        body = literal.lstrip("+-")
        negative = literal.startswith("-")
        bad = self._error(f"bad number syntax: {literal}", pos)
        if not body or body in (".", "_") or "__" in body or body.endswith("_"):
            raise bad
        if body.endswith("i"):
            raise self._error(f"complex numbers are not supported: {literal}", pos)
        lower = body.lower()
        try:
            if lower.startswith("0x") and ("p" in lower or "." in lower):
                if "p" not in lower:
                    raise bad
                value: int | float = float.fromhex(body.replace("_", ""))
            elif lower.startswith(("0x", "0o", "0b")):
                value = int(body, 0)
            elif re.fullmatch(r"0[0-7_]+", body):
                value = int(body.replace("_", ""), 8)  # Go's legacy octal: 0755
            elif any(c in lower for c in ".e"):
                value = float(body)
            else:
                value = int(body, 10)
        except ValueError:
            raise bad from None
        if negative:
            value = -value
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            value = float(value)  # Go keeps such constants as floats
        return value

    def _quoted(self, pos: int, spaced: bool) -> tuple[Token, int]:
        text = self._text
        i = pos + 1
        while True:
            if i >= len(text) or text[i] == "\n":
                raise self._error("unterminated quoted string", pos)
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == '"':
                break
            i += 1
        value = self._unescape(text[pos + 1 : i], pos + 1, '"')
        return Token(Kind.STRING, text[pos : i + 1], pos, spaced, value), i + 1

    def _char(self, pos: int, spaced: bool) -> tuple[Token, int]:
        text = self._text
        i = pos + 1
        while True:
            if i >= len(text) or text[i] == "\n":
                raise self._error("unterminated character constant", pos)
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == "'":
                break
            i += 1
        decoded = self._unescape(text[pos + 1 : i], pos + 1, "'")
        if len(decoded) != 1:
            raise self._error(f"malformed character constant: {text[pos : i + 1]}", pos)
        return Token(Kind.NUMBER, text[pos : i + 1], pos, spaced, ord(decoded)), i + 1

    def _unescape(self, body: str, pos: int, quote: str) -> str:
        """Go's interpreted-literal escapes. \\x and octal escapes are bytes, so decode as UTF-8."""
        out = bytearray()
        i = 0
        while i < len(body):
            ch = body[i]
            if ch != "\\":
                out += ch.encode("utf-8", "surrogatepass")
                i += 1
                continue
            esc = body[i + 1 : i + 2]
            bad = self._error(f"invalid escape sequence \\{esc} in literal", pos + i)
            if esc in _ESCAPES:
                out += _ESCAPES[esc].encode()
                i += 2
            elif esc == quote:
                out += quote.encode()
                i += 2
            elif esc == "x" or esc in "01234567":
                digits = body[i + 2 : i + 4] if esc == "x" else body[i + 1 : i + 4]
                base, need, allowed = (16, 2, string.hexdigits) if esc == "x" else (8, 3, string.octdigits)
                if len(digits) != need or not all(c in allowed for c in digits):
                    raise bad
                byte = int(digits, base)
                if byte > 255:
                    raise bad
                out.append(byte)
                i += 2 + need if esc == "x" else 1 + need
            elif esc in ("u", "U"):
                need = 4 if esc == "u" else 8
                digits = body[i + 2 : i + 2 + need]
                if len(digits) != need or not all(c in string.hexdigits for c in digits):
                    raise bad
                code = int(digits, 16)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    raise bad
                out += chr(code).encode()
                i += 2 + need
            else:
                raise bad
        return out.decode("utf-8", "replace")
