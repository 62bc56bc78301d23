"""The command line: argv + environment + the ``-config`` file → one validated ``Settings``, then run.

Precedence, as in the Go original: defaults < environment variables < flags < the ``-config`` file
(the original loads the file after parsing flags, so its keys win). Everything is checked here, before
any request is made; a problem is one ``ConfigError`` line naming the flag, variable or key, and
``main()`` exits with code 2. Secrets (tokens, webhook and proxy URLs, headers) are never repeated in
a message.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from aksnth import __version__
from aksnth.azure.firstpoll import send_first_poll
from aksnth.config import (
    ADVISORY_VERSION_AUTO,
    ADVISORY_VERSION_OFF,
    API_VERSION_PATTERN,
    ImdsSettings,
    KubeSettings,
    LogSettings,
    NotifySettings,
    ReadinessSettings,
    ResponseSettings,
    Secret,
    Settings,
    TaintEffect,
    TelegramSettings,
    WebhookSettings,
    WebSettings,
)
from aksnth.configfile import (
    WEBHOOK_KEYS,
    ConfigFile,
    check_readable,
    load_config_file,
    read_secret_file,
    read_text_file,
)
from aksnth.durations import format_duration
from aksnth.errors import ConfigError
from aksnth.flags import (
    HelpRequested,
    OptionValue,
    ParsedFlags,
    convert,
    format_usage,
    parse_flags,
)
from aksnth.model import EventType
from aksnth.observe.logging import parse_level
from aksnth.options import (
    BY_NAME,
    GROUPS,
    NEEDS_NOTIFICATION,
    NEEDS_TAINT,
    NEEDS_TELEGRAM,
    NEEDS_WEBHOOK,
    OPTIONS,
)

PROGRAM = "aks-node-termination-handler"

# Subcommands and the module whose ``main(argv) -> int`` runs them; imported only when used.
SUBCOMMANDS: Mapping[str, str] = {
    "readiness": "aksnth.commands.readiness",
    "render-template": "aksnth.commands.render_template",
}

USAGE_PREAMBLE = f"""\
Usage: {PROGRAM} [flags]
       {PROGRAM} readiness [flags]         would these nodes drain if Azure evicted them now?
       {PROGRAM} render-template [flags]   render a payload template with sample data

Gracefully handle Azure VM shutdown (Spot eviction, reboot, redeploy, freeze) within Kubernetes.
Flags use Go syntax: -name=value, -name value, --name=value; a bare boolean flag means true and
-flag=false turns it off. Durations look like 300ms, 5s, 1m30s.
Precedence: defaults < environment variables < flags < keys of the -config file.
"""

MIN_POLL_INTERVAL_SECONDS = 0.2  # IMDS allows 5 requests per second per VM
MIN_READINESS_INTERVAL_SECONDS = 10.0  # each check lists PodDisruptionBudgets cluster-wide, from every node
_SELECTABLE_EVENT_TYPES = tuple(t for t in EventType if t is not EventType.UNKNOWN)
_HTTP_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: methods and header names
_CHAT_ID = re.compile(r"[+-]?[0-9]+")  # Go's strconv.Atoi


# ---------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """The program: a subcommand, ``-version``, ``--help``, or the handler itself. Returns the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in SUBCOMMANDS:
        return _run_subcommand(args[0], args[1:])
    try:
        parsed = parse_flags(args, OPTIONS)
        if parsed.values.get("version"):
            sys.stdout.write(f"{PROGRAM} {__version__}\n")
            return 0
        settings = _settings_from(parsed, os.environ)
    except HelpRequested:
        sys.stdout.write(usage())
        return 0
    except ConfigError as exc:
        return _refuse(exc)
    return _run_handler(settings)


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> Settings:
    """Flags, environment and the ``-config`` file as one validated ``Settings``.

    Raises ``ConfigError`` naming the first problem, or ``flags.HelpRequested`` for ``-h``/``--help``.
    Reads the files the configuration names (config, templates, secrets); makes no request.
    """
    return _settings_from(parse_flags(argv, OPTIONS), env)


def usage() -> str:
    return format_usage(OPTIONS, GROUPS, preamble=USAGE_PREAMBLE)


