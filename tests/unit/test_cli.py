"""The command line: Go flag syntax, environment, the -config file, validation, --help, -version."""

from __future__ import annotations

import sys
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from aksnth import __version__, cli
from aksnth.config import (
    DEFAULT_ALERT_MESSAGE,
    DEFAULT_ENDPOINT,
    DEFAULT_TELEGRAM_API_URL,
    Secret,
    Settings,
    TaintEffect,
)
from aksnth.errors import ConfigError
from aksnth.flags import HelpRequested, parse_go_bool, parse_go_int
from aksnth.model import EventType
from aksnth.observe.logging import LEVELS, parse_level
from aksnth.options import GROUPS, OPTIONS
from testkit.chart import seed_file

NODE = "-node=aks-spot-12345678-vmss000001"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() reads os.environ: no variable of ours may leak in from the machine running the tests."""
    for option in OPTIONS:
        if option.env:
            monkeypatch.delenv(option.env, raising=False)


def parse(*argv: str, env: dict[str, str] | None = None) -> Settings:
    return cli.parse_settings([NODE, *argv], env or {})


def only_webhook(settings: Settings) -> Any:
    assert len(settings.notify.webhooks) == 1
    return settings.notify.webhooks[0]


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------------------------------
# Go values
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("10", 10),
        ("-1", -1),
        ("+7", 7),
        ("0", 0),
        ("0x10", 16),
        ("010", 8),
        ("0o17", 15),
        ("0b101", 5),
        ("1_000", 1000),
    ],
)
def test_go_ints(text: str, number: int) -> None:
    assert parse_go_int(text) == number


@pytest.mark.parametrize("text", ["", "1.5", "abc", " 1", "1 ", "08", "1__0", "_1", "9223372036854775808"])
def test_bad_go_ints(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_int(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [(text, True) for text in ("1", "t", "T", "TRUE", "true", "True")]
    + [(text, False) for text in ("0", "f", "F", "FALSE", "false", "False")],
)
def test_go_bools(text: str, value: bool) -> None:
    assert parse_go_bool(text) is value


@pytest.mark.parametrize("text", ["", "yes", "no", "tRUE", "2", "on"])
def test_bad_go_bools(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_bool(text)


# --------------------------------------------------------------------------------------------------
# Syntax
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["-period=2s"], ["-period", "2s"], ["--period=2s"], ["--period", "2s"], ["-period=9s", "-period=2s"]],
)
def test_every_syntax_form_of_a_valued_flag(argv: list[str]) -> None:
    assert parse(*argv).imds.poll_interval_seconds == 2.0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], False),
        (["-dryRun"], True),
        (["--dryRun"], True),
        (["-dryRun=true"], True),
        (["--dryRun=true"], True),
        (["-dryRun=1"], True),
        (["-dryRun=T"], True),
        (["-dryRun=false"], False),
        (["--dryRun=false"], False),
        (["-dryRun=0"], False),
        (["-dryRun", "-dryRun=false"], False),
    ],
)
def test_boolean_flag_forms(argv: list[str], expected: bool) -> None:
    assert parse(*argv).response.dry_run is expected


def test_a_boolean_flag_never_consumes_the_next_argument() -> None:
    # Go's rule: "-dryRun false" is "-dryRun" followed by the argument "false", which ends the flags.
    with pytest.raises(
        ConfigError, match="unexpected argument 'false': a boolean flag takes its value as -flag=false"
    ):
        parse("-dryRun", "false")


def test_a_valued_flag_takes_the_next_argument_even_if_it_starts_with_a_dash() -> None:
    assert parse("-podGracePeriodSeconds", "-1").response.pod_grace_period_seconds == -1
    assert parse("-podGracePeriodSeconds", "30").response.pod_grace_period_seconds == 30


def test_double_dash_ends_the_flags() -> None:
    assert parse("--").response.dry_run is False
    with pytest.raises(ConfigError, match="unexpected argument '-dryRun'"):
        parse("--", "-dryRun")


def test_flag_names_are_case_sensitive_as_in_go() -> None:
    with pytest.raises(
        ConfigError,
        match=r"flag provided but not defined: -telegram\.chatid \(did you mean -telegram\.chatID\?\)",
    ):
        parse("-telegram.chatid=1")


def test_an_empty_value_is_allowed_for_strings() -> None:
    assert parse("-resource.name=").response.resource_name == ""


@pytest.mark.parametrize("help_flag", ["-h", "-help", "--help", "--h"])
def test_parse_settings_signals_help(help_flag: str) -> None:
    with pytest.raises(HelpRequested):
        parse(help_flag)


# --------------------------------------------------------------------------------------------------
# Every flag
# --------------------------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = parse()
    assert settings.kube.node_name == "aks-spot-12345678-vmss000001"
    assert settings.kube.kubeconfig == ""
    assert settings.kube.request_timeout_seconds == 10.0
    assert settings.log.level == "INFO" and settings.log.pretty is False
    assert settings.imds.endpoint == DEFAULT_ENDPOINT
    assert settings.imds.poll_interval_seconds == 1.0  # ours; the original's is 5s
    assert settings.imds.request_timeout_seconds == 5.0
    response = settings.response
    assert response.event_types == {
        EventType.REBOOT,
        EventType.REDEPLOY,
        EventType.PREEMPT,
        EventType.TERMINATE,
    }
    assert response.selected_event_types == response.event_types
    assert response.drain_on_freeze is False
    assert response.taint_node is False and response.taint_effect is TaintEffect.NO_SCHEDULE
    assert response.pod_grace_period_seconds == -1 and response.node_grace_period_seconds == 120
    assert response.exclude_from_load_balancers is True and response.uncordon_after_event is True
    assert response.approve_events is False and response.disable_eviction is False
    assert response.approve_load_balancer_wait_seconds == 10.0
    assert response.dry_run is False and response.exit_after_node_drain is False
    assert response.resource_name == ""
    assert settings.notify.webhooks == () and settings.notify.telegram is None
    assert settings.notify.notify_on_drain_finished is False
    assert settings.web.address == ":17923"
    assert settings.grace_period_seconds == 10.0
    assert settings.sentry_dsn == Secret("")


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_every_log_level_name_is_read_as_the_logging_set_up_reads_it(name: str) -> None:
    """One table: the level the command line stores is the one configure_logging() applies."""
    stored = parse(f"-log.level={name.upper()}").log.level
    assert parse_level(stored) == LEVELS[name]


def test_the_default_webhook_does_not_skip_certificate_verification() -> None:
    assert only_webhook(parse("-webhook.url=https://example.test/x")).insecure_skip_verify is False


# (argv, how to read the setting, expected value); together they cover every option of the table.
FLAG_CASES: list[tuple[list[str], Callable[[Settings], object], object]] = [
    (["-kubeconfig=__KUBECONFIG__"], lambda s: s.kube.kubeconfig, "__KUBECONFIG__"),
    (["-kube.requestTimeout=3s"], lambda s: s.kube.request_timeout_seconds, 3.0),
    (
        ["-resource.name=aks-spot-12345678-vmss_1"],
        lambda s: s.response.resource_name,
        "aks-spot-12345678-vmss_1",
    ),
    (["-gracePeriodSeconds=25"], lambda s: s.grace_period_seconds, 25.0),
    (["-exitAfterNodeDrain"], lambda s: s.response.exit_after_node_drain, True),
    (["-dryRun"], lambda s: s.response.dry_run, True),
    (["-sentry.dsn=https://k@sentry.test/1"], lambda s: s.sentry_dsn, Secret("https://k@sentry.test/1")),
    (["-version=false"], lambda s: s.response.dry_run, False),
    (["-config="], lambda s: s.notify.webhooks, ()),
    (
        ["-endpoint=http://127.0.0.1:8080/metadata/scheduledevents"],
        lambda s: s.imds.endpoint,
        "http://127.0.0.1:8080/metadata/scheduledevents",
    ),
    (["-period=200ms"], lambda s: s.imds.poll_interval_seconds, 0.2),
    (["-request.timeout=1m"], lambda s: s.imds.request_timeout_seconds, 60.0),
    (["-request.firstTimeout=3m"], lambda s: s.imds.first_request_timeout_seconds, 180.0),
    (["-advisory.apiVersion=off"], lambda s: s.imds.advisory_api_version, "off"),
    (["-advisory.apiVersion=2099-01-01"], lambda s: s.imds.advisory_api_version, "2099-01-01"),
    (
        ["-eventTypes=Preempt,SpotRebalanceRecommendation"],
        lambda s: s.response.event_types,
        frozenset({EventType.PREEMPT, EventType.SPOT_REBALANCE_RECOMMENDATION}),
    ),
    (
        ["-eventTypes=preempt,TERMINATE"],
        lambda s: s.response.event_types,
        {EventType.PREEMPT, EventType.TERMINATE},
    ),
    (["-drainOnFreezeEvent"], lambda s: EventType.FREEZE in s.response.selected_event_types, True),
    (["-approveEvents"], lambda s: s.response.approve_events, True),
    (["-approveEvents.loadBalancerWait=0s"], lambda s: s.response.approve_load_balancer_wait_seconds, 0.0),
    (["-approveEvents.loadBalancerWait=15s"], lambda s: s.response.approve_load_balancer_wait_seconds, 15.0),
    (["-taint.node"], lambda s: s.response.taint_node, True),
    (
        ["-taint.node", "-taint.effect=NoExecute"],
        lambda s: s.response.taint_effect,
        TaintEffect.NO_EXECUTE,
    ),
    (
        ["-taint.node", "-taint.effect=PreferNoSchedule"],
        lambda s: s.response.taint_effect,
        TaintEffect.PREFER_NO_SCHEDULE,
    ),
    (["-podGracePeriodSeconds=15"], lambda s: s.response.pod_grace_period_seconds, 15),
    (["-lastResort=false"], lambda s: s.response.last_resort, False),
    (
        ["-lastResort.eventTypes=Preempt,Terminate,Reboot"],
        lambda s: s.response.last_resort_event_types,
        {EventType.PREEMPT, EventType.TERMINATE, EventType.REBOOT},
    ),
    (["-nodeGracePeriodSeconds=300"], lambda s: s.response.node_grace_period_seconds, 300),
    (["-disableEviction"], lambda s: s.response.disable_eviction, True),
    (["-excludeFromLoadBalancers=false"], lambda s: s.response.exclude_from_load_balancers, False),
    (["-surgeDeployments"], lambda s: s.response.surge_deployments, True),
    ([], lambda s: s.response.surge_deployments, False),
    (["-taint.toBeDeleted=false"], lambda s: s.response.taint_to_be_deleted, False),
    ([], lambda s: s.response.taint_to_be_deleted, True),
    (["-uncordonAfterEvent=false"], lambda s: s.response.uncordon_after_event, False),
    (
        ["-webhook.url=http://h.test", "-notify.drainFinished"],
        lambda s: s.notify.notify_on_drain_finished,
        True,
    ),
    (["-readiness.interval=1m30s"], lambda s: s.readiness.interval_seconds, 90.0),
    (
        ["-telegram.token=1:abc", "-telegram.chatID=-100123"],
        lambda s: s.notify.telegram.token,
        Secret("1:abc"),
    ),
    (
        ["-telegram.token-file=__TOKEN_FILE__", "-telegram.chatID=5"],
        lambda s: s.notify.telegram.token,
        Secret("from-file"),
    ),
    (["-telegram.token=t", "-telegram.chatID=-100123"], lambda s: s.notify.telegram.chat_id, -100123),
    (
        ["-telegram.token=t", "-telegram.chatID=1", "-telegram.apiURL=http://127.0.0.1:9/"],
        lambda s: s.notify.telegram.api_url,
        "http://127.0.0.1:9/",
    ),
    (
        ["-telegram.token=t", "-telegram.chatID=1", "-telegram.http-proxy=http://u:p@127.0.0.1:3128"],
        lambda s: s.notify.telegram.http_proxy,
        Secret("http://u:p@127.0.0.1:3128"),
    ),
    (
        ["-telegram.token=t", "-telegram.chatID=1", "-alert.message={{ .NodeName }}"],
        lambda s: s.notify.telegram.message_template,
        "{{ .NodeName }}",
    ),
    (["-webhook.url=https://h.test/p?k=v"], lambda s: only_webhook(s).url, Secret("https://h.test/p?k=v")),
    (
        ["-webhook.url-file=__URL_FILE__"],
        lambda s: only_webhook(s).url,
        Secret("http://127.0.0.1:1/from-file"),
    ),
    (["-webhook.url=http://h.test", "-webhook.method=PUT"], lambda s: only_webhook(s).method, "PUT"),
    (
        ["-webhook.url=http://h.test", "-webhook.contentType=text/plain"],
        lambda s: only_webhook(s).content_type,
        "text/plain",
    ),
    (
        ["-webhook.url=http://h.test", "-webhook.header=Authorization: Bearer x", "-webhook.header", "X-A:1"],
        lambda s: only_webhook(s).headers,
        (("Authorization", "Bearer x"), ("X-A", "1")),
    ),
    (
        ["-webhook.url=http://h.test", "-webhook.timeout=1m30s"],
        lambda s: only_webhook(s).timeout_seconds,
        90.0,
    ),
    (["-webhook.url=http://h.test", "-webhook.retries=0"], lambda s: only_webhook(s).retries, 0),
    (
        ["-webhook.url=http://h.test", "-webhook.template={{ .NodeName }}"],
        lambda s: (only_webhook(s).template, only_webhook(s).template_name),
        ("{{ .NodeName }}", "-webhook.template"),
    ),
    (
        ["-webhook.url=http://h.test", "-webhook.template-file=__TEMPLATE_FILE__"],
        lambda s: only_webhook(s).template,
        "file {{ .NodeName }}\n",
    ),
    (
        ["-webhook.url=http://h.test", "-webhook.insecureSkip"],
        lambda s: only_webhook(s).insecure_skip_verify,
        True,
    ),
    (
        ["-webhook.url=http://h.test", "-webhook.http-proxy=https://u:p@proxy.test:3128"],
        lambda s: only_webhook(s).http_proxy,
        Secret("https://u:p@proxy.test:3128"),
    ),
    (["-web.address=127.0.0.1:9100"], lambda s: s.web.address, "127.0.0.1:9100"),
    (["-web.address=[::1]:9100"], lambda s: s.web.address, "[::1]:9100"),
    (["-log.level=debug"], lambda s: s.log.level, "DEBUG"),
    (["-log.level=warn"], lambda s: s.log.level, "WARNING"),
    (["-log.pretty"], lambda s: s.log.pretty, True),
]


def _placeholders(tmp_path: Path) -> dict[str, str]:
    return {
        "__KUBECONFIG__": write(tmp_path / "kubeconfig", "apiVersion: v1\nkind: Config\n"),
        "__TOKEN_FILE__": write(tmp_path / "token", "from-file\n"),
        "__URL_FILE__": write(tmp_path / "url", "http://127.0.0.1:1/from-file\r\n"),
        "__TEMPLATE_FILE__": write(tmp_path / "payload.txt", "file {{ .NodeName }}\n"),
    }


def _fill(text: str, files: dict[str, str]) -> str:
    for placeholder, value in files.items():
        text = text.replace(placeholder, value)
    return text


@pytest.mark.parametrize(("argv", "read", "expected"), FLAG_CASES)
def test_every_flag(
    tmp_path: Path, argv: list[str], read: Callable[[Settings], object], expected: object
) -> None:
    files = _placeholders(tmp_path)
    argv = [_fill(arg, files) for arg in argv]
    expected = _fill(expected, files) if isinstance(expected, str) else expected
    assert read(parse(*argv)) == expected


def test_the_flag_cases_cover_every_option() -> None:
    covered = {
        arg.lstrip("-").split("=")[0] for argv, _, _ in FLAG_CASES for arg in argv if arg.startswith("-")
    }
    assert covered >= {option.name for option in OPTIONS} - {"node"}


def test_drain_on_freeze_adds_freeze_and_event_types_may_name_it() -> None:
    assert EventType.FREEZE not in parse().response.selected_event_types
    assert parse("-eventTypes=Freeze").response.selected_event_types == {EventType.FREEZE}
    repeated = parse("-eventTypes=Preempt", "-eventTypes", "terminate, reboot")
    assert repeated.response.event_types == {EventType.PREEMPT, EventType.TERMINATE, EventType.REBOOT}


def test_the_last_resort_is_on_for_preempt_and_terminate_by_default_and_off_with_the_flag() -> None:
    default = parse().response
    assert default.last_resort is True
    assert {t for t in EventType if default.last_resort_for(t)} == {EventType.PREEMPT, EventType.TERMINATE}
    off = parse("-lastResort=false").response
    assert not any(off.last_resort_for(t) for t in EventType)
    opted_in = parse("-lastResort.eventTypes=Preempt,Terminate", "-lastResort.eventTypes=redeploy").response
    assert opted_in.last_resort_for(EventType.REDEPLOY)
    assert not parse("-lastResort.eventTypes=").response.last_resort_for(EventType.PREEMPT)


def test_template_file_wins_over_template(tmp_path: Path) -> None:
    path = write(tmp_path / "body.json", '{"node": "{{ .NodeName }}"}')
    webhook = only_webhook(
        parse("-webhook.url=http://h.test", "-webhook.template=inline", f"-webhook.template-file={path}")
    )
    assert webhook.template == '{"node": "{{ .NodeName }}"}'
    assert webhook.template_name == path


def test_secret_files_win_over_the_values(tmp_path: Path) -> None:
    token = write(tmp_path / "token", "file-token\n")
    url = write(tmp_path / "url", "https://file.test/hook\n")
    settings = parse(
        "-telegram.token=flag-token",
        f"-telegram.token-file={token}",
        "-telegram.chatID=1",
        "-webhook.url=https://flag.test/hook",
        f"-webhook.url-file={url}",
    )
    assert settings.notify.telegram is not None
    assert settings.notify.telegram.token.reveal() == "file-token"
    assert only_webhook(settings).url.reveal() == "https://file.test/hook"


def test_secrets_do_not_show_in_the_settings_repr() -> None:
    settings = parse(
        "-telegram.token=TOPSECRET-TOKEN",
        "-telegram.chatID=1",
        "-webhook.url=https://u:TOPSECRET-PASS@h.test/",
        "-webhook.http-proxy=http://u:TOPSECRET-PROXY@p.test:3128",
        "-sentry.dsn=https://TOPSECRET-DSN@sentry.test/1",
    )
    assert "TOPSECRET" not in repr(settings)


# --------------------------------------------------------------------------------------------------
# The seed README's args, verbatim (the /files/... template stands in a tmp_path file)
# --------------------------------------------------------------------------------------------------

SLACK_PAYLOAD = seed_file("slack.yaml", "slack-payload.json")


def test_readme_telegram_args() -> None:
    # The README's placeholders <telegram token> and <telegram chatid>, filled in.
    settings = parse("-telegram.token=123456789:AAE-example-token", "-telegram.chatID=-1001234567890")
    telegram = settings.notify.telegram
    assert telegram is not None
    assert telegram.token.reveal() == "123456789:AAE-example-token"
    assert telegram.chat_id == -1001234567890
    assert telegram.message_template == DEFAULT_ALERT_MESSAGE
    assert telegram.api_url == DEFAULT_TELEGRAM_API_URL


def test_readme_slack_args(tmp_path: Path) -> None:
    path = write(tmp_path / "slack-payload.json", SLACK_PAYLOAD)
    webhook = only_webhook(
        parse(
            "-webhook.url=https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            f"-webhook.template-file={path}",
            "-webhook.contentType=application/json",
            "-webhook.method=POST",
            "-webhook.timeout=30s",
            "-webhook.retries=3",
        )
    )
    assert (
        webhook.url.reveal()
        == "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
    )
    assert (webhook.template, webhook.template_name) == (SLACK_PAYLOAD, path)
    assert (webhook.content_type, webhook.method, webhook.timeout_seconds, webhook.retries) == (
        "application/json",
        "POST",
        30.0,
        3,
    )
    assert webhook.http_proxy.reveal() == ""


def test_readme_pushgateway_args(tmp_path: Path) -> None:
    path = write(
        tmp_path / "prometheus-pushgateway-payload.txt", 'node_termination_event{node="{{ .NodeName }}"} 1\n'
    )
    webhook = only_webhook(
        parse(
            "-webhook.url=http://prometheus-pushgateway.prometheus.svc.cluster.local:9091/metrics/job/aks-node-termination-handler",
            f"-webhook.template-file={path}",
            "-webhook.contentType=text/plain",
            "-webhook.method=POST",
            "-webhook.timeout=30s",
            "-webhook.retries=3",
        )
    )
    assert webhook.url.reveal().endswith(":9091/metrics/job/aks-node-termination-handler")
    assert webhook.template == 'node_termination_event{node="{{ .NodeName }}"} 1\n'
    assert webhook.content_type == "text/plain"


def test_readme_proxy_args(tmp_path: Path) -> None:
    path = write(
        tmp_path / "payload.json",
        "This is message for {{ .NodeName }}, {{ .InstanceType }} from {{ .NodeRegion }}",
    )
    webhook = only_webhook(
        parse(
            "-webhook.url=https://someserver/somepath",
            f"-webhook.template-file={path}",
            "-webhook.contentType=text/plain",
            "-webhook.method=POST",
            "-webhook.timeout=30s",
            "-webhook.http-proxy=https://someproxy:3128",
            "-webhook.retries=3",
        )
    )
    assert webhook.http_proxy.reveal() == "https://someproxy:3128"
    assert webhook.url.reveal() == "https://someserver/somepath"


# --------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------


def test_environment_variables(tmp_path: Path) -> None:
    env = {
        "MY_NODE_NAME": "node-from-env",
        "TELEGRAM_TOKEN": "env-token",
        "TELEGRAM_CHATID": "42",
        "WEBHOOK_URL": "https://env.test/hook",
        "WEBHOOK_TEMPLATE": "env template",
        "WEBHOOK_HTTP_PROXY": "http://proxy.test:3128",
    }
    settings = cli.parse_settings([], env)
    assert settings.kube.node_name == "node-from-env"
    assert settings.notify.telegram is not None
    assert (settings.notify.telegram.token.reveal(), settings.notify.telegram.chat_id) == ("env-token", 42)
    webhook = only_webhook(settings)
    assert (webhook.url.reveal(), webhook.template, webhook.http_proxy.reveal()) == (
        "https://env.test/hook",
        "env template",
        "http://proxy.test:3128",
    )


def test_file_environment_variables(tmp_path: Path) -> None:
    env = {
        "MY_NODE_NAME": "n",
        "TELEGRAM_TOKEN_FILE": write(tmp_path / "token", "file-token\n"),
        "TELEGRAM_CHATID": "42",
        "WEBHOOK_URL_FILE": write(tmp_path / "url", "https://file.test/hook\n"),
        "WEBHOOK_TEMPLATE_FILE": write(tmp_path / "t.json", "from file"),
        "CONFIG": write(tmp_path / "config.yaml", "dryrun: true\n"),
    }
    settings = cli.parse_settings([], env)
    assert settings.notify.telegram is not None and settings.notify.telegram.token.reveal() == "file-token"
    assert only_webhook(settings).url.reveal() == "https://file.test/hook"
    assert only_webhook(settings).template == "from file"
    assert settings.response.dry_run is True


def test_flags_override_environment_and_empty_variables_count_as_unset() -> None:
    settings = cli.parse_settings(["-node=from-flag"], {"MY_NODE_NAME": "from-env", "WEBHOOK_URL": ""})
    assert settings.kube.node_name == "from-flag"
    assert settings.notify.webhooks == ()


# --------------------------------------------------------------------------------------------------
# The -config file
# --------------------------------------------------------------------------------------------------

# (YAML line, how to read the setting, expected): the Go original's keys (lower-cased field names).
ORIGINAL_KEYS: list[tuple[str, Callable[[Settings], object], object]] = [
    ("loglevel: debug", lambda s: s.log.level, "DEBUG"),
    ("logpretty: true", lambda s: s.log.pretty, True),
    ("dryrun: true", lambda s: s.response.dry_run, True),
    ("kubeconfigfile: __KUBECONFIG__", lambda s: s.kube.kubeconfig, "__KUBECONFIG__"),
    ("endpoint: http://127.0.0.1:1/x", lambda s: s.imds.endpoint, "http://127.0.0.1:1/x"),
    ("nodename: node-from-file", lambda s: s.kube.node_name, "node-from-file"),
    ("period: 2s", lambda s: s.imds.poll_interval_seconds, 2.0),
    ("requesttimeout: 3s", lambda s: s.imds.request_timeout_seconds, 3.0),
    ("webhookurl: https://file.test/h", lambda s: only_webhook(s).url.reveal(), "https://file.test/h"),
    ("sentrydsn: https://k@sentry.test/1", lambda s: s.sentry_dsn.reveal(), "https://k@sentry.test/1"),
    ("webhttpaddress: ':9000'", lambda s: s.web.address, ":9000"),
    ("taintnode: true", lambda s: s.response.taint_node, True),
    ("taintnode: true\ntainteffect: NoExecute", lambda s: s.response.taint_effect, TaintEffect.NO_EXECUTE),
    ("podgraceperiodseconds: 30", lambda s: s.response.pod_grace_period_seconds, 30),
    ("nodegraceperiodseconds: 60", lambda s: s.response.node_grace_period_seconds, 60),
    ("graceperiodseconds: 20", lambda s: s.grace_period_seconds, 20.0),
    ("drainonfreezeevent: true", lambda s: s.response.drain_on_freeze, True),
    ("resourcename: vmss_3", lambda s: s.response.resource_name, "vmss_3"),
    ("exitafternodedrain: true", lambda s: s.response.exit_after_node_drain, True),
    ("disableeviction: true", lambda s: s.response.disable_eviction, True),
    ("developmentmode: true", lambda s: s.response.dry_run, False),  # an old key, accepted and ignored
]


@pytest.mark.parametrize(("line", "read", "expected"), ORIGINAL_KEYS)
def test_config_file_keys_of_the_original(
    tmp_path: Path, line: str, read: Callable[[Settings], object], expected: object
) -> None:
    files = _placeholders(tmp_path)
    line = _fill(line, files)
    expected = _fill(expected, files) if isinstance(expected, str) else expected
    config = write(tmp_path / "config.yaml", line + "\n")
    assert read(parse(f"-config={config}")) == expected


def test_config_file_webhook_keys_of_the_original(tmp_path: Path) -> None:
    template = write(tmp_path / "t.txt", "from file")
    config = write(
        tmp_path / "config.yaml",
        f"""
