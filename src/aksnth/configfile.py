"""The ``-config`` YAML file, and the other files the configuration names (templates, secrets).

Keys are compared ignoring case, dots, dashes and underscores, so the Go original's keys
(``taintnode``, ``kubeconfigfile``, ``webhookinsecure``…), our own (the flag name lower-cased without
dots: ``kuberequesttimeout``) and the flag names themselves (``taint.node``) all work. An unknown key is
an error naming the closest known one: a typo must not silently fall back to a default.

Besides one key per option, the file may hold ``webhooks:``, a list of extra webhooks (see
``WEBHOOK_KEYS``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aksnth.durations import parse_go_duration
from aksnth.errors import ConfigError
from aksnth.flags import Kind, Option, OptionValue, did_you_mean, parse_go_bool, parse_go_int

WEBHOOKS_KEY = "webhooks"
# Keys of one entry of ``webhooks:``, normalized, with the kind of their value.
WEBHOOK_KEYS: Mapping[str, Kind] = {
    "url": Kind.STRING,
    "urlfile": Kind.STRING,
    "method": Kind.STRING,
    "contenttype": Kind.STRING,
    "template": Kind.STRING,
    "templatefile": Kind.STRING,
    "timeout": Kind.DURATION,
    "retries": Kind.INT,
    "insecureskip": Kind.BOOL,
    "httpproxy": Kind.STRING,
    "headers": Kind.LIST,
}
_SECRET_WEBHOOK_KEYS = frozenset({"url", "httpproxy", "headers"})
# Keys of the Go original that configure nothing any more; accepted so that old files still load.
IGNORED_KEYS = frozenset({"developmentmode"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigValue:
    value: OptionValue
    key: str  # as written in the file, for messages


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigFile:
    path: str
    values: Mapping[str, ConfigValue]  # option name -> value
    # One mapping per ``webhooks:`` entry: normalized key (see WEBHOOK_KEYS) -> typed value.
    webhooks: tuple[Mapping[str, OptionValue], ...] = ()

    def where(self, key: str) -> str:
        return f"{key} in config file {self.path}"


def normalize_key(key: str) -> str:
    return key.lower().replace(".", "").replace("-", "").replace("_", "")


def read_text_file(path: str, *, what: str) -> str:
    """The whole of a small UTF-8 file the configuration names; ``what`` says which one in errors."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ConfigError(f"cannot read {what} {path!r}: {reason}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {what} {path!r}: not UTF-8 text") from exc


def read_secret_file(path: str, *, what: str) -> str:
    """A secret mounted as a file; the trailing newline that ``echo`` and editors add is not part of it."""
    value = read_text_file(path, what=what).rstrip("\r\n")
    if not value:
        raise ConfigError(f"{what} {path!r} is empty")
    return value


def load_config_file(path: str, options: Sequence[Option]) -> ConfigFile:
    """Read and check the ``-config`` file; values are typed, but not yet validated against each other."""
    return parse_config_file(read_text_file(path, what="config file"), path, options)


