"""Payload templates as a Go-version user wrote them render to the Go version's output.

The Go version executed every payload with ``html/template`` on a ``*template.MessageType``. Each
expected value here is what that code printed for the same template and the same data (the sample
data of ``render-template``: a Preempt on an AKS Spot node), recorded once from Go's own
``html/template``/``fmt`` and written down; nothing here needs Go to run. The one documented
difference is HTML escaping (the Go version turned ``"`` into ``&#34;`` even in JSON bodies): expected
values with HTML escaping are given with it undone.

``data/go_printf.json`` holds the same for ``printf`` with every verb and flag Go documents.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aksnth.errors import TemplateError
from aksnth.notify.payload import compile_checked_template, sample_template_data
from aksnth.notify.template import compile_template

REFERENCE = json.loads((Path(__file__).parent / "data" / "go_printf.json").read_text(encoding="utf-8"))


def render(text: str, *, event_type: str = "Preempt") -> str:
    """Render as the handler does: ``.Template`` is the template's own text."""
    data = sample_template_data(event_type=event_type, template=text)
    return compile_template(text, name="message").render(data)


# --- the Go project's README and docs, verbatim --------------------------------------------------------

SEED_README = [
    pytest.param(
        '{\n  "channel": "#mychannel",\n  "username": "webhookbot",\n'
        '  "text": "This is message for {{ .NodeName }}, {{ .InstanceType }} from {{ .NodeRegion }}",\n'
        '  "icon_emoji": ":ghost:"\n}\n',
        '{\n  "channel": "#mychannel",\n  "username": "webhookbot",\n'
        '  "text": "This is message for aks-spot-12345678-vmss000003, Standard_D4s_v5 from westeurope",\n'
        '  "icon_emoji": ":ghost:"\n}\n',
        id="slack-payload.json",
    ),
    pytest.param(
        'node_termination_event{node="{{ .NodeName }}"} 1\n',
        'node_termination_event{node="aks-spot-12345678-vmss000003"} 1\n',
        id="prometheus-pushgateway-payload.txt",
    ),
    pytest.param(
        "This is message for {{ .NodeName }}, {{ .InstanceType }} from {{ .NodeRegion }}",
        "This is message for aks-spot-12345678-vmss000003, Standard_D4s_v5 from westeurope",
        id="proxy payload.json",
    ),
    pytest.param(
        "Draining node={{ .NodeName }}, type={{ .Event.EventType }}",
        "Draining node=aks-spot-12345678-vmss000003, type=Preempt",
        id="default -alert.message",
    ),
    pytest.param(  # the Go project's own template test
        "test {{ .Event.EventId }} {{ .Event.EventType }} {{ .NodePods}}",
        "test 5DD55B64-45AD-49D3-BBC9-F57D4EA97BD7 Preempt "
        "[cart-redis-0 checkout-7d4b9c6f5-x2x8q checkout-7d4b9c6f5-zq9lm image-resizer-5f7c8d9b4-k7tpl]",
        id="pkg/template test",
    ),
]


@pytest.mark.parametrize(("template", "expected"), SEED_README)
def test_seed_readme_templates_render_as_the_go_version_rendered_them(template: str, expected: str) -> None:
    """The payloads of the Go project's README give its output byte for byte (no escaping involved)."""
    assert render(template) == expected
    compile_checked_template(template)  # and pass the start-up check


