"""Log lines: JSON shape, context fields, the pretty format, levels and redaction of secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from aksnth.errors import ConfigError
from aksnth.observe.logging import (
    bind,
    configure_logging,
    current_context,
    log_context,
    parse_level,
)
from aksnth.observe.redaction import MASK, Redactor

TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Capture:
    def __init__(self, redactor: Redactor) -> None:
        self.stream = io.StringIO()
        self.redactor = redactor

    def configure(self, level: str = "debug", *, pretty: bool = False) -> None:
        configure_logging(level, pretty, stream=self.stream, redactor=self.redactor)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, object]]:
        """This module's JSON lines (asyncio logs at debug too)."""
        parsed = [json.loads(line) for line in self.text.splitlines()]
        return [line for line in parsed if line["logger"] == "aksnth.test"]


@pytest.fixture
def capture() -> Iterator[Capture]:
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    capture = Capture(Redactor())
    capture.configure()
    yield capture
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    logging.captureWarnings(False)


log = logging.getLogger("aksnth.test")


def test_json_line_shape(capture: Capture) -> None:
    log.info("cordoned %s", "node-1")
    (line,) = capture.lines()
    assert list(line)[:4] == ["ts", "level", "logger", "msg"]
    assert line["level"] == "info"
    assert line["logger"] == "aksnth.test"
    assert line["msg"] == "cordoned node-1"
    assert RFC3339_UTC.match(str(line["ts"])), line["ts"]
    assert "exc" not in line


def test_context_and_extra_fields(capture: Capture) -> None:
    with log_context(node="aks-spot-0", resource="aks-spot_0"):
        with log_context(event_id="E1", event_type="Preempt", incarnation=3):
            log.warning("draining", extra={"action": "drain", "attempt": "1/3"})
        log.info("outside the event")
    log.info("no context")
    inner, outer, bare = capture.lines()
    assert {k: inner[k] for k in ("node", "resource", "event_id", "event_type", "incarnation", "action")} == {
        "node": "aks-spot-0",
        "resource": "aks-spot_0",
        "event_id": "E1",
        "event_type": "Preempt",
        "incarnation": 3,
        "action": "drain",
    }
    assert inner["attempt"] == "1/3"
    assert inner["level"] == "warning"
    assert "event_id" not in outer and outer["node"] == "aks-spot-0"
    assert "node" not in bare


async def test_bind_is_local_to_the_task(capture: Capture) -> None:
    async def worker(name: str) -> None:
        bind(action=name)
        await asyncio.sleep(0)
        log.info("working")

    await asyncio.gather(worker("cordon"), worker("notify"))
    assert sorted(str(line["action"]) for line in capture.lines()) == ["cordon", "notify"]
    assert "action" not in current_context()


def test_reserved_context_names_are_refused() -> None:
    with pytest.raises(ValueError, match="msg"), log_context(msg="x"):
        pass


def test_exception_text_is_included(capture: Capture) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("eviction failed")
    (line,) = capture.lines()
    assert line["level"] == "error"
    assert "RuntimeError: boom" in str(line["exc"])
    assert "Traceback" in str(line["exc"])


def test_pretty_is_one_readable_line(capture: Capture) -> None:
    capture.configure(pretty=True)
    with log_context(node="n1", event_id="E 1"):
        log.info("cordoned")
    line = capture.text.rstrip("\n")
    assert "\n" not in line
    assert re.match(r"^\d{4}-\d\d-\d\dT\S+Z INFO +aksnth\.test: cordoned  node=n1 event_id=\"E 1\"$", line), (
        line
    )


def test_level_filters_and_reconfiguration_replaces_the_handler(capture: Capture) -> None:
    capture.configure("WARN")
    log.info("hidden")
    log.warning("shown")
    assert [line["msg"] for line in capture.lines()] == ["shown"]
    assert logging.getLogger("httpx2").level == logging.WARNING
    assert logging.getLogger("httpcore2").level == logging.WARNING


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("debug", logging.DEBUG),
        ("INFO", logging.INFO),
        ("Warn", logging.WARNING),
        ("warning", logging.WARNING),
        ("error", logging.ERROR),
        ("fatal", logging.CRITICAL),
        ("PANIC", logging.CRITICAL),
        ("trace", logging.DEBUG),
    ],
)
def test_go_level_names(value: str, level: int) -> None:
    assert parse_level(value) == level


