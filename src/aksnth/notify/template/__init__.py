"""Go ``text/template`` for notification payloads: a small, sandboxed engine in pure Python.

Why our own engine and not a translation to Jinja2: Go rebinds ``.`` inside ``range`` and ``with``,
passes a piped value as the *last* argument of the next function, distinguishes struct fields (an
error when missing) from map keys (no value) and prints values the way ``fmt`` does. A
translation layer cannot represent all of that faithfully, and it would report errors at positions
in a text the user never wrote. This engine parses the user's text directly, so every error names
the user's line and column.

Public API::

    template = compile_template(text, name="slack-payload.json")   # TemplateError on bad syntax
    body = template.render(data)                                   # TemplateError on bad data access

A template can read data and call the fixed function table in ``_funcs``; it cannot read attributes of
Python objects, call methods, open files or run for ever (see ``TemplateLimits``).
"""

from __future__ import annotations

from collections.abc import Mapping

from aksnth.errors import TemplateError

from ._exec import render as _render
from ._funcs import FUNCTIONS
from ._lexer import Source
from ._limits import TemplateLimits
from ._parser import ParsedTemplate, Parser
from ._values import NO_VALUE, NamedString, Record, TypedMap

__all__ = [
    "FUNCTION_NAMES",
    "NO_VALUE",
    "NamedString",
    "Record",
    "Template",
    "TemplateError",
    "TemplateLimits",
    "TypedMap",
    "compile_template",
]

FUNCTION_NAMES = frozenset(FUNCTIONS)


class Template:
    """A compiled template; immutable, so one instance can be rendered by many tasks at once."""

    __slots__ = ("_limits", "_parsed", "_source")

    def __init__(self, source: Source, parsed: ParsedTemplate, limits: TemplateLimits) -> None:
        self._source = source
        self._parsed = parsed
        self._limits = limits

    @property
    def name(self) -> str:
        return self._source.name

    @property
    def text(self) -> str:
        return self._source.text

    def render(self, data: Mapping[str, object]) -> str:
        """The payload for ``data``; raises ``TemplateError`` (with line and column) when it cannot."""
        return _render(self._source, self._parsed, data, functions=FUNCTIONS, limits=self._limits)

    def __repr__(self) -> str:
        return f"Template(name={self.name!r})"


def compile_template(text: str, *, name: str = "template", limits: TemplateLimits | None = None) -> Template:
    """Parse ``text``; syntax errors, unknown functions and undefined variables raise ``TemplateError``."""
    limits = limits or TemplateLimits()
    source = Source(text, name)
    try:
        parsed = Parser(source, functions=FUNCTIONS, limits=limits).parse()
    except RecursionError:
        raise TemplateError("template nests too deeply", name=name) from None
    return Template(source, parsed, limits)
