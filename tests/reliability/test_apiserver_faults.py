"""API server faults during a response: kube-apiserver killed and restarted in the middle of a drain,
409 conflicts from a concurrent writer of the node, and 429s from API Priority and Fairness. The
handler runs in-process as a ServiceAccount with the chart's rights, against the real control plane."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Node
from lightkube.resources.flowcontrol_apiserver_v1 import FlowSchema, PriorityLevelConfiguration
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from aksnth.kube import keys
from aksnth.lifecycle import Phase
from aksnth.observe import metrics
from imds_simulator import ImdsSimulator
from testkit.cluster import (
    AksNode,
    create_pods,
    eventually,
    squeezing_priority_level,
    unique_suffix,
)
from testkit.controlplane import ControlPlane
from testkit.handler import handler_held_mid_drain, running_handler
from testkit.kubelet import FakeKubelet
from testkit.nodestate import EXCLUDE_LB, node_event_counts, our_taints, pods_on, record_of, wait_phase
from tests.reliability.tally import count, note

pytestmark = pytest.mark.controlplane

# Concurrent writers of the node's labels in the conflict test, as fast as they can for a while after
# each change of the event: the handler's read-modify-writes then conflict for sure, and succeed once
# the burst is over (optimistic concurrency cannot win against writers that never pause: see
# docs/reliability.md).
WRITERS = 3
BURST_SECONDS = 1.5
# Pods drained through the tiny priority level (three seats, rejecting): 40 take about 28 s.
THROTTLED_PODS = 16


def api_requests(code: str) -> float:
    """In-process ``apiserver_request_total`` of the handler, summed over clusters, for one code."""
    return sum(
        sample.value
        for family in metrics.APISERVER_REQUESTS.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("code") == code
    )


# --- kube-apiserver restarted mid-drain ----------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_a_drain_survives_an_api_server_crash_and_finishes_once_it_is_back(
    kube: AsyncClient,
    control_plane: ControlPlane,
    namespace: str,
    node: AksNode,
    simulator: ImdsSimulator,
    handler_kubeconfig: Path,
) -> None:
    await create_pods(kube, namespace, node.name, 3)
    errors_before = api_requests("<error>")
    async with (
        FakeKubelet(kube, node=node.name),
        handler_held_mid_drain(
            kube, namespace, node, simulator, kubeconfig=handler_kubeconfig, extra=["-taint.node"]
        ) as held,
    ):
        # Crash the API server while the drain retries the held pod, and keep it down until the
        # handler has noticed (failed requests), then bring it back and lift the budget.
        await control_plane.stop_apiserver_async(graceful=False)

        async def handler_saw_the_outage() -> bool:
            return api_requests("<error>") >= errors_before + 3

        await eventually(handler_saw_the_outage, what="the handler's requests failing", timeout_seconds=30)
        failed_during_outage = api_requests("<error>") - errors_before
        await control_plane.start_apiserver_async()
        await kube.delete(PodDisruptionBudget, held.budget.metadata.name, namespace=namespace)
        drained = await wait_phase(kube, node.name, held.event_id, Phase.DRAINED, timeout_seconds=60)

    event_id = held.event_id
    assert await pods_on(kube, node.name) == []
    record = record_of(drained)
    assert list(record.events) == [event_id]
    assert record.events[event_id].drain is not None and record.events[event_id].drain.result == "drained"
    assert our_taints(drained) == [(f"{keys.TAINT_KEY_PREFIX}terminate", event_id, "NoSchedule")]
    assert drained.spec.unschedulable is True
    events = await node_event_counts(kube, node.name)
    for reason in ("EventSeen", "Cordoned", "DrainStarted", "DrainFinished"):
        assert events.get(reason) == 1, events
    count("kube-apiserver crashes (SIGKILL) survived mid-drain")
    note(
        f"API server crash mid-drain: {failed_during_outage:.0f} failed requests retried, drain finished once"
    )


# --- 409 conflicts from a concurrent writer ---------------------------------------------------------------


class LabelWriters:
    """Writers of one label of the node: idle until ``burst()``, then patching as fast as they can for
    ``BURST_SECONDS`` (each write bumps the resourceVersion, so a read-modify-write of the handler in
    that window conflicts). A burst starts with each event change, so the handler's writes meet it."""

    def __init__(self, kube: AsyncClient, node: str) -> None:
        self.kube = kube
        self.node = node
        self.writes = 0
        self._until = 0.0
        self._stop = asyncio.Event()

    def burst(self) -> None:
        self._until = asyncio.get_running_loop().time() + BURST_SECONDS

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            if loop.time() >= self._until:
                await asyncio.sleep(0.01)
                continue
            self.writes += 1
            patch = {"metadata": {"labels": {"example.com/writer": str(self.writes)}}}
            await self.kube.patch(Node, self.node, patch, patch_type=PatchType.MERGE)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LabelWriters]:
        tasks = [asyncio.create_task(self._write(), name=f"label-writer-{i}") for i in range(WRITERS)]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*tasks)