def _refuse(exc: ConfigError) -> int:
    message = " ".join(str(exc).split("\n"))
    sys.stderr.write(f"{PROGRAM}: {message}\nrun with --help for usage\n")
    return 2


def _run_subcommand(name: str, argv: list[str]) -> int:
    module_name = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return _refuse(ConfigError(f"subcommand {name!r} is not available in this build"))
    result: int = module.main(argv)
    return result


#: Modules the handler process never needs although its libraries would load them. ``h2`` (with
#: ``hpack`` and ``hyperframe``): the image does not install it, but an environment that does (the
#: tests' lightkube asks for ``httpx2[http2]``) makes httpcore2 import its HTTP/2 connection class,
#: yet every client here speaks HTTP/1.1 (the API server, IMDS, webhooks, Telegram). Marked missing,
#: httpcore2 falls back to its "h2 is not installed" stand-in: 1.3 MiB of RSS and about 10 ms of
#: start-up less (``import httpcore2``), wherever the handler runs.
UNUSED_MODULES: Final = ("h2",)


def skip_unused_modules() -> None:
    """Make ``import`` of :data:`UNUSED_MODULES` fail, unless one is loaded already."""
    for name in UNUSED_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # None: "not installed"


def _run_handler(settings: Settings) -> int:
    if settings.notify.own_templates:
        # A template mistake stops the start before any request; the check needs only the template
        # modules (tens of milliseconds, so only for the user's own templates; the notifier checks
        # every template again when it starts).
        from aksnth.notify.payload import check_templates  # noqa: PLC0415

        try:
            check_templates(settings.notify)
        except ConfigError as exc:
            return _refuse(exc)
    # The first GET goes out before asyncio, the HTTP client and the rest of the handler are imported
    # (most of a start): the node is unprotected until it is answered.
    first_poll = send_first_poll(settings.imds.endpoint)
    skip_unused_modules()
    import asyncio  # noqa: PLC0415 - after the first poll, see above

    from aksnth import app  # noqa: PLC0415 - the handler and its libraries load only when it runs

    try:
        result: int = asyncio.run(app.run(settings, first_poll=first_poll))
    except ConfigError as exc:  # e.g. a template that does not compile, found while starting
        return _refuse(exc)
    return result


# ---------------------------------------------------------------------------------------------------
# Layering: defaults < environment < flags < config file
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Value:
    value: OptionValue
    where: str  # "-period", "-node (from env MY_NODE_NAME)", "period in config file /files/config.yaml"
    given: bool = True  # set by a variable, a flag or the config file; False for the default


class _Values:
    """The final value of every option, with where it came from for error messages."""

    def __init__(self, entries: Mapping[str, _Value]) -> None:
        self._entries = entries

    def where(self, name: str) -> str:
        return self._entries[name].where

    def given(self, name: str) -> bool:
        return self._entries[name].given

    def value(self, name: str) -> OptionValue:
        return self._entries[name].value

    def text(self, name: str) -> str:
        value = self._entries[name].value
        assert isinstance(value, str), name
        return value

    def flag(self, name: str) -> bool:
        value = self._entries[name].value
        assert isinstance(value, bool), name
        return value

    def integer(self, name: str) -> int:
        value = self._entries[name].value
        assert isinstance(value, int) and not isinstance(value, bool), name
        return value

    def seconds(self, name: str) -> float:
        value = self._entries[name].value
        assert isinstance(value, float | int) and not isinstance(value, bool), name
        return float(value)

    def texts(self, name: str) -> tuple[str, ...]:
        value = self._entries[name].value
        assert isinstance(value, tuple), name
        return value


def _resolve(parsed: ParsedFlags, env: Mapping[str, str]) -> tuple[_Values, ConfigFile | None]:
    entries = {option.name: _Value(option.default, f"-{option.name}", given=False) for option in OPTIONS}
    for option in OPTIONS:
        text = env.get(option.env, "") if option.env else ""
        if not text:  # as in Go, an empty variable is the same as an unset one
            continue
        try:
            entries[option.name] = _Value(convert(option, text), f"-{option.name} (from env {option.env})")
        except ValueError as exc:
            raise ConfigError(f"invalid value in environment variable {option.env}: {exc}") from None
    for name, value in parsed.values.items():
        entries[name] = _Value(value, f"-{name}")
    config_path = entries["config"].value
    assert isinstance(config_path, str)
    config_file = load_config_file(config_path, OPTIONS) if config_path else None
    if config_file is not None:
        for name, config_value in config_file.values.items():
            entries[name] = _Value(config_value.value, config_file.where(config_value.key))
    return _Values(entries), config_file


