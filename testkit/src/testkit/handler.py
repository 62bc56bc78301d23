"""Run the whole handler (``aksnth.app.run``) in-process, configured from a command line as users do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from lightkube import AsyncClient
from lightkube.resources.policy_v1 import PodDisruptionBudget

from aksnth import app
from aksnth.cli import parse_settings
from aksnth.config import Settings
from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.cluster import AksNode, eventually, hold_one_pod
from testkit.nodestate import pods_on, wait_phase


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


@dataclass(frozen=True)
class HeldDrain:
    """A drain under way that a budget holds: the event's id and the budget (delete it to let go)."""

    event_id: str
    budget: PodDisruptionBudget


@asynccontextmanager
async def handler_held_mid_drain(
    kube: AsyncClient,
    namespace: str,
    node: AksNode,
    simulator: ImdsSimulator,
    *,
    kubeconfig: Path,
    extra: Sequence[str] = (),
) -> AsyncIterator[HeldDrain]:
    """With `node`'s kubelet stand-in running: one more pod a budget holds (`hold_one_pod`), the handler
    started, a Terminate (300 s notice) published, and its drain under way until only the held pod is
    left on the node; the handler stops on exit."""
    budget = await hold_one_pod(kube, namespace, node.name)
    async with running_handler(kubeconfig=kubeconfig, node=node.name, simulator=simulator, extra=extra):
        event_id = simulator.schedule("Terminate", [node.resource_name], notice_seconds=300)
        await wait_phase(kube, node.name, event_id, Phase.PROTECTED)

        async def only_the_held_pod_left() -> bool:
            return len(await pods_on(kube, node.name)) == 1

        await eventually(only_the_held_pod_left, what="all but the PDB-held pod evicted")
        yield HeldDrain(event_id=event_id, budget=budget)
