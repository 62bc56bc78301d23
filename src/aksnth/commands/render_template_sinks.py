"""The notifications the handler's own flags configure, as ``render-template`` previews them.

A user pastes the chart's ``args`` (or gives the Helm values file) and sees each payload the DaemonSet
would send: one per sink (the ``-webhook.*`` webhook, each ``webhooks:`` entry of the ``-config``
file, Telegram) and phase. The handler's rules are followed: keys of the ``-config`` file override
flags, a template file wins over inline text, Telegram's text is ``-alert.message``. Unlike the handler,
no URL or token is needed: a sink is previewed as soon as anything that configures it is given, and
URLs, tokens and proxies are never read, checked or shown.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final

from aksnth.configfile import ConfigFile, parse_config_file
from aksnth.flags import OptionValue
from aksnth.options import BY_NAME, OPTIONS

#: (path, what it is for messages) -> the file's text; raises ConfigError when it cannot be read.
ReadFile = Callable[[str, str], str]

# Options that turn a sink on (any one of them given, on the command line, in the values file or in
# the config file, previews the sink).
WEBHOOK_OPTIONS: Final = ("webhook.url", "webhook.url-file", "webhook.template", "webhook.template-file")
TELEGRAM_OPTIONS: Final = ("telegram.token", "telegram.token-file", "telegram.chatID", "alert.message")
#: Every option render-template takes from the handler's flags and uses; the others are accepted and
#: ignored, so that a whole ``args`` list can be pasted.
USED_OPTIONS: Final = frozenset(
    {*WEBHOOK_OPTIONS, *TELEGRAM_OPTIONS, "webhook.method", "webhook.contentType", "notify.drainFinished"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviewSink:
    """One sink as configured: where it comes from (secret-free) and the template it renders."""

    kind: str  # "webhook" or "telegram"
    origin: str  # e.g. "-webhook.template-file=/files/slack.json", "webhooks entry 0 in config file x"
    template: str
    template_name: str
    method: str = ""  # webhooks only
    content_type: str = ""  # webhooks only


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviewPlan:
    sinks: tuple[PreviewSink, ...]
    drain_finished: bool  # -notify.drainFinished: a second notification once the drain has finished


def plan_from_flags(
    flags: Mapping[str, OptionValue], *, read: ReadFile, enabled: Collection[str] = ()
) -> PreviewPlan:
    """The sinks that ``flags`` (the handler's, as parsed) configure, with the ``-config`` file they
    name read through ``read``. ``enabled`` names options set elsewhere (a chart Secret) that turn a
    sink on without a value to show."""
    config = _config_file(flags, read)
    values: dict[str, OptionValue] = {name: option.default for name, option in BY_NAME.items()}
    values.update(flags)
    given = set(flags) | set(enabled)
    if config is not None:
        for name, config_value in config.values.items():
            values[name] = config_value.value
            given.add(name)
    sinks: list[PreviewSink] = []
    if given & set(WEBHOOK_OPTIONS):
        sinks.append(_flag_webhook(values, given, read))
    if config is not None:
        for index, entry in enumerate(config.webhooks):
            sinks.append(_listed_webhook(entry, f"webhooks entry {index} in config file {config.path}", read))
    if given & set(TELEGRAM_OPTIONS):
        message = values["alert.message"]
        assert isinstance(message, str)
        origin = "-alert.message" if "alert.message" in given else "the default -alert.message"
        sinks.append(
            PreviewSink(kind="telegram", origin=origin, template=message, template_name="-alert.message")
        )
    drain_finished = values["notify.drainFinished"]
    assert isinstance(drain_finished, bool)
    return PreviewPlan(sinks=tuple(sinks), drain_finished=drain_finished)


def _config_file(flags: Mapping[str, OptionValue], read: ReadFile) -> ConfigFile | None:
    path = flags.get("config", "")
    if not path:
        return None
    assert isinstance(path, str)
    return parse_config_file(read(path, "config file"), path, OPTIONS)


def _text(values: Mapping[str, OptionValue], name: str) -> str:
    value = values[name]
    assert isinstance(value, str), name
    return value


def _flag_webhook(values: Mapping[str, OptionValue], given: set[str], read: ReadFile) -> PreviewSink:
    path = _text(values, "webhook.template-file")
    if path:  # the file wins, as in the handler and the Go original
        template, name, origin = read(path, "webhook template file"), path, f"-webhook.template-file={path}"
    elif "webhook.template" in given:
        template, name, origin = _text(values, "webhook.template"), "-webhook.template", "-webhook.template"
    else:
        template, name, origin = "", "-webhook.template", "-webhook.url without a template (an empty body)"
    return PreviewSink(
        kind="webhook",
        origin=origin,
        template=template,
        template_name=name,
        method=_text(values, "webhook.method").upper(),
        content_type=_text(values, "webhook.contentType"),
    )


def _listed_webhook(entry: Mapping[str, OptionValue], where: str, read: ReadFile) -> PreviewSink:
    def text(key: str, flag: str) -> str:
        value = entry.get(key, BY_NAME[flag].default)
        assert isinstance(value, str), key
        return value

    path = text("templatefile", "webhook.template-file")
    if path:
        template, name, origin = read(path, "webhook template file"), path, f"{where}, templateFile {path}"
    else:
        template, name, origin = text("template", "webhook.template"), f"{where}, key template", where
    return PreviewSink(
        kind="webhook",
        origin=origin,
        template=template,
        template_name=name,
        method=text("method", "webhook.method").upper(),
        content_type=text("contenttype", "webhook.contentType"),
    )