def _settings_from(parsed: ParsedFlags, env: Mapping[str, str]) -> Settings:
    if parsed.positional:
        first = parsed.positional[0]
        if first in ("true", "false"):  # "-dryRun false": Go booleans never take the next argument
            raise ConfigError(
                f"unexpected argument {first!r}: a boolean flag takes its value as -flag={first}"
            )
        raise ConfigError(
            f"unexpected argument {first!r}: flags start with '-' and subcommands "
            f"({', '.join(SUBCOMMANDS)}) come first"
        )
    values, config_file = _resolve(parsed, env)
    settings = Settings(
        log=_log_settings(values),
        kube=_kube_settings(values),
        imds=_imds_settings(values),
        response=_response_settings(values),
        notify=_notify_settings(values, config_file),
        web=WebSettings(address=_listen_address(values)),
        readiness=_readiness_settings(values),
        grace_period_seconds=float(_at_least(values, "gracePeriodSeconds", 0)),
        sentry_dsn=Secret(values.text("sentry.dsn")),
    )
    _check_companions(values, settings)
    return settings


# ---------------------------------------------------------------------------------------------------
# Companions: an option that only qualifies another is refused without it
# ---------------------------------------------------------------------------------------------------

# Whether each companion (``Option.needs``) is in force, judged on what was built: a Telegram token
# without a chat ID, say, has been refused already.
_COMPANION_SET: Mapping[str, Callable[[_Values, Settings], bool]] = {
    NEEDS_TAINT: lambda values, settings: settings.response.taint_node,
    # Only the flags' own URL: webhooks listed in the config file do not take the -webhook.* flags.
    NEEDS_WEBHOOK: lambda values, settings: bool(
        values.text("webhook.url") or values.text("webhook.url-file")
    ),
    NEEDS_TELEGRAM: lambda values, settings: settings.notify.telegram is not None,
    NEEDS_NOTIFICATION: lambda values, settings: bool(settings.notify.webhooks or settings.notify.telegram),
}


def _check_companions(values: _Values, settings: Settings) -> None:
    # The Go original ignored such an option, so `-taint.effect=NoExecute` without `-taint.node` looked
    # configured and did nothing; a refusal at start-up is found at once, an ignored option in an outage.
    for option in OPTIONS:
        if option.needs and values.given(option.name) and not _COMPANION_SET[option.needs](values, settings):
            raise ConfigError(
                f"{values.where(option.name)}: has no effect without {option.needs}; "
                "set that too, or remove it"
            )


# ---------------------------------------------------------------------------------------------------
# One builder per part of Settings
# ---------------------------------------------------------------------------------------------------


def _log_settings(values: _Values) -> LogSettings:
    level = parse_level(values.text("log.level"), where=values.where("log.level"))
    return LogSettings(level=logging.getLevelName(level), pretty=values.flag("log.pretty"))


def _kube_settings(values: _Values) -> KubeSettings:
    node_name = values.text("node").strip()
    if not node_name:
        raise ConfigError("no node name is defined: set -node or the MY_NODE_NAME environment variable")
    kubeconfig = values.text("kubeconfig")
    if kubeconfig:
        check_readable(kubeconfig, what="kubeconfig file")
    return KubeSettings(
        kubeconfig=kubeconfig,
        node_name=node_name,
        request_timeout_seconds=_positive_seconds(values, "kube.requestTimeout"),
    )