# Every marker of the Go project's pkg/template/README.md, with the Go version's output.
MARKERS = {
    "{{ .Event.EventId }}": "5DD55B64-45AD-49D3-BBC9-F57D4EA97BD7",
    "{{ .Event.EventType }}": "Preempt",
    "{{ .Event.ResourceType }}": "VirtualMachine",
    "{{ .Event.Resources }}": "[aks-spot-12345678-vmss_3]",
    "{{ .Event.EventStatus }}": "Scheduled",
    "{{ .Event.NotBefore }}": "Tue, 03 Jun 2025 09:41:30 GMT",
    "{{ .Event.Description }}": "",
    "{{ .Event.EventSource }}": "Platform",
    "{{ .Event.DurationInSeconds }}": "-1",
    "{{ .NodeLabels }}": (
        "map[agentpool:spot beta.kubernetes.io/arch:amd64 beta.kubernetes.io/instance-type:Standard_D4s_v5 "
        "beta.kubernetes.io/os:linux failure-domain.beta.kubernetes.io/region:westeurope "
        "failure-domain.beta.kubernetes.io/zone:westeurope-2 kubernetes.azure.com/agentpool:spot "
        "kubernetes.azure.com/cluster:MC_rg-aks_aks_westeurope kubernetes.azure.com/mode:user "
        "kubernetes.azure.com/os-sku:Ubuntu kubernetes.azure.com/role:agent "
        "kubernetes.azure.com/scalesetpriority:spot kubernetes.io/arch:amd64 "
        "kubernetes.io/hostname:aks-spot-12345678-vmss000003 kubernetes.io/os:linux kubernetes.io/role:agent "
        "node-role.kubernetes.io/agent: node.kubernetes.io/instance-type:Standard_D4s_v5 "
        "topology.kubernetes.io/region:westeurope topology.kubernetes.io/zone:westeurope-2]"
    ),
    "{{ .NodeName }}": "aks-spot-12345678-vmss000003",
    "{{ .ClusterName }}": "MC_rg-aks_aks_westeurope",
    "{{ .InstanceType }}": "Standard_D4s_v5",
    "{{ .NodeArch }}": "amd64",
    "{{ .NodeOS }}": "linux",
    "{{ .NodeRole }}": "agent",
    "{{ .NodeRegion }}": "westeurope",
    "{{ .NodeZone }}": "westeurope-2",
    # Row 1 of the migration table: DaemonSet pods are not listed (the sample node runs two).
    "{{ .NodePods }}": (
        "[cart-redis-0 checkout-7d4b9c6f5-x2x8q checkout-7d4b9c6f5-zq9lm image-resizer-5f7c8d9b4-k7tpl]"
    ),
}


@pytest.mark.parametrize(("template", "expected"), MARKERS.items(), ids=list(MARKERS))
def test_every_documented_marker_prints_as_in_the_go_version(template: str, expected: str) -> None:
    assert render(template) == expected


def test_markers_of_other_event_types_print_as_in_the_go_version() -> None:
    """The same for a Reboot (a user-initiated event, with a description) and a Freeze."""
    text = (
        "{{ .Event.EventType }}|{{ .Event.Description }}|{{ .Event.EventSource }}"
        "|{{ .Event.DurationInSeconds }}"
    )
    assert render(text, event_type="Reboot") == (
        "Reboot|Virtual machine is going to be restarted as requested by authorized user.|User|-1"
    )
    assert render(text, event_type="Freeze") == "Freeze|Host server is undergoing maintenance.|Platform|9"


# --- row 2: a missing map key --------------------------------------------------------------------------

MISSING_KEY = [
    ("{{ .NodeLabels.missing }}", ""),
    ('"zone": "{{ .NodeLabels.missing }}"', '"zone": ""'),  # inside text
    ("x{{ .NodeLabels.missing }}y", "xy"),
    ("{{ .NodeLabels.missing.deeper }}", ""),
    ("{{ $x := .NodeLabels.missing }}[{{ $x }}]", "[]"),
    ("{{ with .NodeLabels.missing }}yes{{ else }}no{{ end }}", "no"),
    ('{{ index .NodeLabels "missing" }}|{{ .NodeLabels.agentpool }}', "|spot"),
    ('{{ printf "%s" .NodeLabels.missing }}', "%!s(<nil>)"),  # as an argument it is nil
    ("{{ print .NodeLabels.missing }}", "<nil>"),
]


@pytest.mark.parametrize(("template", "expected"), MISSING_KEY)
def test_a_missing_map_key_prints_as_the_go_versions_html_template_printed_it(
    template: str, expected: str
) -> None:
    """Nothing, not text/template's ``<no value>``: html/template drops an untyped nil."""
    assert render(template) == expected


# --- row 3: printf -------------------------------------------------------------------------------------

