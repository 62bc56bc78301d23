"""The whole handler against the real control plane and the IMDS simulator, as the chart's
ServiceAccount: what users see on their nodes for each kind of Azure event."""

from __future__ import annotations

import asyncio

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event, Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget

from aksnth.kube import keys
from aksnth.lifecycle import Phase
from aksnth.observe import metrics
from testkit.chart import ALLOW_POD_DELETE
from testkit.cluster import (
    create_aks_node,
    create_pdb,
    create_pod,
    create_pods,
    eventually,
    wait_pdb_observed,
)
from testkit.handler import handler_held_mid_drain, running_handler
from testkit.kubelet import FakeKubelet
from testkit.nodestate import (
    EXCLUDE_LB,
    node_event_counts,
    our_taints,
    pods_on,
    read_node,
    record_of,
    settled_event_counts,
    wait_phase,
    wait_polls,
)

pytestmark = pytest.mark.controlplane


async def replace_evicted(kube: AsyncClient, namespace: str, spare: str, labels: dict[str, str], stop) -> int:
    """Play the ReplicaSet controller: recreate each guarded pod that left the drained node on ``spare``."""
    seen: set[str] = set()
    replaced = 0
    while not stop.is_set():
        current = {
            p.metadata.name
            async for p in kube.list(Pod, namespace=namespace, labels=labels)
            if p.spec.nodeName != spare and p.metadata.deletionTimestamp is None
        }
        for _gone in seen - current:
            await create_pod(kube, namespace, spare, labels=labels)
            replaced += 1
        seen = current
        await asyncio.sleep(0.1)
    return replaced


async def test_preempt_drains_a_node_of_twenty_pods_honouring_the_pdb(
    kube, namespace, node, simulator, handler_kubeconfig
):
    # 20 pods: 12 regular (4 of them behind a PDB allowing one disruption at a time), 2 with emptyDir,
    # 2 critical, 2 DaemonSet pods and 2 mirror pods that must stay.
    spare = await create_aks_node(kube, instance_id="9")
    await create_pods(kube, namespace, node.name, 8, owner="ReplicaSet")
    guarded = await create_pods(kube, namespace, node.name, 4, owner="ReplicaSet", labels={"app": "guarded"})
    for _ in range(2):
        await create_pod(kube, namespace, node.name, empty_dir=True)
        await create_pod(kube, namespace, node.name, priority_class_name="system-node-critical")
        await create_pod(kube, namespace, node.name, owner="DaemonSet")
        await create_pod(kube, namespace, node.name, owner=None, mirror=True)
    blocked_before = metrics.EVICTIONS.labels(result="pdb_blocked_retried")._value.get()
    stop = asyncio.Event()
    async with (
        FakeKubelet(kube, node=node.name, deletion_delay_seconds=0.2),
        FakeKubelet(kube, node=spare.name),
    ):
        pdb = await create_pdb(kube, namespace, {"app": "guarded"}, min_available=3)
        await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=len(guarded))

        async def settled():
            current = await kube.get(PodDisruptionBudget, pdb.metadata.name, namespace=namespace)
            return current.status.currentHealthy == 4 and current.status.disruptionsAllowed == 1

        await eventually(settled, what="the PDB to allow exactly one disruption")
        controller = asyncio.create_task(
            replace_evicted(kube, namespace, spare.name, {"app": "guarded"}, stop)
        )

        async with running_handler(
            kubeconfig=handler_kubeconfig,
            node=node.name,
            simulator=simulator,
            extra=["-taint.node", "-taint.effect=NoSchedule"],
        ):
            event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)

            async def drained():
                left = await pods_on(kube, node.name)
                return len(left) == 4 and left

            left = await eventually(drained, what="only DaemonSet and mirror pods left", timeout_seconds=40)

            n = await wait_phase(kube, node.name, event_id, Phase.DRAINED, timeout_seconds=20)
        stop.set()
        replaced = await controller

    assert replaced == 4
    assert metrics.EVICTIONS.labels(result="pdb_blocked_retried")._value.get() > blocked_before
    assert n.spec.unschedulable is True
    assert (n.metadata.labels or {}).get(EXCLUDE_LB) == "true"
    assert our_taints(n) == [(f"{keys.TAINT_KEY_PREFIX}preempt", event_id, "NoSchedule")]
    # Mirror pods are owned by their Node, as the kubelet creates them.
    assert sorted(p.metadata.ownerReferences[0].kind for p in left) == [
        "DaemonSet",
        "DaemonSet",
        "Node",
        "Node",
    ]
    events = await node_event_counts(kube, node.name)
    for reason in ("EventSeen", "Cordoned", "DrainStarted", "DrainFinished"):
        assert events.get(reason) == 1, events
    assert record_of(n).events[event_id].drain.result == "drained"