webhookurl: https://file.test/h
webhookcontenttype: text/plain
webhooktemplate: inline
webhooktemplatefile: {template}
webhookmethod: PUT
webhooktimeout: 5s
webhookinsecure: true
webhookproxy: http://p.test:3128
webhookretries: 5
telegramtoken: file-token
telegramchatid: 12345
alertmessage: "alert {{{{ .NodeName }}}}"
""",
    )
    settings = parse(f"-config={config}")
    webhook = only_webhook(settings)
    assert (webhook.content_type, webhook.template, webhook.method, webhook.timeout_seconds) == (
        "text/plain",
        "from file",
        "PUT",
        5.0,
    )
    assert (webhook.insecure_skip_verify, webhook.http_proxy.reveal(), webhook.retries) == (
        True,
        "http://p.test:3128",
        5,
    )
    assert settings.notify.telegram is not None
    assert settings.notify.telegram.chat_id == 12345  # a YAML integer, as the original's yaml.v3 accepts
    assert settings.notify.telegram.message_template == "alert {{ .NodeName }}"


def test_config_file_keys_of_ours_and_flag_names(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.yaml",
        """
eventtypes: [Preempt, terminate]
approveevents: true
excludefromloadbalancers: false
uncordonafterevent: false
notifydrainfinished: true
kuberequesttimeout: 4s
telegram.token: t
telegram.chatID: "7"
telegramapiurl: http://127.0.0.1:2/
webhook.url: https://h.test/
webhook.header: ["X-A: 1"]
web.address: "127.0.0.1:1"
log.level: ERROR
""",
    )
    settings = parse(f"-config={config}")
    assert settings.response.event_types == {EventType.PREEMPT, EventType.TERMINATE}
    assert settings.response.approve_events is True
    assert settings.response.exclude_from_load_balancers is False
    assert settings.response.uncordon_after_event is False
    assert settings.notify.notify_on_drain_finished is True
    assert settings.kube.request_timeout_seconds == 4.0
    assert settings.notify.telegram is not None and settings.notify.telegram.api_url == "http://127.0.0.1:2/"
    assert only_webhook(settings).headers == (("X-A", "1"),)
    assert settings.web.address == "127.0.0.1:1"
    assert settings.log.level == "ERROR"


def test_precedence_defaults_env_flags_config(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", "period: 3s\n")
    env = {"MY_NODE_NAME": "env-node", "CONFIG": config}
    settings = cli.parse_settings(["-node=flag-node", "-period=2s", "-request.timeout=7s"], env)
    assert settings.kube.node_name == "flag-node"  # flag > env
    assert settings.imds.poll_interval_seconds == 3.0  # config file > flag
    assert settings.imds.request_timeout_seconds == 7.0  # flag > default
    config_flag = write(tmp_path / "other.yaml", "period: 4s\n")
    assert cli.parse_settings([f"-config={config_flag}"], env).imds.poll_interval_seconds == 4.0


def test_an_empty_config_file_changes_nothing(tmp_path: Path) -> None:
    assert parse(f"-config={write(tmp_path / 'c.yaml', '')}") == parse()


def test_several_webhooks_from_the_config_file(tmp_path: Path) -> None:
    template = write(tmp_path / "slack.json", SLACK_PAYLOAD)
    url_file = write(tmp_path / "url", "https://secret.test/hook\n")
    config = write(
        tmp_path / "config.yaml",
        f"""
