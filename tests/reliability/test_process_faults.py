"""The handler process killed with SIGKILL at each step of the response and started again: the event
finishes exactly once, no notification phase is sent twice (a loopback webhook receiver counts them),
approval happens once, and nothing stays cordoned that should not. Also: an event that arrives while
the API server is down is handled once it is back (the response resumes)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
from lightkube import AsyncClient
from lightkube.resources.policy_v1 import PodDisruptionBudget

from aksnth.kube import keys
from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.cluster import create_aks_node, create_pdb, create_pods, eventually, wait_pdb_observed
from testkit.controlplane import ControlPlane
from testkit.handler import running_handler
from testkit.kubelet import FakeKubelet
from testkit.nodestate import node_event_counts, our_taints, pods_on, record_of, wait_phase
from testkit.process import HandlerProcess, handler_argv, handler_flags
from testkit.receivers import Receiver
from tests.reliability.tally import count
from tests.reliability.test_apiserver_faults import api_requests

pytestmark = pytest.mark.controlplane

TEMPLATE = '{"phase": {{ toJson .Phase }}, "event": {{ toJson .Event.EventId }}}'
KILL_POINTS = ("after the cordon", "during the evictions", "before the approval", "before the give-back")


def notifications(receiver: Receiver) -> Counter[tuple[str, str]]:
    seen: Counter[tuple[str, str]] = Counter()
    for request in receiver.requests:
        body = json.loads(request.body)
        seen[(body["event"], body["phase"])] += 1
    return seen


async def kill_and_restart(
    point: str, kube: AsyncClient, namespace: str, kubeconfig: Path, tmp_path: Path
) -> dict[str, object]:
    node = await create_aks_node(kube)
    await create_pods(kube, namespace, node.name, 3)
    held = {"app": f"held-{node.name[-6:]}"}
    await create_pods(kube, namespace, node.name, 1, labels=held)
    log_path = tmp_path / f"handler-{point.replace(' ', '-')}.log"
    with ImdsSimulator() as simulator, Receiver() as receiver:
        flags = handler_flags(
            kubeconfig=kubeconfig,
            node=node.name,
            simulator=simulator,
            extra=[
                "-taint.node",
                "-approveEvents",
                "-notify.drainFinished",
                f"-webhook.url={receiver.url('/hook')}",
                f"-webhook.template={TEMPLATE}",
            ],
        )
        async with FakeKubelet(kube, node=node.name):
            pdb = await create_pdb(kube, namespace, held, min_available=1)
            await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=1)
            first = await HandlerProcess(handler_argv(flags), log_path=log_path).start_serving()
            try:
                kind = "Redeploy" if point == "before the give-back" else "Terminate"
                if point == "before the approval":
                    simulator.inject_fault(status=500, method="POST", count=None)  # approvals keep failing
                event_id = simulator.schedule(kind, [node.resource_name], notice_seconds=600)
                if point == "after the cordon":
                    await wait_phase(kube, node.name, event_id, Phase.PROTECTED)
                elif point == "during the evictions":

                    async def only_the_held_pod_left() -> bool:
                        return len(await pods_on(kube, node.name)) == 1

                    await eventually(only_the_held_pod_left, what="evictions under way")
                else:
                    await kube.delete(PodDisruptionBudget, pdb.metadata.name, namespace=namespace)
                    await wait_phase(kube, node.name, event_id, Phase.DRAINED, or_later=True)
                    if point == "before the give-back":
                        # Killed after the approval: the approval comes after the drain is recorded.
                        await wait_phase(kube, node.name, event_id, Phase.APPROVED, or_later=True)
                    if point == "before the approval":
                        await eventually(
                            lambda: _async(any(r.method == "POST" for r in simulator.requests)),
                            what="an approval tried",
                        )
                # Killed after what was sent is delivered: the kill tests the record, not the delivery.
                await receiver.wait_for_requests(
                    1 if point in ("after the cordon", "during the evictions") else 2
                )
            finally:
                first.kill()
            # While it is dead: the budget is lifted, the approval works again, the Redeploy is cancelled.
            if point in ("after the cordon", "during the evictions"):
                await kube.delete(PodDisruptionBudget, pdb.metadata.name, namespace=namespace)
            simulator.clear_faults()
            if point == "before the give-back":
                simulator.cancel(event_id)
            second = await HandlerProcess(handler_argv(flags), log_path=log_path).start_serving()
            try:
                final_phase = Phase.GIVEN_BACK if point == "before the give-back" else Phase.APPROVED
                final = await wait_phase(kube, node.name, event_id, final_phase, timeout_seconds=40)
                await receiver.wait_for_requests(2)
            finally:
                # SIGTERM: queued notifications are delivered before it exits, so a duplicate would be
                # counted below.
                assert second.stop() == 0
        sent = notifications(receiver)
        approvals = list(simulator.approvals)

    record = record_of(final)
    assert list(record.events) == [event_id], point
    assert sent == Counter({(event_id, "event"): 1, (event_id, "drained"): 1}), (point, sent)
    events = await node_event_counts(kube, node.name)
    # Events are written after the step they report: a kill right after the cordon may lose the
    # "Cordoned" Event (the record on the node is the truth), but none is ever written twice.
    assert events.get("EventSeen") == 1 and events.get("Cordoned", 0) <= 1, (point, events)
    assert events.get("DrainFinished") == 1, (point, events)
    assert await pods_on(kube, node.name) == []
    if point == "before the give-back":
        assert not final.spec.unschedulable and our_taints(final) == [], point
        assert approvals == [event_id]  # approved once by the first run, then cancelled
    else:
        assert approvals == [event_id], (point, approvals)
        assert final.spec.unschedulable is True
        assert our_taints(final) == [(f"{keys.TAINT_KEY_PREFIX}terminate", event_id, "NoSchedule")]
    return {"point": point}


async def _async(value: bool) -> bool:
    return value


@pytest.mark.timeout(120)
async def test_a_handler_killed_at_each_step_finishes_the_event_once_without_repeating_notifications(
    kube: AsyncClient, namespace: str, handler_kubeconfig: Path, tmp_path: Path
) -> None:
    await asyncio.gather(
        *(kill_and_restart(p, kube, namespace, handler_kubeconfig, tmp_path) for p in KILL_POINTS)
    )
    count("handler processes killed with SIGKILL mid-response and restarted", len(KILL_POINTS))


@pytest.mark.timeout(90)
async def test_an_event_that_arrives_while_the_api_server_is_down_is_handled_once_it_is_back(
    kube: AsyncClient,
    control_plane: ControlPlane,
    namespace: str,
    simulator: ImdsSimulator,
    handler_kubeconfig: Path,
) -> None:
    node = await create_aks_node(kube)
    await create_pods(kube, namespace, node.name, 3)
    errors_before = api_requests("<error>")
    async with (
        FakeKubelet(kube, node=node.name),
        running_handler(
            kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator, extra=["-taint.node"]
        ),
    ):
        await eventually(lambda: _async(len(simulator.requests) >= 2), what="the handler polling")
        await control_plane.stop_apiserver_async()
        event_id = simulator.schedule("Terminate", [node.resource_name], notice_seconds=300)

        # Longer than one call's own retries (about 2 s): the response as a whole must resume.
        async def retried_a_while() -> bool:
            return api_requests("<error>") >= errors_before + 15

        await eventually(retried_a_while, what="the response failing for a while", timeout_seconds=40)
        await control_plane.start_apiserver_async()
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED, timeout_seconds=40)
    assert drained.spec.unschedulable is True
    assert await pods_on(kube, node.name) == []
    assert (await node_event_counts(kube, node.name)).get("Cordoned") == 1
    count("events handled after an API server outage at the moment they arrived")