async def test_freeze_is_ignored_by_default(kube, namespace, node, simulator, handler_kubeconfig):
    await create_pod(kube, namespace, node.name)
    async with (
        FakeKubelet(kube, node=node.name),
        running_handler(kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator),
    ):
        simulator.schedule("Freeze", [node.resource_name], notice_seconds=60)
        await wait_polls(simulator, 5)
        n = await read_node(kube, node.name)
    assert not n.spec.unschedulable
    assert len(await pods_on(kube, node.name)) == 1
    assert record_of(n).events == {}


async def test_freeze_is_drained_with_drain_on_freeze_event(
    kube, namespace, node, simulator, handler_kubeconfig
):
    await create_pods(kube, namespace, node.name, 3)
    async with (
        FakeKubelet(kube, node=node.name),
        running_handler(
            kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator, extra=["-drainOnFreezeEvent"]
        ),
    ):
        event_id = simulator.schedule("Freeze", [node.resource_name], notice_seconds=60)
        n = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
    assert n.spec.unschedulable
    assert await pods_on(kube, node.name) == []


async def test_a_reboot_that_ends_gives_the_node_back(kube, namespace, node, simulator, handler_kubeconfig):
    await create_pods(kube, namespace, node.name, 2)
    async with (
        FakeKubelet(kube, node=node.name),
        running_handler(
            kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator, extra=["-taint.node"]
        ),
    ):
        event_id = simulator.schedule("Reboot", [node.resource_name], notice_seconds=3, duration_seconds=1)
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        assert drained.spec.unschedulable
        n = await wait_phase(kube, node.name, event_id, Phase.GIVEN_BACK)
    assert not n.spec.unschedulable
    assert EXCLUDE_LB not in (n.metadata.labels or {})
    assert our_taints(n) == []
    assert (await settled_event_counts(kube, node.name, NodeGivenBack=1))["NodeGivenBack"] == 1


async def test_a_cancelled_event_gives_the_node_back(kube, namespace, node, simulator, handler_kubeconfig):
    await create_pod(kube, namespace, node.name)
    async with (
        FakeKubelet(kube, node=node.name),
        running_handler(kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator),
    ):
        event_id = simulator.schedule("Redeploy", [node.resource_name], notice_seconds=600)
        await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        simulator.cancel(event_id)
        n = await wait_phase(kube, node.name, event_id, Phase.GIVEN_BACK)
    assert not n.spec.unschedulable


async def test_an_admin_cordoned_node_stays_cordoned_after_give_back(kube, simulator, handler_kubeconfig):
    node = await create_aks_node(kube, unschedulable=True)
    async with running_handler(kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator):
        event_id = simulator.schedule("Reboot", [node.resource_name], notice_seconds=600)
        n = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        assert record_of(n).cordoned_by_us is False
        simulator.cancel(event_id)
        n = await wait_phase(kube, node.name, event_id, Phase.GIVEN_BACK)
    assert n.spec.unschedulable is True


async def test_an_event_for_another_vm_is_ignored(kube, namespace, node, simulator, handler_kubeconfig):
    await create_pod(kube, namespace, node.name)
    async with (
        FakeKubelet(kube, node=node.name),
        running_handler(kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator),
    ):
        simulator.schedule("Preempt", ["aks-spot-12345678-vmss_999"], notice_seconds=30)
        await wait_polls(simulator, 5)
        n = await read_node(kube, node.name)
    assert not n.spec.unschedulable
    assert len(await pods_on(kube, node.name)) == 1