def _imds_settings(values: _Values) -> ImdsSettings:
    period = _non_negative_seconds(values, "period")
    if period < MIN_POLL_INTERVAL_SECONDS:
        raise ConfigError(
            f"{values.where('period')}: {format_duration(period)} is too short; IMDS allows 5 requests "
            "per second per VM, so use at least 200ms (1s is recommended)"
        )
    timeout = _positive_seconds(values, "request.timeout")
    first_timeout = _positive_seconds(values, "request.firstTimeout")
    if first_timeout < timeout and values.given("request.firstTimeout"):
        raise ConfigError(
            f"{values.where('request.firstTimeout')}: {format_duration(first_timeout)} is shorter than "
            f"-request.timeout ({format_duration(timeout)}); it is the longer wait for IMDS's first answer"
        )
    return ImdsSettings(
        endpoint=_http_url(values.text("endpoint"), where=values.where("endpoint")),
        poll_interval_seconds=period,
        request_timeout_seconds=timeout,
        first_request_timeout_seconds=first_timeout,
        advisory_api_version=_advisory_api_version(values),
    )


def _advisory_api_version(values: _Values) -> str:
    text = values.text("advisory.apiVersion").strip()
    if text.lower() in (ADVISORY_VERSION_AUTO, ADVISORY_VERSION_OFF):
        return text.lower()
    if not API_VERSION_PATTERN.fullmatch(text):
        raise ConfigError(
            f"{values.where('advisory.apiVersion')}: must be auto, off or an api-version such as "
            f"2020-07-01, got {text!r}"
        )
    return text


def _response_settings(values: _Values) -> ResponseSettings:
    return ResponseSettings(
        event_types=_event_types(values, "eventTypes"),
        drain_on_freeze=values.flag("drainOnFreezeEvent"),
        taint_node=values.flag("taint.node"),
        taint_effect=_taint_effect(values),
        pod_grace_period_seconds=_at_least(values, "podGracePeriodSeconds", -1),
        node_grace_period_seconds=_at_least(values, "nodeGracePeriodSeconds", 1),
        exclude_from_load_balancers=values.flag("excludeFromLoadBalancers"),
        taint_to_be_deleted=values.flag("taint.toBeDeleted"),
        uncordon_after_event=values.flag("uncordonAfterEvent"),
        approve_events=values.flag("approveEvents"),
        approve_load_balancer_wait_seconds=_non_negative_seconds(values, "approveEvents.loadBalancerWait"),
        disable_eviction=values.flag("disableEviction"),
        last_resort=values.flag("lastResort"),
        surge_deployments=values.flag("surgeDeployments"),
        last_resort_event_types=_event_types(values, "lastResort.eventTypes", allow_none=True),
        dry_run=values.flag("dryRun"),
        exit_after_node_drain=values.flag("exitAfterNodeDrain"),
        resource_name=values.text("resource.name").strip(),
    )


def _readiness_settings(values: _Values) -> ReadinessSettings:
    interval = _non_negative_seconds(values, "readiness.interval")
    if 0 < interval < MIN_READINESS_INTERVAL_SECONDS:
        raise ConfigError(
            f"{values.where('readiness.interval')}: {format_duration(interval)} is too short: every node's "
            f"check lists the cluster's PodDisruptionBudgets, so use at least "
            f"{format_duration(MIN_READINESS_INTERVAL_SECONDS)} (minutes are plenty), or 0 to turn it off"
        )
    return ReadinessSettings(interval_seconds=interval)


def _event_types(values: _Values, name: str, *, allow_none: bool = False) -> frozenset[EventType]:
    where = values.where(name)
    selected: set[EventType] = set()
    for item in values.texts(name):
        for word in item.split(","):
            if not word.strip():
                continue
            event_type = EventType.parse(word)
            if event_type is EventType.UNKNOWN:
                valid = ", ".join(_SELECTABLE_EVENT_TYPES)
                raise ConfigError(f"{where}: unknown event type {word.strip()!r} (valid: {valid})")
            selected.add(event_type)
    if not selected and not allow_none:
        raise ConfigError(f"{where}: name at least one event type")
    return frozenset(selected)


def _taint_effect(values: _Values) -> TaintEffect:
    text = values.text("taint.effect").strip()
    for effect in TaintEffect:
        if effect.value.lower() == text.lower():
            return effect
    raise ConfigError(
        f"{values.where('taint.effect')}: taint effect must be NoSchedule, PreferNoSchedule or NoExecute, "
        f"got {text!r}"
    )


