"""A Go-version user's flag lines and config files mean what they meant, or are named in "Moving".

Expected values follow the Go project's source (``pkg/config``: the flags, their defaults, and the
config file read with yaml.v3 into the lower-cased field names after the flags were parsed, so its
keys win). Where this project deliberately refuses what the Go version accepted, the refusal must be
a one-line message naming the input, and docs/moving-from-go.md must list it with what to do
instead, the README's "Moving from the Go version" pointing there: a user upgrading must find it
before the pods crash-loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from aksnth import cli
from aksnth.config import Settings, TaintEffect

ROOT = Path(__file__).resolve().parents[2]
NODE = "-node=aks-spot-12345678-vmss000003"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("CONFIG", "MY_NODE_NAME", "TELEGRAM_TOKEN", "TELEGRAM_CHATID", "WEBHOOK_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("WEBHOOK_TEMPLATE", raising=False)
    monkeypatch.delenv("WEBHOOK_TEMPLATE_FILE", raising=False)
    monkeypatch.delenv("WEBHOOK_HTTP_PROXY", raising=False)


def parse(*argv: str) -> Settings:
    return cli.parse_settings([NODE, *argv], {})


def moving_section() -> str:
    """docs/moving-from-go.md, the page the README's "Moving from the Go version" sends users to."""
    return (ROOT / "docs" / "moving-from-go.md").read_text(encoding="utf-8")


