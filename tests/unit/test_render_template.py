"""``render-template``: the preview command, run in-process through its ``main(argv)``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aksnth.cli import main as cli_main
from aksnth.commands.render_template import json_problem, main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_renders_template_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--template", "Draining node={{ .NodeName }}, type={{ .Event.EventType }}"]) == 0
    assert capsys.readouterr().out == "Draining node=aks-spot-12345678-vmss000003, type=Preempt"


def test_renders_a_file_given_as_argument_or_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "payload.txt"
    path.write_text('node_termination_event{node="{{ .NodeName }}"} 1\n', encoding="utf-8")
    assert main([str(path)]) == 0
    first = capsys.readouterr().out
    assert main(["--template-file", str(path)]) == 0
    assert (
        capsys.readouterr().out == first == 'node_termination_event{node="aks-spot-12345678-vmss000003"} 1\n'
    )


def test_is_wired_as_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["render-template", "-template", "{{ .Phase }}", "-phase", "drained"]) == 0
    assert capsys.readouterr().out == "drained"


def test_event_type_and_phase(capsys: pytest.CaptureFixture[str]) -> None:
    text = "{{ .Event.EventType }} {{ .Phase }} {{ .DrainResult.Result }} {{ .DrainResult.Evicted }}"
    assert main(["--template", text, "--event-type", "reboot", "--phase", "drained"]) == 0
    assert capsys.readouterr().out == "Reboot drained drained 4"


def test_template_error_exits_2_with_position(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "slack.json"
    path.write_text('{\n  "text": "{{ .Nodename }}"\n}\n', encoding="utf-8")
    assert main([str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"{path}:2:15: can't evaluate field Nodename")
    assert "did you mean .NodeName?" in captured.err


def test_syntax_error_exits_2_with_position(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--template", "ok\n{{ if .NodeName }}never closed"]) == 2
    assert (
        capsys.readouterr().err
        == "template:2:4: unclosed {{if}}: missing {{end}} before the end of the template\n"
    )


def test_check_json_accepts_valid_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(EXAMPLES / "slack-blockkit.json"), "--check-json"]) == 0
    assert json.loads(capsys.readouterr().out)["blocks"]


def test_check_json_says_where_the_output_is_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    text = '{\n  "node": {{ .NodeName }}\n}'
    assert main(["--template", text, "--check-json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == '{\n  "node": aks-spot-12345678-vmss000003\n}'
    assert "not valid JSON: line 2 column 11: Expecting value" in captured.err
    assert '  "node": aks-spot-12345678-vmss000003\n' in captured.err


def test_json_problem_rejects_non_standard_constants() -> None:
    assert json_problem('{"a": NaN}') == "NaN is not valid JSON"
    assert json_problem('{"a": 1}') is None


def test_data_file_overrides_the_sample(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "node.json"
    data.write_text(
        json.dumps(
            {
                "NodeName": "aks-gpu-1",
                "NodeLabels": {
                    "kubernetes.azure.com/cluster": "prod",
                    "topology.kubernetes.io/zone": "eastus-1",
                },
                "Event": {"EventType": "Terminate"},
                "Extra": {"team": "ml"},
            }
        ),
        encoding="utf-8",
    )
    text = (
        "{{ .NodeName }} {{ .ClusterName }} {{ .NodeZone }} [{{ .InstanceType }}] {{ .Event.EventType }} "
        "{{ .Event.EventSource }} {{ .Extra.team }}"
    )
    assert main(["--template", text, "--data", str(data)]) == 0
    assert capsys.readouterr().out == "aks-gpu-1 prod eastus-1 [] Terminate Platform ml"


def test_data_keeps_struct_fields_strict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "node.json"
    data.write_text('{"Event": {"EventType": "Reboot"}}', encoding="utf-8")
    assert main(["--template", "{{ .Event.Typo }}", "--data", str(data)]) == 2
    assert "can't evaluate field Typo in type types.ScheduledEventsEvent" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no template"),
        (["--template", "x", "file.json"], "not both"),
        (["--template", "x", "--template-file", "y"], "not both"),
        (["/nonexistent/payload.json"], "cannot read template file '/nonexistent/payload.json'"),
        (
            ["--template", "x", "--phase", "later"],
            "invalid value 'later' for flag -phase: use event or drained",
        ),
        (["--template", "x", "--data", "/nonexistent/data.json"], "cannot read"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"), [("[1, 2]", "must hold a JSON object"), ("{oops", "not valid JSON")]
)
def test_bad_data_file_exits_2(
    content: str, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "data.json"
    data.write_text(content, encoding="utf-8")
    assert main(["--template", "x", "--data", str(data)]) == 2
    assert message in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--check-json" in capsys.readouterr().out


# --- the handler's own flags: what the DaemonSet would send ---------------------------------------------

SLACK = '{"text": "{{ .Event.EventType }} on {{ .NodeName }} ({{ .Phase }})"}'


def test_pasted_args_preview_each_payload_per_sink_and_phase_as_sent(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Webhook bodies with the newline the handler appends, Telegram's text as is; flags that do not
    shape a payload (URLs, tokens, -taint.node, -period) are accepted and never shown."""
    slack = tmp_path / "slack.json"
    slack.write_text(SLACK, encoding="utf-8")
    args = [
        "-webhook.url=https://hooks.example/services/T0/B0/SECRETPATH",
        f"-webhook.template-file={slack}",
        "-webhook.contentType=application/json",
        "-telegram.token=123456:SECRETTOKEN",
        "-telegram.chatID=-1001234567890",
        "-alert.message=Draining {{ .NodeName }} ({{ .Phase }})",
        "-notify.drainFinished",
        "-taint.node",
        "-period=1s",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    node = "aks-spot-12345678-vmss000003"
    webhook = f"==> webhook (-webhook.template-file={slack}), phase"
    json_post = "POST, Content-Type application/json <=="
    assert out == (
        f"{webhook} event: {json_post}\n"
        f'{{"text": "Preempt on {node} (event)"}}\n'
        "\n"
        f"{webhook} drained: {json_post}\n"
        f'{{"text": "Preempt on {node} (drained)"}}\n'
        "\n"
        "==> telegram (-alert.message), phase event <==\n"
        f"Draining {node} (event)\n"
        "\n"
        "==> telegram (-alert.message), phase drained <==\n"
        f"Draining {node} (drained)\n"
    )
    assert "SECRET" not in out


def test_one_payload_is_printed_exactly_as_sent_without_a_header(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    slack = tmp_path / "slack.json"
    slack.write_text(SLACK + "\n", encoding="utf-8")
    assert main([f"-webhook.template-file={slack}", "--check-json"]) == 0
    # The file ends with a newline and the handler appends one more, as the Go version did.
    assert capsys.readouterr().out == '{"text": "Preempt on aks-spot-12345678-vmss000003 (event)"}\n\n'


def test_the_config_files_webhooks_are_previewed_after_the_flags_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    teams = tmp_path / "teams.json"
    teams.write_text('{"title": {{ toJson .NodeName }}}', encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(
        "webhooks:\n"
        "- url: https://teams.example/hook\n"
        f"  templateFile: {teams}\n"
        "- url: http://pushgateway:9091/metrics/job/x\n"
        "  contentType: text/plain\n"
        "  method: put\n"
        '  template: "up{node=\\"{{ .NodeName }}\\"} 1"\n',
        encoding="utf-8",
    )
    assert main([f"-config={config}", "-webhook.template={{ .NodeName }}"]) == 0
    sections = capsys.readouterr().out.split("\n\n")
    assert sections == [
        "==> webhook (-webhook.template), phase event: POST, Content-Type application/json <==\n"
        "aks-spot-12345678-vmss000003",
        f"==> webhook (webhooks entry 0 in config file {config}, templateFile {teams}), phase event: POST, "
        'Content-Type application/json <==\n{"title": "aks-spot-12345678-vmss000003"}',
        f"==> webhook (webhooks entry 1 in config file {config}), phase event: PUT, "
        "Content-Type text/plain <==\n"
        'up{node="aks-spot-12345678-vmss000003"} 1\n',
    ]


def test_a_values_file_supplies_args_and_the_configmap_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--values``: the chart's args, and configMap.data where the pod sees it (mountPath)."""
    values = tmp_path / "values.yaml"
    values.write_text(
        "args:\n"
        "- -webhook.template-file=/etc/payloads/hook.txt\n"
        "- -webhook.contentType=text/plain\n"
        "configMap:\n"
        "  mountPath: /etc/payloads\n"
        "  data:\n"
        "    hook.txt: 'node {{ .NodeName }}'\n"
        "secrets:\n"
        "  telegramToken: '123456:SECRETTOKEN'\n",
        encoding="utf-8",
    )
    assert main(["--values", str(values), "--phase", "drained"]) == 0
    out = capsys.readouterr().out
    assert out == (
        "==> webhook (-webhook.template-file=/etc/payloads/hook.txt), phase drained: POST, "
        "Content-Type text/plain <==\n"
        "node aks-spot-12345678-vmss000003\n"
        "\n"
        "==> telegram (the default -alert.message), phase drained <==\n"
        "Draining node=aks-spot-12345678-vmss000003, type=Preempt\n"
    )


def test_check_json_checks_each_json_webhook(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-webhook.template={{ .NodeName }}", "--check-json"]) == 1
    err = capsys.readouterr().err
    assert "webhook (-webhook.template), phase event: the payload is not valid JSON: line 1 column 1" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-webhook.template-file=/files/slack-payload.json"], "give the values file with --values"),
        (["-webhook.templat-file=x"], "flag provided but not defined: -webhook.templat-file"),
        (["-taint.node", "-period=1s"], "these flags configure no notification"),
        (["--template", "x", "-webhook.template=y"], "not both"),
        (["-config=/nonexistent/config.yaml"], "cannot read config file '/nonexistent/config.yaml'"),
    ],
)
def test_handler_flag_mistakes_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
