"""Load: one node with 250 pods behind 50 PodDisruptionBudgets (each lets one of its five pods go at a
time; a stand-in ReplicaSet controller recreates evicted pods on a spare node), and a document of 20
concurrent events, three of them for this VM (Terminate, Reboot, Redeploy), one Freeze for it (ignored
by default) and sixteen for other VMs. Outcome: every pod leaves the node through the Eviction API
while the Ready pods behind each budget, watched throughout the drain, never fall below its
minAvailable; each of this VM's selected events is drained and recorded once, one cordon and one taint
per event type, and the other events change nothing. The safety checks (testkit/src/testkit/safety.py) find
nothing on any pod or event: no stop, every pod evicted with a grace period that ends before its
deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget

from aksnth.kube import keys
from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.audit import kubeconfig_user, read_audit_log
from testkit.cluster import (
    AksNode,
    create_pdb,
    create_pod,
    create_pods,
    eventually,
    is_serving,
    wait_pdb_observed,
)
from testkit.controlplane import ControlPlane
from testkit.fleetwatch import FleetWatch
from testkit.handler import running_handler
from testkit.kubelet import FakeKubelet
from testkit.nodestate import node_event_counts, our_taints, pods_on, record_of, wait_phase
from testkit.safety import check_safety, describe, event_record, safety_record
from tests.reliability.tally import count, note

pytestmark = pytest.mark.controlplane

GROUPS = 50
PODS_PER_GROUP = 5
OUR_EVENTS = ("Terminate", "Reboot", "Redeploy")
OTHER_VMS = [f"aks-spot-12345678-vmss_{100 + i}" for i in range(16)]


async def replace_evicted(kube: AsyncClient, namespace: str, spare: str, stop: asyncio.Event) -> int:
    """The ReplicaSet controller's part: each group keeps five pods, recreated on the spare node."""
    replaced = 0
    while not stop.is_set():
        alive: dict[str, int] = {}
        async for pod in kube.list(Pod, namespace=namespace):
            group = (pod.metadata.labels or {}).get("group")
            if group is not None and pod.metadata.deletionTimestamp is None:
                alive[group] = alive.get(group, 0) + 1
        missing = [(f"g{i}", PODS_PER_GROUP - alive.get(f"g{i}", 0)) for i in range(GROUPS)]
        creations = [
            create_pod(kube, namespace, spare, labels={"group": group})
            for group, n in missing
            for _ in range(n)
        ]
        await asyncio.gather(*creations)
        replaced += len(creations)
        await asyncio.sleep(0.2)
    return replaced


class ServingWatch:
    """The pods serving behind each budget (Ready, not terminating), kept from a watch of the namespace
    from a listing on: the lowest number each group has had since the listing, and how many pod
    changes were seen."""

    def __init__(self, kube: AsyncClient, namespace: str) -> None:
        self._kube = kube
        self._namespace = namespace
        self._serving: dict[str, set[str]] = {}
        self.lowest: dict[str, int] = {}
        self.changes = 0
        self.listed = asyncio.Event()

    def _see(self, pod: Pod, *, gone: bool = False) -> None:
        group = (pod.metadata.labels or {}).get("group")
        if group is None:
            return
        members = self._serving.setdefault(group, set())
        if is_serving(pod) and not gone:
            members.add(pod.metadata.name)
        else:
            members.discard(pod.metadata.name)
        if self.listed.is_set():
            self.changes += 1
            self.lowest[group] = min(self.lowest[group], len(members))

    async def run(self) -> None:
        listing = self._kube.list(Pod, namespace=self._namespace)
        async for pod in listing:
            self._see(pod)
        self.lowest = {group: len(members) for group, members in self._serving.items()}
        self.listed.set()
        watch = self._kube.watch(Pod, namespace=self._namespace, resource_version=listing.resourceVersion)
        async for change, pod in watch:
            self._see(pod, gone=change == "DELETED")


