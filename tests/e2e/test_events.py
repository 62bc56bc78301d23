"""Each kind of Azure event, handled by the handler process: what users see on their nodes.

The handler runs as a separate process with chart-style args, as the chart's ServiceAccount, against
the IMDS simulator; the test plays the kubelet (FakeKubelet) and Azure (the simulator's schedule and
cancel) and reads the cluster.
"""

from __future__ import annotations

import httpx2
import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from aksnth.kube import keys
from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.cluster import (
    AksNode,
    create_aks_node,
    create_pdb,
    create_pod,
    create_pods,
    eventually,
    hold_one_pod,
    vmss_provider_id,
    wait_pdb_observed,
)
from testkit.kubelet import FakeKubelet
from testkit.metrics import PREFIX, Scrape
from testkit.nodestate import (
    has_lb_label,
    node_event_counts,
    node_events,
    our_taints,
    pods_on,
    read_node,
    record_of,
    settled_event_counts,
    wait_phase,
    wait_polls,
)
from testkit.receivers import Receiver
from tests.e2e.conftest import Launcher

pytestmark = pytest.mark.controlplane


def scheduled_events_total(response: httpx2.Response, node: AksNode) -> dict[str, float]:
    """``aks_node_termination_handler_scheduled_events_total`` of this node, by event type."""
    assert response.status_code == 200
    samples = Scrape(response.text, prefix=PREFIX).matching(
        "scheduled_events_total", node=node.name, resource=node.resource_name
    )
    return {sample.labels["type"]: sample.value for sample in samples}


PREEMPT_TAINT = f"{keys.TAINT_KEY_PREFIX}preempt"


async def test_preempt_cordons_labels_taints_and_drains(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 4)
    await create_pod(kube, namespace, node.name, owner="DaemonSet")
    async with FakeKubelet(kube, node=node.name):
        handler = await launch(node.name, "-taint.node")
        event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
        n = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
    left = await pods_on(kube, node.name)
    # The log is what the chart's users get by default: one JSON object per line, with context.
    cordoned = [r for r in handler.log_records() if r["msg"] == f"node {node.name} cordoned"]
    assert [(r["level"], r["event_id"], r["event_type"], r["node"], r["resource"]) for r in cordoned] == [
        ("info", event_id, "Preempt", node.name, node.resource_name)
    ]
    assert [p.metadata.ownerReferences[0].kind for p in left] == ["DaemonSet"]
    assert n.spec.unschedulable is True
    assert has_lb_label(n)
    assert our_taints(n) == [(PREEMPT_TAINT, event_id, "NoSchedule")]
    drain = record_of(n).events[event_id].drain
    assert drain is not None and (drain.result, drain.evicted, drain.remaining) == ("drained", 4, 0)
    events = await node_event_counts(kube, node.name)
    assert {r: events[r] for r in ("EventSeen", "Cordoned", "DrainStarted", "DrainFinished")} == {
        "EventSeen": 1,
        "Cordoned": 1,
        "DrainStarted": 1,
        "DrainFinished": 1,
    }
    assert "NodeGivenBack" not in events
    # The Go version's Events, word for word: alerts keyed on reason=Preempt keep working.
    await settled_event_counts(kube, node.name, ReadEvents=1, Preempt=1)
    go_events = [ev for ev in await node_events(kube, node.name) if ev.reason in ("ReadEvents", "Preempt")]
    assert sorted((ev.type, ev.reason, ev.message, ev.source.component) for ev in go_events) == [
        ("Info", "ReadEvents", "Start to listen events from Azure API", "aks-node-termination-handler"),
        (
            "Warning",
            "Preempt",
            "Azure API sended schedule event for this node",
            "aks-node-termination-handler",
        ),
    ]
    assert {ev.metadata.namespace for ev in go_events} == {"default"}


async def test_terminate_drains_and_keeps_the_node_cordoned_when_it_is_over(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 2)
    async with FakeKubelet(kube, node=node.name):
        await launch(node.name, "-taint.node")
        event_id = simulator.schedule(
            "Terminate", [node.resource_name], notice_seconds=2, duration_seconds=60
        )
        await wait_phase(kube, node.name, event_id, Phase.DRAINED)

        async def started() -> bool:
            return simulator.document()["Events"][0]["EventStatus"] == "Started"

        await eventually(started, what="NotBefore to pass")
        await wait_polls(simulator, 2)  # the handler has seen it Started
        # It leaves the document (here a minute early): the VM is gone, nothing to undo.
        simulator.cancel(event_id)
        n = await wait_phase(kube, node.name, event_id, Phase.FINISHED)
    assert await pods_on(kube, node.name) == []
    assert n.spec.unschedulable is True
    assert our_taints(n) == [(f"{keys.TAINT_KEY_PREFIX}terminate", event_id, "NoSchedule")]
    assert "NodeGivenBack" not in await node_event_counts(kube, node.name)


