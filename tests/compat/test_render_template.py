"""``render-template`` with a Go-version user's values file shows the bytes the Go version sent.

The values files are the Go project's README's, verbatim (tests/chart/values). The Go version sent
each webhook the rendered template plus a newline; the expected bodies are its output for the sample
data (see test_templates.py), written down.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aksnth.cli import main
from testkit.chart import seed_file

SEED_VALUES = Path(__file__).resolve().parents[1] / "chart" / "values"
NODE = "aks-spot-12345678-vmss000003"


@pytest.mark.parametrize(
    ("values", "sent"),
    [
        (
            "slack.yaml",
            '{\n  "channel": "#mychannel",\n  "username": "webhookbot",\n'
            f'  "text": "This is message for {NODE}, Standard_D4s_v5 from westeurope",\n'
            '  "icon_emoji": ":ghost:"\n}\n\n',
        ),
        ("pushgateway.yaml", f'node_termination_event{{node="{NODE}"}} 1\n\n'),
        ("proxy.yaml", f"This is message for {NODE}, Standard_D4s_v5 from westeurope\n"),
    ],
)
def test_seed_values_file_previews_the_body_the_go_version_sent(
    values: str, sent: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render-template", "--values", str(SEED_VALUES / values)]) == 0
    assert capsys.readouterr().out == sent


def test_seed_args_pasted_with_the_payload_file_at_hand_give_the_same_bytes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The slack values file's ``args`` pasted as they are, the payload file saved locally."""
    payload = tmp_path / "slack-payload.json"
    payload.write_text(seed_file("slack.yaml", "slack-payload.json"), encoding="utf-8")
    args = [
        "-webhook.url=https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        f"-webhook.template-file={payload}",
        "-webhook.contentType=application/json",
        "-webhook.method=POST",
        "-webhook.timeout=30s",
        "-webhook.retries=3",
    ]
    assert main(["render-template", *args, "--check-json"]) == 0
    assert capsys.readouterr().out == (
        '{\n  "channel": "#mychannel",\n  "username": "webhookbot",\n'
        f'  "text": "This is message for {NODE}, Standard_D4s_v5 from westeurope",\n'
        '  "icon_emoji": ":ghost:"\n}\n\n'
    )


def test_telegram_args_of_the_seed_readme_preview_the_default_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--set args[0]=-telegram.token=… args[1]=-telegram.chatID=…``: the Go version's default text."""
    assert main(["render-template", "-telegram.token=<telegram token>", "-telegram.chatID=123"]) == 0
    assert capsys.readouterr().out == f"Draining node={NODE}, type=Preempt"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{ printf "%+v|%08.3f|%#q|%[2]d" 5 3.14159 }}', "5|0003.142|%!q(MISSING)|%!d(float64=3.14159)"),
        ('{{ printf "%T" .Event }}', "types.ScheduledEventsEvent"),
        ("x{{ .NodeLabels.missing }}y", "xy"),
        (
            "{{ .NodePods }}",
            "[cart-redis-0 checkout-7d4b9c6f5-x2x8q checkout-7d4b9c6f5-zq9lm image-resizer-5f7c8d9b4-k7tpl]",
        ),
    ],
)
def test_render_template_prints_the_go_versions_output_for_one_template(
    template: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command itself, not only the engine, gives the Go version's output (see test_templates.py)."""
    assert main(["render-template", "--template", template]) == 0
    assert capsys.readouterr().out == expected