@pytest.mark.timeout(150)
async def test_250_pods_50_budgets_and_20_concurrent_events(
    kube: AsyncClient,
    namespace: str,
    node: AksNode,
    spare_node: AksNode,
    simulator: ImdsSimulator,
    handler_kubeconfig: Path,
    control_plane: ControlPlane,
) -> None:
    for group in range(GROUPS):
        await create_pods(
            kube, namespace, node.name, PODS_PER_GROUP, name_prefix=f"g{group}", labels={"group": f"g{group}"}
        )
    stop = asyncio.Event()
    async with FakeKubelet(kube, node=node.name), FakeKubelet(kube, node=spare_node.name):
        budgets = await asyncio.gather(
            *(
                create_pdb(kube, namespace, {"group": f"g{g}"}, min_available=PODS_PER_GROUP - 1)
                for g in range(GROUPS)
            )
        )

        async def settled(budget: PodDisruptionBudget) -> None:
            name = budget.metadata.name

            async def allows_one() -> bool:
                current = await kube.get(PodDisruptionBudget, name, namespace=namespace)
                return bool(current.status and current.status.disruptionsAllowed == 1)

            await wait_pdb_observed(kube, namespace, name, expected_pods=PODS_PER_GROUP, timeout_seconds=60)
            await eventually(allows_one, what=f"{name} to allow one disruption", timeout_seconds=60)

        await asyncio.gather(*(settled(b) for b in budgets))

        # The pods, from before the events on, for the safety checks.
        async with FleetWatch(kube, namespace) as watch:
            ours = [simulator.schedule(kind, [node.resource_name], notice_seconds=600) for kind in OUR_EVENTS]
            records = [event_record(simulator, event_id) for event_id in ours]
            simulator.schedule("Freeze", [node.resource_name], notice_seconds=900)
            for index, vm in enumerate(OTHER_VMS):
                kind = ("Preempt", "Terminate", "Reboot", "Redeploy")[index % 4]
                simulator.schedule(kind, [vm], notice_seconds=600)
            assert len(simulator.document()["Events"]) == 20

            serving = ServingWatch(kube, namespace)
            watcher = asyncio.create_task(serving.run())
            await serving.listed.wait()
            controller = asyncio.create_task(replace_evicted(kube, namespace, spare_node.name, stop))
            started = time.monotonic()
            async with running_handler(
                kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator, extra=["-taint.node"]
            ):
                drained = [
                    await wait_phase(kube, node.name, e, Phase.DRAINED, timeout_seconds=120) for e in ours
                ]
                elapsed = time.monotonic() - started
            assert control_plane.audit_log_path is not None
            safety = safety_record(
                watch,
                events=records,
                audited=read_audit_log(control_plane.audit_log_path),
                handler_users={kubeconfig_user(handler_kubeconfig)},
                imds_requests=simulator.requests,
            )
        stop.set()
        replaced = await controller
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    final = drained[-1]
    record = record_of(final)
    assert sorted(record.events) == sorted(ours)  # not the Freeze, not the other VMs' events
    for event_id in ours:
        summary = record.events[event_id].drain
        assert summary is not None and summary.result == "drained", (event_id, summary)
    assert await pods_on(kube, node.name) == []
    assert replaced == GROUPS * PODS_PER_GROUP
    # Every budget went down to its minAvailable (its pods were evicted one at a time, and the watch
    # saw it), and none below it at any moment of the drain.
    assert serving.lowest == {f"g{g}": PODS_PER_GROUP - 1 for g in range(GROUPS)}
    assert serving.changes >= 2 * GROUPS * PODS_PER_GROUP  # each eviction and each replacement, at least
    findings = check_safety(safety)
    assert findings == [], describe(findings)
    assert final.spec.unschedulable is True
    assert sorted(t[0] for t in our_taints(final)) == sorted(
        f"{keys.TAINT_KEY_PREFIX}{kind.lower()}" for kind in OUR_EVENTS
    )
    events = await node_event_counts(kube, node.name)
    assert events.get("EventSeen") == len(OUR_EVENTS)
    count("pods drained under load (250 pods, 50 PDBs, 20 concurrent events)", GROUPS * PODS_PER_GROUP)
    note(
        f"load: 250 pods behind 50 PDBs drained for 3 concurrent events in {elapsed:.1f}s; "
        f"{serving.changes} pod changes watched, no budget below its minAvailable"
    )