async def test_a_reboot_drains_then_gives_the_node_back(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 2)
    async with FakeKubelet(kube, node=node.name):
        await launch(node.name, "-taint.node")
        event_id = simulator.schedule("Reboot", [node.resource_name], notice_seconds=2, duration_seconds=0.5)
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        n = await wait_phase(kube, node.name, event_id, Phase.GIVEN_BACK)
    assert drained.spec.unschedulable is True
    assert our_taints(drained) == [(f"{keys.TAINT_KEY_PREFIX}reboot", event_id, "NoSchedule")]
    assert await pods_on(kube, node.name) == []
    assert not n.spec.unschedulable
    assert not has_lb_label(n)
    assert our_taints(n) == []
    assert (await settled_event_counts(kube, node.name, NodeGivenBack=1))["NodeGivenBack"] == 1


async def test_a_redeploy_drains_then_gives_the_node_back(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 2)
    async with FakeKubelet(kube, node=node.name):
        await launch(node.name, "-taint.node", "-taint.effect=PreferNoSchedule")
        event_id = simulator.schedule(
            "Redeploy", [node.resource_name], notice_seconds=2, duration_seconds=0.5
        )
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        n = await wait_phase(kube, node.name, event_id, Phase.GIVEN_BACK)
    assert our_taints(drained) == [(f"{keys.TAINT_KEY_PREFIX}redeploy", event_id, "PreferNoSchedule")]
    assert await pods_on(kube, node.name) == []
    assert not n.spec.unschedulable
    assert our_taints(n) == []


