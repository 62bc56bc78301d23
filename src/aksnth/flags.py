"""Command-line flags parsed the way Go's ``flag`` package parses them, so existing ``args`` keep working.

Go's rules, kept on purpose: ``-name=value``, ``-name value``, ``--name=value`` and ``--name value`` are
the same; a bare boolean flag means true and a boolean never consumes the next argument
(``-dryRun false`` is ``-dryRun`` followed by the argument ``false``); a non-boolean flag takes the next
argument whatever it looks like (``-podGracePeriodSeconds -1``); ``--`` or the first argument that is
not a flag ends the flags; names are case-sensitive; a flag given twice keeps its last value (a
repeatable flag collects every value). Values use Go's syntax: ``strconv.ParseBool`` booleans,
``strconv.ParseInt(s, 0, 64)`` integers and ``time.ParseDuration`` durations (``aksnth.durations``).

This module knows nothing about our options; ``aksnth.options`` holds the table.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from aksnth.durations import format_duration, parse_go_duration
from aksnth.errors import ConfigError

OptionValue: TypeAlias = bool | int | float | str | tuple[str, ...]


class Kind(enum.Enum):
    """How a flag's text becomes a value; the member value is what ``--help`` shows."""

    BOOL = "bool"
    STRING = "string"
    INT = "int"
    DURATION = "duration"  # seconds as float
    LIST = "value"  # repeatable string flag: every occurrence is kept, in order


@dataclass(frozen=True, slots=True, kw_only=True)
class Option:
    """One flag: its name (without dash, case-sensitive), type, default and where else it may come from."""

    name: str
    kind: Kind
    default: OptionValue
    group: str
    usage: str
    env: str = ""  # an environment variable that supplies the value when the flag is absent
    config_keys: tuple[str, ...] = ()  # extra config-file keys (the Go original's), besides our own
    in_config: bool = True  # False: cannot be set from the -config file (-config itself, -version)
    secret: bool = False  # never shown in messages
    # What this option qualifies (its companion), as --help and the docs name it, e.g. "-taint.node".
    # Alone it would do nothing, so the program refuses it when given without its companion.
    needs: str = ""


class HelpRequested(Exception):  # a control-flow signal, like argparse's SystemExit
    """``-h``, ``-help`` or ``--help`` was given: print the usage and exit 0."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedFlags:
    """The flags that were given (absent flags are not in ``values``) and the arguments after them."""

    values: dict[str, OptionValue]
    positional: tuple[str, ...]


# ---------------------------------------------------------------------------------------------------
# Values in Go syntax
# ---------------------------------------------------------------------------------------------------

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(text: str) -> bool:
    """``strconv.ParseBool``: 1, t, T, TRUE, true, True and their false counterparts."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean (use true or false)")


_GO_INT = re.compile(
    r"(?P<sign>[+-]?)(?:"
    r"0[xX](?P<hex>_?[0-9a-fA-F](?:_?[0-9a-fA-F])*)"
    r"|0[bB](?P<bin>_?[01](?:_?[01])*)"
    r"|0[oO](?P<oct>_?[0-7](?:_?[0-7])*)"
    r"|0(?P<oldoct>_?[0-7](?:_?[0-7])*)"
    r"|(?P<dec>0|[1-9](?:_?[0-9])*)"
    r")"
)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def parse_go_int(text: str) -> int:
    """``strconv.ParseInt(s, 0, 64)``: decimal, 0x hex, 0o or leading-0 octal, 0b binary, ``_`` separators."""
    match = _GO_INT.fullmatch(text)
    if match is None:
        raise ValueError("not an integer")
    for group, base in (("hex", 16), ("bin", 2), ("oct", 8), ("oldoct", 8), ("dec", 10)):
        digits = match.group(group)
        if digits is not None:
            value = int(digits.replace("_", ""), base)
            break
    if match.group("sign") == "-":
        value = -value
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError("integer out of range")
    return value


def convert(option: Option, text: str) -> OptionValue:
    """The text of one occurrence of ``option`` as its typed value; ``ValueError`` says what is wrong."""
    match option.kind:
        case Kind.BOOL:
            return parse_go_bool(text)
        case Kind.INT:
            return parse_go_int(text)
        case Kind.DURATION:
            return parse_go_duration(text)
        case Kind.LIST:
            return (text,)
        case Kind.STRING:
            return text


