"""``aks-node-termination-handler render-template``: render a payload template and print the result.

Uses the same engine and the same sample data as the start-up check, so what renders here renders in
the DaemonSet. ``--data FILE.json`` overrides parts of the sample (same field names as the template);
``--check-json`` also verifies that the payload is valid JSON and says where it is not.

Exit codes: 0 rendered; 1 rendered, but not valid JSON (``--check-json``); 2 bad usage, unreadable
file or template error (printed as ``name:line:col: message``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from aksnth.errors import TemplateError
from aksnth.model import EventType
from aksnth.notify.payload import PHASES, label_fields, sample_template_data
from aksnth.notify.template import Record, TypedMap, compile_template

PROG = "aks-node-termination-handler render-template"
EXAMPLES = f"""\
examples:
  {PROG} examples/slack-webhook.json --check-json
  {PROG} --template 'Draining node={{{{ .NodeName }}}}, type={{{{ .Event.EventType }}}}'
  {PROG} --template-file payload.json --event-type Reboot --phase drained
  {PROG} payload.json --data my-node.json     # my-node.json: {{"NodeName": "aks-x-1", "NodeLabels": {{...}}}}
"""
_EVENT_TYPES = tuple(t.value for t in EventType if t is not EventType.UNKNOWN)


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _arguments() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Render a notification payload template with sample data and print it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--template", "-template", metavar="TEXT", help="the template text")
    source.add_argument(
        "--template-file", "-template-file", metavar="PATH", help="read the template from a file"
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help="same as --template-file")
    parser.add_argument(
        "--data", "-data", metavar="FILE.json", help="JSON object whose fields override the sample data"
    )
    parser.add_argument(
        "--event-type",
        "-event-type",
        default="Preempt",
        metavar="TYPE",
        help=f"sample event type: {', '.join(_EVENT_TYPES)} (default Preempt)",
    )
    parser.add_argument(
        "--phase", "-phase", default="event", choices=PHASES, help="event (seen) or drained (default event)"
    )
    parser.add_argument(
        "--check-json", "-check-json", action="store_true", help="also verify that the output is valid JSON"
    )
    return parser


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _UsageError(f"cannot read {path}: {exc}") from exc


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


def _data(args: argparse.Namespace) -> Record:
    event_type = next((t for t in _EVENT_TYPES if t.lower() == args.event_type.lower()), args.event_type)
    sample = sample_template_data(event_type=event_type, phase=args.phase)
    if args.data is None:
        return sample
    try:
        given = json.loads(_read(args.data))
    except json.JSONDecodeError as exc:
        raise _UsageError(f"{args.data}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(given, dict):
        raise _UsageError(
            f"{args.data}: must hold a JSON object (the template's fields), not {type(given).__name__}"
        )
    merged = _merge(sample, given)
    assert isinstance(merged, Record)
    labels = given.get("NodeLabels")
    if isinstance(labels, dict):  # keep .ClusterName etc. consistent with the labels given
        derived = label_fields({str(k): str(v) for k, v in labels.items()})
        merged = merged.replace({k: v for k, v in derived.items() if k not in given})
    return merged


def _template_source(args: argparse.Namespace) -> tuple[str, str]:
    if args.template is not None and args.file is not None:
        raise _UsageError("give the template either as --template TEXT or as a file, not both")
    if args.template_file is not None and args.file is not None:
        raise _UsageError("give one template file, not two")
    if args.template is not None:
        return args.template, "template"
    path = args.template_file or args.file
    if path is None:
        raise _UsageError("no template: give --template TEXT, --template-file PATH or a file")
    return _read(path), path


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


def main(argv: list[str]) -> int:
    try:
        args = _arguments().parse_args(argv)
        text, name = _template_source(args)
        data = _data(args)
    except _UsageError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        output = compile_template(text, name=name).render(_with_template(data, text))
    except TemplateError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    sys.stdout.write(output)
    if not output.endswith("\n") and sys.stdout.isatty():
        sys.stdout.write("\n")
    if args.check_json:
        problem = json_problem(output)
        if problem is not None:
            sys.stderr.write(f"{name}: the rendered payload is not valid JSON: {problem}\n")
            return 1
    return 0


def _with_template(data: Record, text: str) -> Mapping[str, object]:
    """``.Template`` is the template's own text, as in the Go original (unless --data set it)."""
    return data if data.get("Template") else data.replace({"Template": text})


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
