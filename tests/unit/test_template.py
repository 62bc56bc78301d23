"""The Go text/template engine: the seed README's payloads, Go's documented semantics, errors, sandbox.

Expected outputs are written from Go's documentation (text/template, fmt, strconv, sprig), not from
this implementation.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from aksnth.errors import ConfigError, TemplateError
from aksnth.notify.payload import compile_checked_template, sample_template_data
from aksnth.notify.template import Record, TemplateLimits, TypedMap, compile_template
from testkit.chart import seed_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

DATA = Record(
    {
        "NodeName": "node-1",
        "Event": Record(
            {"EventId": "id-1", "EventType": "Preempt", "Resources": ["vm_1"]}, type_name="Event"
        ),
        "List": ["a", "b", "c"],
        "Empty": [],
        "Map": {"b": 2, "a": 1},
        "Nested": [[1, 2], [3, 4]],
        "Labels": TypedMap({"zone": "2"}, zero=""),
        "Count": 3,
        "Ratio": 2.5,
        "Nil": None,
        "Flag": False,
    },
    type_name="TemplateData",
)


def render(text: str, data: object = DATA) -> str:
    return compile_template(text, name="t").render(data)  # type: ignore[arg-type]


# --- the seed README's payloads and the original's default message ---------------------------------------

SLACK_PAYLOAD = seed_file("slack.yaml", "slack-payload.json")


def test_readme_slack_payload_renders_verbatim() -> None:
    output = compile_template(SLACK_PAYLOAD).render(sample_template_data())
    assert output == SLACK_PAYLOAD.replace(
        "{{ .NodeName }}, {{ .InstanceType }} from {{ .NodeRegion }}",
        "aks-spot-12345678-vmss000003, Standard_D4s_v5 from westeurope",
    )
    assert json.loads(output)["text"].startswith("This is message for aks-spot-12345678-vmss000003")


def test_readme_pushgateway_payload() -> None:
    text = 'node_termination_event{node="{{ .NodeName }}"} 1\n'
    output = compile_template(text).render(sample_template_data())
    assert output == 'node_termination_event{node="aks-spot-12345678-vmss000003"} 1\n'


def test_readme_proxy_payload() -> None:
    text = "This is message for {{ .NodeName }}, {{ .InstanceType }} from {{ .NodeRegion }}"
    output = compile_template(text).render(sample_template_data())
    assert output == "This is message for aks-spot-12345678-vmss000003, Standard_D4s_v5 from westeurope"


def test_original_default_alert_message() -> None:
    text = "Draining node={{ .NodeName }}, type={{ .Event.EventType }}"
    output = compile_template(text).render(sample_template_data())
    assert output == "Draining node=aks-spot-12345678-vmss000003, type=Preempt"


# --- Go semantics, construct by construct -----------------------------------------------------------------

CONSTRUCTS = [
    # text, comments and trim markers
    ("plain text, no actions", "plain text, no actions"),
    ("a{{/* a comment */}}b", "ab"),
    ("a  {{- /* trimmed */ -}}  b", "ab"),
    ("a \n\t{{- .NodeName -}} \n b", "anode-1b"),
    ("{{ 3 }} - {{ -3 }}", "3 - -3"),  # "{{-3" is a number, not a trim marker
    ('{{ printf\n  "%s!"\n  .NodeName }}', "node-1!"),  # actions may span lines
    # fields, dot, $
    ("{{ .NodeName }}", "node-1"),
    ("{{ .Event.EventType }}/{{ .Event.Resources }}", "Preempt/[vm_1]"),
    ("{{ with .Event }}{{ .EventId }} on {{ $.NodeName }}{{ end }}", "id-1 on node-1"),
    ("{{ (.Event).EventId }}", "id-1"),
    ("{{ $e := .Event }}{{ $e.EventId }}", "id-1"),
    ("{{ .Map }} {{ .List }} {{ .Nested }} {{ .Empty }}", "map[a:1 b:2] [a b c] [[1 2] [3 4]] []"),
    # a missing map key, and nil, print as nothing: the Go original's html/template drops them
    ("{{ .Map.a }}|{{ .Map.zz }}|{{ .Map.zz.yy }}", "1||"),
    ("{{ .Labels.nope }}", ""),
    ("{{ .Nil }}|{{ .Flag }}|{{ .Count }}|{{ .Ratio }}", "|false|3|2.5"),
    ('{{ printf "%v|%s" .Map.zz .Nil }}', "<nil>|%!s(<nil>)"),  # as arguments they are nil
    ("{{ .Event }}", "{id-1 Preempt [vm_1]}"),
    # no HTML escaping at all (text/template)
    ('{{ "<b>&\'\\"</b>" }}', "<b>&'\"</b>"),
    # literals
    ('{{ "a\\tb\\u00e9\\x41" }}', "a\tbéA"),
    ("{{ `a\\tb` }}", "a\\tb"),
    ("{{ 'a' }} {{ '\\n' }}", "97 10"),
    ("{{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 0755 }} {{ 1_000 }}", "31 15 5 493 1000"),
    ("{{ 1.5 }} {{ 1e3 }} {{ 3.0 }} {{ 1000000.0 }} {{ 0.00001 }}", "1.5 1000 3 1e+06 1e-05"),
    ("{{ true }} {{ false }} {{ print nil }}", "true false <nil>"),
    # variables: declaration, assignment, scope
    ('{{ $x := "a" }}{{ $x }}', "a"),
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", "2"),
    ("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", "21"),
    ("{{ if $n := len .List }}{{ $n }} items{{ end }}", "3 items"),
    # pipelines: the piped value is the last argument
    ('{{ "a" | printf "%s-%s" "b" }}', "b-a"),
    ('{{ .List | join "+" }}', "a+b+c"),
    ('{{ .NodeName | upper | printf "[%s]" }}', "[NODE-1]"),
    ("{{ (len .List) }} {{ len (slice .List 1) }}", "3 2"),
    # if / else if / else
    ("{{ if .List }}yes{{ end }}{{ if .Empty }}no{{ end }}", "yes"),
    ('{{ if eq .Event.EventType "Reboot" }}r{{ else if eq .Event.EventType "Preempt" }}p{{ end }}', "p"),
    ("{{ if .Flag }}a{{ else }}b{{ end }}", "b"),
    # Go's truth: empty string, 0, nil, empty collections are false; a struct is true
    ('{{ if "" }}1{{ end }}{{ if 0 }}2{{ end }}{{ if 0.0 }}3{{ end }}{{ if .Event }}5{{ end }}', "5"),
    ("{{ if .Nil }}4{{ end }}{{ if .Map.zz }}6{{ end }}{{ if .Labels }}7{{ end }}", "7"),
    # range
    ("{{ range .List }}{{ . }},{{ end }}", "a,b,c,"),
    ("{{ range $i, $v := .List }}{{ $i }}:{{ $v }} {{ end }}", "0:a 1:b 2:c "),
    ("{{ range $v := .List }}{{ $v }}{{ end }}", "abc"),
    ("{{ range $k, $v := .Map }}{{ $k }}={{ $v }};{{ end }}", "a=1;b=2;"),  # sorted keys
    ("{{ range .Empty }}x{{ else }}empty{{ end }}", "empty"),
    ("{{ range .Map.missing }}x{{ else }}none{{ end }}", "none"),
    ('{{ range .List }}{{ if eq . "b" }}{{ break }}{{ end }}{{ . }}{{ end }}', "a"),
    ('{{ range .List }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ . }}{{ end }}', "ac"),
    ("{{ range 3 }}{{ . }}{{ end }}", "012"),
    ("{{ range .Nested }}{{ range . }}{{ . }}{{ end }}|{{ end }}", "12|34|"),
    ("{{ range .List }}{{ $.NodeName }}{{ end }}", "node-1node-1node-1"),
    # with / else with / else
    ("{{ with .Map.a }}{{ . }}{{ end }}", "1"),
    ("{{ with .Map.zz }}x{{ else }}none{{ end }}", "none"),
    ("{{ with .Map.zz }}x{{ else with .Map.b }}b={{ . }}{{ end }}", "b=2"),
    ("{{ with $e := .Event }}{{ $e.EventId }}{{ end }}", "id-1"),
    # and / or / not (short-circuit, return an argument)
    ('{{ and 1 0 2 }} {{ and 1 2 }} {{ or 0 "" "x" }} {{ or 0 "" }}|', "0 2 x |"),
    ("{{ or 1 (index .List 99) }}", "1"),  # the erroring index is never evaluated
    ('{{ not "" }} {{ not 1 }}', "true false"),
    # len, index, slice
    ('{{ len .List }} {{ len .Map }} {{ len "héllo" }}', "3 2 6"),  # len of a string counts bytes
    ('{{ index .List 1 }} {{ index .Map "b" }} {{ index .Nested 1 0 }}', "b 2 3"),
    ('[{{ index .Labels "nope" }}] [{{ index .Map "nope" }}]', "[] []"),  # zero value of the map type
    ('{{ slice .List 1 }} {{ slice .List 0 2 }} {{ slice "abcdef" 1 3 }}', "[b c] [a b] bc"),
    # print family
    ('{{ print "a" 1 2 "b" }}', "a1 2b"),  # spaces only between operands that are not strings
    ('{{ println "a" 1 }}', "a 1\n"),
    (
        '{{ printf "%5s|%-5s|%05d|%.2f|%8.3f|%x|%X|%q" "ab" "cd" 42 3.14159 2.5 255 255 "hi" }}',
        '   ab|cd   |00042|3.14|   2.500|ff|FF|"hi"',
    ),
    ('{{ printf "%t|%v|%6.2v|%-4d|" true .List 3.14159 7 }}', "true|[a b c]|   3.1|7   |"),
    ('{{ printf "%d|%+d|%x|%o|%c|%e|%g" -7 7 "hi" 8 65 1234.5678 0.5 }}', "-7|+7|6869|10|A|1.234568e+03|0.5"),
    ('{{ printf "%v %+v" .Map .Event }}', "map[a:1 b:2] {EventId:id-1 EventType:Preempt Resources:[vm_1]}"),
    (
        '{{ printf "%d" "x" }}|{{ printf "%s" }}|{{ printf "x" 1 }}',
        "%!d(string=x)|%!s(MISSING)|x%!(EXTRA int=1)",
    ),
    ('{{ printf "%5.1f%%" 99.44 }}', " 99.4%"),
    # comparisons
    ('{{ eq 1 2 1 }} {{ eq 1 2 }} {{ ne "a" "b" }}', "true false true"),
    ('{{ lt 1 2 }} {{ le 2 2 }} {{ gt "b" "a" }} {{ ge 1.5 2.5 }}', "true true true false"),
    ('{{ eq .Map.zz "x" }}', "false"),  # no value compares unequal, without an error
    # escaping functions
    ("{{ html \"<a href='x'>&</a>\" }}", "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"),
    ('{{ js "it\'s <b>\\"x\\"</b>=" }}', 'it\\\'s \\u003Cb\\u003E\\"x\\"\\u003C/b\\u003E\\u003D'),
    ('{{ urlquery "a b&c=d/é" }}', "a+b%26c%3Dd%2F%C3%A9"),
    # sprig
    ('{{ join ", " .List }}', "a, b, c"),
    (
        '{{ default "x" "" }} {{ default "x" "y" }} {{ "" | default "z" }} {{ .Map.zz | default "fb" }}',
        "x y z fb",
    ),
    ('{{ upper "abc" }} {{ lower "ABC" }} {{ title "hello wORLD foo-bar" }}', "ABC abc Hello WORLD Foo-Bar"),
    ('[{{ trim "  a b \\n" }}]', "[a b]"),
    ('{{ quote "a\\"b" 1 }} {{ squote "x" }}', '"a\\"b" "1" \'x\''),
    ('{{ replace "-" "_" "a-b-c" }} {{ "a.b" | replace "." "/" }}', "a_b_c a/b"),
    ('{{ contains "b" "abc" }} {{ hasPrefix "ab" "abc" }} {{ hasSuffix "ab" "abc" }}', "true true false"),
    ('{{ trimPrefix "aks-" "aks-spot" }} {{ trimSuffix ".json" "x.json" }}', "spot x"),
    (
        "{{ toJson .Map }} {{ toJson .List }} {{ toJson .Event }}",
        '{"a":1,"b":2} ["a","b","c"] {"EventId":"id-1","EventType":"Preempt","Resources":["vm_1"]}',
    ),
    ('{{ toJson "<a & \\"b\\">\\n" }}', '"\\u003ca \\u0026 \\"b\\"\\u003e\\n"'),
    ("{{ toJson .Ratio }} {{ toJson 3.0 }} {{ toJson .Nil }} {{ toJson .Flag }}", "2.5 3 null false"),
    # define / template / block
    ('{{ define "x" }}[{{ . }}]{{ end }}{{ template "x" .NodeName }}{{ template "x" 1 }}', "[node-1][1]"),
    ('{{ define "e" }}{{ $.EventId }}{{ end }}{{ template "e" .Event }}', "id-1"),
    ('{{ block "b" .NodeName }}<{{ . }}>{{ end }}', "<node-1>"),
]


@pytest.mark.parametrize(("text", "expected"), CONSTRUCTS, ids=[c[0][:40] for c in CONSTRUCTS])
def test_go_construct(text: str, expected: str) -> None:
    assert render(text) == expected


def test_plain_dict_data_behaves_as_a_map() -> None:
    assert render("{{ .a }}|{{ .missing }}", {"a": "x"}) == "x|"


def test_a_template_renders_the_same_twice_and_holds_no_state() -> None:
    template = compile_template("{{ $x := .NodeName }}{{ range .List }}{{ $x }}{{ end }}")
    assert template.render(DATA) == template.render(DATA) == "node-1node-1node-1"


# --- errors at compile time, with the user's line and column ---------------------------------------------

COMPILE_ERRORS = [
    ("{{ if .X }}abc", 1, 4, "unclosed {{if}}"),
    ("ok\n{{ range .L }}\n{{ with .A }}\n{{ end }}", 2, 4, "unclosed {{range}}"),
    ("a\n  {{ foo 1 }}", 2, 6, 'function "foo" not defined'),
    ("{{ .A | 3 }}", 1, 9, "non executable command in pipeline stage 2"),
    ('x {{ "abc }}', 1, 6, "unterminated quoted string"),
    ("{{ end }}", 1, 4, "unexpected {{end}}"),
    ("{{ else }}", 1, 4, "unexpected {{else}}"),
    ("{{ if 1 }}{{ else }}{{ else }}{{ end }}", 1, 24, "expected {{end}}"),
    ("{{ range . }}{{ else if 1 }}{{ end }}", 1, 22, "{{else if}} cannot follow {{range}}"),
    ("{{ range $a, $b, $c := . }}{{ end }}", 1, 16, "too many declarations in range"),
    ("{{ with $a, $b := . }}{{ end }}", 1, 11, "too many declarations in with"),
    ("{{ $x }}", 1, 4, 'undefined variable "$x"'),
    ("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}", 1, 39, 'undefined variable "$y"'),
    ("{{ $z = 1 }}", 1, 4, 'undefined variable "$z"'),
    ("{{ }}", 1, 4, "missing value for command"),
    ("{{ if }}{{ end }}", 1, 7, "missing value for if"),
    ("{{ .A | }}", 1, 9, "missing command after '|'"),
    ("{{ (.A }}", 1, 8, "unclosed left paren"),
    ("{{ .A) }}", 1, 6, "unexpected right paren"),
    ("{{/* x */ }}", 1, 10, "comment ends before closing delimiter"),
    ("line\n{{/* x", 2, 1, "unclosed comment"),
    ("a {{ .A", 1, 3, "unclosed action"),
    ("{{ break }}", 1, 4, "{{break}} outside {{range}}"),
    ("{{ nil }}", 1, 4, "nil is not a command"),
    ("{{ printf }}", 1, 4, "wrong number of args for printf: want at least 1 got 0"),
    ("{{ len 1 2 }}", 1, 4, "wrong number of args for len: want 1 got 2"),
    ('{{ "x" | len 1 }}', 1, 10, "wrong number of args for len: want 1 got 2"),
    ("{{ .A 1 }}", 1, 4, ".A has arguments but is a field"),
    ('{{ "a" | .A }}', 1, 10, "cannot pipe into .A"),
    ('{{ template "nope" }}', 1, 13, 'no such template "nope"'),
    ('{{ define "d" }}{{ end }}{{ define "d" }}{{ end }}', 1, 36, "defined twice"),
    ("{{ 1x }}", 1, 4, "bad number syntax"),
    ("{{ @ }}", 1, 4, "unexpected character '@'"),
    ('{{ "a""b" }}', 1, 7, "unexpected"),
    ('{{ "\\q" }}', 1, 5, "invalid escape sequence"),
    ("{{ 'ab' }}", 1, 4, "malformed character constant"),
    ("{{ 1.5.Field }}", 1, 4, "unexpected . after term 1.5"),
    ('{{ "s".Field }}', 1, 4, "unexpected . after term"),
    ("{{ .A-}}", 1, 6, "bad number syntax"),
    ('{{ define "x" }}{{ define "y" }}{{ end }}{{ end }}', 1, 20, "only allowed at the top level"),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"), COMPILE_ERRORS, ids=[c[0][:40] for c in COMPILE_ERRORS]
)
def test_compile_error_position(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(text, name="payload.json")
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    assert message in str(error)
    assert str(error).startswith(f"payload.json:{line}:{column}: ")


def test_template_error_is_a_config_error() -> None:
    # The CLI refuses ConfigErrors with exit code 2 at start-up.
    assert issubclass(TemplateError, ConfigError)


RENDER_ERRORS = [
    (
        "{{ .Nodename }}",
        1,
        4,
        "can't evaluate field Nodename in type TemplateData",
        "did you mean .NodeName?",
    ),
    ("ok\n  {{ .Event.Foo }}", 2, 6, "can't evaluate field Foo in type Event", "fields: EventId, EventType"),
    ("{{ .NodeName.X }}", 1, 4, "can't evaluate field X in type string", ""),
    ("{{ .Nil.X }}", 1, 4, "nil pointer evaluating .Nil.X", ""),
    ("{{ index .List 5 }}", 1, 4, "error calling index: index out of range: 5", ""),
    ("{{ upper .Map.zz }}", 1, 4, "error calling upper: invalid value; expected string", ""),
    ("{{ upper 1 }}", 1, 4, "expected string; got int", ""),
    ("{{ range .NodeName }}{{ end }}", 1, 4, "range can't iterate over node-1", ""),
    ('{{ lt 1 "a" }}', 1, 4, "incompatible types for comparison", ""),
    ('{{ eq 1 "a" }}', 1, 4, "incompatible types for comparison", ""),
    ("{{ eq .List .List }}", 1, 4, "non-comparable types", ""),
    ("{{ len .Nil }}", 1, 4, "len of untyped nil", ""),
    ("{{ slice .List 2 1 }}", 1, 4, "invalid slice index: 2 > 1", ""),
    ("{{ range $i, $v := 3 }}{{ end }}", 1, 4, "can't use 3 to iterate over more than one variable", ""),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "message", "hint"), RENDER_ERRORS, ids=[c[0][:40] for c in RENDER_ERRORS]
)
def test_render_error_position(text: str, line: int, column: int, message: str, hint: str) -> None:
    template = compile_template(text, name="t")
    with pytest.raises(TemplateError) as caught:
        template.render(DATA)
    assert (caught.value.line, caught.value.column) == (line, column), str(caught.value)
    assert message in str(caught.value)
    assert hint in str(caught.value)


def test_start_up_check_catches_a_misspelt_field_before_any_event() -> None:
    with pytest.raises(TemplateError, match=r"^slack.json:1:14: can't evaluate field Nodename"):
        compile_checked_template('{"text": "{{ .Nodename }}"}', name="slack.json")


def test_start_up_check_renders_the_drained_phase_too() -> None:
    text = '{{ if eq .Phase "drained" }}{{ .DrainResult.Nope }}{{ end }}'
    with pytest.raises(TemplateError, match=r"can't evaluate field Nope in type template\.DrainResult"):
        compile_checked_template(text)


# --- sandbox ----------------------------------------------------------------------------------------------


class _Spy:
    """A Python object that fails the test if the engine reads any attribute it does not have."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the engine read attribute {name!r}")