@pytest.mark.parametrize("value", ["", "verbose", "10", "inf o"])
def test_bad_level_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=r"-log\.level"):
        parse_level(value)


# --- redaction ---------------------------------------------------------------------------------------


def test_telegram_token_in_url_is_masked(capture: Capture) -> None:
    url = f"https://api.telegram.org/bot{TELEGRAM_TOKEN}/sendMessage"
    log.error("request to %s failed", url)
    (line,) = capture.lines()
    assert TELEGRAM_TOKEN not in capture.text
    assert line["msg"] == f"request to https://api.telegram.org/bot{MASK}/sendMessage failed"


def test_bare_telegram_token_is_masked() -> None:
    assert Redactor().redact(f"token {TELEGRAM_TOKEN} rejected") == f"token {MASK} rejected"


def test_proxy_password_is_masked(capture: Capture) -> None:
    log.warning("proxy http://user:s3cret@proxy:3128 refused the connection")
    (line,) = capture.lines()
    assert "s3cret" not in capture.text
    assert line["msg"] == f"proxy http://user:{MASK}@proxy:3128 refused the connection"


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("headers={'Authorization': 'Bearer eyJhbGciOi.x.y'}", "eyJhbGciOi"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ('"proxy-authorization": "Basic dXNlcjpwYXNz"', "dXNlcjpwYXNz"),
        ("got 401 for bearer abc.def-ghi", "abc.def-ghi"),
        ("POST https://h.example/hook?token=t0ps3cr3t&x=1", "t0ps3cr3t"),
        ("https://acct.blob.core.windows.net/c?sv=2022&sig=AbC%2Bd", "AbC%2Bd"),
        ("http://u:p%40ss@host/", "p%40ss"),
    ],
)
def test_secret_shapes_are_masked(text: str, leak: str) -> None:
    redacted = Redactor().redact(text)
    assert leak not in redacted
    assert MASK in redacted


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:8080/metadata/scheduledevents?api-version=2020-07-01",
        "node aks-spot-0 cordoned at 12:30:01, 3 pods evicted",
        "https://api.telegram.org/sendMessage",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor().redact(text) == text


def test_registered_secret_is_masked_in_message_fields_and_exception_text(capture: Capture) -> None:
    slack = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"
    capture.redactor.register_secret(slack)
    capture.redactor.register_secret("hunter2-pass word")
    try:
        raise ConnectionError(f"cannot POST {slack}: refused (password was 'hunter2-pass word')")
    except ConnectionError:
        log.exception("webhook failed", extra={"url": slack})
    (line,) = capture.lines()
    assert "XXXXXXXXXXXXXXXX" not in capture.text
    assert "hunter2" not in capture.text
    assert line["url"] == MASK
    assert f"cannot POST {MASK}: refused" in str(line["exc"])


def test_registered_secret_is_masked_url_encoded_too() -> None:
    redactor = Redactor()
    redactor.register_secret("p@ss/word")
    assert redactor.redact("a p@ss/word b p%40ss%2Fword c") == f"a {MASK} b {MASK} c"


def test_short_secrets_are_not_registered() -> None:
    redactor = Redactor()
    redactor.register_secret("ab")
    redactor.register_secret("")
    assert redactor.redact("a cab ab") == "a cab ab"


def test_pretty_format_is_redacted_too(capture: Capture) -> None:
    capture.configure(pretty=True)
    with log_context(action="notify"):
        log.info("sending", extra={"proxy": "http://user:s3cret@proxy:3128"})
    assert "s3cret" not in capture.text
    assert f"proxy=http://user:{MASK}@proxy:3128" in capture.text
