"""``aks-node-termination-handler render-template``: render payload templates and print the result.

Uses the same engine and the same sample data as the start-up check, so what renders here renders in
the DaemonSet. Two ways to say what to render:

* one template: ``--template TEXT``, ``--template-file PATH`` or ``FILE``; printed as rendered;
* the handler's own flags, as they stand in the chart's ``args`` (``-webhook.template-file=…``,
  ``-webhook.template=…``, ``-alert.message=…``, ``-config=…``; every other handler flag is accepted
  and ignored), and/or ``--values values.yaml`` (its ``args`` and the files of ``configMap.data``):
  every payload the DaemonSet would send, one per sink and phase, exactly as sent (a webhook body
  with the newline the handler appends).

``--data FILE.json`` overrides parts of the sample (same field names as the template);
``--check-json`` also verifies that the payload (each JSON webhook's, with the handler's flags) is
valid JSON and says where it is not. Flags use Go's syntax, like the handler's (``-phase drained``,
``--phase=drained``).

Exit codes: 0 rendered; 1 rendered, but not valid JSON (``--check-json``); 2 bad usage, unreadable
file or template error (printed as ``name:line:col: message``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

from aksnth.commands.render_template_sinks import PreviewSink, ReadFile, plan_from_flags
from aksnth.configfile import read_text_file
from aksnth.errors import ConfigError, TemplateError
from aksnth.flags import HelpRequested, Kind, Option, OptionValue, parse_flags
from aksnth.model import EventType
from aksnth.notify.payload import PHASE_DRAINED, PHASE_EVENT, PHASES, label_fields, sample_template_data
from aksnth.notify.telegram import shorten
from aksnth.notify.template import Record, TypedMap, compile_template
from aksnth.notify.webhook import wire_body
from aksnth.options import OPTIONS

PROG = "aks-node-termination-handler render-template"
_EVENT_TYPES = tuple(t.value for t in EventType if t is not EventType.UNKNOWN)
_OWN = "render-template"
OWN_OPTIONS: Final = (
    Option(name="template", kind=Kind.STRING, default="", group=_OWN, usage="the template text"),
    Option(name="template-file", kind=Kind.STRING, default="", group=_OWN, usage="the template file"),
    Option(name="values", kind=Kind.STRING, default="", group=_OWN, usage="a Helm values file"),
    Option(name="data", kind=Kind.STRING, default="", group=_OWN, usage="JSON overriding the sample"),
    Option(name="event-type", kind=Kind.STRING, default="Preempt", group=_OWN, usage="sample event type"),
    Option(name="phase", kind=Kind.STRING, default="", group=_OWN, usage="event or drained"),
    Option(name="check-json", kind=Kind.BOOL, default=False, group=_OWN, usage="check JSON"),
)
_OWN_NAMES = frozenset(option.name for option in OWN_OPTIONS)
_ALL_OPTIONS = (*OWN_OPTIONS, *OPTIONS)
_DEFAULT_MOUNT_PATH = "/files"  # the chart's configMap.mountPath

USAGE = f"""\
Usage: {PROG} [FILE | --template TEXT | --template-file PATH] [flags]
       {PROG} [--values values.yaml] [handler flags, e.g. -webhook.template-file=/files/x.json] [flags]

Render notification payloads with sample data (a Preempt on an AKS Spot node) and print them.