def _notify_settings(values: _Values, config_file: ConfigFile | None) -> NotifySettings:
    webhooks: list[WebhookSettings] = []
    flag_webhook = _flag_webhook(values)
    if flag_webhook is not None:
        webhooks.append(flag_webhook)
    if config_file is not None:
        for index, entry in enumerate(config_file.webhooks):
            webhooks.append(
                _listed_webhook(entry, where=f"webhooks entry {index} in config file {config_file.path}")
            )
    return NotifySettings(
        webhooks=tuple(webhooks),
        telegram=_telegram_settings(values),
        notify_on_drain_finished=values.flag("notify.drainFinished"),
    )


def _telegram_settings(values: _Values) -> TelegramSettings | None:
    token = values.text("telegram.token")
    token_file = values.text("telegram.token-file")
    if token_file:
        token = read_secret_file(token_file, what="Telegram token file")
    chat_id = values.text("telegram.chatID").strip()
    if not token and not chat_id:
        return None
    if not chat_id:
        raise ConfigError("a Telegram token is set but -telegram.chatID is not: set both, or neither")
    if not token:
        raise ConfigError(
            f"{values.where('telegram.chatID')} is set but no Telegram token is: set -telegram.token, "
            "TELEGRAM_TOKEN or -telegram.token-file, or remove the chat ID"
        )
    if not _CHAT_ID.fullmatch(chat_id):
        raise ConfigError(f"{values.where('telegram.chatID')}: chat ID must be an integer, got {chat_id!r}")
    if http_proxy := values.text("telegram.http-proxy").strip():
        where = values.where("telegram.http-proxy")
        http_proxy = _http_url(http_proxy, where=where, secret=True, what="proxy URL")
    return TelegramSettings(
        token=Secret(token.strip()),
        chat_id=int(chat_id),
        message_template=values.text("alert.message"),
        api_url=_http_url(values.text("telegram.apiURL"), where=values.where("telegram.apiURL")),
        http_proxy=Secret(http_proxy),
    )


# The flag behind each key of a ``webhooks:`` entry: the flag's default is the entry's default.
_WEBHOOK_FLAGS: Mapping[str, str] = {
    "url": "webhook.url",
    "urlfile": "webhook.url-file",
    "method": "webhook.method",
    "contenttype": "webhook.contentType",
    "template": "webhook.template",
    "templatefile": "webhook.template-file",
    "timeout": "webhook.timeout",
    "retries": "webhook.retries",
    "insecureskip": "webhook.insecureSkip",
    "httpproxy": "webhook.http-proxy",
    "headers": "webhook.header",
}
assert set(_WEBHOOK_FLAGS) == set(WEBHOOK_KEYS)


def _flag_webhook(values: _Values) -> WebhookSettings | None:
    """The webhook of the ``-webhook.*`` flags (the Go original's only one), if it has a URL."""
    fields = {key: values.value(flag) for key, flag in _WEBHOOK_FLAGS.items()}
    if not fields["url"] and not fields["urlfile"]:
        return None
    return _webhook(
        _WebhookFields(fields),
        where=lambda key: values.where(_WEBHOOK_FLAGS[key]),
        inline_template_name="-webhook.template",
    )


def _listed_webhook(entry: Mapping[str, OptionValue], *, where: str) -> WebhookSettings:
    """One entry of the config file's ``webhooks:`` list; what it leaves out takes the flags' defaults."""
    fields = {key: entry.get(key, BY_NAME[flag].default) for key, flag in _WEBHOOK_FLAGS.items()}
    if not fields["url"] and not fields["urlfile"]:
        raise ConfigError(f"{where}: has no url (or urlFile)")
    return _webhook(
        _WebhookFields(fields),
        where=lambda key: f"{where}, key {key}",
        inline_template_name=f"{where}, key template",
    )


class _WebhookFields:
    """Typed access to one webhook's fields, keyed as in ``WEBHOOK_KEYS``."""

    def __init__(self, fields: Mapping[str, OptionValue]) -> None:
        self._fields = fields

    def text(self, key: str) -> str:
        value = self._fields[key]
        assert isinstance(value, str), key
        return value

    def __getitem__(self, key: str) -> OptionValue:
        return self._fields[key]


