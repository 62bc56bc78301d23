"""The AzureScheduledEvent Node condition, written by the whole handler (as the chart's ServiceAccount,
so the nodes/status right is the chart's) and read back through the API server: every state of the
condition is recorded by a watch on the Node, so none is missed between two reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from aksnth.kube.record import NodeRecord
from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.cluster import AksNode, create_pod, eventually
from testkit.handler import running_handler
from testkit.kubelet import FakeKubelet

pytestmark = pytest.mark.controlplane

CONDITION = "AzureScheduledEvent"


@dataclass(frozen=True)
class Seen:
    """The condition in one version of the Node (None: the node had none)."""

    reason: str | None
    message: str | None
    unschedulable: bool

    @property
    def phase(self) -> str | None:
        if self.message is None:
            return None
        return self.message.split(" Phase=")[1].split()[0]


class ConditionWatch:
    def __init__(self, kube: AsyncClient, node: str) -> None:
        self.kube = kube
        self.node = node
        self.seen: list[Seen] = []
        self.changed = asyncio.Event()

    async def run(self) -> None:
        async for _, node in self.kube.watch(Node, fields={"metadata.name": self.node}):
            condition = next((c for c in (node.status.conditions or []) if c.type == CONDITION), None)
            state = Seen(
                reason=condition.reason if condition else None,
                message=condition.message if condition else None,
                unschedulable=bool(node.spec.unschedulable),
            )
            if not self.seen or (self.seen[-1].reason, self.seen[-1].message) != (
                state.reason,
                state.message,
            ):
                self.seen.append(state)
                self.changed.set()

    def phases(self) -> list[str | None]:
        """The phases shown, one entry per change of phase (a change of status alone is not one)."""
        phases: list[str | None] = []
        for state in self.seen:
            if not phases or phases[-1] != state.phase:
                phases.append(state.phase)
        return phases


@contextlib.asynccontextmanager
async def watching(kube: AsyncClient, node: str) -> AsyncIterator[ConditionWatch]:
    watch = ConditionWatch(kube, node)
    task = asyncio.create_task(watch.run(), name=f"watch-{node}")

    async def started() -> bool:
        return bool(watch.seen)

    try:
        await eventually(started, what="the watch's first view of the node")
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def record_phase(kube: AsyncClient, node: str, event_id: str) -> Phase | None:
    entry = NodeRecord.from_annotations((await kube.get(Node, node)).metadata.annotations).events.get(
        event_id
    )
    return entry.phase if entry is not None else None


async def test_the_condition_appears_on_sighting_follows_the_phases_and_goes_on_give_back(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, handler_kubeconfig: Path
) -> None:
    """A Reboot that the handler drains (the pod takes a second to go) and approves; Azure starts it,
    it ends, the node is given back: the condition shows seen, protected, drained, approved, then
    nothing."""
    await create_pod(kube, namespace, node.name)
    async with (
        FakeKubelet(kube, node=node.name, deletion_delay_seconds=1.0),
        watching(kube, node.name) as watch,
        running_handler(
            kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator, extra=["-approveEvents"]
        ),
    ):
        event_id = simulator.schedule("Reboot", [node.resource_name], notice_seconds=120, duration_seconds=1)

        async def given_back() -> bool:
            return await record_phase(kube, node.name, event_id) is Phase.GIVEN_BACK

        await eventually(given_back, what="the give-back")

        async def removed() -> bool:
            return watch.seen[-1].message is None and len(watch.seen) > 1

        await eventually(removed, what="the condition to be removed")
    assert watch.phases() == [None, "seen", "protected", "drained", "approved", None]
    shown = [state for state in watch.seen if state.message is not None]
    assert {state.reason for state in shown} == {"Reboot"}
    first = shown[0].message
    assert first is not None and first.startswith(f"Reboot EventId={event_id} NotBefore=")
    assert "Status=Scheduled Phase=seen" in first
    assert any("Status=Started" in (state.message or "") for state in shown)  # after the approval
    assert any("Phase=drained Drain=drained" in (state.message or "") for state in shown)
    assert not (await kube.get(Node, node.name)).spec.unschedulable


async def test_an_ignored_event_is_shown_while_pending(
    kube: AsyncClient, node: AksNode, simulator: ImdsSimulator, handler_kubeconfig: Path
) -> None:
    """A Freeze is not acted on by default, but other tools still see that it is coming."""
    async with (
        watching(kube, node.name) as watch,
        running_handler(kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator),
    ):
        event_id = simulator.schedule("Freeze", [node.resource_name], notice_seconds=600)

        async def shown() -> bool:
            return watch.seen[-1].phase == "ignored"

        await eventually(shown, what="the Freeze in the condition")
        assert watch.seen[-1].reason == "Freeze" and f"EventId={event_id}" in (watch.seen[-1].message or "")
        simulator.cancel(event_id)

        async def gone() -> bool:
            return watch.seen[-1].message is None

        await eventually(gone, what="the condition to go with the event")
    assert not watch.seen[-1].unschedulable


async def test_a_condition_left_by_a_killed_handler_is_removed_at_start_up(
    kube: AsyncClient, node: AksNode, simulator: ImdsSimulator, handler_kubeconfig: Path
) -> None:
    stale = {
        "type": CONDITION,
        "status": "True",
        "reason": "Preempt",
        "message": "Preempt EventId=GONE NotBefore=none Phase=protected",
    }
    await kube.patch(
        Node.Status, node.name, {"status": {"conditions": [stale]}}, patch_type=PatchType.STRATEGIC
    )
    async with (
        watching(kube, node.name) as watch,
        running_handler(kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator),
    ):

        async def removed() -> bool:
            return watch.seen[-1].message is None

        await eventually(removed, what="the stale condition to be removed")


async def test_dry_run_writes_no_condition(
    kube: AsyncClient, node: AksNode, simulator: ImdsSimulator, handler_kubeconfig: Path
) -> None:
    async with (
        watching(kube, node.name) as watch,
        running_handler(
            kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator, extra=["-dryRun"]
        ),
    ):
        simulator.schedule("Reboot", [node.resource_name], notice_seconds=600)
        polls = len(simulator.requests)

        async def several_polls() -> bool:
            return len(simulator.requests) >= polls + 10

        await eventually(several_polls, what="ten more IMDS polls")
    assert [state.message for state in watch.seen] == [None]
