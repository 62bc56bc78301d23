"""The drain against the real API server (chart's ServiceAccount, real disruption controller, a
kubelet stand-in that finishes graceful deletions)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event, Pod

from aksnth.kube.api import KubeClient
from aksnth.kube.drain import PodProgress, drain_node
from aksnth.kube.drainplan import DrainOutcome, DrainResult
from aksnth.kube.events import REASON_POD_EVICTED, EventRecorder
from testkit.chart import ALLOW_POD_DELETE
from testkit.cluster import (
    create_aks_node,
    create_pdb,
    create_pod,
    is_serving,
    pod_exists,
    wait_pdb_observed,
    wait_pod_running,
)
from testkit.kubelet import FakeKubelet

pytestmark = pytest.mark.controlplane


def deadline_in(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def drain(
    kube: KubeClient,
    node: str,
    *,
    within_seconds: float,
    disable_eviction: bool = False,
    dry_run: bool = False,
    **more: Any,
) -> DrainResult:
    """``drain_node`` with each pod's own grace period and a deadline ``within_seconds`` from now."""
    return await drain_node(
        kube,
        node,
        deadline=deadline_in(within_seconds),
        grace_period_seconds=-1,
        disable_eviction=disable_eviction,
        dry_run=dry_run,
        **more,
    )


async def running(kube: AsyncClient, namespace: str, *names: str) -> None:
    await asyncio.gather(*(wait_pod_running(kube, namespace, n) for n in names))


async def test_drain_of_a_mixed_node_honours_order_skips_and_the_pdb(
    kube: AsyncClient, handler_kube: KubeClient, namespace: str
):
    node = await create_aks_node(kube)
    spare = await create_aks_node(kube)  # where "the ReplicaSet controller" puts replacements
    web = {"app": "web"}
    # The kubelet lets terminating pods linger a moment, so that two disruptions at once would show.
    async with FakeKubelet(kube, node=None, deletion_delay_seconds=0.3):
        await create_pod(kube, namespace, node, name="rs-app")
        await create_pod(kube, namespace, node, name="ds-agent", owner="DaemonSet")
        await create_pod(kube, namespace, node, name="static-mirror", mirror=True)
        await create_pod(kube, namespace, node, name="scratch", empty_dir=True)
        await create_pod(
            kube, namespace, node, name="critical", priority_class_name="system-cluster-critical"
        )
        for i in range(3):
            await create_pod(kube, namespace, node, name=f"web-{i}", labels=web)
        names = ["rs-app", "ds-agent", "static-mirror", "scratch", "critical", "web-0", "web-1", "web-2"]
        await running(kube, namespace, *names)
        pdb = await create_pdb(kube, namespace, web, min_available=2, name="web-pdb")
        await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=3)

        progress: list[PodProgress] = []
        replacements = 0
        evicted_web = 0
        blocked_once = False

        # Web pods still serving (Ready and not terminating, on any node) right after each web
        # eviction. Without the budget the next eviction would not wait for the replacement to be
        # Ready, and this would drop below minAvailable.
        serving_at_eviction: list[int] = []

        async def on_progress(p: PodProgress) -> None:
            nonlocal replacements, evicted_web, blocked_once
            progress.append(p)
            if p.outcome == "evicted" and p.name.startswith("web-"):
                evicted_web += 1
                serving_at_eviction.append(
                    len(
                        [
                            pod
                            async for pod in kube.list(Pod, namespace=namespace, labels=web)
                            if is_serving(pod)
                        ]
                    )
                )
            blocked_once = blocked_once or (p.outcome == "blocked" and p.name.startswith("web-"))
            # Play the ReplicaSet controller: a replacement comes up on another node for each evicted
            # web pod, but only once the budget has refused an eviction. Replacing at once lets the
            # disruption controller allow the next eviction before it is even sent when this process
            # is slow (a busy machine), and then no refusal, and no retry, is ever seen.
            while blocked_once and replacements < evicted_web:
                replacements += 1
                await create_pod(kube, namespace, spare, name=f"web-new-{replacements}", labels=web)

        recorder = EventRecorder(handler_kube, host=node.name)
        result = await drain(
            handler_kube, node.name, within_seconds=60, on_progress=on_progress, recorder=recorder
        )

        assert result.result is DrainOutcome.DRAINED, result.summary()
        assert sorted(result.evicted) == sorted(
            f"{namespace}/{n}" for n in ["rs-app", "scratch", "critical", "web-0", "web-1", "web-2"]
        )
        assert sorted((s.pod, s.reason) for s in result.skipped) == [
            (f"{namespace}/ds-agent", "daemonset"),
            (f"{namespace}/static-mirror", "mirror"),
        ]
        assert result.remaining == ()
        assert await pod_exists(kube, namespace, "ds-agent")
        assert await pod_exists(kube, namespace, "static-mirror")
        for gone in ["rs-app", "scratch", "critical", "web-0", "web-1", "web-2"]:
            assert not await pod_exists(kube, namespace, gone)

        # The budget (minAvailable 2) held at every eviction. A replacement that is Ready lets the next
        # eviction through while the previous pod is still terminating, as in a real cluster.
        assert len(serving_at_eviction) == 3 and min(serving_at_eviction) >= 2, serving_at_eviction
        assert result.pdb_blocked_retries >= 1
        assert any(p.outcome == "blocked" and "web-pdb" in p.detail for p in progress)

        # Critical pods only after the regular ones were gone.
        first_critical = next(
            i for i, p in enumerate(progress) if p.name == "critical" and p.outcome == "evicted"
        )
        regular_gone = [i for i, p in enumerate(progress) if p.outcome == "gone" and p.name != "critical"]
        assert len(regular_gone) == 5 and max(regular_gone) < first_critical

        # A PodEvicted Event on an evicted pod.
        events = [
            e
            async for e in kube.list(
                Event,
                namespace=namespace,
                fields={"involvedObject.name": "rs-app", "reason": REASON_POD_EVICTED},
            )
        ]
        assert len(events) == 1 and events[0].source.component == "aks-node-termination-handler"