async def test_dry_run_changes_nothing(kube, namespace, node, simulator, handler_kubeconfig):
    await create_pods(kube, namespace, node.name, 3)
    before = await read_node(kube, node.name)
    async with (
        FakeKubelet(kube, node=node.name),
        running_handler(
            kubeconfig=handler_kubeconfig,
            node=node.name,
            simulator=simulator,
            extra=["-dryRun", "-taint.node"],
        ),
    ):
        simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)

        async def reported():
            return (await node_event_counts(kube, node.name)).get("DrainFinished")

        await eventually(reported, what="the dry-run drain reported")
        after = await read_node(kube, node.name)
    assert after.metadata.resourceVersion == before.metadata.resourceVersion
    assert len(await pods_on(kube, node.name)) == 3


async def test_approve_events_approves_once_drained(kube, namespace, node, simulator, handler_kubeconfig):
    await create_pods(kube, namespace, node.name, 2)
    async with (
        FakeKubelet(kube, node=node.name),
        running_handler(
            kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator, extra=["-approveEvents"]
        ),
    ):
        event_id = simulator.schedule("Terminate", [node.resource_name], notice_seconds=300)
        await wait_phase(kube, node.name, event_id, Phase.APPROVED)
        # The Event follows the approval's record on the node: wait for it while the handler runs.
        assert (await settled_event_counts(kube, node.name, EventApproved=1))["EventApproved"] == 1
    assert simulator.approvals == [event_id]


async def test_an_approval_waits_for_the_load_balancer_after_the_autoscaler_taint(
    kube, namespace, node, simulator, handler_kubeconfig
):
    """-approveEvents on a Preempt: the node is drained within a few seconds, but StartRequests goes out
    only -approveEvents.loadBalancerWait after the ToBeDeletedByClusterAutoscaler taint went on (its
    value, Unix seconds), so that Azure's load balancer has stopped sending connections to the node
    before the VM goes."""
    wait_seconds = 6
    await create_pods(kube, namespace, node.name, 1)
    async with (
        FakeKubelet(kube, node=node.name),
        running_handler(
            kubeconfig=handler_kubeconfig,
            node=node.name,
            simulator=simulator,
            extra=["-approveEvents", f"-approveEvents.loadBalancerWait={wait_seconds}s"],
        ),
    ):
        event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
        approved = await wait_phase(kube, node.name, event_id, Phase.APPROVED)
    [taint] = [
        ref for ref in record_of(approved).events[event_id].taints if ref.key == keys.TO_BE_DELETED_TAINT
    ]
    [approval] = [r for r in simulator.requests if r.method == "POST"]
    assert approval.time >= int(taint.value) + wait_seconds, (approval.time, taint.value)
    assert simulator.approvals == [event_id]


@pytest.mark.chart_values(*ALLOW_POD_DELETE)
async def test_disable_eviction_deletes_pods_past_a_pdb(kube, namespace, node, simulator, handler_kubeconfig):
    await create_pods(kube, namespace, node.name, 2, labels={"app": "stuck"})
    async with FakeKubelet(kube, node=node.name):
        pdb = await create_pdb(kube, namespace, {"app": "stuck"}, min_available=2)
        await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=2)
        async with running_handler(
            kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator, extra=["-disableEviction"]
        ):
            event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
            n = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
    assert await pods_on(kube, node.name) == []
    assert record_of(n).events[event_id].drain.deleted == 2