@pytest.mark.parametrize(
    "text",
    [
        "{{ .__class__ }}",
        "{{ .NodeName.__class__ }}",
        "{{ .Event.__init__ }}",
        '{{ index . "__class__" }}',
        "{{ .Spy.secret }}",
        "{{ .Spy }}",
        "{{ range .Spy }}{{ end }}",
        "{{ if .Spy }}{{ end }}",
    ],
)
def test_templates_cannot_reach_python_objects(text: str) -> None:
    data = DATA.replace({"Spy": _Spy()})
    with pytest.raises(TemplateError):
        compile_template(text).render(data)


def test_no_function_reaches_outside_the_table() -> None:
    for name in ("exec", "env", "readFile", "getattr", "call", "now"):
        with pytest.raises(TemplateError, match="not defined"):
            compile_template(f"{{{{ {name} }}}}")


SMALL = TemplateLimits(
    max_output_chars=100, max_work_chars=1000, max_range_iterations=50, max_template_depth=5
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ range 200 }}xx{{ end }}", "more than 50 iterations"),
        ("{{ range 40 }}xxxxx{{ end }}", "output is longer than 100 characters"),
        ('{{ printf "%101s" "" }}', "longer than 100 characters"),
        # Go: a width that long ends the format
        ('{{ printf "%99999999s" "" }}', "%!(NOVERB)%!(EXTRA string=)"),
        ('{{ $s := "abcdefghij" }}{{ replace "" $s $s }}', "longer than 100 characters"),
        (
            '{{ $s := "x" }}{{ range 40 }}{{ $s = printf "%s%s" $s $s }}{{ end }}',
            "longer than 100 characters",
        ),
        ('{{ range 30 }}{{ $s := printf "%90s" "" }}{{ end }}', "builds more than 1000 characters"),
        ('{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}', "maximum template depth (5)"),
        ("{{ " + "(" * 150 + "1" + ")" * 150 + " }}", "nests too deeply"),
    ],
)
def test_limits(text: str, message: str) -> None:
    try:
        output = compile_template(text, limits=SMALL).render(DATA)
    except TemplateError as exc:
        assert message in str(exc)
    else:
        assert message in output


