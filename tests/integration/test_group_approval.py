"""-approveEvents for an event that lists several VMs, with one handler per node against the real API
server and the IMDS simulator (one document seen by every VM, where a StartRequests from any of them
starts the event for all, as Azure does): no approval while a listed node still has pods to move."""

from __future__ import annotations

import asyncio

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node, Pod

from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.cluster import create_aks_node, create_pod, eventually, unique_suffix, wait_pod_running
from testkit.handler import running_handler
from testkit.kubelet import FakeKubelet
from testkit.nodestate import node_event_counts, record_of, wait_phase

pytestmark = pytest.mark.controlplane

#: The slow node's pod takes this long to stop once evicted (the kubelet stand-in waits out its grace
#: period): the fast node is empty at once, the slow one this much later.
SLOW_GRACE_SECONDS = 6


async def pod_present(kube: AsyncClient, namespace: str, name: str) -> bool:
    return name in [p.metadata.name async for p in kube.list(Pod, namespace=namespace)]


async def test_an_event_for_two_nodes_is_approved_only_once_the_slower_node_is_empty(
    kube, namespace, simulator: ImdsSimulator, handler_kubeconfig
):
    """One Terminate lists both VMs; the fast node drains at once, the slow node's pod takes 6 s to
    stop. While that pod is still on the slow node no StartRequests reaches IMDS (checked each time
    the pod is seen: an approval seen before a sighting of the pod came before the node was empty);
    once it is gone, the last node to finish approves."""
    # One scale set of this test's own: each VM's resource name is unique in the cluster.
    vmss = f"aks-g{unique_suffix()}-12345678-vmss"
    fast = await create_aks_node(kube, vmss=vmss, instance_id="1")
    slow = await create_aks_node(kube, vmss=vmss, instance_id="2")
    await create_pod(kube, namespace, fast.name, name="web-0")
    await create_pod(kube, namespace, slow.name, name="db-0", grace_seconds=SLOW_GRACE_SECONDS)
    async with (
        FakeKubelet(kube, node=fast.name),
        FakeKubelet(kube, node=slow.name, grace_period_scale=1.0),
    ):
        await wait_pod_running(kube, namespace, "web-0")
        await wait_pod_running(kube, namespace, "db-0")
        async with (
            running_handler(
                kubeconfig=handler_kubeconfig, node=fast.name, simulator=simulator, extra=["-approveEvents"]
            ),
            running_handler(
                kubeconfig=handler_kubeconfig, node=slow.name, simulator=simulator, extra=["-approveEvents"]
            ),
        ):
            event_id = simulator.schedule(
                "Terminate", [fast.resource_name, slow.resource_name], notice_seconds=60
            )

            async def fast_drained() -> bool:
                entry = record_of(await kube.get(Node, fast.name)).events.get(event_id)
                return entry is not None and entry.drain is not None

            await eventually(fast_drained, what="the fast node's drain recorded")
            early: list[str] = []
            while True:
                approvals = simulator.approvals
                if not await pod_present(kube, namespace, "db-0"):
                    break
                if approvals:
                    early = approvals
                    break
                await asyncio.sleep(0.1)
            slow_node = await wait_phase(kube, slow.name, event_id, Phase.APPROVED)

            async def approved() -> bool:
                return event_id in simulator.approvals

            await eventually(approved, what="the event to be approved")
            fast_node = await kube.get(Node, fast.name)

    assert early == [], "StartRequests was sent while the slow node still had its pod"
    assert record_of(slow_node).events[event_id].approved
    # The fast node drained first and may approve too, but never before the slow node was empty.
    assert record_of(fast_node).events[event_id].drain.result == "drained"


async def test_an_event_that_lists_a_vm_outside_the_cluster_is_not_approved(
    kube, namespace, node, simulator: ImdsSimulator, handler_kubeconfig
):
    """The event lists this node's VM and one that is no node of this cluster (an availability set
    shared with other VMs): the node drains, but the handler withholds its approval, says why in an
    ApprovalWithheld Event, and IMDS gets no StartRequests."""
    await create_pod(kube, namespace, node.name, name="web-0")
    async with FakeKubelet(kube, node=node.name):
        await wait_pod_running(kube, namespace, "web-0")
        async with running_handler(
            kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator, extra=["-approveEvents"]
        ):
            event_id = simulator.schedule(
                "Terminate", [node.resource_name, "vm-outside_7"], notice_seconds=60
            )
            n = await wait_phase(kube, node.name, event_id, Phase.DRAINED)

            async def withheld() -> bool:
                return (await node_event_counts(kube, node.name)).get("ApprovalWithheld", 0) >= 1

            await eventually(withheld, what="an ApprovalWithheld Event on the node")
    assert simulator.approvals == []
    assert record_of(n).events[event_id].drain.result == "drained"
    assert not record_of(n).events[event_id].approved