async def test_with_last_resort_off_a_pdb_that_never_allows_disruption_ends_in_a_reported_timeout(
    kube, namespace, node, simulator, handler_kubeconfig
):
    """-lastResort=false: a Preempt's drain honours the budget to the end; the pod stays, undeleted.
    The drain reports at -nodeGracePeriodSeconds (6 s) and again at the event's deadline (12 s): two
    DrainFailed Events, and the record says timed_out with the pod remaining."""
    await create_pods(kube, namespace, node.name, 1, labels={"app": "pinned"})
    async with FakeKubelet(kube, node=node.name):
        pdb = await create_pdb(kube, namespace, {"app": "pinned"}, min_available=1)
        await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=1)
        async with running_handler(
            kubeconfig=handler_kubeconfig,
            node=node.name,
            simulator=simulator,
            extra=["-nodeGracePeriodSeconds=6", "-lastResort=false"],
        ):
            event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=12)
            n = await wait_phase(kube, node.name, event_id, Phase.DRAINED, timeout_seconds=30)
    drain = record_of(n).events[event_id].drain
    assert drain.result == "timed_out"
    assert drain.remaining == 1
    assert (await node_event_counts(kube, node.name)).get("DrainFailed") == 2
    (pod,) = await pods_on(kube, node.name)
    assert pod.metadata.deletionTimestamp is None


async def test_a_preempt_stops_the_pod_a_pdb_never_lets_go_with_its_grace_period_before_the_deadline(
    kube, namespace, node, simulator, handler_kubeconfig
):
    """Default flags, a Preempt due in 9 s, a budget that never allows the disruption: the pod is
    deleted with its grace period cut to a third of the drain's time (2 or 3 s), before NotBefore; a
    LastResortStop Event on the pod and the last_resort_stops_total counter say so."""
    (created,) = await create_pods(kube, namespace, node.name, 1, labels={"app": "pinned"}, grace_seconds=30)
    name = created.metadata.name
    stopped_before = metrics.LAST_RESORT_STOPS.labels(type="Preempt", result="stopped")._value.get()
    async with FakeKubelet(kube, node=node.name, grace_period_scale=1.0):
        pdb = await create_pdb(kube, namespace, {"app": "pinned"}, min_available=1)
        await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=1)
        async with running_handler(kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator):
            event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=9.5)
            not_before = simulator.publication_time(event_id) + 9.5

            async def deleting() -> Pod | None:
                pod = await kube.get(Pod, name, namespace=namespace)
                return pod if pod.metadata.deletionTimestamp is not None else None

            pod = await eventually(deleting, what=f"pod {name} to be deleted")
            n = await wait_phase(kube, node.name, event_id, Phase.DRAINED, timeout_seconds=30)

    # The drain's time is NotBefore minus the sighting (under 9.5 s), a third of it is 2 s … 3 s.
    assert pod.metadata.deletionGracePeriodSeconds in (2, 3)
    assert pod.metadata.deletionTimestamp.timestamp() <= not_before
    drain = record_of(n).events[event_id].drain
    assert drain.result == "drained" and drain.deleted == 1 and drain.evicted == 0
    events = [
        e
        async for e in kube.list(Event, namespace=namespace, fields={"involvedObject.name": name})
        if e.reason == "LastResortStop"
    ]
    assert len(events) == 1 and pdb.metadata.name in events[0].message
    assert (
        metrics.LAST_RESORT_STOPS.labels(type="Preempt", result="stopped")._value.get() == stopped_before + 1
    )


async def test_a_restarted_handler_finishes_the_same_event_once(
    kube, namespace, node, simulator, handler_kubeconfig
):
    """Killed mid-drain (a PDB holds the last pod), started again: the drain completes, with one taint
    and no repeated EventSeen/Cordoned Events."""
    await create_pods(kube, namespace, node.name, 3)
    async with FakeKubelet(kube, node=node.name):
        async with handler_held_mid_drain(
            kube, namespace, node, simulator, kubeconfig=handler_kubeconfig, extra=["-taint.node"]
        ) as held:
            pass  # the first handler stops here, mid-drain: the budget holds the last pod
        # The budget is lifted; a new handler starts.
        await kube.delete(PodDisruptionBudget, held.budget.metadata.name, namespace=namespace)
        async with running_handler(
            kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator, extra=["-taint.node"]
        ):
            n = await wait_phase(kube, node.name, held.event_id, Phase.DRAINED)
    assert await pods_on(kube, node.name) == []
    assert len(our_taints(n)) == 1
    events = await node_event_counts(kube, node.name)
    assert events.get("EventSeen") == 1
    assert events.get("Cordoned") == 1