async def test_a_pdb_that_never_allows_disruption_times_out_naming_the_pod(
    kube: AsyncClient, handler_kube: KubeClient, namespace: str
):
    node = await create_aks_node(kube)
    async with FakeKubelet(kube, node=node.name):
        await create_pod(kube, namespace, node, name="only", labels={"app": "db"})
        await create_pod(kube, namespace, node, name="free")
        await running(kube, namespace, "only", "free")
        pdb = await create_pdb(kube, namespace, {"app": "db"}, min_available=1, name="db-pdb")
        await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=1)

        result = await drain(handler_kube, node.name, within_seconds=3)

    assert result.result is DrainOutcome.TIMED_OUT
    assert [(r.pod, r.reason) for r in result.remaining] == [
        (f"{namespace}/only", "blocked by PodDisruptionBudget db-pdb")
    ]
    assert result.evicted == (f"{namespace}/free",)
    assert await pod_exists(kube, namespace, "only")
    assert "db-pdb" in result.summary()


@pytest.mark.chart_values(*ALLOW_POD_DELETE)
async def test_disable_eviction_deletes_even_what_a_pdb_protects(
    kube: AsyncClient, handler_kube: KubeClient, namespace: str
):
    node = await create_aks_node(kube)
    async with FakeKubelet(kube, node=node.name):
        await create_pod(kube, namespace, node, name="only", labels={"app": "db"})
        await running(kube, namespace, "only")
        pdb = await create_pdb(kube, namespace, {"app": "db"}, min_available=1)
        await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=1)

        result = await drain(handler_kube, node.name, within_seconds=30, disable_eviction=True)

    assert result.result is DrainOutcome.DRAINED, result.summary()
    assert result.deleted == (f"{namespace}/only",) and result.evicted == ()
    assert not await pod_exists(kube, namespace, "only")


async def test_dry_run_lists_what_it_would_evict_and_changes_nothing(
    kube: AsyncClient, handler_kube: KubeClient, namespace: str
):
    node = await create_aks_node(kube)
    await create_pod(kube, namespace, node, name="app")
    await create_pod(kube, namespace, node, name="agent", owner="DaemonSet")

    result = await drain(handler_kube, node.name, within_seconds=30, dry_run=True)

    assert result.result is DrainOutcome.DRY_RUN
    assert result.planned == (f"{namespace}/app",)
    assert result.evicted == () and result.remaining == ()
    assert await pod_exists(kube, namespace, "app")


async def test_a_pod_that_does_not_terminate_in_time_is_reported_as_still_terminating(
    kube: AsyncClient, handler_kube: KubeClient, namespace: str
):
    node = await create_aks_node(kube)
    async with FakeKubelet(kube, node=node.name, deletion_delay_seconds=3600):
        await create_pod(kube, namespace, node, name="slow")
        await running(kube, namespace, "slow")
        result = await drain(handler_kube, node.name, within_seconds=2)

    assert result.result is DrainOutcome.TIMED_OUT
    assert [(r.pod, r.reason) for r in result.remaining] == [(f"{namespace}/slow", "still terminating")]
    assert result.evicted == (f"{namespace}/slow",)


async def test_an_empty_node_is_drained_at_once(kube: AsyncClient, handler_kube: KubeClient):
    node = await create_aks_node(kube)
    result = await drain(handler_kube, node.name, within_seconds=30)
    assert result.result is DrainOutcome.DRAINED
    assert result.planned == ()