One template:
  FILE, --template-file PATH   the template file (as mounted from the chart's configMap.data)
  --template TEXT              the template text (as given to -webhook.template or -alert.message)

Or what the DaemonSet would send, one payload per sink and phase, as sent:
  handler flags                the chart's args, pasted: -webhook.template-file=…, -webhook.template=…,
                               -webhook.contentType=…, -webhook.method=…, -alert.message=…, -config=…,
                               -notify.drainFinished; -webhook.url, -telegram.* and every other flag
                               of the handler are accepted and ignored (nothing is sent)
  --values values.yaml         a Helm values file: its args, and the files of configMap.data where
                               the pod sees them (configMap.mountPath, /files by default); flags on
                               the command line come after its args

Flags:
  --data FILE.json             a JSON object whose fields override the sample data
  --event-type TYPE            sample event type: {", ".join(_EVENT_TYPES)} (default Preempt)
  --phase event|drained        only this phase (default: event, and drained with -notify.drainFinished)
  --check-json                 also check that the output (each JSON webhook's) is valid JSON

Flags use Go's syntax, as the handler's: -name=value, -name value, --name=value.

Exit codes: 0 rendered; 1 rendered, but not valid JSON (--check-json); 2 bad usage, unreadable file
or template error.

examples:
  {PROG} examples/slack-webhook.json --check-json
  {PROG} --template 'Draining node={{{{ .NodeName }}}}, type={{{{ .Event.EventType }}}}'
  {PROG} --template-file payload.json --event-type Reboot --phase drained
  {PROG} --values values.yaml --check-json
  {PROG} -webhook.url=https://hooks.slack.com/services/T0/B0/X -webhook.template-file=slack.json \\
      -telegram.chatID=-100123 -notify.drainFinished
"""


class _UsageError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Request:
    """What was asked for, after parsing."""

    own: dict[str, OptionValue]  # render-template's flags that were given
    handler: dict[str, OptionValue]  # the handler's flags: the values file's args, then the command line
    file: str | None  # FILE
    files: Mapping[str, str]  # path in the pod -> text, from the values file's configMap.data
    enabled: frozenset[str]  # handler options a values file sets through the chart's Secret


def _parse(argv: Sequence[str]) -> _Request:
    given: dict[str, OptionValue] = {}
    file: str | None = None
    rest = list(argv)
    while rest:  # Go's flag parsing stops at the first argument; FILE may come before more flags
        try:
            parsed = parse_flags(rest, _ALL_OPTIONS)
        except ConfigError as exc:
            raise _UsageError(str(exc)) from None
        given.update(parsed.values)
        if not parsed.positional:
            break
        if file is not None:
            raise _UsageError(f"one template file at a time: {file!r} and {parsed.positional[0]!r}")
        file, rest = parsed.positional[0], list(parsed.positional[1:])
    own = {name: value for name, value in given.items() if name in _OWN_NAMES}
    handler = {name: value for name, value in given.items() if name not in _OWN_NAMES}
    files: dict[str, str] = {}
    enabled: frozenset[str] = frozenset()
    values_path = own.get("values")
    if isinstance(values_path, str) and values_path:
        args, files, enabled = _values_file(values_path)
        try:
            from_values = parse_flags(args, OPTIONS)
        except ConfigError as exc:
            raise _UsageError(f"{values_path}: args: {exc}") from None
        if from_values.positional:
            raise _UsageError(f"{values_path}: args: unexpected argument {from_values.positional[0]!r}")
        handler = {**from_values.values, **handler}
    phase = own.get("phase", "")
    if phase and phase not in PHASES:
        raise _UsageError(f"invalid value {phase!r} for flag -phase: use {' or '.join(PHASES)}")
    return _Request(own=own, handler=handler, file=file, files=files, enabled=enabled)


def _read_document(path: str, what: str, parse: Callable[[str], Any]) -> Any:
    """The YAML or JSON document in the file at ``path``; a usage error that says where it is wrong."""
    try:
        return parse(read_text_file(path, what=what))
    except ConfigError as exc:
        raise _UsageError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise _UsageError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    except yaml.YAMLError as exc:
        raise _UsageError(f"{what} {path!r} is not valid YAML: {exc}") from None


def _values_file(path: str) -> tuple[list[str], dict[str, str], frozenset[str]]:
    """The chart's ``args``, its ``configMap.data`` as the pod sees the files, and the sinks its
    ``secrets`` turn on."""
    document = _read_document(path, "values file", yaml.safe_load) or {}
    if not isinstance(document, dict):
        raise _UsageError(f"values file {path!r} must be a mapping")
    args = document.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _UsageError(f"{path}: args must be a list of strings, one flag each")
    config_map = document.get("configMap") or {}
    mount = str(config_map.get("mountPath") or _DEFAULT_MOUNT_PATH).rstrip("/")
    data = config_map.get("data") or {}
    if not isinstance(data, dict):
        raise _UsageError(f"{path}: configMap.data must map file names to their text")
    files = {f"{mount}/{name}": str(text) for name, text in data.items()}
    secrets = document.get("secrets") or {}
    enabled = set()
    if isinstance(secrets, dict):
        if secrets.get("webhookURL"):
            enabled.add("webhook.url")
        if secrets.get("telegramToken"):
            enabled.add("telegram.token")
    return list(args), files, frozenset(enabled)


def _reader(files: Mapping[str, str]) -> ReadFile:
    """Files as the pod sees them: from the values file's configMap.data, else from this machine."""

    def read(path: str, what: str) -> str:
        if path in files:
            return files[path]
        try:
            return read_text_file(path, what=what)
        except ConfigError as exc:
            hint = ""
            if os.path.isabs(path) and not os.path.exists(path):
                hint = (
                    " (in the pod it comes from the chart's configMap.data: give the values file with"
                    " --values, or the file's local path)"
                )
            raise _UsageError(f"{exc}{hint}") from None

    return read


# --- the sample data ---------------------------------------------------------------------------------


def _from_json(value: object) -> object:
    """JSON values as template values: objects are maps, arrays lists."""
    if isinstance(value, dict):
        return {str(k): _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _merge(base: object, override: object) -> object:
    """The sample with the user's values laid over it; records stay records, so typos still fail."""
    if isinstance(base, Record) and isinstance(override, dict):
        changes = {k: _merge(base[k], v) if k in base else _from_json(v) for k, v in override.items()}
        return base.replace(changes)
    if isinstance(base, TypedMap) and isinstance(override, dict):
        return TypedMap({str(k): _from_json(v) for k, v in override.items()}, zero=base.zero)
    return _from_json(override)


def _data(own: Mapping[str, OptionValue], phase: str) -> Record:
    wanted = str(own.get("event-type", "Preempt"))
    event_type = next((t for t in _EVENT_TYPES if t.lower() == wanted.lower()), wanted)
    sample = sample_template_data(event_type=event_type, phase=phase)
    data_path = own.get("data")
    if not data_path:
        return sample
    assert isinstance(data_path, str)
    given = _read_document(data_path, "data file", json.loads)
    if not isinstance(given, dict):
        raise _UsageError(
            f"{data_path}: must hold a JSON object (the template's fields), not {type(given).__name__}"
        )
    merged = _merge(sample, given)
    assert isinstance(merged, Record)
    labels = given.get("NodeLabels")
    if isinstance(labels, dict):  # keep .ClusterName etc. consistent with the labels given
        derived = label_fields({str(k): str(v) for k, v in labels.items()})
        merged = merged.replace({k: v for k, v in derived.items() if k not in given})
    return merged


def _render(text: str, name: str, data: Record) -> str:
    """``.Template`` is the template's own text, as in the Go original (unless --data set it)."""
    if not data.get("Template"):
        data = data.replace({"Template": text})
    return compile_template(text, name=name).render(data)


def json_problem(text: str) -> str | None:
    """Why ``text`` is not valid JSON, with the line and column of the output and the line itself."""

    def reject_constant(name: str) -> object:
        raise ValueError(f"{name} is not valid JSON")

    try:
        json.loads(text, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        line = text.splitlines()[exc.lineno - 1] if text.splitlines() else ""
        caret = " " * (exc.colno - 1) + "^"
        return f"line {exc.lineno} column {exc.colno}: {exc.msg}\n  {line}\n  {caret}"
    except ValueError as exc:
        return str(exc)
    return None


# --- the two modes -----------------------------------------------------------------------------------


def _one_template(request: _Request) -> int:
    text_flag = request.own.get("template")
    path_flag = request.own.get("template-file")
    if text_flag is not None and (path_flag is not None or request.file is not None):
        raise _UsageError("give the template either as --template TEXT or as a file, not both")
    if path_flag is not None and request.file is not None:
        raise _UsageError("give one template file, not two")
    if text_flag is not None:
        assert isinstance(text_flag, str)
        text, name = text_flag, "template"
    else:
        path = str(path_flag if path_flag is not None else request.file)
        text, name = _reader({})(path, "template file"), path
    phase = str(request.own.get("phase") or PHASE_EVENT)
    output = _render(text, name, _data(request.own, phase))
    sys.stdout.write(output)
    if not output.endswith("\n") and sys.stdout.isatty():
        sys.stdout.write("\n")
    if request.own.get("check-json"):
        problem = json_problem(output)
        if problem is not None:
            sys.stderr.write(f"{name}: the rendered payload is not valid JSON: {problem}\n")
            return 1
    return 0


def _as_sent(sink: PreviewSink, rendered: str) -> str:
    return wire_body(rendered) if sink.kind == "webhook" else shorten(rendered)


def _header(sink: PreviewSink, phase: str) -> str:
    how = f": {sink.method}, Content-Type {sink.content_type}" if sink.kind == "webhook" else ""
    return f"==> {sink.kind} ({sink.origin}), phase {phase}{how} <=="


def _handler_flags(request: _Request) -> int:
    try:
        plan = plan_from_flags(request.handler, read=_reader(request.files), enabled=request.enabled)
    except ConfigError as exc:
        raise _UsageError(str(exc)) from None
    if not plan.sinks:
        raise _UsageError(
            "these flags configure no notification: give -webhook.template-file, -webhook.template, "
            "-webhook.url, -telegram.chatID or -alert.message (or a template with --template)"
        )
    chosen = request.own.get("phase")
    phases = [str(chosen)] if chosen else [PHASE_EVENT, *([PHASE_DRAINED] if plan.drain_finished else [])]
    outputs: list[tuple[PreviewSink, str, str]] = []
    for sink in plan.sinks:
        for phase in phases:
            rendered = _render(sink.template, sink.template_name, _data(request.own, phase))
            outputs.append((sink, phase, _as_sent(sink, rendered)))
    several = len(outputs) > 1
    status = 0
    for index, (sink, phase, body) in enumerate(outputs):
        if several:
            sys.stdout.write(("\n" if index else "") + _header(sink, phase) + "\n")
        sys.stdout.write(body)
        if several and not body.endswith("\n"):
            sys.stdout.write("\n")
        is_json = sink.kind == "webhook" and "json" in sink.content_type.lower()
        if request.own.get("check-json") and is_json:
            problem = json_problem(body)
            if problem is not None:
                where = f"{sink.kind} ({sink.origin}), phase {phase}"
                sys.stderr.write(f"{where}: the payload is not valid JSON: {problem}\n")
                status = 1
    sys.stdout.flush()
    return status


def main(argv: list[str]) -> int:
    try:
        request = _parse(argv)
        own_template = any(k in request.own for k in ("template", "template-file")) or request.file
        from_handler = bool(request.handler) or "values" in request.own
        if own_template and from_handler:
            raise _UsageError(
                "give one template (--template, --template-file or FILE) or the handler's flags "
                "(and --values), not both"
            )
        if not own_template and not from_handler:
            raise _UsageError(
                "no template: give --template TEXT, --template-file PATH or a file, or the handler's "
                "notification flags (e.g. -webhook.template-file=…) or --values values.yaml"
            )
        return _one_template(request) if own_template else _handler_flags(request)
    except HelpRequested:
        sys.stdout.write(USAGE)
        return 0
    except _UsageError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
    except TemplateError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