ISSUE_PRINTF = [
    ('{{ printf "%+v" 5 }}', "5"),  # + on %v means field names, not a sign
    ('{{ printf "%08.3f" 3.14159 }}', "0003.142"),
    (
        '{{ printf "%#v" .NodePods }}',
        '[]string{"cart-redis-0", "checkout-7d4b9c6f5-x2x8q", '
        '"checkout-7d4b9c6f5-zq9lm", "image-resizer-5f7c8d9b4-k7tpl"}',
    ),
    (
        '{{ printf "%#v" .Event }}',
        'types.ScheduledEventsEvent{EventId:"5DD55B64-45AD-49D3-BBC9-F57D4EA97BD7", EventType:"Preempt", '
        'ResourceType:"VirtualMachine", Resources:[]string{"aks-spot-12345678-vmss_3"}, '
        'EventStatus:"Scheduled", NotBefore:"Tue, 03 Jun 2025 09:41:30 GMT", Description:"", '
        'EventSource:"Platform", DurationInSeconds:-1}',
    ),
    ('{{ printf "%+q" "héllo" }}', '"h\\u00e9llo"'),
    ('{{ printf "%#q" "ab" }}', "`ab`"),
    ('{{ printf "%[2]d %[1]d" 1 2 }}', "2 1"),  # argument indexes
    ('{{ printf "%[2]d" 1 }}', "%!d(BADINDEX)"),
    (
        '{{ printf "%T %T %T" . .Event.EventType .NodeLabels }}',
        "*template.MessageType types.ScheduledEventsEventType map[string]string",
    ),
]


@pytest.mark.parametrize(("template", "expected"), ISSUE_PRINTF)
def test_printf_forms_named_in_the_migration_table_give_go_output(template: str, expected: str) -> None:
    assert render(template) == expected


@pytest.mark.parametrize("fmt", list(REFERENCE["formats"]))
def test_printf_gives_go_output_for_every_verb_and_flag(fmt: str) -> None:
    """One format (``%+08.3d`` …) applied to ints, floats, strings, a bool, a ``[]string``, a named
    string type and nil, compared with Go's output for each."""
    got = [render(f'{{{{ printf "{fmt}" {arg} }}}}') for arg in REFERENCE["arguments"]]
    assert got == REFERENCE["formats"][fmt]


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=[c["template"][:60] for c in REFERENCE["cases"]])
def test_go_reference_cases_give_go_output(case: dict[str, str]) -> None:
    """Argument indexes, ``*`` widths, bad and missing arguments, rounding, hex floats, runes, ``print``,
    and how ``{{ }}`` prints lists, maps, structs and nil, compared with Go's output."""
    assert render(case["template"]) == case["expected"]


# (template, what the Go version sent, recorded like the others, what we send): they differ by the Go
# version's HTML escaping alone.
HTML_ESCAPING = [
    (
        '{"text": {{ printf "%q" .NodeName }}}',
        '{"text": &#34;aks-spot-12345678-vmss000003&#34;}',
        '{"text": "aks-spot-12345678-vmss000003"}',
    ),
    (
        '{"text": "<https://example.com|{{ .NodeName }}> in {{ .NodeRegion }}"}',
        '{"text": "<https://example.com|ZgotmplZ> in westeurope"}',
        '{"text": "<https://example.com|aks-spot-12345678-vmss000003> in westeurope"}',
    ),
    (
        "<!-- a note -->{{ .NodeName }}",
        "aks-spot-12345678-vmss000003",
        "<!-- a note -->aks-spot-12345678-vmss000003",
    ),
]


@pytest.mark.parametrize(("template", "go_version_sent", "expected"), HTML_ESCAPING)
def test_html_escaping_is_the_documented_difference_and_ours_sends_the_text_as_written(
    template: str, go_version_sent: str, expected: str
) -> None:
    """Quotes escaped as ``&#34;``, a value after a ``<`` in the text filtered to ``ZgotmplZ``, HTML
    comments dropped by the Go version; ours sends text and values as written (README, "Moving")."""
    assert render(template) == expected != go_version_sent


def test_the_one_unsupported_verb_is_a_template_error_naming_it() -> None:
    """``%p`` prints a memory address of the Go process; refusing it at start-up beats printing a
    fake one."""
    with pytest.raises(TemplateError, match=r"%p prints a memory address.*not supported"):
        compile_checked_template('{{ printf "%p" .NodePods }}', name="payload.json")