@pytest.mark.timeout(90)
async def test_conflicting_writes_during_protect_and_give_back_are_retried_to_the_right_end_state(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, handler_kubeconfig: Path
) -> None:
    await create_pods(kube, namespace, node.name, 2)
    conflicts_before = api_requests("409")
    async with (
        FakeKubelet(kube, node=node.name),
        running_handler(
            kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator, extra=["-taint.node"]
        ),
        LabelWriters(kube, node.name).running() as writers,
    ):
        writers.burst()
        event_id = simulator.schedule("Reboot", [node.resource_name], notice_seconds=600)
        protected = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        assert protected.spec.unschedulable is True
        assert our_taints(protected) == [(f"{keys.TAINT_KEY_PREFIX}reboot", event_id, "NoSchedule")]
        assert (protected.metadata.labels or {}).get(EXCLUDE_LB) == "true"
        writers.burst()
        simulator.cancel(event_id)
        given_back = await wait_phase(kube, node.name, event_id, Phase.GIVEN_BACK)
    final = await kube.get(Node, node.name)
    conflicts = api_requests("409") - conflicts_before

    assert given_back.spec.unschedulable is not True
    assert our_taints(final) == []
    assert EXCLUDE_LB not in (final.metadata.labels or {})
    assert "example.com/writer" in (final.metadata.labels or {})  # the writers' work is kept
    assert record_of(final).events[event_id].phase is Phase.GIVEN_BACK
    assert conflicts > 0, "the writer never made a write conflict: the test proves nothing"
    count("409 conflicts on node writes retried", int(conflicts))
    note(
        f"concurrent writers: {writers.writes} label patches during protect and give-back, "
        f"{conflicts:.0f} conflicts"
    )


# --- 429 from API Priority and Fairness -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def tiny_priority_level(kube: AsyncClient, namespace: str, service_account: str) -> AsyncIterator[None]:
    """A PriorityLevelConfiguration with the smallest share (about 3 seats on this server), no borrowing,
    rejecting (429) what does not fit, and a FlowSchema that puts the ServiceAccount's requests there."""
    name = f"aksnth-tiny-{unique_suffix()}"
    level, schema = squeezing_priority_level(
        name, namespace=namespace, service_account=service_account, borrowing=False
    )
    await kube.create(level)
    await kube.create(schema)

    async def in_force() -> bool:
        current = await kube.get(FlowSchema, name)
        conditions = (current.status.conditions if current.status else None) or []
        return any(c.type == "Dangling" and c.status == "False" for c in conditions)

    try:
        await eventually(in_force, what="the FlowSchema to be in force")
        yield
    finally:
        for kind in (FlowSchema, PriorityLevelConfiguration):
            with contextlib.suppress(ApiError):
                await kube.delete(kind, name)


@pytest.mark.timeout(90)
async def test_a_drain_through_api_priority_and_fairness_rejections_completes(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, handler_kubeconfig: Path
) -> None:
    await create_pods(kube, namespace, node.name, THROTTLED_PODS)
    service_account = handler_kubeconfig.stem.removeprefix(f"{namespace}-")
    throttled_before = api_requests("429")
    async with (
        FakeKubelet(kube, node=node.name),
        tiny_priority_level(kube, namespace, service_account),
        running_handler(
            kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator, extra=["-taint.node"]
        ),
    ):
        event_id = simulator.schedule("Terminate", [node.resource_name], notice_seconds=300)
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED, timeout_seconds=60)
    throttled = api_requests("429") - throttled_before

    assert await pods_on(kube, node.name) == []
    record = record_of(drained).events[event_id]
    assert (
        record.drain is not None
        and record.drain.result == "drained"
        and record.drain.evicted == THROTTLED_PODS
    )
    assert drained.spec.unschedulable is True
    assert throttled > 0, "API Priority and Fairness never rejected a request: the test proves nothing"
    count("429 answers from API Priority and Fairness retried", int(throttled))
