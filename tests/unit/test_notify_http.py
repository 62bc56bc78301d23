"""Pure parts of notification delivery: backoff schedule, Retry-After, redaction, URL checks."""

from __future__ import annotations

import httpx2
import pytest

from aksnth.config import Secret, TelegramSettings, WebhookSettings
from aksnth.errors import ConfigError
from aksnth.notify.http import (
    RetryPolicy,
    describe_refusal,
    header_retry_after,
    is_retryable_status,
    notify_backoff,
    safe_origin,
    url_secrets,
)
from aksnth.notify.telegram import MAX_TEXT_CHARS, TelegramSink, shorten
from aksnth.notify.telegram import _retry_after as telegram_retry_after
from aksnth.notify.webhook import WebhookSink, check_http_url
from aksnth.observe.redaction import Redactor


@pytest.mark.parametrize(
    ("retry", "rand", "expected"),
    [
        (1, 0.0, 0.5),  # lower half of the first 1 s step
        (1, 0.999999, 1.0),
        (2, 0.0, 1.0),
        (3, 0.5, 3.0),  # 4 s step: 2 + 1
        (10, 0.0, 5.0),  # capped at 10 s
    ],
)
def test_backoff_grows_exponentially_with_jitter_and_a_cap(retry: int, rand: float, expected: float) -> None:
    assert notify_backoff().delay(retry, draw=rand) == pytest.approx(expected, abs=1e-5)


def test_backoff_honours_retry_after_up_to_its_cap() -> None:
    backoff = notify_backoff(max_retry_after_seconds=30)
    assert backoff.delay(1, retry_after=7, draw=0.9) == 7
    assert backoff.delay(1, retry_after=3600, draw=0.0) == 30
    assert backoff.delay(3, retry_after=0, draw=0.5) == 0


def test_attempts_are_retries_plus_one() -> None:
    assert RetryPolicy(retries=3).attempts == 4
    assert RetryPolicy(retries=0).attempts == 1
    assert RetryPolicy(retries=-2).attempts == 1


@pytest.mark.parametrize(
    ("status", "retryable"), [(429, True), (500, True), (503, True), (599, True), (400, False), (404, False)]
)
def test_only_429_and_5xx_are_retried(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_redaction_hides_every_secret_part_of_a_url() -> None:
    url = "https://bob:pa55word@hooks.example.com:8443/services/T0/B0/SECRETPATH?token=QUERYSECRET"
    redact = Redactor(url_secrets(url))
    text = redact(f"failed: {url}; user bob:pa55word; path /services/T0/B0/SECRETPATH; q token=QUERYSECRET")
    for secret in ("pa55word", "SECRETPATH", "QUERYSECRET", url):
        assert secret not in text
    assert "hooks.example.com" in text or "***" in text


def test_redaction_ignores_a_bare_slash_path() -> None:
    assert Redactor(url_secrets("http://127.0.0.1:9091/"))("a/b") == "a/b"


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://user:pw@hooks.slack.com/services/T/B/X", "https://hooks.slack.com"),
        ("http://127.0.0.1:9091/metrics/job/x", "http://127.0.0.1:9091"),
        ("http://[::1]:8080/x?token=y", "http://[::1]:8080"),
    ],
)
def test_safe_origin_is_scheme_host_and_port_only(url: str, origin: str) -> None:
    assert safe_origin(url) == origin


@pytest.mark.parametrize("url", ["ftp://host/x", "hooks.slack.com/services/x", "", "http:///nohost"])
def test_a_webhook_url_must_be_absolute_http_or_https(url: str) -> None:
    with pytest.raises(ConfigError, match=r"-webhook\.url"):
        check_http_url(url, flag="-webhook.url")


def test_a_bad_webhook_url_fails_when_the_sink_is_built_without_showing_the_url() -> None:
    with pytest.raises(ConfigError) as caught:
        WebhookSink(WebhookSettings(url=Secret("smtp://user:TOPSECRET@mail/x")))
    assert "TOPSECRET" not in str(caught.value)


def test_a_socks_proxy_is_refused_with_the_flag_name() -> None:
    settings = WebhookSettings(
        url=Secret("https://example.com/x"), http_proxy=Secret("socks5://127.0.0.1:1080")
    )
    with pytest.raises(ConfigError, match=r"-webhook\.http-proxy"):
        WebhookSink(settings)


def test_an_empty_telegram_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"-telegram\.token"):
        TelegramSink(TelegramSettings(token=Secret(""), chat_id=1))


def test_long_telegram_texts_are_shortened_to_the_api_limit() -> None:
    assert shorten("short") == "short"
    long = shorten("x" * (MAX_TEXT_CHARS + 10))
    assert len(long) == MAX_TEXT_CHARS and long.endswith("…")


@pytest.mark.parametrize("value", ["nan", "NaN", " nan ", "inf", "-inf", "Infinity", "1e999"])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(value: str) -> None:
    """None, so the backoff schedule applies (NaN made every retry immediate: a retry storm)."""
    response = httpx2.Response(503, headers={"Retry-After": value})
    assert header_retry_after(response) is None
    assert notify_backoff().delay(1, retry_after=header_retry_after(response), draw=0.0) == 0.5


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_telegram_retry_after_in_the_body_that_is_not_finite_is_ignored(value: str) -> None:
    body = f'{{"ok": false, "error_code": 429, "parameters": {{"retry_after": {value}}}}}'
    response = httpx2.Response(429, content=body.encode(), headers={"Content-Type": "application/json"})
    assert telegram_retry_after(response) is None


def test_a_sink_masks_secret_shapes_it_was_not_given_as_the_logs_do() -> None:
    """The sinks' messages go through the same Redactor as the logs: a receiver that quotes a bot
    token or a bearer token in its refusal does not get it into an error message."""
    body = "rejected: bot 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ, Authorization: Bearer abc.def"
    text = describe_refusal(httpx2.Response(400, text=body), Redactor(url_secrets("https://hooks.test/x")))
    assert "AAHdqTcv" not in text and "abc.def" not in text
    assert text.startswith("HTTP 400 Bad Request: rejected: bot ***")


async def test_the_ca_bundle_is_loaded_by_the_first_request_not_by_configuring_a_sink() -> None:
    from aksnth.notify import http  # noqa: PLC0415

    http._verified_context.cache_clear()
    sink = WebhookSink(WebhookSettings(url=Secret("https://hooks.example/T0")))
    assert http._verified_context.cache_info().currsize == 0
    await sink.aclose()  # never used: nothing to close, nothing loaded
    assert http._verified_context.cache_info().currsize == 0
