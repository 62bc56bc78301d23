"""The load balancer first: on an event that removes the VM, the node's real kube-proxy fails its
`/healthz` (port 10256) before any pod of the node is asked to stop, so that a cloud load balancer's
probe (externalTrafficPolicy Cluster) takes the node out while its pods still serve; once the event is
cancelled and the node given back, `/healthz` answers 200 again."""

from __future__ import annotations

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Namespace, Node

from aksnth.kube import keys
from testkit.cluster import eventually
from testkit.realcluster import HANDLER_IMAGE, RealCluster
from testkit.scenario import (
    Release,
    handler_marks,
    new_namespace,
    released,
    set_schedulable,
    sigterm_times,
    wait_handlers_ready,
    wait_pods,
    workload,
    workload_pod_spec,
)
from testkit.traffic import HealthzWatch
from tests.support.reporting import report


async def test_kube_proxy_healthz_fails_before_the_drain_and_recovers_after_give_back(
    request: pytest.FixtureRequest, real_cluster: RealCluster, rkube: AsyncClient
) -> None:
    """A Terminate for node A (installed with the chart's defaults): node A's kube-proxy answers
    `/healthz` 200 before the event, 503 from the moment the handler marks the node (the
    ToBeDeletedByClusterAutoscaler taint, NoSchedule), before the workload on A gets its SIGTERM;
    the Terminate is then cancelled, the handler gives the node back (the taint removed), and
    `/healthz` answers 200 again."""
    node_a, node_b = real_cluster.nodes
    simulator = real_cluster.simulator
    assert simulator is not None
    namespace = await new_namespace(rkube, "lbfirst")
    async with released(Release(real_cluster), rkube):
        await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes], image=HANDLER_IMAGE)
        await set_schedulable(rkube, node_b.name, schedulable=False)
        try:
            await rkube.create(workload("Deployment", "web", namespace, workload_pod_spec(real_cluster)))
            await wait_pods(rkube, namespace, labels="app=web", count=1, node=node_a.name, what="web on A")
        finally:
            await set_schedulable(rkube, node_b.name, schedulable=True)
        with HealthzWatch(node_a) as healthz:

            async def healthy() -> bool:
                return healthz.latest() == 200

            await eventually(healthy, what="node A's kube-proxy /healthz answering 200 before the event")
            event_id = simulator.schedule("Terminate", [node_a.spec.resource_name])
            published = simulator.publication_time(event_id)

            async def failing() -> float | None:
                return healthz.first(503, after=published)

            failed_at = await eventually(failing, what="node A's kube-proxy /healthz answering 503")
            await wait_pods(rkube, namespace, labels="app=web", count=1, node=node_b.name, what="web on B")
            terms = sigterm_times(real_cluster, namespace)
            assert len(terms) == 1, terms
            [sigterm] = terms.values()
            report(
                request,
                f"node A's /healthz 503 at +{failed_at - published:.2f} s after the Terminate's publication, "
                f"the workload's SIGTERM at +{sigterm - published:.2f} s",
            )
            assert failed_at < sigterm, (
                "the workload was asked to stop while the load balancer still sent traffic"
            )
            node = await rkube.get(Node, node_a.name)
            [taint] = [t for t in node.spec.taints or [] if t.key == keys.TO_BE_DELETED_TAINT]
            assert taint.effect == "NoSchedule"

            simulator.cancel(event_id)
            cancelled = simulator.state()["now"]

            async def given_back() -> bool:
                node = await rkube.get(Node, node_a.name)
                marks = handler_marks(node)  # the state annotation stays: it records the give-back
                undone = not (marks.unschedulable or marks.taints or marks.labels)
                return undone and not any(t.key == keys.TO_BE_DELETED_TAINT for t in node.spec.taints or [])

            await eventually(
                given_back, what="node A given back, its ToBeDeletedByClusterAutoscaler taint removed"
            )

            async def healthy_again() -> float | None:
                return healthz.first(200, after=cancelled)

            await eventually(
                healthy_again, what="node A's kube-proxy /healthz answering 200 after the give-back"
            )
    await rkube.delete(Namespace, namespace)