def test_default_limits_allow_realistic_payloads() -> None:
    data = DATA.replace({"Pods": [f"pod-{i}" for i in range(110)]})
    output = render('{{ range .Pods }}{{ printf "%-40s" . }}{{ end }}', data)
    assert len(output) == 110 * 40


# --- the example payloads shipped with the project -------------------------------------------------------

PAYLOAD_EXAMPLES = [
    "slack-webhook.json",
    "slack-blockkit.json",
    "teams-adaptive-card.json",
    "prometheus-pushgateway.txt",
    "generic-webhook.json",
]


@pytest.mark.parametrize("phase", ["event", "drained"])
@pytest.mark.parametrize("name", PAYLOAD_EXAMPLES)
def test_example_payload_renders(name: str, phase: str) -> None:
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    template = compile_checked_template(text, name=name)
    output = template.render(sample_template_data(phase=phase))
    assert "<no value>" not in output
    if name.endswith(".json"):
        assert "aks-spot-12345678-vmss000003" in json.dumps(json.loads(output))
        return
    families = {f.name: f for f in text_string_to_metric_families(output)}
    (sample,) = families["node_termination_event"].samples
    assert sample.labels == {
        "node": "aks-spot-12345678-vmss000003",
        "type": "Preempt",
        "zone": "westeurope-2",
        "phase": phase,
    }
    assert output.endswith("\n")  # the Pushgateway wants a final newline
    assert ("node_termination_drain_evicted_pods" in families) == (phase == "drained")


