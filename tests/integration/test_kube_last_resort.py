"""The last-resort stop against the real API server and disruption controller: a pod whose eviction a
PodDisruptionBudget still refuses at its last chance is deleted with its shortened grace period, so
that it stops before the deadline; never a pod refused for another reason, never a namesake."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime

import httpx2
import pytest
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Event, Pod

from aksnth.errors import KubeError
from aksnth.kube.api import KubeClient
from aksnth.kube.drain import PodProgress, drain_node
from aksnth.kube.drainplan import DrainOutcome, last_resort_at
from aksnth.kube.events import REASON_LAST_RESORT_STOP, EventRecorder
from aksnth.kube.pods import delete_pod, pod_info
from aksnth.model import EventType
from testkit.cluster import (
    create_aks_node,
    create_pdb,
    create_pod,
    pod_exists,
    wait_pdb_observed,
    wait_pod_running,
)
from testkit.kubelet import FakeKubelet

pytestmark = pytest.mark.controlplane

#: The drain's time in these tests; a third of it (2 s) is also the cap of a last-resort grace period.
WINDOW_SECONDS = 8.0
POD_GRACE_SECONDS = 2


class DeletionWatch:
    """Notes the pod's deletionTimestamp and deletionGracePeriodSeconds the first time a watch sees
    them (the kubelet stand-in then takes the whole grace period to finish the deletion)."""

    def __init__(self, kube: AsyncClient, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.deletion: tuple[datetime, int | None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DeletionWatch:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _watch(self) -> None:
        while self.deletion is None:
            with contextlib.suppress(ApiError, httpx2.HTTPError):
                async for _, pod in self.kube.watch(
                    Pod, namespace=self.namespace, fields={"metadata.name": self.name}
                ):
                    if pod.metadata.deletionTimestamp is not None:
                        self.deletion = (
                            pod.metadata.deletionTimestamp,
                            pod.metadata.deletionGracePeriodSeconds,
                        )
                        return


async def guarded_pod(kube: AsyncClient, namespace: str, node: str, name: str, *, budgets: int = 1) -> None:
    """A Running pod with ``budgets`` PodDisruptionBudgets of minAvailable 1 over it: never evictable."""
    await create_pod(kube, namespace, node, name=name, labels={"app": name}, grace_seconds=POD_GRACE_SECONDS)
    await wait_pod_running(kube, namespace, name)
    for index in range(budgets):
        budget = await create_pdb(kube, namespace, {"app": name}, min_available=1, name=f"{name}-pdb-{index}")
        await wait_pdb_observed(kube, namespace, budget.metadata.name, expected_pods=1)


async def test_a_pod_a_budget_never_lets_go_is_stopped_with_its_grace_period_before_the_deadline(
    kube: AsyncClient, handler_kube: KubeClient, namespace: str
):
    """minAvailable 1 over one pod: every eviction is refused. At deadline - grace - margin the pod is
    deleted with its grace period (2 s, a third of the window): its deletion carries that grace, is
    not sent before that moment, ends before the deadline, and a Warning Event says why."""
    node = await create_aks_node(kube)
    async with FakeKubelet(kube, node=node.name, grace_period_scale=1.0):
        await guarded_pod(kube, namespace, node.name, "db-0")
        progress: list[PodProgress] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WINDOW_SECONDS
        wall_offset = time.time() - loop.time()
        async with DeletionWatch(kube, namespace, "db-0") as watch:
            result = await drain_node(
                handler_kube,
                node.name,
                deadline=deadline,
                last_resort=True,
                recorder=EventRecorder(handler_kube, host=node.name),
                on_progress=progress.append,
                event_type=EventType.PREEMPT,
            )

    assert [(p.outcome, p.name) for p in progress][:1] == [("blocked", "db-0")]  # the budget refused first
    assert [s.pod for s in result.stopped] == [f"{namespace}/db-0"]
    assert "PodDisruptionBudget db-0-pdb-0 still refused its eviction" in result.stopped[0].reason
    assert result.result is DrainOutcome.DRAINED, result.summary()
    assert result.deleted == (f"{namespace}/db-0",) and result.evicted == ()
    assert not await pod_exists(kube, namespace, "db-0")

    assert watch.deletion is not None
    deletion_timestamp, grace = watch.deletion
    assert grace == POD_GRACE_SECONDS
    # deletionTimestamp is the server's time of the delete plus the grace period, in whole seconds.
    last_chance_wall = last_resort_at(deadline, POD_GRACE_SECONDS) + wall_offset
    assert int(deletion_timestamp.timestamp()) >= int(last_chance_wall + POD_GRACE_SECONDS - 0.01)
    assert deletion_timestamp.timestamp() <= deadline + wall_offset

    events = [
        e
        async for e in kube.list(
            Event,
            namespace=namespace,
            fields={"involvedObject.name": "db-0", "reason": REASON_LAST_RESORT_STOP},
        )
    ]
    assert len(events) == 1 and events[0].type == "Warning"
    assert "db-0-pdb-0" in events[0].message and "2s grace period" in events[0].message


async def test_without_the_last_resort_the_pod_a_budget_protects_stays(
    kube: AsyncClient, handler_kube: KubeClient, namespace: str
):
    """The same budget, ``last_resort=False``: the drain times out and the pod is never deleted."""
    node = await create_aks_node(kube)
    async with FakeKubelet(kube, node=node.name, grace_period_scale=1.0):
        await guarded_pod(kube, namespace, node.name, "db-0")
        result = await drain_node(
            handler_kube,
            node.name,
            deadline=asyncio.get_running_loop().time() + WINDOW_SECONDS,
            last_resort=False,
        )
        pod = await kube.get(Pod, "db-0", namespace=namespace)

    assert result.result is DrainOutcome.TIMED_OUT and result.stopped == ()
    assert pod.metadata.deletionTimestamp is None


async def test_a_pod_whose_eviction_fails_for_another_reason_is_never_stopped(
    kube: AsyncClient, handler_kube: KubeClient, namespace: str
):
    """Two budgets over one pod: the Eviction API answers 500 (it supports one budget per pod), not a
    budget's 429, so the last resort does not apply and the pod stays."""
    node = await create_aks_node(kube)
    async with FakeKubelet(kube, node=node.name, grace_period_scale=1.0):
        await guarded_pod(kube, namespace, node.name, "twice", budgets=2)
        result = await drain_node(
            handler_kube,
            node.name,
            deadline=asyncio.get_running_loop().time() + WINDOW_SECONDS,
            last_resort=True,
        )
        pod = await kube.get(Pod, "twice", namespace=namespace)

    assert result.stopped == () and result.result is DrainOutcome.TIMED_OUT
    assert "more than one PodDisruptionBudget" in result.remaining[0].reason
    assert pod.metadata.deletionTimestamp is None


async def test_a_deletion_with_a_stale_uid_is_refused_and_leaves_the_namesake(
    kube: AsyncClient, handler_kube: KubeClient, namespace: str
):
    """delete_pod carries the UID precondition: a pod recreated under the same name is not deleted."""
    node = await create_aks_node(kube)
    first = await create_pod(kube, namespace, node, name="web-0")
    listed = pod_info(first.to_dict())
    await kube.delete(Pod, "web-0", namespace=namespace, grace_period=0)
    await create_pod(kube, namespace, node, name="web-0")  # the namesake, with another uid

    with pytest.raises(KubeError) as refused:
        await delete_pod(handler_kube, listed, grace_period_seconds=1, timeout_seconds=10)

    assert refused.value.status == 409 and "precondition" in str(refused.value).lower()
    replacement = await kube.get(Pod, "web-0", namespace=namespace)
    assert replacement.metadata.deletionTimestamp is None
