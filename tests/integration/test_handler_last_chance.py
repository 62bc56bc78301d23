"""The drain timeout against the VM's end, with the whole handler, the real API server and its
disruption controller: `-nodeGracePeriodSeconds` only says when the drain reports; a pod a budget
protects is asked again until its last chance before NotBefore, and stopped only then."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event, Pod

from aksnth.kube.drainplan import GRACE_MARGIN_SECONDS, LAST_RESORT_LEAD_SECONDS
from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.cluster import (
    AksNode,
    create_aks_node,
    create_pdb,
    create_pod,
    eventually,
    wait_pdb_observed,
    wait_pod_running,
)
from testkit.handler import running_handler
from testkit.kubelet import FakeKubelet
from testkit.nodestate import node_event_counts, record_of, wait_phase

pytestmark = pytest.mark.controlplane

POD_GRACE_SECONDS = 2
DB = {"app": "db"}
NOTICE_SECONDS = 14.0
# -nodeGracePeriodSeconds=1 is raised to the drain's 5 s minimum: the report comes about 5 s in,
# long before the last chance (NotBefore - 2 s - 1.5 s, about 10 s in).
HANDLER_FLAGS = ["-nodeGracePeriodSeconds=1"]
# deletionTimestamp is the API server's time of the delete plus the grace period, in whole seconds.
TIMESTAMP_RESOLUTION_SECONDS = 1.0


def not_before_of(simulator: ImdsSimulator, event_id: str) -> datetime:
    (event,) = [e for e in simulator.document()["Events"] if e["EventId"] == event_id]
    return parsedate_to_datetime(event["NotBefore"])


async def pod_events(kube: AsyncClient, namespace: str, name: str) -> list[str]:
    return [
        e.reason or ""
        async for e in kube.list(Event, namespace=namespace, fields={"involvedObject.name": name})
    ]


@asynccontextmanager
async def terminate_behind_a_closed_budget(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, kubeconfig: Path
) -> AsyncIterator[str]:
    """Once db-0 runs on `node` (its kubelet stand-in already started) behind a budget that allows no
    disruption: the handler running with HANDLER_FLAGS and the id of a Terminate due in NOTICE_SECONDS."""
    await wait_pod_running(kube, namespace, "db-0")
    pdb = await create_pdb(kube, namespace, DB, min_available=1)
    await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=1)
    async with running_handler(
        kubeconfig=kubeconfig, node=node.name, simulator=simulator, extra=HANDLER_FLAGS
    ):
        yield simulator.schedule("Terminate", [node.resource_name], notice_seconds=NOTICE_SECONDS)


async def wait_report(kube: AsyncClient, node: str) -> None:
    async def reported() -> bool:
        return (await node_event_counts(kube, node)).get("DrainFailed", 0) >= 1

    await eventually(reported, what="the drain's report (a DrainFailed Event on the node)")


async def test_a_budget_that_never_allows_is_stopped_at_the_vms_last_chance_not_at_the_drain_timeout(
    kube, namespace, node, simulator, handler_kubeconfig
):
    """A Terminate due in 14 s, -nodeGracePeriodSeconds=1, a budget that never allows the
    disruption: the drain reports `timed_out` while the pod is still untouched, and the pod is
    deleted only at its last chance (NotBefore minus its 2 s grace period and 1.5 s), with that
    grace period, ending by NotBefore."""
    await create_pod(kube, namespace, node.name, name="db-0", labels=DB, grace_seconds=POD_GRACE_SECONDS)
    async with (
        FakeKubelet(kube, node=node.name, grace_period_scale=1.0),
        terminate_behind_a_closed_budget(kube, namespace, node, simulator, handler_kubeconfig) as event_id,
    ):
        not_before = not_before_of(simulator, event_id)
        await wait_report(kube, node.name)
        at_report = await kube.get(Pod, "db-0", namespace=namespace)

        async def deleting() -> Pod | None:
            pod = await kube.get(Pod, "db-0", namespace=namespace)
            return pod if pod.metadata.deletionTimestamp is not None else None

        deleted = await eventually(deleting, what="the last-resort stop of db-0", timeout_seconds=30)
        n = await wait_phase(kube, node.name, event_id, Phase.DRAINED, timeout_seconds=30)

    assert at_report.metadata.deletionTimestamp is None  # the report stopped nothing
    assert deleted.metadata.deletionGracePeriodSeconds == POD_GRACE_SECONDS
    sent_at = deleted.metadata.deletionTimestamp.timestamp() - POD_GRACE_SECONDS
    last_chance = not_before.timestamp() - POD_GRACE_SECONDS - GRACE_MARGIN_SECONDS - LAST_RESORT_LEAD_SECONDS
    assert sent_at >= last_chance - TIMESTAMP_RESOLUTION_SECONDS, (sent_at, last_chance)
    assert deleted.metadata.deletionTimestamp.timestamp() <= not_before.timestamp()
    drain = record_of(n).events[event_id].drain
    assert drain.result == "drained" and drain.deleted == 1 and drain.evicted == 0
    assert "LastResortStop" in await pod_events(kube, namespace, "db-0")


async def test_a_budget_that_recovers_after_the_drain_timeout_lets_the_pod_leave_by_eviction(
    kube, namespace, node, simulator, handler_kubeconfig
):
    """The same Terminate and budget; after the drain's report a second replica becomes Ready on
    another node, so the budget allows one disruption: the pod leaves by eviction, no pod is stopped,
    and the node's record says drained with one eviction."""
    other = await create_aks_node(kube)
    await create_pod(kube, namespace, node.name, name="db-0", labels=DB, grace_seconds=POD_GRACE_SECONDS)
    async with (
        FakeKubelet(kube, node=node.name, grace_period_scale=1.0),
        FakeKubelet(kube, node=other.name),
        terminate_behind_a_closed_budget(kube, namespace, node, simulator, handler_kubeconfig) as event_id,
    ):
        await wait_report(kube, node.name)
        assert (await kube.get(Pod, "db-0", namespace=namespace)).metadata.deletionTimestamp is None
        await create_pod(kube, namespace, other.name, name="db-1", labels=DB)
        n = await wait_phase(kube, node.name, event_id, Phase.DRAINED, timeout_seconds=30)

    drain = record_of(n).events[event_id].drain
    assert drain.result == "drained" and drain.evicted == 1 and drain.deleted == 0
    events = await pod_events(kube, namespace, "db-0")
    assert "LastResortStop" not in events and "PodEvicted" in events
    assert (await node_event_counts(kube, node.name)).get("DrainFinished") == 1  # the end, after the report
