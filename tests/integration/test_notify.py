"""Notification sinks and the notifier against real receivers on loopback.

Real HTTP receivers (testkit.receivers), a real forward proxy (proxy.py), the real Prometheus
Pushgateway and a Telegram Bot API look-alike. Nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from prometheus_client import REGISTRY

from aksnth.config import NotifySettings, Secret, TelegramSettings, WebhookSettings
from aksnth.errors import NotifyError, TemplateError
from aksnth.model import EventType, NodeSnapshot
from aksnth.notify.dispatcher import Notifier
from aksnth.notify.http import DeliveryError, notify_backoff
from aksnth.notify.payload import build_template_data
from aksnth.notify.telegram import TelegramSink
from aksnth.notify.template import Record
from aksnth.notify.webhook import WebhookSink
from testkit.events import scheduled_event
from testkit.receivers import (
    Receiver,
    Recorded,
    Reply,
    TelegramApi,
    forward_proxy,
    pushgateway,
    self_signed_server_context,
)

FAST = notify_backoff(initial_seconds=0.01, max_seconds=0.05)
TOKEN = "123456:AAH-test-token-never-logged"

SLACK_TEMPLATE = """{
  "channel": "#mychannel",
  "username": "webhookbot",
  "text": "This is message for {{ .NodeName }}, {{ .InstanceType }} from {{ .NodeRegion }}",
  "icon_emoji": ":ghost:"
}
"""
PUSHGATEWAY_TEMPLATE = 'node_termination_event{node="{{ .NodeName }}"} 1\n'


def webhook(url: str, **overrides: object) -> WebhookSettings:
    values: dict[str, object] = {"url": Secret(url), "timeout_seconds": 5.0, "retries": 3}
    values.update(overrides)
    return WebhookSettings(**values)  # type: ignore[arg-type]


def telegram(api_url: str, *, token: str = TOKEN, **overrides: object) -> TelegramSettings:
    values: dict[str, object] = {"token": Secret(token), "chat_id": -100123, "api_url": api_url}
    values.update(overrides)
    return TelegramSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


async def send_once(settings: WebhookSettings, body: str = "{}") -> None:
    sink = WebhookSink(settings, backoff=FAST)
    try:
        await sink.send(body)
    finally:
        await sink.aclose()


# --- webhook: retries, timeouts -------------------------------------------------------------------
async def test_fails_twice_then_accepts_in_exactly_three_attempts() -> None:
    with Receiver(script=[Reply(status=500), Reply(status=502)]) as server:
        await send_once(webhook(server.url("/hook")), '{"a": 1}')
        requests = server.requests
    assert len(requests) == 3
    assert {r.text for r in requests} == {'{"a": 1}\n'}
    assert all(r.method == "POST" and r.headers["content-type"] == "application/json" for r in requests)


async def test_gives_up_after_the_last_retry_with_attempts_and_status() -> None:
    with Receiver(default=Reply(status=503)) as server:
        with pytest.raises(DeliveryError) as caught:
            await send_once(webhook(server.url(), retries=2))
        assert len(server.requests) == 3
    assert caught.value.attempts == 3
    assert caught.value.status == 503
    assert "3 attempts" in str(caught.value) and "503" in str(caught.value)


async def test_client_errors_are_not_retried(receiver: Receiver) -> None:
    with Receiver(default=Reply(status=400, body=b"invalid_payload")) as server:
        with pytest.raises(NotifyError, match=r"HTTP 400.*invalid_payload"):
            await send_once(webhook(server.url()))
        assert len(server.requests) == 1


async def test_429_waits_as_long_as_retry_after_says() -> None:
    script = [Reply(status=429, headers=(("Retry-After", "1"),))]
    with Receiver(script=script) as server:
        await send_once(webhook(server.url()))
        first, second = server.requests
    # A lower bound only: the retry must not come before the receiver allowed it.
    assert second.received_at - first.received_at >= 0.9


async def test_a_retry_after_of_nan_leaves_the_spacing_to_the_backoff() -> None:
    """``Retry-After: nan`` is no delay: the retries keep the backoff's spacing. (Read as a number,
    NaN made ``asyncio.sleep`` return at once: a retry storm against a receiver that asked for a pause.)"""
    nan = Reply(status=503, headers=(("Retry-After", "nan"),))
    steady = notify_backoff(initial_seconds=0.4, multiplier=1.0, max_seconds=0.4)  # each wait in [0.2, 0.4)
    with Receiver(script=[nan, nan]) as server:
        sink = WebhookSink(webhook(server.url()), backoff=steady)
        try:
            await sink.send("{}")
        finally:
            await sink.aclose()
        first, second, third = server.requests
    # Lower bounds only: a retry must not come before the backoff allows it.
    assert second.received_at - first.received_at >= 0.2
    assert third.received_at - second.received_at >= 0.2


async def test_a_hanging_receiver_ends_in_a_notify_error() -> None:
    with Receiver(default=Reply(hang=True)) as server:
        with pytest.raises(NotifyError, match=r"no complete answer within 0\.5s") as caught:
            await send_once(webhook(server.url(), timeout_seconds=0.5, retries=1))
        assert len(server.requests) == 2
    assert isinstance(caught.value, DeliveryError) and caught.value.status is None


async def test_the_timeout_bounds_a_body_that_trickles_in() -> None:
    # Each byte arrives well within any per-read timeout; only a bound on the whole attempt ends it.
    slow = Reply(body=b"x" * 200, trickle_seconds=0.05)
    with Receiver(default=slow) as server:
        with pytest.raises(NotifyError, match="no complete answer"):
            await send_once(webhook(server.url(), timeout_seconds=0.5, retries=0))
        assert server.answered == 0


async def test_method_content_type_and_extra_headers(receiver: Receiver) -> None:
    settings = webhook(
        receiver.url("/path?x=1"),
        method="put",
        content_type="text/plain",
        headers=(("Authorization", "Bearer abc"), ("X-Team", "sre")),
    )
    await send_once(settings, "plain text\n")
    (request,) = receiver.requests
    # The body plus a newline, also when it ends with one, as the Go version sent it.
    assert (request.method, request.path, request.text) == ("PUT", "/path?x=1", "plain text\n\n")
    assert request.headers["content-type"] == "text/plain"
    assert request.headers["authorization"] == "Bearer abc"
    assert request.headers["x-team"] == "sre"


# --- webhook: proxy, TLS ------------------------------------------------------------------------------
async def test_requests_go_through_a_proxy_with_basic_auth(receiver: Receiver, tmp_path: Path) -> None:
    with forward_proxy(tmp_path / "proxy", basic_auth="user:pa55") as port:
        await send_once(
            webhook(receiver.url("/through"), http_proxy=Secret(f"http://user:pa55@127.0.0.1:{port}"))
        )
        (request,) = receiver.requests
        assert request.path == "/through"
        assert "proxy.py" in request.headers["via"]
        assert "proxy-authorization" not in request.headers

        with pytest.raises(DeliveryError) as caught:
            await send_once(webhook(receiver.url("/refused"), http_proxy=Secret(f"http://127.0.0.1:{port}")))
        assert caught.value.status == 407
        assert len(receiver.requests) == 1  # the refused one never reached the receiver


async def test_self_signed_certificate_is_refused_with_a_hint(tmp_path: Path) -> None:
    with Receiver(tls=self_signed_server_context(tmp_path)) as server:
        with pytest.raises(NotifyError) as caught:
            await send_once(webhook(server.url("/hook")))
        message = str(caught.value)
        assert "certificate" in message.lower()
        assert "set -webhook.insecureSkip=true to skip verification (not recommended)" in message
        assert server.requests == []

        await send_once(webhook(server.url("/hook"), insecure_skip_verify=True))
        assert [r.path for r in server.requests] == ["/hook"]


async def test_insecure_skip_verify_warns_once_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aksnth")
    sink = WebhookSink(webhook("https://127.0.0.1:9/hook", insecure_skip_verify=True))
    await sink.aclose()
    warnings = [r for r in caplog.records if "verification is off" in r.getMessage()]
    assert len(warnings) == 1


async def test_the_webhook_url_never_reaches_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aksnth")
    with Receiver(default=Reply(status=500, body=b"boom")) as server:
        url = (
            f"http://hookuser:pw-s3cr3t@127.0.0.1:{server.port}/services/T000/B000/XXXXSECRET?token=qq-secret"
        )
        with pytest.raises(NotifyError) as caught:
            await send_once(webhook(url, retries=1))
    shown = caplog.text + str(caught.value)
    assert f"http://127.0.0.1:{server.port}" in shown
    for secret in ("pw-s3cr3t", "XXXXSECRET", "qq-secret", "hookuser"):
        assert secret not in shown


# --- Telegram -----------------------------------------------------------------------------------------
async def test_telegram_check_and_send_message() -> None:
    with TelegramApi(TOKEN) as api:
        sink = TelegramSink(telegram(api.origin))
        try:
            await sink.check()
            await sink.send("Draining node=aks-spot-1, type=Preempt")
        finally:
            await sink.aclose()
        assert api.messages() == [{"chat_id": -100123, "text": "Draining node=aks-spot-1, type=Preempt"}]
        assert [r.path for r in api.requests] == [f"/bot{TOKEN}/getMe", f"/bot{TOKEN}/sendMessage"]


async def test_telegram_goes_through_a_proxy_with_basic_auth(tmp_path: Path) -> None:
    with forward_proxy(tmp_path / "proxy", basic_auth="user:pa55") as port, TelegramApi(TOKEN) as api:
        proxy = Secret(f"http://user:pa55@127.0.0.1:{port}")
        sink = TelegramSink(telegram(api.origin, http_proxy=proxy))
        try:
            await sink.send("Draining node=aks-spot-1, type=Preempt")
        finally:
            await sink.aclose()
        (request,) = api.requests
        assert "proxy.py" in request.headers["via"]
        assert api.messages() == [{"chat_id": -100123, "text": "Draining node=aks-spot-1, type=Preempt"}]


async def test_telegram_bad_token_is_reported_without_showing_it() -> None:
    wrong = "999:wrong-token-value"
    with TelegramApi(TOKEN) as api:
        sink = TelegramSink(telegram(api.origin, token=wrong))
        try:
            with pytest.raises(NotifyError, match=r"-telegram\.token") as caught:
                await sink.check()
        finally:
            await sink.aclose()
        assert len(api.requests) == 1  # a refused token is not retried
    assert wrong not in str(caught.value) and "wrong-token" not in str(caught.value)


async def test_https_through_the_proxy_is_tunnelled_and_refused_without_credentials(tmp_path: Path) -> None:
    with (
        Receiver(tls=self_signed_server_context(tmp_path / "tls")) as server,
        forward_proxy(tmp_path / "proxy", basic_auth="user:pa55") as port,
    ):
        tunnelled = webhook(
            server.url("/tls"),
            insecure_skip_verify=True,
            http_proxy=Secret(f"http://user:pa55@127.0.0.1:{port}"),
        )
        await send_once(tunnelled)
        assert [r.path for r in server.requests] == ["/tls"]

        refused = webhook(
            server.url("/tls"), insecure_skip_verify=True, http_proxy=Secret(f"http://127.0.0.1:{port}")
        )
        with pytest.raises(NotifyError, match="proxy refused") as caught:
            await send_once(refused)
        assert isinstance(caught.value, DeliveryError) and caught.value.attempts == 1
        assert len(server.requests) == 1


# --- the notifier ----------------------------------------------------------------------------------------
def event_data(node_name: str = "aks-spot-1", *, phase: str = "event") -> Record:
    event = scheduled_event(
        EventType.PREEMPT,
        event_id="A123BC45-1234-5678-AB90-ABCDEF123456",
        resources=("aks-spot-12345678-vmss_0",),
        not_before_raw="Mon, 19 Sep 2016 18:29:47 GMT",
        description='Spot eviction "now"',
        event_source="Platform",
        duration_seconds=-1,
    )
    node = NodeSnapshot(
        name=node_name,
        labels={
            "node.kubernetes.io/instance-type": "Standard_D2s_v3",
            "topology.kubernetes.io/region": "westeurope",
            "kubernetes.azure.com/cluster": "MC_group_cluster_westeurope",
        },
        pod_names=("default/web-1", "kube-system/coredns-2"),
    )
    return build_template_data(event=event, node=node, phase=phase)


def notified(sink: str, phase: str, result: str) -> float:
    labels = {"sink": sink, "phase": phase, "result": result}
    return REGISTRY.get_sample_value("aks_node_termination_handler_notifications_total", labels) or 0.0


def start(notifier: Notifier) -> asyncio.Task[None]:
    return asyncio.create_task(notifier.run(), name="test-notifier")


async def stop(task: asyncio.Task[None], notifier: Notifier) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await notifier.aclose()


async def the_one_request(receiver: Receiver, path: str, *, template: str) -> Recorded:
    """The request the receiver gets at `path` for one "event" notification rendered with `template`."""
    notifier = Notifier(NotifySettings(webhooks=(webhook(receiver.url(path), template=template),)))
    notifier.validate()
    task = start(notifier)
    try:
        notifier.submit("event", event_data())
        (request,) = await receiver.wait_for_requests(1)
    finally:
        await stop(task, notifier)
    return request


async def test_the_seed_slack_payload_arrives_verbatim(receiver: Receiver) -> None:
    request = await the_one_request(receiver, "/slack", template=SLACK_TEMPLATE)
    assert request.json() == {
        "channel": "#mychannel",
        "username": "webhookbot",
        "text": "This is message for aks-spot-1, Standard_D2s_v3 from westeurope",
        "icon_emoji": ":ghost:",
    }


async def test_dot_template_is_the_receivers_own_template_text(receiver: Receiver) -> None:
    template = "{{ .NodeName }} uses: {{ .Template }}"
    request = await the_one_request(receiver, "/t", template=template)
    assert request.body.decode().strip() == f"aks-spot-1 uses: {template}"


async def test_the_seed_pushgateway_payload_reaches_a_real_pushgateway(tmp_path: Path) -> None:
    with pushgateway(tmp_path) as base:
        settings = webhook(
            f"{base}/metrics/job/aks-node-termination-handler",
            content_type="text/plain",
            template=PUSHGATEWAY_TEMPLATE,
            template_name="prometheus-pushgateway-payload.txt",
        )
        notifier = Notifier(NotifySettings(webhooks=(settings,)))
        notifier.validate()
        sent = notified("webhook", "event", "sent")
        notifier.submit("event", event_data("aks-spot-7"))
        await notifier.drain_queue(10)
        await notifier.aclose()
        assert notified("webhook", "event", "sent") == sent + 1
        async with httpx2.AsyncClient(trust_env=False) as client:
            exposed = (await client.get(f"{base}/metrics", timeout=5)).text
    assert re.search(r'^node_termination_event\{[^}]*node="aks-spot-7"[^}]*\} 1$', exposed, re.MULTILINE), (
        exposed
    )


async def test_telegram_gets_the_default_message() -> None:
    with TelegramApi(TOKEN) as api:
        notifier = Notifier(NotifySettings(telegram=telegram(api.origin)))
        notifier.validate()
        await notifier.check()
        task = start(notifier)
        try:
            notifier.submit("event", event_data())
            await api.wait_for_requests(2)
        finally:
            await stop(task, notifier)
        assert api.messages() == [{"chat_id": -100123, "text": "Draining node=aks-spot-1, type=Preempt"}]


async def test_a_bad_telegram_token_is_reported_and_the_notifier_keeps_going(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aksnth")
    wrong = "999:wrong-token-value"
    with TelegramApi(TOKEN) as api:
        settings = NotifySettings(
            webhooks=(webhook(receiver.url(), template="{{ .NodeName }}"),),
            telegram=telegram(api.origin, token=wrong),
        )
        notifier = Notifier(settings, backoff=FAST)
        await notifier.check()  # reports, never raises
        assert "bot token was rejected" in caplog.text
        failed = notified("telegram", "event", "failed")
        task = start(notifier)
        try:
            notifier.submit("event", event_data())
            await receiver.wait_for_requests(1)
            async with asyncio.timeout(10):
                while notified("telegram", "event", "failed") == failed:  # noqa: ASYNC110 - a counter
                    await asyncio.sleep(0.01)
            assert not task.done()
            notifier.submit("event", event_data("aks-spot-2"))  # still delivering
            await receiver.wait_for_requests(2)
        finally:
            await stop(task, notifier)
    assert wrong not in caplog.text and "wrong-token" not in caplog.text


async def test_a_hanging_sink_delays_neither_submit_nor_the_other_sinks(receiver: Receiver) -> None:
    assert not inspect.iscoroutinefunction(Notifier.submit)  # nothing to await: it cannot block
    with Receiver(default=Reply(hang=True)) as hung, TelegramApi(TOKEN) as api:
        settings = NotifySettings(
            webhooks=(
                webhook(hung.url("/hung"), template="{{ .NodeName }}", timeout_seconds=60, retries=0),
                webhook(receiver.url("/ok"), template="{{ .NodeName }}"),
            ),
            telegram=telegram(api.origin),
        )
        notifier = Notifier(settings)
        task = start(notifier)
        try:
            notifier.submit("event", event_data("first"))
            await hung.wait_for_requests(1)
            notifier.submit("event", event_data("second"))
            await receiver.wait_for_requests(2)
            assert [m["text"] for m in (await _messages(api, 2))] == [
                "Draining node=first, type=Preempt",
                "Draining node=second, type=Preempt",
            ]
            # ... while the first request to the hanging receiver is still unanswered.
            assert hung.answered == 0 and len(hung.requests) == 1
        finally:
            await stop(task, notifier)
    assert [r.text for r in receiver.requests] == ["first\n", "second\n"]


async def _messages(api: TelegramApi, count: int) -> list[dict[str, object]]:
    async with asyncio.timeout(10):
        while len(api.messages()) < count:  # noqa: ASYNC110 - the receiver runs on its own threads
            await asyncio.sleep(0.01)
    return api.messages()


async def test_secrets_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aksnth")
    wrong = "777:another-secret-token"
    with Receiver(default=Reply(status=500)) as failing, TelegramApi(TOKEN) as api:
        url = f"http://alice:pw-very-s3cret@127.0.0.1:{failing.port}/hooks/SECRETPATH?sig=SIGSECRET"
        settings = NotifySettings(
            webhooks=(webhook(url, template="{{ .NodeName }}", retries=1),),
            telegram=telegram(api.origin, token=wrong),
        )
        notifier = Notifier(settings, backoff=FAST)
        await notifier.check()
        notifier.submit("event", event_data())
        await notifier.drain_queue(10)
        await notifier.aclose()
    assert "not delivered" in caplog.text
    for secret in (wrong, "another-secret", "pw-very-s3cret", "SECRETPATH", "SIGSECRET", TOKEN):
        assert secret not in caplog.text


async def test_only_enabled_phases_are_delivered(receiver: Receiver) -> None:
    hook = webhook(receiver.url(), template="{{ .Phase }} {{ .NodeName }}")
    quiet = Notifier(NotifySettings(webhooks=(hook,)))
    assert quiet.phases == frozenset({"event"})
    quiet.submit("drained", event_data(phase="drained"))
    await quiet.drain_queue(5)
    await quiet.aclose()
    assert receiver.requests == []

    both = Notifier(NotifySettings(webhooks=(hook,), notify_on_drain_finished=True))
    assert both.phases == frozenset({"event", "drained"})
    both.submit("event", event_data())
    both.submit("drained", event_data(phase="drained"))
    await both.drain_queue(5)
    await both.aclose()
    assert [r.text for r in receiver.requests] == ["event aks-spot-1\n", "drained aks-spot-1\n"]


async def test_a_full_backlog_drops_the_oldest_and_counts_it(receiver: Receiver) -> None:
    notifier = Notifier(
        NotifySettings(webhooks=(webhook(receiver.url(), template="{{ .NodeName }}"),)), backlog=2
    )
    failed = notified("webhook", "event", "failed")
    for name in ("one", "two", "three"):
        notifier.submit("event", event_data(name))
    assert notified("webhook", "event", "failed") == failed + 1
    await notifier.drain_queue(5)
    await notifier.aclose()
    assert [r.text for r in receiver.requests] == ["two\n", "three\n"]


async def test_drain_queue_is_bounded_and_counts_what_did_not_go_out() -> None:
    with Receiver(default=Reply(hang=True)) as hung:
        hook = webhook(hung.url(), template="{{ .NodeName }}", timeout_seconds=60, retries=0)
        notifier = Notifier(NotifySettings(webhooks=(hook,)))
        failed = notified("webhook", "event", "failed")
        notifier.submit("event", event_data())
        await notifier.drain_queue(0.5)
        await notifier.aclose()
        assert notified("webhook", "event", "failed") == failed + 1
        assert len(hung.requests) == 1


async def test_a_render_error_is_counted_and_delivery_goes_on(receiver: Receiver) -> None:
    broken = webhook(receiver.url("/broken"), template="{{ .NoSuchField }}")
    fine = webhook(receiver.url("/fine"), template="{{ .NodeName }}")
    notifier = Notifier(NotifySettings(webhooks=(broken, fine)))
    failed = notified("webhook", "event", "failed")
    notifier.submit("event", event_data())
    await notifier.drain_queue(5)
    await notifier.aclose()
    assert notified("webhook", "event", "failed") == failed + 1
    assert [r.path for r in receiver.requests] == ["/fine"]


@pytest.mark.parametrize("template", ["{{ .NodeName ", "{{ .NoSuchField }}", "{{ if .NodeName }}no end"])
async def test_validate_refuses_a_bad_template_before_anything_happens(
    receiver: Receiver, template: str
) -> None:
    notifier = Notifier(
        NotifySettings(webhooks=(webhook(receiver.url(), template=template, template_name="x.json"),))
    )
    try:
        with pytest.raises(TemplateError, match=r"x\.json"):
            notifier.validate()
    finally:
        await notifier.aclose()
    assert receiver.requests == []