def test_the_readmes_moving_section_points_to_the_refused_inputs() -> None:
    """An upgrading user reads the README first: its section must lead to the list of refused inputs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Moving from the Go version\n")
    section = readme[start : readme.index("\n## ", start + 1)]
    assert "](docs/moving-from-go.md#refused-at-start-up)" in section
    assert "## Refused at start-up\n" in moving_section()
    assert "`taintNode: true`" in section


# --- config files ----------------------------------------------------------------------------------------


def test_the_go_projects_own_config_files_load_with_the_same_meaning(tmp_path: Path) -> None:
    """e2e/testdata/config_test.yaml and pkg/config/testdata/config_test.yaml of the Go project."""
    e2e = tmp_path / "e2e.yaml"
    e2e.write_text(
        "taintnode: true\ntainteffect: NoSchedule\npodgraceperiodseconds: 30\nexitafternodedrain: true",
        encoding="utf-8",
    )
    settings = parse(f"-config={e2e}")
    assert settings.response.taint_node is True
    assert settings.response.taint_effect is TaintEffect.NO_SCHEDULE
    assert settings.response.pod_grace_period_seconds == 30
    assert settings.response.exit_after_node_drain is True

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("", encoding="utf-8")
    unit = tmp_path / "unit.yaml"
    unit.write_text(f"kubeconfigfile: {kubeconfig}", encoding="utf-8")
    assert parse(f"-config={unit}").kube.kubeconfig == str(kubeconfig)


def test_every_key_of_the_go_config_struct_sets_what_it_set_there(tmp_path: Path) -> None:
    """One file with a key for each field of the Go version's config.Type (its yaml.v3 name)."""
    template = tmp_path / "payload.json"
    template.write_text('{"node": "{{ .NodeName }}"}', encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
loglevel: debug
logpretty: true
dryrun: true
endpoint: http://127.0.0.1:8080/metadata/scheduledevents?api-version=2020-07-01
nodename: node-from-file
period: 2s
requesttimeout: 3s
telegramtoken: "123456:token"
telegramchatid: -1001234567890
alertmessage: "Draining {{{{ .NodeName }}}}"
webhookcontenttype: text/plain
webhookurl: https://hooks.example/x
webhooktemplate: inline
webhooktemplatefile: {template}
webhookmethod: PUT
webhooktimeout: 5s
webhookinsecure: true
webhookproxy: http://proxy.example:3128
webhookretries: 5
sentrydsn: https://key@sentry.example/1
webhttpaddress: ":9000"
taintnode: true
tainteffect: NoExecute
podgraceperiodseconds: 30
nodegraceperiodseconds: 60
graceperiodseconds: 20
drainonfreezeevent: true
resourcename: aks-spot-12345678-vmss_3
exitafternodedrain: true
disableeviction: true
""",
        encoding="utf-8",
    )
    s = parse(f"-config={config}", "-node=node-from-flag", "-period=9s")  # the file wins over flags
    assert (s.log.level, s.log.pretty, s.response.dry_run) == ("DEBUG", True, True)
    assert s.imds.endpoint == "http://127.0.0.1:8080/metadata/scheduledevents?api-version=2020-07-01"
    assert (s.kube.node_name, s.imds.poll_interval_seconds, s.imds.request_timeout_seconds) == (
        "node-from-file",
        2.0,
        3.0,
    )
    assert s.notify.telegram is not None
    assert (s.notify.telegram.chat_id, s.notify.telegram.message_template) == (
        -1001234567890,
        "Draining {{ .NodeName }}",
    )
    (hook,) = s.notify.webhooks
    assert (hook.content_type, hook.url.reveal(), hook.template, hook.method, hook.timeout_seconds) == (
        "text/plain",
        "https://hooks.example/x",
        '{"node": "{{ .NodeName }}"}',  # the file wins over the inline template, as in the Go version
        "PUT",
        5.0,
    )
    assert (hook.insecure_skip_verify, hook.http_proxy.reveal(), hook.retries) == (
        True,
        "http://proxy.example:3128",
        5,
    )
    assert s.sentry_dsn.reveal() == "https://key@sentry.example/1"
    assert s.web.address == ":9000"
    r = s.response
    assert (r.taint_node, r.taint_effect, r.pod_grace_period_seconds, r.node_grace_period_seconds) == (
        True,
        TaintEffect.NO_EXECUTE,
        30,
        60,
    )
    assert (s.grace_period_seconds, r.drain_on_freeze, r.resource_name) == (
        20.0,
        True,
        "aks-spot-12345678-vmss_3",
    )
    assert (r.exit_after_node_drain, r.disable_eviction) == (True, True)


def test_a_key_with_capitals_takes_effect_now_and_moving_says_so(tmp_path: Path) -> None:
    """yaml.v3 matched ``taintnode`` exactly, so the Go version ignored ``taintNode: true``; keys match
    ignoring case here, so it taints now. The user must learn that before upgrading."""
    config = tmp_path / "config.yaml"
    config.write_text("taintNode: true\n", encoding="utf-8")
    assert parse(f"-config={config}").response.taint_node is True
    assert "`taintNode: true`" in moving_section()


# --- flag lines ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "read", "expected"),
    [
        (["-dryRun"], lambda s: s.response.dry_run, True),  # a bare boolean is true
        (["-dryRun=false"], lambda s: s.response.dry_run, False),
        (["--taint.node=true"], lambda s: s.response.taint_node, True),  # two dashes, as Go allows
        (["-taint.node=T"], lambda s: s.response.taint_node, True),  # strconv.ParseBool
        (["-podGracePeriodSeconds", "-1"], lambda s: s.response.pod_grace_period_seconds, -1),
        (["-period", "5s"], lambda s: s.imds.poll_interval_seconds, 5.0),
        (["-period=1m30s"], lambda s: s.imds.poll_interval_seconds, 90.0),
        (["-nodeGracePeriodSeconds=0x78"], lambda s: s.response.node_grace_period_seconds, 120),
        (
            ["-taint.node", "-taint.effect=PreferNoSchedule"],
            lambda s: s.response.taint_effect,
            TaintEffect.PREFER_NO_SCHEDULE,
        ),
    ],
)
def test_go_flag_syntax_means_the_same(
    argv: list[str], read: Callable[[Settings], object], expected: object
) -> None:
    assert read(parse(*argv)) == expected


# --- stricter start-up checks (row 9 of the migration table) ---------------------------------------------

# (argv, what the one-line error says, what the "Moving" section must name)
REFUSED = [
    (["-telegram.chatID=-100123"], "-telegram.chatID is set but no Telegram token is", "-telegram.chatID"),
    (
        ["-taint.effect=NoExecute"],
        "-taint.effect: has no effect without -taint.node",
        "`-taint.effect` without `-taint.node`",
    ),
    (["-telegram.token=123:abc"], "a Telegram token is set but -telegram.chatID is not", "-telegram.chatID"),
    (["-period=100ms"], "-period: 100ms is too short", "`-period` below `200ms`"),
    (["-period=0s"], "-period: 0s is too short", "`-period` below `200ms`"),
    (
        ["-nodeGracePeriodSeconds=0"],
        "-nodeGracePeriodSeconds: must be at least 1, got 0",
        "-nodeGracePeriodSeconds=0",
    ),
    (
        ["-gracePeriodSeconds=-5"],
        "-gracePeriodSeconds: must be at least 0, got -5",
        "negative `-gracePeriodSeconds`",
    ),
    (
        ["-podGracePeriodSeconds=-2"],
        "-podGracePeriodSeconds: must be at least -1",
        "`-podGracePeriodSeconds` below `-1`",
    ),
    (["-request.timeout=0s"], "-request.timeout: must be positive", "`-request.timeout`"),
    (
        ["-webhook.url=https://h.example", "-webhook.timeout=0s"],
        "-webhook.timeout: must be positive",
        "`-webhook.timeout`",
    ),
    (
        ["-webhook.url=https://h.example", "-webhook.retries=-1"],
        "-webhook.retries: must be at least 0",
        "negative `-webhook.retries`",
    ),
    (
        ["-webhook.url=hooks.slack.com/services/T0/B0/X"],
        "-webhook.url: must be an http:// or https:// URL with a host",
        "without `http://`",
    ),
    (["-endpoint=169.254.169.254/metadata"], "-endpoint: must be an http:// or https:// URL", "`-endpoint`"),
    (
        ["-webhook.url=https://h.example", "-webhook.template-file=/files/missing.json"],
        "cannot read webhook template file '/files/missing.json'",
        "a missing `-webhook.template-file`",
    ),
    (["-dryRun", "false"], "unexpected argument 'false'", "`-dryRun false`"),
]


@pytest.mark.parametrize(("argv", "message", "listed"), REFUSED, ids=[" ".join(r[0]) for r in REFUSED])
def test_inputs_the_go_version_accepted_are_refused_by_name_and_listed_in_moving(
    argv: list[str], message: str, listed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([NODE, *argv]) == 2
    first_line = capsys.readouterr().err.splitlines()[0]
    assert message in first_line
    assert listed in moving_section()


def test_a_template_error_the_go_version_met_only_when_sending_stops_start_up_and_is_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Go version parsed its template for each notification; ours checks it before anything else."""
    from aksnth import app  # noqa: PLC0415 - the start-up check lives where the handler starts

    payload = tmp_path / "payload.json"
    payload.write_text('{"node": "{{ .Nodename }}"}', encoding="utf-8")
    settings = parse("-webhook.url=https://h.example", f"-webhook.template-file={payload}")
    with pytest.raises(cli.ConfigError, match=r"payload\.json:1:14: can't evaluate field Nodename"):
        app.prepare(settings)
    assert "names a field that does not exist" in moving_section()
    assert re.search(r"unknown config-file key", moving_section())
