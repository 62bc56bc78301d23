"""A whole Spot pool evicted at once, small: 5 Spot nodes and 2 regular ones, about 10 pods each
(Deployments behind budgets of `maxUnavailable: 1` and `minAvailable: 80%`, a StatefulSet behind
`minAvailable: 2`, DaemonSets), the real kube-scheduler and workload controllers, one handler process
per Spot node as the chart runs it (default flags, the chart's ServiceAccount), and one IMDS document
with a Preempt for all five VMs. Outcomes, not timings: every Spot node cordoned and emptied before
its deadline, no replacement scheduled onto a node under the event, and no finding of the safety
checks (testkit/src/testkit/safety.py) on any pod or event: every stop after a budget's refusal and not
before the pod's last chance, no StartRequests before the listed nodes were empty, every pod given
its SIGTERM and its grace period. (The default-size fleet and its timings are the bench's:
`python -m bench.run --only fleet`.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from imds_simulator import ImdsSimulator
from testkit.audit import audit_policy, read_audit_log
from testkit.chart import handler_cluster_rules
from testkit.cluster import eventually, service_account_kubeconfig
from testkit.controlplane import ControlPlane
from testkit.fleet import (
    FleetShape,
    create_fleet_nodes,
    create_workloads,
    fleet_control_plane,
    wait_workloads_ready,
)
from testkit.fleetwatch import FleetWatch, fleet_outcome
from testkit.kubelet import FakeKubelet
from testkit.process import HandlerProcess, handler_argv, handler_flags
from testkit.safety import check_safety, describe, event_record, safety_figures, safety_record
from tests.reliability.tally import count, note

pytestmark = pytest.mark.controlplane

SHAPE = FleetShape(spot_nodes=5, regular_nodes=2, pods_per_node=10)
PREEMPT_NOTICE_SECONDS = 30.0
HANDLER_NAMESPACE = "aksnth-fleet"
HANDLER_ACCOUNT = "aks-node-termination-handler"
HANDLER_USER = f"system:serviceaccount:{HANDLER_NAMESPACE}:{HANDLER_ACCOUNT}"
#: A workload pod takes this long to stop after SIGTERM (the stand-in finishes its deletion then).
POD_STOP_SECONDS = 1.0


@pytest.fixture(scope="module")
def fleet_plane() -> Iterator[ControlPlane]:
    """Its own control plane: the scheduler and the workload controllers act on every pod of it."""
    with fleet_control_plane(audit_policy=audit_policy(HANDLER_USER)) as plane:
        yield plane


@pytest.fixture
async def fleet_kube(fleet_plane: ControlPlane) -> AsyncIterator[AsyncClient]:
    fleet_plane.check_running()
    client = AsyncClient(KubeConfig.from_file(fleet_plane.kubeconfig_path), timeout=httpx2.Timeout(10.0))
    try:
        yield client
    finally:
        await client.close()


@pytest.mark.timeout(300)
async def test_a_spot_pool_preempted_at_once_is_drained_gracefully_without_rescheduling_onto_it(
    fleet_plane: ControlPlane, fleet_kube: AsyncClient, tmp_path: Path
) -> None:
    kube = fleet_kube
    await kube.create(Namespace(metadata=ObjectMeta(name=HANDLER_NAMESPACE)))
    kubeconfig = await service_account_kubeconfig(
        kube,
        fleet_plane,
        namespace=HANDLER_NAMESPACE,
        name=HANDLER_ACCOUNT,
        cluster_rules=handler_cluster_rules(),
    )
    namespace = "apps"
    await kube.create(Namespace(metadata=ObjectMeta(name=namespace)))
    spot, _regular = await create_fleet_nodes(kube, SHAPE)
    workloads = await create_workloads(kube, namespace, SHAPE)
    doomed = {node.name for node in spot}

    handlers: list[HandlerProcess] = []
    with ImdsSimulator() as simulator:
        async with FakeKubelet(kube, node=None, deletion_delay_seconds=POD_STOP_SECONDS):
            await wait_workloads_ready(kube, namespace, workloads)
            try:
                for node in spot:
                    flags = handler_flags(
                        kubeconfig=kubeconfig, node=node.name, simulator=simulator, period="1s"
                    )
                    handlers.append(
                        HandlerProcess(handler_argv(flags), log_path=tmp_path / f"{node.name}.log")
                    )
                await asyncio.gather(*(handler.start_serving() for handler in handlers))
                for handler in handlers:
                    await handler.wait_ready()
                async with FleetWatch(kube, namespace) as watch:
                    event_id = simulator.schedule(
                        "Preempt",
                        [node.resource_name for node in spot],
                        notice_seconds=PREEMPT_NOTICE_SECONDS,
                    )
                    event = event_record(simulator, event_id)
                    published, deadline = event.published_at, event.deadline

                    async def all_empty() -> bool:
                        return all(watch.empty_at(n) is not None for n in doomed)

                    # Until every Spot node is empty, or its deadline has passed: the outcome either way.
                    with contextlib.suppress(AssertionError):
                        await eventually(
                            all_empty,
                            what="every Spot node to be empty",
                            timeout_seconds=deadline + 1.0 - time.time(),
                            interval_seconds=0.1,
                        )
                    outcome = fleet_outcome(watch, doomed=doomed, published=published, deadline=deadline)
                    assert fleet_plane.audit_log_path is not None
                    record = safety_record(
                        watch,
                        events=[event],
                        audited=read_audit_log(fleet_plane.audit_log_path),
                        handler_users={HANDLER_USER},
                        imds_requests=simulator.requests,
                    )
            finally:
                for handler in handlers:
                    await asyncio.to_thread(handler.stop)

    logs = {h.log_path.name: h.log_text()[-2000:] for h in handlers}
    assert outcome.all_cordoned, (outcome.cordon_seconds, logs)
    assert outcome.all_empty_before_deadline, (outcome.empty_seconds, outcome.on_node_at_deadline)
    assert outcome.replacements_on_doomed == ()
    findings = check_safety(record)
    assert findings == [], describe(findings)
    figures = safety_figures(record, findings)
    evicted = sum(1 for p in watch.pods.values() if p.node in doomed and p.must_go)
    count("pods drained from a Spot pool preempted at once (5 nodes, one handler each)", evicted)
    slowest = max(v for v in outcome.empty_seconds.values() if v is not None)
    earliest = figures.earliest_stop_after_last_chance_seconds
    note(
        f"fleet: 5 Spot nodes emptied {slowest:.1f}s after the publication "
        f"({PREEMPT_NOTICE_SECONDS:.0f}s notice), {figures.stops} pod(s) stopped as a last resort"
        + ("" if earliest is None else f" (the earliest {earliest:+.1f}s after its last chance)")
        + "; no safety finding on any pod or event"
    )
