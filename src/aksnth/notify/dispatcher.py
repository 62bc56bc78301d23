"""The notifier: templates rendered once per notification and fanned out to every sink, off the drain path.

``submit()`` only appends to a bounded backlog and returns; ``run()`` is the long-lived delivery
task. Each sink has its own lane (backlog + worker), so a receiver that hangs until its timeout
delays neither the drain, nor ``submit()``, nor the other sinks: not even for later notifications.
A full backlog drops its oldest entry, counted as failed: the newest news matters most.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import httpx2

from aksnth.config import NotifySettings
from aksnth.errors import NotifyError, TemplateError
from aksnth.notify.payload import PHASE_DRAINED, PHASE_EVENT, compile_checked_template, templates_of
from aksnth.notify.telegram import TelegramSink
from aksnth.notify.template import Record, Template, compile_template
from aksnth.notify.webhook import WebhookSink
from aksnth.observe.metrics import NOTIFICATIONS
from aksnth.retry import Backoff

log = logging.getLogger(__name__)

DEFAULT_BACKLOG = 32


class Sink(Protocol):
    kind: str  # the ``sink`` metric label: "webhook" or "telegram"
    target: str  # for logs: "webhook https://host"; never a secret

    async def send(self, body: str) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class _Notification:
    phase: str
    data: Record
    # The submitter's logging context (node, event id): delivery logs carry it too.
    context: contextvars.Context


class _Lane:
    """One sink with its template and its bounded backlog."""

    def __init__(self, sink: Sink, *, template_text: str, template_name: str, capacity: int) -> None:
        self.sink = sink
        self.template_text = template_text
        self.template_name = template_name
        self.capacity = max(capacity, 1)
        self.pending: deque[_Notification] = deque()
        self.wakeup = asyncio.Event()
        self._template: Template | None = None

    def template(self) -> Template:
        if self._template is None:
            self._template = compile_template(self.template_text, name=self.template_name)
        return self._template

    def validate(self) -> None:
        self._template = compile_checked_template(self.template_text, name=self.template_name)

    def push(self, notification: _Notification) -> _Notification | None:
        """Append; returns the entry dropped to make room, if any."""
        dropped = self.pending.popleft() if len(self.pending) >= self.capacity else None
        self.pending.append(notification)
        self.wakeup.set()
        return dropped


def _count(lane: _Lane, phase: str, result: str) -> None:
    NOTIFICATIONS.labels(sink=lane.sink.kind, phase=phase, result=result).inc()


class Notifier:
    """Every configured sink (each webhook, Telegram) with its template; see the module docstring.

    ``transport``, when given, carries the requests of sinks that need no proxy and verify TLS
    (the app passes an instrumented one); a sink with -webhook.http-proxy or -webhook.insecureSkip
    builds its own, instrumented transport, since both are properties of the transport. A transport
    passed in is never closed here.
    """

    def __init__(
        self,
        settings: NotifySettings,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        backlog: int = DEFAULT_BACKLOG,
        backoff: Backoff | None = None,
    ) -> None:
        self._settings = settings
        sinks: list[Sink] = []
        for hook in settings.webhooks:
            own_transport = bool(hook.http_proxy) or hook.insecure_skip_verify
            sinks.append(WebhookSink(hook, transport=None if own_transport else transport, backoff=backoff))
        self._telegram: TelegramSink | None = None
        if settings.telegram is not None:
            telegram = settings.telegram
            self._telegram = TelegramSink(
                telegram, transport=None if telegram.http_proxy else transport, backoff=backoff
            )
            sinks.append(self._telegram)
        self._lanes = tuple(
            _Lane(sink, template_text=text, template_name=name, capacity=backlog)
            for sink, (text, name) in zip(sinks, templates_of(settings), strict=True)
        )

    @property
    def notify_on_drain_finished(self) -> bool:
        return self._settings.notify_on_drain_finished

    @property
    def phases(self) -> frozenset[str]:
        """The phases that are delivered: "event" always, "drained" with -notify.drainFinished."""
        if self._settings.notify_on_drain_finished:
            return frozenset({PHASE_EVENT, PHASE_DRAINED})
        return frozenset({PHASE_EVENT})

    @property
    def sinks(self) -> tuple[Sink, ...]:
        return tuple(lane.sink for lane in self._lanes)

    def validate(self) -> None:
        """Compile every template and render it with sample data of each phase; a TemplateError
        (naming the template, line and column) propagates.

        Run at start-up, before anything else: a template mistake must never first show up in the
        middle of an eviction.
        """
        for lane in self._lanes:
            lane.validate()

    async def check(self) -> None:
        """Start-up reachability checks (Telegram ``getMe``). Logs problems; never raises them."""
        if self._telegram is None:
            return
        try:
            await self._telegram.check()
        except NotifyError as exc:
            log.error("Telegram check failed: %s; Telegram notifications will fail until fixed", exc)

    def submit(self, phase: str, data: Record) -> None:
        """Queue a notification for every sink and return at once; call it from the event loop.

        Never awaits a sink. When a sink's backlog is full, its oldest entry is dropped and counted
        as failed.
        """
        if phase not in self.phases:
            log.debug("notification phase %r is not enabled; not sent", phase)
            return
        notification = _Notification(phase=phase, data=data, context=contextvars.copy_context())
        for lane in self._lanes:
            dropped = lane.push(notification)
            if dropped is not None:
                _count(lane, dropped.phase, "failed")
                log.error(
                    "%s: %d notifications waiting; dropped the oldest (phase %s) to keep the newest",
                    lane.sink.target,
                    lane.capacity,
                    dropped.phase,
                )

    async def run(self) -> None:
        """Deliver notifications until cancelled: one worker per sink."""
        if not self._lanes:
            await asyncio.get_running_loop().create_future()  # nothing to deliver, ever
        async with asyncio.TaskGroup() as group:
            for index, lane in enumerate(self._lanes):
                group.create_task(self._work(lane), name=f"notify-{lane.sink.kind}-{index}")

    async def drain_queue(self, timeout: float) -> None:  # noqa: ASYNC109 - a budget, applied inside
        """At shutdown: deliver what is still queued, for at most ``timeout`` seconds in all.

        What cannot be delivered in time is counted as failed and logged.
        """
        waiting = sum(len(lane.pending) for lane in self._lanes)
        if waiting == 0:
            return
        log.info("delivering %d queued notifications before stopping (at most %.1fs)", waiting, timeout)
        try:
            async with asyncio.timeout(timeout), asyncio.TaskGroup() as group:
                for lane in self._lanes:
                    group.create_task(self._flush(lane))
        except TimeoutError:
            for lane in self._lanes:
                if lane.pending:
                    log.error(
                        "%s: %d notifications not delivered before stopping",
                        lane.sink.target,
                        len(lane.pending),
                    )
                while lane.pending:
                    _count(lane, lane.pending.popleft().phase, "failed")

    async def aclose(self) -> None:
        for lane in self._lanes:
            await lane.sink.aclose()

    # --- delivery ---------------------------------------------------------------------------------
    async def _work(self, lane: _Lane) -> None:
        while True:
            while not lane.pending:
                lane.wakeup.clear()
                await lane.wakeup.wait()
            await self._deliver_next(lane)

    async def _flush(self, lane: _Lane) -> None:
        while lane.pending:
            await self._deliver_next(lane)

    async def _deliver_next(self, lane: _Lane) -> None:
        notification = lane.pending.popleft()
        try:
            # A task in the submitter's context: its log lines carry the event's fields.
            await asyncio.create_task(self._deliver(lane, notification), context=notification.context)
        except asyncio.CancelledError:
            lane.pending.appendleft(notification)  # not delivered: drain_queue() may still send it
            raise

    async def _deliver(self, lane: _Lane, notification: _Notification) -> None:
        sink, phase = lane.sink, notification.phase
        failed = f"cannot render the {phase} notification"
        try:
            # `.Template` is the receiver's own template text, as in the Go original.
            data = notification.data
            if isinstance(data, Record) and "Template" in data:
                data = data.replace({"Template": lane.template_text})
            body = lane.template().render(data)
            failed = f"{phase} notification not delivered"
            await sink.send(body)
        except (TemplateError, NotifyError) as exc:
            _count(lane, phase, "failed")
            log.error("%s: %s: %s", sink.target, failed, exc)
            return
        except Exception:
            # A bug must not end the delivery task (and with it the handler); report it loudly.
            _count(lane, phase, "failed")
            log.exception("%s: %s (unexpectedly)", sink.target, failed)
            return
        _count(lane, phase, "sent")
        log.info("%s: %s notification sent", sink.target, phase)