def shown(option: Option, text: str) -> str:
    """A value as it may appear in an error message: secrets are never repeated back."""
    return "<hidden>" if option.secret else f"{text!r}"


# ---------------------------------------------------------------------------------------------------
# The argument vector
# ---------------------------------------------------------------------------------------------------

_HELP_NAMES = frozenset({"h", "help"})


def suggest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (a case-only difference first), or None."""
    known = list(known)
    for candidate in known:
        if candidate.lower() == name.lower():
            return candidate
    import difflib  # noqa: PLC0415 - only for a mistake's message

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str], *, prefix: str = "") -> str:
    """`` (did you mean <prefix><closest>?)`` for a mistyped ``name``, or "" when nothing is close."""
    hint = suggest(name, known)
    return f" (did you mean {prefix}{hint}?)" if hint else ""


def parse_flags(argv: Sequence[str], options: Sequence[Option]) -> ParsedFlags:
    """Parse ``argv`` (without the program name) like Go's ``flag.FlagSet.Parse``.

    Raises ``ConfigError`` for an unknown flag, a missing or bad value, or bad syntax, and
    ``HelpRequested`` for ``-h``/``-help``/``--help``.
    """
    by_name = {option.name: option for option in options}
    values: dict[str, OptionValue] = {}
    index = 0
    while index < len(argv):
        argument = argv[index]
        if len(argument) < 2 or not argument.startswith("-"):
            break  # the first non-flag argument ends the flags, as in Go
        index += 1
        if argument == "--":
            break
        body = argument[2:] if argument.startswith("--") else argument[1:]
        if not body or body.startswith("-") or body.startswith("="):
            raise ConfigError(f"bad flag syntax: {argument}")
        name, has_value, text = body.partition("=")
        option = by_name.get(name)
        if option is None:
            if name in _HELP_NAMES:
                raise HelpRequested
            raise ConfigError(
                f"flag provided but not defined: -{name}{did_you_mean(name, by_name, prefix='-')}"
            )
        if option.kind is Kind.BOOL and not has_value:
            text = "true"
        elif not has_value:
            if index >= len(argv):
                raise ConfigError(f"flag needs an argument: -{name}")
            text = argv[index]
            index += 1
        try:
            value = convert(option, text)
        except ValueError as exc:
            raise ConfigError(f"invalid value {shown(option, text)} for flag -{name}: {exc}") from None
        if option.kind is Kind.LIST:
            previous = values.get(name, ())
            assert isinstance(previous, tuple) and isinstance(value, tuple)
            value = previous + value
        values[name] = value
    return ParsedFlags(values=values, positional=tuple(argv[index:]))


# ---------------------------------------------------------------------------------------------------
# Usage text
# ---------------------------------------------------------------------------------------------------


def describe_default(option: Option) -> str:
    """The default as ``--help`` and the docs show it (Go's style: strings quoted, durations as 5s)."""
    default = option.default
    if option.kind is Kind.DURATION:
        assert isinstance(default, float | int)
        return format_duration(float(default))
    if option.kind is Kind.LIST:
        assert isinstance(default, tuple)
        return ",".join(default) if default else "none"
    if option.kind is Kind.BOOL:
        return "true" if default else "false"
    if option.kind is Kind.STRING:
        return f'"{default}"'
    return str(default)


def format_usage(options: Sequence[Option], groups: Sequence[str], *, preamble: str) -> str:
    """``--help`` text: every flag by group with its type, meaning, default and environment variable."""
    lines = [preamble.rstrip(), ""]
    for group in groups:
        members = [option for option in options if option.group == group]
        if not members:
            continue
        lines.append(f"{group}:")
        for option in members:
            type_name = "" if option.kind is Kind.BOOL else f" {option.kind.value}"
            lines.append(f"  -{option.name}{type_name}")
            details = [option.usage]
            is_empty = option.default in ("", ()) and option.kind is not Kind.BOOL
            if not is_empty and option.name != "version":
                details.append(f"(default {describe_default(option)})")
            if option.needs:
                details.append(f"(needs {option.needs})")
            if option.env:
                details.append(f"[env {option.env}]")
            lines.append("        " + " ".join(details))
        lines.append("")
    return "\n".join(lines) + "\n"