def _webhook(
    fields: _WebhookFields, *, where: Callable[[str], str], inline_template_name: str
) -> WebhookSettings:
    url, url_where = fields.text("url"), where("url")
    if url_file := fields.text("urlfile"):
        url = read_secret_file(url_file, what="webhook URL file")
        url_where = f"webhook URL file {url_file!r}"
    url = _http_url(url.strip(), where=url_where, secret=True)

    method = fields.text("method")
    if not _HTTP_TOKEN.fullmatch(method):
        raise ConfigError(f"{where('method')}: {method!r} is not an HTTP method")
    content_type = fields.text("contenttype")
    if any(character in content_type for character in "\r\n\0"):
        raise ConfigError(f"{where('contenttype')}: contains a line break")

    timeout, retries, insecure, headers = (
        fields["timeout"],
        fields["retries"],
        fields["insecureskip"],
        fields["headers"],
    )
    assert isinstance(timeout, float | int) and isinstance(retries, int) and isinstance(insecure, bool)
    assert isinstance(headers, tuple)
    if timeout <= 0:
        raise ConfigError(f"{where('timeout')}: must be positive, got {format_duration(timeout)}")
    if retries < 0:
        raise ConfigError(f"{where('retries')}: must be at least 0, got {retries}")

    if http_proxy := fields.text("httpproxy").strip():
        http_proxy = _http_url(http_proxy, where=where("httpproxy"), secret=True, what="proxy URL")

    template, template_name = fields.text("template"), inline_template_name
    if template_file := fields.text("templatefile"):  # the file wins, as in the Go original
        template = read_text_file(template_file, what="webhook template file")
        template_name = template_file

    return WebhookSettings(
        url=Secret(url),
        method=method,
        content_type=content_type,
        timeout_seconds=float(timeout),
        template=template,
        template_name=template_name,
        insecure_skip_verify=insecure,
        http_proxy=Secret(http_proxy),
        retries=retries,
        headers=tuple(
            _header(text, where=f"{where('headers')} #{number}") for number, text in enumerate(headers, 1)
        ),
    )


def _header(text: str, *, where: str) -> tuple[str, str]:
    # Header values often carry credentials: messages name the header at most, never its value.
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _HTTP_TOKEN.fullmatch(name):
        raise ConfigError(f'{where}: a header must look like "Name: value"')
    if any(character in value for character in "\r\n\0"):
        raise ConfigError(f"{where}: the value of header {name!r} contains a line break")
    return name, value


# ---------------------------------------------------------------------------------------------------
# Small checks
# ---------------------------------------------------------------------------------------------------


def _http_url(text: str, *, where: str, secret: bool = False, what: str = "URL") -> str:
    try:
        parts = urlsplit(text)
        has_host = bool(parts.hostname)
    except ValueError:
        parts, has_host = None, False
    if parts is None or parts.scheme.lower() not in ("http", "https") or not has_host:
        got = "" if secret else f", got {text!r}"
        raise ConfigError(f"{where}: must be an http:// or https:// {what} with a host{got}")
    return text


def _positive_seconds(values: _Values, name: str) -> float:
    seconds = values.seconds(name)
    if seconds <= 0:
        raise ConfigError(f"{values.where(name)}: must be positive, got {format_duration(seconds)}")
    return seconds


def _non_negative_seconds(values: _Values, name: str) -> float:
    seconds = values.seconds(name)
    if seconds < 0:
        raise ConfigError(f"{values.where(name)}: must not be negative, got {format_duration(seconds)}")
    return seconds


def _at_least(values: _Values, name: str, minimum: int) -> int:
    number = values.integer(name)
    if number < minimum:
        raise ConfigError(f"{values.where(name)}: must be at least {minimum}, got {number}")
    return number


def _listen_address(values: _Values) -> str:
    address = values.text("web.address").strip()
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"{values.where('web.address')}: must be host:port or :port (e.g. :17923), got {address!r}"
        )
    half_bracketed = host.startswith("[") != host.endswith("]")
    if half_bracketed or (":" in host and not host.startswith("[")):
        raise ConfigError(
            f"{values.where('web.address')}: an IPv6 address must be in brackets, e.g. [::1]:17923, "
            f"got {address!r}"
        )
    return address