async def test_a_freeze_is_ignored_by_default_yet_counted_and_recorded_as_the_go_version_did(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    """Nothing on the node changes (no cordon, label, taint or record; only its AzureScheduledEvent
    condition shows the pending Freeze as ignored), but, as in the Go version, the ignored Freeze counts
    in scheduled_events_total and gets a Warning Event with reason Freeze; the start-up Event is there."""
    await create_pod(kube, namespace, node.name)
    before = await read_node(kube, node.name)
    handler = await launch(node.name)
    event_id = simulator.schedule("Freeze", [node.resource_name], notice_seconds=60)
    await wait_polls(simulator, 5)

    async def shown() -> Node | None:
        current = await read_node(kube, node.name)
        conditions = {c.type: c for c in current.status.conditions or []}
        condition = conditions.get("AzureScheduledEvent")
        return current if condition is not None and f"EventId={event_id}" in condition.message else None

    after = await eventually(shown, what="the Freeze in the node's condition")
    assert after.spec == before.spec
    assert (after.metadata.labels, after.metadata.annotations) == (
        before.metadata.labels,
        before.metadata.annotations,
    )
    assert {c.type: c for c in after.status.conditions}["AzureScheduledEvent"].message.endswith(
        "Phase=ignored"
    )
    assert len(await pods_on(kube, node.name)) == 1
    await settled_event_counts(kube, node.name, ReadEvents=1, Freeze=1)
    assert sorted(
        (ev.type, ev.reason, ev.message, ev.count) for ev in await node_events(kube, node.name)
    ) == [
        ("Info", "ReadEvents", "Start to listen events from Azure API", 1),
        ("Warning", "Freeze", "Azure API sended schedule event for this node", 1),
    ]
    assert scheduled_events_total(handler.get("/metrics"), node) == {"Freeze": 1.0}
    # Seen and decided on, not missed:
    assert "Freeze events are ignored unless -drainOnFreezeEvent is set" in handler.log_text()


async def test_a_freeze_is_drained_with_drain_on_freeze_event_and_given_back(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 3)
    async with FakeKubelet(kube, node=node.name):
        await launch(node.name, "-drainOnFreezeEvent")
        event_id = simulator.schedule("Freeze", [node.resource_name], notice_seconds=2, duration_seconds=0.5)
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        n = await wait_phase(kube, node.name, event_id, Phase.GIVEN_BACK)
    assert drained.spec.unschedulable is True
    assert await pods_on(kube, node.name) == []
    assert not n.spec.unschedulable


async def test_a_cancelled_terminate_gives_the_node_back(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pod(kube, namespace, node.name)
    async with FakeKubelet(kube, node=node.name):
        await launch(node.name, "-taint.node")
        event_id = simulator.schedule("Terminate", [node.resource_name], notice_seconds=300)
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        simulator.cancel(event_id)
        n = await wait_phase(kube, node.name, event_id, Phase.GIVEN_BACK)
    assert drained.spec.unschedulable is True
    assert not n.spec.unschedulable
    assert not has_lb_label(n)
    assert our_taints(n) == []
    assert (await settled_event_counts(kube, node.name, NodeGivenBack=1))["NodeGivenBack"] == 1


async def test_dry_run_records_and_notifies_but_changes_nothing(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 3)
    before = await read_node(kube, node.name)
    with Receiver() as receiver:
        async with FakeKubelet(kube, node=node.name):
            await launch(node.name, "-dryRun", "-taint.node", f"-webhook.url={receiver.url('/hook')}")
            simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)

            async def reported() -> bool:
                return (await node_event_counts(kube, node.name))["DrainFinished"] == 1

            await eventually(reported, what="the dry-run drain reported as an Event")
            await receiver.wait_for_requests(1)
        after = await read_node(kube, node.name)
    assert after.metadata.resourceVersion == before.metadata.resourceVersion
    assert len(await pods_on(kube, node.name)) == 3
    messages = {ev.reason: ev.message or "" for ev in await node_events(kube, node.name)}
    assert "dry run" in messages["Cordoned"]


async def test_no_execute_taint_appears_only_after_the_drain(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 2)
    async with FakeKubelet(kube, node=node.name):
        pdb = await hold_one_pod(kube, namespace, node.name)
        await launch(node.name, "-taint.node", "-taint.effect=NoExecute")
        event_id = simulator.schedule("Terminate", [node.resource_name], notice_seconds=300)
        await wait_phase(kube, node.name, event_id, Phase.PROTECTED)

        async def only_held_left() -> bool:
            return len(await pods_on(kube, node.name)) == 1

        await eventually(only_held_left, what="all but the PDB-held pod evicted")
        draining = await read_node(kube, node.name)
        await kube.delete(PodDisruptionBudget, pdb.metadata.name, namespace=namespace)
        n = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
    # Mid-drain the node is cordoned but carries no NoExecute taint (it would kill the held pod).
    assert draining.spec.unschedulable is True
    assert our_taints(draining) == []
    assert our_taints(n) == [(f"{keys.TAINT_KEY_PREFIX}terminate", event_id, "NoExecute")]
    assert await pods_on(kube, node.name) == []
    assert (await node_event_counts(kube, node.name))["NodeTaintedNoExecute"] == 1


async def test_a_pdb_that_never_allows_eviction_is_reported_at_the_drain_timeout_and_still_asked(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    """-nodeGracePeriodSeconds=1 (raised to the 5 s minimum) and -lastResort=false, a Terminate five
    minutes ahead: the drain reports timed_out with the budget named and the pod still asked, the pod
    stays, and nothing is recorded as drained: the evictions go on until the event's deadline."""
    await create_pods(kube, namespace, node.name, 1, labels={"app": "pinned"})
    async with FakeKubelet(kube, node=node.name):
        pdb = await create_pdb(kube, namespace, {"app": "pinned"}, min_available=1)
        await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=1)
        await launch(node.name, "-nodeGracePeriodSeconds=1", "-lastResort=false")
        event_id = simulator.schedule("Terminate", [node.resource_name], notice_seconds=300)
        await settled_event_counts(kube, node.name, DrainFailed=1)
        n = await kube.get(Node, node.name)
    assert record_of(n).events[event_id].drain is None  # the drain is not over: it reported
    assert len(await pods_on(kube, node.name)) == 1
    failed = [ev for ev in await node_events(kube, node.name) if ev.reason == "DrainFailed"]
    assert len(failed) == 1
    message = failed[0].message or ""
    assert message.startswith("timed_out:") and f"PodDisruptionBudget {pdb.metadata.name}" in message
    assert "asked again until the deadline" in message


async def test_approve_events_lets_azure_start_the_event_once_drained(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 2)
    async with FakeKubelet(kube, node=node.name):
        await launch(node.name, "-approveEvents")
        event_id = simulator.schedule("Terminate", [node.resource_name], notice_seconds=300)
        await wait_phase(kube, node.name, event_id, Phase.APPROVED)
    assert simulator.approvals == [event_id]
    (event,) = simulator.document()["Events"]
    assert event["EventStatus"] == "Started"
    assert await pods_on(kube, node.name) == []
    assert (await settled_event_counts(kube, node.name, EventApproved=1))["EventApproved"] == 1


async def test_two_events_at_once_hold_the_node_until_both_are_over(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 2)
    async with FakeKubelet(kube, node=node.name):
        await launch(node.name, "-taint.node")
        reboot = simulator.schedule("Reboot", [node.resource_name], notice_seconds=600)
        redeploy = simulator.schedule("Redeploy", [node.resource_name], notice_seconds=600)
        await wait_phase(kube, node.name, reboot, Phase.DRAINED)
        both = await wait_phase(kube, node.name, redeploy, Phase.DRAINED)
        simulator.cancel(reboot)
        one_left = await wait_phase(kube, node.name, reboot, Phase.GIVEN_BACK)
        simulator.cancel(redeploy)
        n = await wait_phase(kube, node.name, redeploy, Phase.GIVEN_BACK)
    assert sorted(our_taints(both)) == [
        (f"{keys.TAINT_KEY_PREFIX}reboot", reboot, "NoSchedule"),
        (f"{keys.TAINT_KEY_PREFIX}redeploy", redeploy, "NoSchedule"),
    ]
    # The Reboot is over but the Redeploy still holds the node: only the Reboot's taint goes.
    assert one_left.spec.unschedulable is True
    assert our_taints(one_left) == [(f"{keys.TAINT_KEY_PREFIX}redeploy", redeploy, "NoSchedule")]
    assert not n.spec.unschedulable
    assert our_taints(n) == []
    events = await settled_event_counts(kube, node.name, NodeGivenBack=2)
    assert (events["EventSeen"], events["Cordoned"], events["NodeGivenBack"]) == (2, 2, 2)


async def test_an_event_for_another_vm_is_ignored(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pod(kube, namespace, node.name)
    before = await read_node(kube, node.name)
    await launch(node.name)
    simulator.schedule("Preempt", ["aks-spot-12345678-vmss_999"], notice_seconds=30)
    await wait_polls(simulator, 5)
    after = await read_node(kube, node.name)
    assert after.metadata.resourceVersion == before.metadata.resourceVersion
    assert len(await pods_on(kube, node.name)) == 1
    # Only the start-up Event (as the Go version records it); nothing about another VM's event.
    assert (await settled_event_counts(kube, node.name, ReadEvents=1)) == {"ReadEvents": 1}


async def test_an_admin_cordoned_node_is_drained_and_stays_cordoned_after_give_back(
    kube: AsyncClient, namespace: str, simulator: ImdsSimulator, launch: Launcher
) -> None:
    node = await create_aks_node(kube, unschedulable=True)
    await create_pods(kube, namespace, node.name, 2)
    async with FakeKubelet(kube, node=node.name):
        await launch(node.name, "-taint.node")
        event_id = simulator.schedule("Reboot", [node.resource_name], notice_seconds=600)
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        simulator.cancel(event_id)
        n = await wait_phase(kube, node.name, event_id, Phase.GIVEN_BACK)
    assert await pods_on(kube, node.name) == []
    assert record_of(drained).cordoned_by_us is False
    assert n.spec.unschedulable is True
    assert our_taints(n) == []
    assert not has_lb_label(n)


async def test_a_node_without_provider_id_yet_is_retried_then_handled(
    kube: AsyncClient, namespace: str, simulator: ImdsSimulator, launch: Launcher
) -> None:
    node = await create_aks_node(kube, provider_id="")
    await create_pods(kube, namespace, node.name, 2)
    async with FakeKubelet(kube, node=node.name):
        handler = await launch(node.name)

        async def retried() -> bool:
            return "(attempt 2)" in handler.log_text()

        await eventually(retried, what="a second attempt to read the providerID", timeout_seconds=10)
        assert handler.returncode is None
        assert handler.get("/readyz").status_code == 503
        # What the cloud controller manager does on a real cluster, a moment after the kubelet:
        await kube.patch(
            Node,
            node.name,
            {"spec": {"providerID": vmss_provider_id(node.vmss, node.instance_id)}},
            patch_type=PatchType.MERGE,
        )
        event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
        n = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
    assert n.spec.unschedulable is True
    assert await pods_on(kube, node.name) == []
