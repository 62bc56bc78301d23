"""The safety promises on real kubelets, with containers that record the SIGTERM they get: a pod a
budget protects is stopped only at its last chance before the VM's end and keeps its grace period;
a budget that recovers lets the pod leave by eviction; an event that lists both nodes is approved
only once both are empty."""

from __future__ import annotations

import asyncio

from lightkube import AsyncClient
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Event, Namespace, Node, Pod
from lightkube.types import PatchType

from aksnth.kube.drainplan import GRACE_MARGIN_SECONDS, LAST_RESORT_LEAD_SECONDS
from aksnth.kube.record import NodeRecord
from testkit.cluster import eventually
from testkit.realcluster import HANDLER_IMAGE, RealCluster
from testkit.safety import accepted_evictions, check_safety, describe, safety_figures, stops
from testkit.scenario import (
    Release,
    alive_times,
    new_namespace,
    node_events,
    pdb,
    pods,
    released,
    safety_watch,
    set_schedulable,
    sigterm_times,
    wait_handlers_ready,
    wait_pods,
    workload,
    workload_pod_spec,
)

#: The protected pod's grace period: long enough to see that the kubelet let it run that long.
GRACE_SECONDS = 8
#: A Terminate's notice, scaled down: the last chance comes about 30 s after the publication.
NOTICE_SECONDS = 40.0
#: The drain reports after 5 s (the minimum), long before the last chance.
REPORT_ARGS = ["-nodeGracePeriodSeconds=5"]
#: How far a SIGTERM may be from the moment it was due: the kubelet's reaction to a deletion (its pod
#: watch, then the runtime's kill) and whole-second NotBefore and /proc/uptime readings.
SIGNAL_TOLERANCE_SECONDS = 2.0


def last_chance(not_before: float) -> float:
    return not_before - GRACE_SECONDS - GRACE_MARGIN_SECONDS - LAST_RESORT_LEAD_SECONDS


def not_before_of(real_cluster: RealCluster, event_id: str) -> float:
    assert real_cluster.simulator is not None
    (event,) = [e for e in real_cluster.simulator.state()["events"] if e["EventId"] == event_id]
    return float(event["not_before"])


async def pod_event_reasons(kube: AsyncClient, namespace: str, name: str) -> list[str]:
    return [
        e.reason or ""
        async for e in kube.list(Event, namespace=namespace, fields={"involvedObject.name": name})
    ]


async def protected_single_replica(real_cluster: RealCluster, kube: AsyncClient, namespace: str) -> Pod:
    """Deployment `solo`, one lingering replica on node A, under a budget of minAvailable 1: its
    eviction is refused for as long as it is the only replica."""
    node_a, node_b = real_cluster.nodes
    await set_schedulable(kube, node_b.name, schedulable=False)
    try:
        spec = workload_pod_spec(real_cluster, grace_seconds=GRACE_SECONDS, lingering=True)
        await kube.create(workload("Deployment", "solo", namespace, spec, replicas=1))
        await kube.create(pdb("solo", namespace, app="solo", min_available=1))
        (pod,) = await wait_pods(
            kube, namespace, labels="app=solo", count=1, node=node_a.name, what="solo on A"
        )
    finally:
        await set_schedulable(kube, node_b.name, schedulable=True)
    return pod


async def wait_report(kube: AsyncClient, node: str, since: float) -> None:
    async def reported() -> bool:
        return any(e.reason == "DrainFailed" for e in await node_events(kube, node, since))

    await eventually(reported, what=f"the drain's report on {node} (a DrainFailed Event)", timeout_seconds=60)


async def test_a_pod_a_budget_never_lets_go_gets_sigterm_and_its_grace_period_at_its_last_chance(
    real_cluster: RealCluster, rkube: AsyncClient
) -> None:
    """A Terminate due in 40 s for node A; its only replica is under minAvailable 1 all along. The
    drain reports after 5 s and the container is untouched then; its SIGTERM comes at its last chance
    (NotBefore - 8 s grace - 1.5 s, within 2 s), and the kubelet lets it run its 8 s grace period
    (it says it is alive until then), before NotBefore. The safety checks find nothing in the record,
    which holds the handler's one stop, after the budget's refusals."""
    node_a, _ = real_cluster.nodes
    namespace = await new_namespace(rkube, "lastchance")
    async with released(Release(real_cluster, values={"args": REPORT_ARGS}), rkube):
        await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes], image=HANDLER_IMAGE)
        solo = (await protected_single_replica(real_cluster, rkube, namespace)).metadata.name
        async with safety_watch(real_cluster, rkube, namespace) as safety:
            event = safety.publish("Terminate", [node_a], notice_seconds=NOTICE_SECONDS)
            published = event.published_at
            not_before = not_before_of(real_cluster, event.event_id)
            await wait_report(rkube, node_a.name, published)
            assert solo not in sigterm_times(real_cluster, namespace), "the report stopped the pod"
            await safety.wait_empty([node_a], timeout_seconds=NOTICE_SECONDS + 30)
            record = safety.record()
        reasons = await pod_event_reasons(rkube, namespace, solo)

    findings = check_safety(record)
    assert findings == [], describe(findings)
    assert [s.pod for s in stops(record)] == [f"{namespace}/{solo}"], "the audit log shows no stop"
    term = sigterm_times(real_cluster, namespace)[solo]
    alive = alive_times(real_cluster, namespace)[solo]
    assert term >= last_chance(not_before) - SIGNAL_TOLERANCE_SECONDS, (
        term - published,
        not_before - published,
    )
    assert term + GRACE_SECONDS <= not_before + SIGNAL_TOLERANCE_SECONDS
    assert alive - term >= GRACE_SECONDS - SIGNAL_TOLERANCE_SECONDS, "killed before its grace period ended"
    assert "LastResortStop" in reasons
    await rkube.delete(Namespace, namespace)


