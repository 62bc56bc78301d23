"""Wiring: open the clients, start the named long-lived tasks, stop cleanly.

``cli.main()`` parses and validates; ``run()`` owns the process lifetime. Each long-lived task is
named and guarded: one that fails, or returns when it never should, stops the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable
from contextlib import AsyncExitStack

import httpx2

from aksnth import __version__
from aksnth.azure.imds import ImdsClient
from aksnth.config import Settings
from aksnth.notify.dispatcher import Notifier
from aksnth.observe import metrics
from aksnth.observe.health import Health
from aksnth.observe.httpmetrics import imds_transport
from aksnth.observe.logging import bind, configure_logging, register_secret
from aksnth.observe.server import MetricsServer

log = logging.getLogger(__name__)


#: How long start-up waits for the first IMDS answer before it reads the kubeconfig (the poll goes on
#: in the background after that): IMDS answers in milliseconds; an unreachable one costs this much.
FIRST_POLL_HEAD_START_SECONDS = 0.05


class _Stop(Exception):
    """Raised inside the task group to end it: a signal, or -exitAfterNodeDrain."""


class TaskEndedError(RuntimeError):
    """A task that should run until cancelled returned."""


def prepare(settings: Settings) -> Notifier | None:
    """Start-up checks that must fail before anything else happens (templates): raises ConfigError."""
    configure_logging(settings.log.level, settings.log.pretty)
    for secret in _secrets(settings):
        register_secret(secret)
    if not settings.notify.enabled:
        return None
    notifier = Notifier(settings.notify)
    notifier.validate()
    return notifier


async def run(
    settings: Settings,
    *,
    notifier: Notifier | None = None,
    install_signal_handlers: bool = True,
    first_poll: socket.socket | None = None,
) -> int:
    """Run the handler until SIGTERM/SIGINT (or the end of a drain with -exitAfterNodeDrain).

    ``first_poll``: a socket on which the first Scheduled Events GET went out before this process
    imported its libraries (:func:`aksnth.azure.firstpoll.send_first_poll`); its answer is the first
    document."""
    if notifier is None:
        notifier = prepare(settings)
    # Before any task starts, so that every record of every task names the node (tasks copy the context).
    bind(node=settings.kube.node_name)
    log.info(
        "aks-node-termination-handler %s starting for node %s (period %.1fs, endpoint %s)",
        __version__,
        settings.kube.node_name,
        settings.imds.poll_interval_seconds,
        settings.imds.endpoint,
    )
    if settings.sentry_dsn:
        log.warning("-sentry.dsn is accepted for compatibility but Sentry reporting is not supported")
    if settings.response.dry_run:
        log.warning("-dryRun: events are logged, recorded and notified; the node is not changed")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)

    health = Health(poll_interval_seconds=settings.imds.poll_interval_seconds)
    async with AsyncExitStack() as stack:
        # IMDS is plain HTTP on a link-local address: loading a CA bundle (about 4 MiB) would buy nothing.
        https = settings.imds.endpoint.lower().startswith("https://")
        transport = imds_transport(httpx2.AsyncHTTPTransport(verify=https))
        http = await stack.enter_async_context(httpx2.AsyncClient(transport=transport, trust_env=False))
        imds = ImdsClient(settings.imds, client=http, poll_transport=transport)
        stack.push_async_callback(imds.aclose)
        # The first poll needs nothing of what follows (the kubeconfig, the node's state): it goes out
        # now, and the handler's first fetch takes its answer (the handler polls before, and whether
        # or not, the API server answers).
        imds.start_first_poll(first_poll)
        await imds.first_poll_head_start(FIRST_POLL_HEAD_START_SECONDS)
        # Loaded once the first poll is out: the handler's Kubernetes side is a good part of
        # start-up's imports, and the first poll needs none of it.
        from aksnth.handler import Handler  # noqa: PLC0415
        from aksnth.kube.client import open_client  # noqa: PLC0415
        from aksnth.kube.events import EventRecorder  # noqa: PLC0415

        kube = await stack.enter_async_context(open_client(settings.kube))
        recorder = EventRecorder(kube, host=settings.kube.node_name)
        handler = Handler(
            settings=settings, imds=imds, kube=kube, notifier=notifier, health=health, recorder=recorder
        )
        server = MetricsServer(settings.web.address, health, registry=metrics.EXPOSITION)
        await server.start()
        stack.push_async_callback(server.stop)
        if notifier is not None:
            stack.push_async_callback(notifier.aclose)

        async def watch_handler() -> None:
            await handler.run()
            raise _Stop("exit after node drain")

        async def wait_for_signal() -> None:
            await stop.wait()
            log.info("signal received: stopping (nothing on the node is undone)")
            raise _Stop("signal")

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(watch_handler(), name="handle-events")
                group.create_task(wait_for_signal(), name="wait-for-signal")
                if settings.readiness.enabled:
                    # Only then: the check's modules (budgets, selectors, the assessment) are about
                    # 0.3 MiB that a handler without it would carry on every node.
                    from aksnth.kube.readiness.periodic import ReadinessCheck, spot_eviction  # noqa: PLC0415

                    check = ReadinessCheck(
                        kube,
                        settings.kube.node_name,
                        interval_seconds=settings.readiness.interval_seconds,
                        scenario=spot_eviction(settings.response),
                        busy=handler.handling_event,
                    )
                    group.create_task(_forever(check.run(), "check-readiness"), name="check-readiness")
                if notifier is not None:
                    group.create_task(
                        _forever(notifier.run(), "deliver-notifications"), name="deliver-notifications"
                    )
                    group.create_task(_checked(notifier.check()), name="check-notifiers")
        except* _Stop:
            pass
        finally:
            await _bounded(handler.stop(), settings.grace_period_seconds / 2, "stopping event tasks")
            if notifier is not None:
                await _bounded(
                    notifier.drain_queue(settings.grace_period_seconds / 2),
                    settings.grace_period_seconds / 2,
                    "delivering queued notifications",
                )
    log.info("stopped")
    return 0


async def _forever(awaitable: Awaitable[None], name: str) -> None:
    await awaitable
    raise TaskEndedError(f"task {name} returned, but it must run until cancelled")


async def _checked(awaitable: Awaitable[None]) -> None:
    """Start-up checks of notifiers only warn: a bad Telegram token must not stop the drain."""
    try:
        await awaitable
    except Exception as exc:  # reported, never fatal
        log.error("notification check failed: %s (notifications may not arrive; draining is unaffected)", exc)


async def _bounded(awaitable: Awaitable[None], seconds: float, what: str) -> None:
    try:
        async with asyncio.timeout(max(seconds, 0.1)):
            await asyncio.shield(awaitable)
    except TimeoutError:
        log.warning("%s did not finish within %.1fs", what, seconds)


def _secrets(settings: Settings) -> list[str]:
    values = [settings.sentry_dsn.reveal()]
    for hook in settings.notify.webhooks:
        values += [hook.url.reveal(), hook.http_proxy.reveal()]
    if settings.notify.telegram is not None:
        values += [settings.notify.telegram.token.reveal(), settings.notify.telegram.http_proxy.reveal()]
    return [v for v in values if v]