webhooks:
  - url: https://hooks.slack.test/services/T/B/X
    templateFile: {template}
  - urlFile: {url_file}
    method: PUT
    contentType: text/plain
    template: "node {{{{ .NodeName }}}}"
    timeout: 10s
    retries: 1
    insecureSkip: true
    httpProxy: http://u:p@proxy.test:3128
    headers:
      Authorization: Bearer abc
      X-Team: sre
  - url: http://127.0.0.1:9091/metrics/job/x
    headers: ["X-One: 1"]
""",
    )
    first, second, third = parse("-webhook.url=http://flag.test/", f"-config={config}").notify.webhooks[1:]
    assert first.url.reveal() == "https://hooks.slack.test/services/T/B/X"
    assert (first.template, first.template_name, first.method, first.retries) == (
        SLACK_PAYLOAD,
        template,
        "POST",
        3,
    )
    assert (first.timeout_seconds, first.insecure_skip_verify, first.content_type) == (
        30.0,
        False,
        "application/json",
    )
    assert second.url.reveal() == "https://secret.test/hook"
    assert (second.method, second.content_type, second.template, second.timeout_seconds) == (
        "PUT",
        "text/plain",
        "node {{ .NodeName }}",
        10.0,
    )
    assert (second.retries, second.insecure_skip_verify, second.http_proxy.reveal()) == (
        1,
        True,
        "http://u:p@proxy.test:3128",
    )
    assert second.headers == (("Authorization", "Bearer abc"), ("X-Team", "sre"))
    assert third.headers == (("X-One", "1"),)
    assert parse(f"-config={config}").notify.webhooks[0].url.reveal() == first.url.reveal()


# --------------------------------------------------------------------------------------------------
# Bad input: exit code 2 and one line naming the problem
# --------------------------------------------------------------------------------------------------

BAD_INPUT: list[tuple[list[str], str]] = [
    (["-nosuchflag"], "flag provided but not defined: -nosuchflag"),
    (["-dryrun"], "flag provided but not defined: -dryrun (did you mean -dryRun?)"),
    (["-period"], "flag needs an argument: -period"),
    (["---period=1s"], "bad flag syntax: ---period=1s"),
    (["-=1"], "bad flag syntax: -=1"),
    (["-period=5"], "invalid value '5' for flag -period: missing unit"),
    (["-period=fast"], "invalid value 'fast' for flag -period: not a duration"),
    (["-period=-1s"], "-period: must not be negative, got -1s"),
    (["-period=100ms"], "-period: 100ms is too short; IMDS allows 5 requests per second per VM"),
    (["-period=0s"], "-period: 0s is too short"),
    (["-request.timeout=0s"], "-request.timeout: must be positive"),
    (
        ["-request.timeout=5s", "-request.firstTimeout=2s"],
        "-request.firstTimeout: 2s is shorter than -request.timeout",
    ),
    (["-advisory.apiVersion=latest"], "-advisory.apiVersion: must be auto, off or an api-version"),
    (["-readiness.interval=5s"], "-readiness.interval: 5s is too short: every node's check lists the"),
    (["-readiness.interval=-1m"], "-readiness.interval: must not be negative, got -1m"),
    (
        ["-approveEvents.loadBalancerWait=-5s"],
        "-approveEvents.loadBalancerWait: must not be negative, got -5s",
    ),
    (["-kube.requestTimeout=-2s"], "-kube.requestTimeout: must be positive"),
    (["-webhook.url=http://h.test", "-webhook.timeout=0s"], "-webhook.timeout: must be positive"),
    (["-nodeGracePeriodSeconds=ten"], "invalid value 'ten' for flag -nodeGracePeriodSeconds: not an integer"),
    (["-nodeGracePeriodSeconds=0"], "-nodeGracePeriodSeconds: must be at least 1, got 0"),
    (["-podGracePeriodSeconds=-2"], "-podGracePeriodSeconds: must be at least -1, got -2"),
    (["-gracePeriodSeconds=-1"], "-gracePeriodSeconds: must be at least 0"),
    (["-webhook.url=http://h.test", "-webhook.retries=-1"], "-webhook.retries: must be at least 0"),
    (["-dryRun=maybe"], "invalid value 'maybe' for flag -dryRun: not a boolean"),
    (
        ["-taint.effect=NoWay"],
        "-taint.effect: taint effect must be NoSchedule, PreferNoSchedule or NoExecute, got 'NoWay'",
    ),
    (
        ["-telegram.token=t", "-telegram.chatID=abc"],
        "-telegram.chatID: chat ID must be an integer, got 'abc'",
    ),
    (["-telegram.token=t"], "a Telegram token is set but -telegram.chatID is not"),
    (["-telegram.chatID=1"], "-telegram.chatID is set but no Telegram token is"),
    (
        ["-telegram.token=t", "-telegram.chatID=1", "-telegram.apiURL=api.telegram.org"],
        "-telegram.apiURL: must be an http:// or https:// URL",
    ),
    (
        ["-telegram.token=t", "-telegram.chatID=1", "-telegram.http-proxy=socks5://127.0.0.1:1080"],
        "-telegram.http-proxy: must be an http:// or https:// proxy URL",
    ),
    (
        ["-eventTypes=Preempt,Explode"],
        "-eventTypes: unknown event type 'Explode' (valid: Freeze, Reboot, Redeploy, Preempt, Terminate, "
        "SpotRebalanceRecommendation)",
    ),
    (["-eventTypes=,"], "-eventTypes: name at least one event type"),
    (
        ["-endpoint=ftp://127.0.0.1/x"],
        "-endpoint: must be an http:// or https:// URL with a host, got 'ftp://127.0.0.1/x'",
    ),
    (["-webhook.url=hooks.slack.com/x"], "-webhook.url: must be an http:// or https:// URL with a host"),
    (
        ["-webhook.url=http://h.test", "-webhook.http-proxy=socks5://p:1080"],
        "-webhook.http-proxy: must be an http:// or https:// proxy URL",
    ),
    (
        ["-webhook.url=http://h.test", "-webhook.method=PO ST"],
        "-webhook.method: 'PO ST' is not an HTTP method",
    ),
    (
        ["-webhook.url=http://h.test", "-webhook.header=NoColon"],
        '-webhook.header #1: a header must look like "Name: value"',
    ),
    (
        ["-webhook.url=http://h.test", "-webhook.template-file=/nonexistent/payload.json"],
        "cannot read webhook template file '/nonexistent/payload.json': No such file or directory",
    ),
    (
        ["-telegram.token-file=/nonexistent/token", "-telegram.chatID=1"],
        "cannot read Telegram token file '/nonexistent/token'",
    ),
    (["-webhook.url-file=/nonexistent/url"], "cannot read webhook URL file '/nonexistent/url'"),
    (["-config=/nonexistent/config.yaml"], "cannot read config file '/nonexistent/config.yaml'"),
    (
        ["-kubeconfig=/nonexistent/kubeconfig"],
        "cannot read kubeconfig file '/nonexistent/kubeconfig': no such file",
    ),
    (["-web.address=17923"], "-web.address: must be host:port or :port"),
    (["-web.address=:70000"], "-web.address: must be host:port or :port"),
    (["-web.address=:http"], "-web.address: must be host:port or :port"),
    (["-web.address=::1:17923"], "-web.address: an IPv6 address must be in brackets, e.g. [::1]:17923"),
    (["-web.address=[::1:17923"], "-web.address: an IPv6 address must be in brackets"),
    (["-log.level=loud"], "-log.level: unknown log level 'loud'"),
    (["stray"], "unexpected argument 'stray'"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT)
def test_bad_input_exits_2_with_one_line_naming_the_problem(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main([NODE, *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    first, second = captured.err.splitlines()
    assert first.startswith("aks-node-termination-handler: ")
    assert message in first
    assert second == "run with --help for usage"


# An option that only qualifies another (its companion) does nothing alone: refused, not ignored.
# (argv, environment, what the one line must say)
WITHOUT_COMPANION: list[tuple[list[str], dict[str, str], str]] = [
    (
        ["-taint.effect=NoExecute"],
        {},
        "-taint.effect: has no effect without -taint.node; set that too, or remove it",
    ),
    (
        ["-taint.node=false", "-taint.effect=NoSchedule"],
        {},
        "-taint.effect: has no effect without -taint.node",
    ),
    (["-webhook.method=PUT"], {}, "-webhook.method: has no effect without -webhook.url or -webhook.url-file"),
    (["-webhook.contentType=text/plain"], {}, "-webhook.contentType: has no effect without -webhook.url"),
    (["-webhook.header=X-A: 1"], {}, "-webhook.header: has no effect without -webhook.url"),
    (["-webhook.timeout=5s"], {}, "-webhook.timeout: has no effect without -webhook.url"),
    (["-webhook.retries=1"], {}, "-webhook.retries: has no effect without -webhook.url"),
    (["-webhook.template={{ .NodeName }}"], {}, "-webhook.template: has no effect without -webhook.url"),
    (
        ["-webhook.template-file=/files/slack-payload.json"],
        {},
        "-webhook.template-file: has no effect without -webhook.url",
    ),
    (["-webhook.insecureSkip"], {}, "-webhook.insecureSkip: has no effect without -webhook.url"),
    (
        ["-webhook.http-proxy=http://p.test:3128"],
        {},
        "-webhook.http-proxy: has no effect without -webhook.url",
    ),
    (
        [],
        {"WEBHOOK_TEMPLATE_FILE": "/files/payload.json"},
        "-webhook.template-file (from env WEBHOOK_TEMPLATE_FILE): has no effect without -webhook.url",
    ),
    (
        ["-telegram.apiURL=http://127.0.0.1:9/"],
        {},
        "-telegram.apiURL: has no effect without Telegram (a token and -telegram.chatID)",
    ),
    (
        ["-telegram.http-proxy=http://p.test:3128"],
        {},
        "-telegram.http-proxy: has no effect without Telegram",
    ),
    (["-alert.message=hello"], {}, "-alert.message: has no effect without Telegram"),
    (
        ["-notify.drainFinished"],
        {},
        "-notify.drainFinished: has no effect without a notification "
        "(a webhook, Telegram, or webhooks in the -config file)",
    ),
]


@pytest.mark.parametrize(("argv", "env", "message"), WITHOUT_COMPANION)
def test_an_option_given_without_its_companion_is_refused_naming_both(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse(*argv, env=env)
    assert message in str(refused.value)


def replace_handler_run(monkeypatch: pytest.MonkeyPatch, run: Callable[[Settings], Awaitable[int]]) -> None:
    """``aksnth.app.run`` (what ``cli.main`` starts after parsing) is ``run`` for this test, and the
    first poll that ``cli.main`` sends before it is not sent (the default endpoint is IMDS's address,
    beyond this machine)."""

    async def handler_run(settings: Settings, *, first_poll: object = None) -> int:
        assert first_poll is None
        return await run(settings)

    monkeypatch.setattr(cli, "send_first_poll", lambda url: None)
    monkeypatch.setitem(sys.modules, "aksnth.app", types.SimpleNamespace(run=handler_run))
    monkeypatch.setattr("aksnth.app", sys.modules["aksnth.app"], raising=False)


def test_an_option_without_its_companion_exits_2_before_the_handler_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Settings] = []

    async def run(settings: Settings) -> int:
        started.append(settings)
        return 0

    replace_handler_run(monkeypatch, run)
    assert cli.main([NODE, "-taint.effect=NoExecute"]) == 2
    first, second = capsys.readouterr().err.splitlines()
    assert first.startswith("aks-node-termination-handler: -taint.effect: has no effect without -taint.node")
    assert second == "run with --help for usage"
    assert started == []


def test_the_companion_cases_cover_every_option_that_needs_one() -> None:
    named = {
        arg.lstrip("-").split("=")[0]
        for argv, _, _ in WITHOUT_COMPANION
        for arg in argv
        if arg.startswith("-")
    }
    named |= {option.name for option in OPTIONS for argv, env, _ in WITHOUT_COMPANION if option.env in env}
    assert {option.name for option in OPTIONS if option.needs} <= named


def test_a_config_key_without_its_companion_is_named_as_written(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yaml", "tainteffect: NoExecute\n")
    with pytest.raises(ConfigError) as refused:
        parse(f"-config={path}")
    assert str(refused.value).startswith(
        f"tainteffect in config file {path}: has no effect without -taint.node"
    )


def test_the_companion_may_come_from_another_source(tmp_path: Path) -> None:
    """A companion set by a flag, a variable or the config file counts, whichever sets the option."""
    config = write(tmp_path / "config.yaml", "taintnode: true\nwebhookurl: http://h.test\n")
    settings = parse(f"-config={config}", "-taint.effect=NoExecute", "-webhook.method=PUT")
    assert settings.response.taint_effect is TaintEffect.NO_EXECUTE
    assert only_webhook(settings).method == "PUT"
    by_env = parse("-alert.message=hi", env={"TELEGRAM_TOKEN": "t", "TELEGRAM_CHATID": "1"})
    assert by_env.notify.telegram is not None and by_env.notify.telegram.message_template == "hi"


def test_webhooks_of_the_config_file_are_a_companion_of_drain_finished_only(tmp_path: Path) -> None:
    """Listed webhooks get the second notification, but the -webhook.* flags do not apply to them."""
    config = write(tmp_path / "config.yaml", "webhooks:\n  - url: http://h.test\n")
    assert parse(f"-config={config}", "-notify.drainFinished").notify.notify_on_drain_finished
    with pytest.raises(ConfigError, match=r"-webhook\.method: has no effect without -webhook\.url"):
        parse(f"-config={config}", "-webhook.method=PUT")


def test_missing_node_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert (
        "no node name is defined: set -node or the MY_NODE_NAME environment variable"
        in capsys.readouterr().err
    )


def test_bad_environment_variable_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_CHATID", "not-a-number")
    monkeypatch.setenv("TELEGRAM_TOKEN", "t")
    assert cli.main([NODE]) == 2
    assert (
        "-telegram.chatID (from env TELEGRAM_CHATID): chat ID must be an integer" in capsys.readouterr().err
    )


def test_empty_secret_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Telegram token file .* is empty"):
        parse(f"-telegram.token-file={write(tmp_path / 't', chr(10))}", "-telegram.chatID=1")


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("taintnodes: true\n", "unknown key 'taintnodes' in config file {path} (did you mean taintnode?)"),
        ("period: 5\n", 'period in config file {path}: invalid value 5: a duration needs a unit, e.g. "5s"'),
        ("period: nope\n", "period in config file {path}: invalid value 'nope': not a duration"),
        ("taintnode: maybe\n", "taintnode in config file {path}: invalid value 'maybe': not a boolean"),
        (
            "nodegraceperiodseconds: 1.5\n",
            "nodegraceperiodseconds in config file {path}: invalid value 1.5: not an integer",
        ),
        ("tainteffect: Nope\n", "tainteffect in config file {path}: taint effect must be"),
        (
            "telegramchatid: x\ntelegramtoken: t\n",
            "telegramchatid in config file {path}: chat ID must be an integer",
        ),
        ("nodename:\n", "nodename in config file {path}: has no value"),
        ("nodename: [a, b]\n", "nodename in config file {path}: invalid value ['a', 'b']: expected text"),
        (
            "taintnode: true\ntaint.node: false\n",
            "taint.node in config file {path}: -taint.node is already set by 'taintnode'",
        ),
        (
            "configfile: other.yaml\n",
            "configfile in config file {path}: -config cannot be set in the config file",
        ),
        ("- a\n- b\n", "config file '{path}' must be a mapping of keys to values"),
        ("a: [\n", "config file '{path}' is not valid YAML: "),
        ("eventtypes: Explode\n", "eventtypes in config file {path}: unknown event type 'Explode'"),
        ("webhooks: {url: x}\n", "webhooks in config file {path}: must be a list of webhooks"),
        ("webhooks:\n  - method: PUT\n", "webhooks entry 0 in config file {path}: has no url (or urlFile)"),
        (
            "webhooks:\n  - url: http://h.test\n    templatefiles: x\n",
            "entry 0: unknown key 'templatefiles' (did you mean templatefile?)",
        ),
        (
            "webhooks:\n  - url: http://h.test\n    timeout: 0s\n",
            "webhooks entry 0 in config file {path}, key timeout: must be positive",
        ),
        (
            "webhooks:\n  - url: http://h.test\n    retries: many\n",
            "key retries: invalid value 'many': not an integer",
        ),
        (
            "webhooks:\n  - url: http://h.test\n    templateFile: /nonexistent/t\n",
            "cannot read webhook template file '/nonexistent/t'",
        ),
        (
            "webhooks:\n  - url: mailto:x@y\n",
            "webhooks entry 0 in config file {path}, key url: must be an http:// or https:// URL",
        ),
    ],
)
def test_bad_config_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], yaml_text: str, message: str
) -> None:
    path = write(tmp_path / "config.yaml", yaml_text)
    assert cli.main([NODE, f"-config={path}"]) == 2
    err = capsys.readouterr().err
    assert message.format(path=path) in err
    assert len(err.splitlines()) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["-webhook.url=ftp://user:TOPSECRET@h.test/"],
        ["-webhook.url=user:TOPSECRET@h.test/x"],
        ["-webhook.url=http://h.test", "-webhook.http-proxy=socks5://u:TOPSECRET@p:1"],
        ["-webhook.url=http://h.test", "-webhook.header=Authorization TOPSECRET"],
        ["-webhook.url=http://h.test", "-webhook.header=Authorization: TOPSECRET\r\nX: y"],
        ["-telegram.token=TOPSECRET"],
        ["-sentry.dsn=TOPSECRET", "-period=1"],
    ],
)
def test_secrets_never_appear_in_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert cli.main([NODE, *argv]) == 2
    assert "TOPSECRET" not in capsys.readouterr().err


def test_secrets_in_the_config_file_never_appear_in_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "c.yaml", "webhooks:\n  - url: http://h.test\n    headers: [TOPSECRET]\n")
    assert cli.main([NODE, f"-config={path}"]) == 2
    assert "TOPSECRET" not in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# -version, --help, subcommands, running
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["-version"], ["--version"], ["-version=true"], [NODE, "-version"]])
def test_version(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == f"aks-node-termination-handler {__version__}\n"


@pytest.mark.parametrize("flag", ["-h", "-help", "--help"])
def test_help_lists_every_flag_default_and_variable(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    assert cli.main([flag]) == 0
    out = capsys.readouterr().out
    for option in OPTIONS:
        assert f"  -{option.name}" in out
        if option.env:
            assert f"[env {option.env}]" in out
    for group in GROUPS:
        assert f"\n{group}:\n" in out
    assert "-period duration\n        poll interval" in out and "(default 1s)" in out
    assert '(default "NoSchedule")' in out
    assert "readiness [flags]" in out and "render-template [flags]" in out
    assert "(needs -taint.node)" in out
    assert "(needs -webhook.url or -webhook.url-file)" in out


def test_the_docs_describe_every_flag_variable_and_webhook_key() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "flags.md").read_text(encoding="utf-8")
    for option in OPTIONS:
        assert f"| `-{option.name}`" in docs
        if option.env:
            assert f"`{option.env}`" in docs
    for group in GROUPS:
        assert f"### {group}\n" in docs
    for key in ("url", "urlFile", "method", "contentType", "template", "templateFile", "timeout", "retries"):
        assert f"| `{key}` |" in docs
    for key in ("insecureSkip", "httpProxy", "headers"):
        assert f"| `{key}` |" in docs


def test_the_flags_page_lists_every_flag_with_its_variable_and_companion() -> None:
    """docs/flags.md, where the README sends users for the flags, follows the option table row by row."""
    path = "docs/flags.md"
    text = (Path(__file__).parents[2] / path).read_text(encoding="utf-8")
    for option in OPTIONS:
        row = next((line for line in text.splitlines() if line.startswith(f"| `-{option.name}`")), None)
        assert row is not None, f"{path} does not list -{option.name}"
        if option.env:
            assert f"`{option.env}`" in row, f"{path}: -{option.name} row misses {option.env}"
        if option.needs:
            assert f"*needs {option.needs}*" in row, f"{path}: -{option.name} row misses its companion"


@pytest.mark.parametrize(("name", "module"), list(cli.SUBCOMMANDS.items()))
def test_subcommands_delegate_their_arguments(
    monkeypatch: pytest.MonkeyPatch, name: str, module: str
) -> None:
    received: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        received.append(argv)
        return 5

    monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(main=fake_main))
    assert cli.main([name, "-port=0", "--x"]) == 5
    assert received == [["-port=0", "--x"]]


def test_without_subcommand_the_handler_runs_with_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[Settings] = []

    async def run(settings: Settings) -> int:
        received.append(settings)
        return 3

    replace_handler_run(monkeypatch, run)
    assert cli.main([NODE, "-dryRun"]) == 3
    assert received == [parse("-dryRun")]


def test_a_config_error_found_while_starting_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def run(settings: Settings) -> int:
        raise ConfigError("webhook.template:1:4: unexpected '}'")

    replace_handler_run(monkeypatch, run)
    assert cli.main([NODE]) == 2
    assert capsys.readouterr().err.startswith(
        "aks-node-termination-handler: webhook.template:1:4: unexpected '}'\n"
    )


def test_the_readiness_check_is_off_by_default_and_set_by_flag_or_config_file(tmp_path: Path) -> None:
    """Off by default: no API request while idle. -readiness.interval (or readinessinterval in the config
    file) turns it on."""
    assert parse().readiness.interval_seconds == 0 and not parse().readiness.enabled
    assert parse("-readiness.interval=5m").readiness.interval_seconds == 300
    config = write(tmp_path / "config.yaml", "readinessinterval: 10s\n")
    assert parse(f"-config={config}").readiness.interval_seconds == 10


def test_the_handler_process_does_without_the_http2_modules() -> None:
    """In a fresh interpreter, as the handler starts: the HTTP stack loads and builds its transports
    without h2, hpack or hyperframe."""
    import subprocess  # noqa: PLC0415

    script = (
        "import sys\n"
        "from aksnth import cli\n"
        "cli.skip_unused_modules()\n"
        "from aksnth import app\n"
        "import httpx2, httpcore2\n"
        "httpx2.AsyncHTTPTransport(verify=False)\n"
        "loaded = sorted(m for m in ('h2', 'hpack', 'hyperframe') if sys.modules.get(m) is not None)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_the_handler_process_loads_no_kubernetes_client_library_and_no_yaml_in_a_pod() -> None:
    """In a fresh interpreter, everything the handler imports for its Kubernetes side, and its access
    read in-cluster from a ServiceAccount directory: no lightkube, msgspec or PyYAML (a pod reads no
    YAML)."""
    import subprocess  # noqa: PLC0415

    script = (
        "import os, pathlib, shutil, sys, tempfile\n"
        "import certifi\n"
        "from aksnth import app, handler\n"
        "from aksnth.kube import client, events\n"
        "from aksnth.kube.credentials import load_access\n"
        "account = pathlib.Path(tempfile.mkdtemp())\n"
        "(account / 'token').write_text('t')\n"
        "shutil.copy(certifi.where(), account / 'ca.crt')  # any PEM bundle stands for the cluster's CA\n"
        "os.environ.update(KUBERNETES_SERVICE_HOST='10.0.0.1', KUBERNETES_SERVICE_PORT='443')\n"
        "access = load_access('', service_account_dir=account)\n"
        "assert access.server == 'https://10.0.0.1:443', access.server\n"
        "unwanted = ('lightkube', 'msgspec', 'yaml')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(unwanted))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