async def test_a_budget_that_recovers_mid_event_lets_the_pod_leave_by_eviction_with_no_stop(
    real_cluster: RealCluster, rkube: AsyncClient
) -> None:
    """The same Terminate and budget; after the drain's report the Deployment is scaled to two and
    its second replica becomes Ready on node B, so the budget allows one disruption: the pod on A is
    evicted (its container gets SIGTERM long before its last chance), no pod is stopped, and node A's
    record says drained with one eviction. The safety checks find nothing in the record, which holds
    the accepted eviction and no stop."""
    node_a, _ = real_cluster.nodes
    namespace = await new_namespace(rkube, "recovers")
    async with released(Release(real_cluster, values={"args": REPORT_ARGS}), rkube):
        await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes], image=HANDLER_IMAGE)
        solo = (await protected_single_replica(real_cluster, rkube, namespace)).metadata.name
        async with safety_watch(real_cluster, rkube, namespace) as safety:
            event = safety.publish("Terminate", [node_a], notice_seconds=NOTICE_SECONDS)
            event_id = event.event_id
            not_before = not_before_of(real_cluster, event_id)
            await wait_report(rkube, node_a.name, event.published_at)
            await rkube.patch(
                Deployment, "solo", {"spec": {"replicas": 2}}, namespace=namespace, patch_type=PatchType.MERGE
            )

            async def drained() -> NodeRecord | None:
                state = NodeRecord.from_annotations((await rkube.get(Node, node_a.name)).metadata.annotations)
                entry = state.events.get(event_id)
                return state if entry is not None and entry.drain is not None else None

            node_record = await eventually(
                drained, what="node A's drain recorded", timeout_seconds=NOTICE_SECONDS
            )
            record = safety.record()
        reasons = await pod_event_reasons(rkube, namespace, solo)

    findings = check_safety(record)
    assert findings == [], describe(findings)
    assert stops(record) == []
    assert accepted_evictions(record) == [solo], "the audit log shows no accepted eviction"
    drain = node_record.events[event_id].drain
    assert drain is not None and (drain.result, drain.evicted, drain.deleted) == ("drained", 1, 0)
    assert "LastResortStop" not in reasons and "PodEvicted" in reasons
    assert sigterm_times(real_cluster, namespace)[solo] < last_chance(not_before) - SIGNAL_TOLERANCE_SECONDS
    await rkube.delete(Namespace, namespace)


async def test_an_event_for_both_nodes_is_approved_only_once_the_slower_node_is_empty(
    real_cluster: RealCluster, rkube: AsyncClient
) -> None:
    """-approveEvents; one Terminate lists both VMs. Node A's pod stops at once, node B's lingers for
    its 8 s grace period. While B's pod is still there no StartRequests reaches IMDS (checked each
    time the pod is seen: an approval seen before a sighting of the pod came before B was empty);
    once it is gone, the event is approved. The safety checks find nothing in the record, which holds
    the approval and both nodes emptied."""
    node_a, node_b = real_cluster.nodes
    simulator = real_cluster.simulator
    assert simulator is not None
    namespace = await new_namespace(rkube, "group")
    async with released(Release(real_cluster, values={"args": ["-approveEvents"]}), rkube):
        await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes], image=HANDLER_IMAGE)
        quick = workload_pod_spec(real_cluster, node=node_a.name)
        slow = workload_pod_spec(real_cluster, grace_seconds=GRACE_SECONDS, lingering=True, node=node_b.name)
        await rkube.create(workload("Deployment", "quick", namespace, quick))
        await rkube.create(workload("Deployment", "slow", namespace, slow))
        await wait_pods(rkube, namespace, labels="app=quick", count=1, node=node_a.name, what="quick on A")
        (slow_pod,) = await wait_pods(
            rkube, namespace, labels="app=slow", count=1, node=node_b.name, what="slow on B"
        )
        async with safety_watch(real_cluster, rkube, namespace) as safety:
            event_id = safety.publish("Terminate", [node_a, node_b], notice_seconds=60).event_id
            early: list[str] = []
            while True:
                approvals = simulator.approvals
                on_b = [
                    p
                    for p in await pods(rkube, namespace, labels="app=slow")
                    if p.spec.nodeName == node_b.name
                ]
                if not on_b:
                    break
                if approvals:
                    early = approvals
                    break
                await asyncio.sleep(0.2)

            async def approved() -> bool:
                return event_id in simulator.approvals

            await eventually(
                approved, what="the event approved once both nodes are empty", timeout_seconds=60
            )
            await safety.wait_empty([node_a, node_b])
            record = safety.record()

    findings = check_safety(record)
    assert findings == [], describe(findings)
    # The record holds the approval and both nodes emptied (how close they came is check (c)'s, with
    # its tolerance for the watch's lag).
    after_empty = safety_figures(record, findings).approval_after_empty_seconds.get(event_id)
    assert after_empty is not None, "the record shows no approval, or a listed node never emptied"
    assert early == [], "StartRequests was sent while node B still had its pod"
    assert slow_pod.metadata.name in sigterm_times(real_cluster, namespace)
    await rkube.delete(Namespace, namespace)