def test_generic_webhook_example_escapes_values_as_json() -> None:
    text = (EXAMPLES / "generic-webhook.json").read_text(encoding="utf-8")
    awkward = 'a "quoted" \\ value\nwith <html> & a tab\t'
    data = sample_template_data(phase="drained").replace({"NodeName": awkward})
    document = json.loads(compile_template(text).render(data))
    assert awkward in _leaves(document)


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


# --- any text: output or a TemplateError, nothing else ----------------------------------------------------

_ATOMS = [
    "{{", "}}", "{{- ", " -}}", "/*", "*/", " ", "\n", ".", ".NodeName", ".Event", ".EventType", "$", "$x",
    ":=", "=", "|", "(", ")", ",", '"a"', "`r`", "'c'", "1", "-1", "0x", "1e", "1.5", "if", "else", "end",
    "range", "with", "define", "template", "block", "break", "continue", "nil", "true", "printf",
    '"%d%s%v%q%x%5.2f%*d"', "index", "slice", "len", "and", "or", "not", "eq", "lt", "join", "toJson",
    "default", "replace", '""', ".NodePods", ".NodeLabels", "\\", '"\\x', "é", "{", "}", "-", "%",
]  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_ATOMS), max_size=30).map("".join))
def test_any_text_renders_or_raises_template_error(text: str) -> None:
    with contextlib.suppress(TemplateError):
        compile_template(text).render(sample_template_data())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ len.Event }}", "wrong number of args for len: want 1 got 0"),  # func.Field calls func with none
        ('{{ "\\x-1" }}', "invalid escape sequence"),
        ('{{ "\\u12" }}', "invalid escape sequence"),
    ],
)
def test_found_by_fuzzing(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        compile_template(text)
