"""Templates cannot read files or call code: complements the sandbox tests of test_template.py.

A Python audit hook (sys.addaudithook) watches every render here: opening a file, a socket, a process,
an import, compiling or running code or touching ctypes during a render fails
the test, whatever the template (hand-written hostile ones, and generated ones that combine every
function of the table with every field of the data).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aksnth.errors import TemplateError
from aksnth.notify.payload import sample_template_data
from aksnth.notify.template import FUNCTION_NAMES, compile_template

# What a template engine has no business doing. Audit events are listed in the Python documentation
# ("Audit events table").
FORBIDDEN_EVENT_PREFIXES = (
    "open",
    "os.",
    "shutil.",
    "socket.",
    "subprocess.",
    "import",
    "exec",
    "compile",
    "ctypes.",
    "urllib.",
    "http.client.",
    "pickle.",
    "marshal.",
    "builtins.input",
    "code.",
    "sys._getframe",
    "object.__getattr__",
    "object.__setattr__",
    "object.__delattr__",
    "function.__new__",
)
# The function table is a closed list of pure functions; adding one needs a look at this test.
PURE_FUNCTIONS = frozenset(
    {
        "and", "contains", "default", "eq", "ge", "gt", "hasPrefix", "hasSuffix", "html", "index", "join",
        "js", "le", "len", "lower", "lt", "ne", "not", "or", "print", "printf", "println", "quote",
        "replace", "slice", "squote", "title", "toJson", "trim", "trimPrefix", "trimSuffix", "upper",
        "urlquery",
    }
)  # fmt: skip

_watching: list[list[str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watching and event.startswith(FORBIDDEN_EVENT_PREFIXES):
        _watching[-1].append(event)


sys.addaudithook(_audit)  # cannot be removed; it only records while a render is watched


@contextmanager
def watched() -> Iterator[list[str]]:
    seen: list[str] = []
    _watching.append(seen)
    try:
        yield seen
    finally:
        _watching.pop()


DATA = sample_template_data(phase="drained")


def render_watched(text: str) -> tuple[str | None, list[str]]:
    template = compile_template(text)  # compiling is watched too, below
    with watched() as seen:
        try:
            output: str | None = template.render(DATA)
        except TemplateError:
            output = None
    return output, seen


def test_the_function_table_is_the_reviewed_list_of_pure_functions() -> None:
    assert FUNCTION_NAMES == PURE_FUNCTIONS


HOSTILE = [
    '{{ template "/etc/passwd" }}',
    '{{ printf "%v" . }}',
    '{{ printf "%#v" .Event }}',
    '{{ printf "%T" .NodeLabels }}',
    "{{ .Event.EventId.upper }}",
    "{{ .NodeLabels.items }}",
    "{{ .NodePods.append }}",
    '{{ index .NodeLabels "__class__" }}',
    '{{ index . "__dict__" }}',
    "{{ .__globals__ }}",
    "{{ .Event.__reduce__ }}",
    '{{ call .Event.EventId "x" }}',
    "{{ $x := .Event }}{{ $x.__class__.__mro__ }}",
    '{{ toJson (index .NodeLabels "x") }}',
    "{{ range $k, $v := . }}{{ $k }}{{ end }}",
    '{{ html "<script>" }}{{ js "</script>" }}{{ urlquery "a b" }}',
    '{{ printf "%s" (printf "%v" .DrainResult) }}',
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_templates_render_or_fail_without_touching_the_outside(text: str) -> None:
    try:
        output, seen = render_watched(text)
    except TemplateError:  # refused at compile time: fine as well
        return
    assert seen == [], f"{text!r} caused {seen}"
    assert output is None or "object at 0x" not in output  # no Python repr leaks out
    assert output is None or "<class" not in output


def test_define_cannot_include_a_file() -> None:
    with pytest.raises(TemplateError):
        compile_template('{{ template "/etc/hostname" . }}').render(DATA)


_fields = st.sampled_from(
    [
        ".",
        ".NodeName",
        ".Event",
        ".Event.EventId",
        ".Event.Resources",
        ".NodeLabels",
        ".NodePods",
        ".DrainResult",
        ".DrainResult.Remaining",
        '"x"',
        '"%v %T %#v %s %d %q"',
        "1",
        "-1",
        "2.5",
        "true",
        "nil",
    ]
)
_calls = st.builds(
    lambda name, args: f"({name} {' '.join(args)})",
    st.sampled_from(sorted(FUNCTION_NAMES)),
    st.lists(_fields, max_size=3),
)
_actions = st.lists(st.one_of(_fields, _calls), min_size=1, max_size=3).map(
    lambda parts: "{{ " + " ".join(parts) + " }}"
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.lists(_actions, min_size=1, max_size=4).map("".join))
def test_generated_templates_over_every_function_never_touch_the_outside(text: str) -> None:
    try:
        _, seen = render_watched(text)
    except TemplateError:
        return
    assert seen == [], f"{text!r} caused {seen}"
