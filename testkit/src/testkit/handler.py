"""Run the whole handler (``aksnth.app.run``) in-process, configured from a command line as users do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aksnth import app
from aksnth.cli import parse_settings
from aksnth.config import Settings
from imds_simulator import ImdsSimulator


@dataclass
class RunningHandler:
    settings: Settings
    task: asyncio.Task[int]

    async def wait_exit(self, timeout_seconds: float = 60.0) -> int:
        async with asyncio.timeout(timeout_seconds):
            return await asyncio.shield(self.task)


def handler_argv(
    *, kubeconfig: Path, node: str, simulator: ImdsSimulator, extra: Sequence[str] = ()
) -> list[str]:
    return [
        f"-kubeconfig={kubeconfig}",
        f"-node={node}",
        f"-endpoint={simulator.scheduled_events_url}",
        "-period=0.2s",
        "-web.address=127.0.0.1:0",
        "-log.level=debug",
        *extra,
    ]


@asynccontextmanager
async def running_handler(
    *,
    kubeconfig: Path,
    node: str,
    simulator: ImdsSimulator,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[RunningHandler]:
    """Start the handler as the given kubeconfig's user; stop it (like SIGTERM) on exit."""
    settings = parse_settings(
        handler_argv(kubeconfig=kubeconfig, node=node, simulator=simulator, extra=extra), env or {}
    )
    task = asyncio.create_task(app.run(settings, install_signal_handlers=False), name=f"handler-{node}")
    try:
        yield RunningHandler(settings=settings, task=task)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(30):
                await task