def parse_config_file(text: str, path: str, options: Sequence[Option]) -> ConfigFile:
    """Check the text of a ``-config`` file read from ``path`` (which only names it in messages)."""
    import yaml  # noqa: PLC0415 - only with -config; 12-19 ms of start-up otherwise spent before the first poll

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {_yaml_problem(exc)}") from exc
    if document is None:
        return ConfigFile(path=path, values={})
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path!r} must be a mapping of keys to values")

    by_key: dict[str, Option] = {}
    for option in options:
        for key in (option.name, *option.config_keys):
            by_key[normalize_key(key)] = option
    known_keys = sorted(
        {normalize_key(o.name) for o in options if o.in_config}
        | {k for o in options if o.in_config for k in o.config_keys}
        | {WEBHOOKS_KEY}
    )

    values: dict[str, ConfigValue] = {}
    webhooks: tuple[Mapping[str, OptionValue], ...] = ()
    for raw_key, raw_value in document.items():
        key = str(raw_key)
        normalized = normalize_key(key)
        where = f"{key} in config file {path}"
        if normalized in IGNORED_KEYS:
            continue
        if normalized == WEBHOOKS_KEY:
            webhooks = _webhooks(raw_value, where=where)
            continue
        found = by_key.get(normalized)
        if found is None:
            hint = did_you_mean(normalized, known_keys)
            raise ConfigError(f"unknown key {key!r} in config file {path}{hint}")
        option = found
        if not option.in_config:
            raise ConfigError(f"{where}: -{option.name} cannot be set in the config file")
        if option.name in values:
            first = values[option.name].key
            raise ConfigError(f"{where}: -{option.name} is already set by {first!r}")
        values[option.name] = ConfigValue(
            value=_typed(raw_value, option.kind, where=where, secret=option.secret), key=key
        )
    return ConfigFile(path=path, values=values, webhooks=webhooks)


def _webhooks(raw: object, *, where: str) -> tuple[Mapping[str, OptionValue], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: must be a list of webhooks, each a mapping with at least url")
    entries: list[Mapping[str, OptionValue]] = []
    for index, item in enumerate(raw):
        item_where = f"{where}, entry {index}"
        if not isinstance(item, dict):
            raise ConfigError(f"{item_where}: must be a mapping with at least url")
        entry: dict[str, OptionValue] = {}
        for raw_key, raw_value in item.items():
            key = normalize_key(str(raw_key))
            kind = WEBHOOK_KEYS.get(key)
            if kind is None:
                hint = did_you_mean(key, WEBHOOK_KEYS)
                raise ConfigError(f"{item_where}: unknown key {raw_key!r}{hint}")
            value = raw_value
            if key == "headers" and isinstance(raw_value, dict):
                value = [f"{name}: {text}" for name, text in raw_value.items()]
            entry[key] = _typed(
                value, kind, where=f"{item_where}, key {raw_key}", secret=key in _SECRET_WEBHOOK_KEYS
            )
        entries.append(entry)
    return tuple(entries)


def _typed(raw: object, kind: Kind, *, where: str, secret: bool) -> OptionValue:
    """A YAML value as the option's type; strings in Go syntax are accepted where YAML has no type."""
    shown = "<hidden>" if secret else repr(raw)
    if raw is None:
        raise ConfigError(f"{where}: has no value")
    try:
        match kind:
            case Kind.BOOL:
                if isinstance(raw, bool):
                    return raw
                if isinstance(raw, str):
                    return parse_go_bool(raw)
                raise ValueError("not a boolean (use true or false)")
            case Kind.INT:
                if isinstance(raw, int) and not isinstance(raw, bool):
                    return raw
                if isinstance(raw, str):
                    return parse_go_int(raw)
                raise ValueError("not an integer")
            case Kind.DURATION:
                if isinstance(raw, str):
                    return parse_go_duration(raw)
                # As in the Go original (yaml.v3), a bare number is refused: is 5 seconds or nanoseconds?
                raise ValueError('a duration needs a unit, e.g. "5s" or "300ms"')
            case Kind.LIST:
                items = raw if isinstance(raw, list) else [raw]
                return tuple(_scalar_text(item) for item in items)
            case Kind.STRING:
                return _scalar_text(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: invalid value {shown}: {exc}") from None


def _scalar_text(raw: object) -> str:
    # YAML 1.1 reads `no` or `on` as booleans and `2024-01-01` as a date: asking for quotes is clearer
    # than guessing which text was meant.
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError("expected text; put the value in quotes")
    return str(raw)


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)


def check_readable(path: str, *, what: str) -> None:
    """Fail at start-up, not at the first use, when a file named by the configuration cannot be read."""
    if not os.path.isfile(path):
        raise ConfigError(f"cannot read {what} {path!r}: no such file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"cannot read {what} {path!r}: permission denied")
