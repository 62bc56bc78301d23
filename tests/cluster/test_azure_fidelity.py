"""Rows of docs/azure-fidelity.md that a real node can show: an advisory (Spot rebalance recommendation)
and an event published already Started, handled by the image installed with the chart, with real
containers that record the SIGTERM they get."""

from __future__ import annotations

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Namespace, Node

from aksnth.kube import keys
from aksnth.model import EventType
from testkit.cluster import eventually
from testkit.realcluster import HANDLER_IMAGE, RealCluster
from testkit.scenario import (
    ReadyWatch,
    Release,
    handler_marks,
    new_namespace,
    pdb,
    pods,
    released,
    set_schedulable,
    sigterm_times,
    wait_handlers_ready,
    wait_pods,
    workload,
    workload_pod_spec,
)

ADVISORY_TAINT = keys.taint_key(EventType.SPOT_REBALANCE_RECOMMENDATION)


async def test_an_advisory_only_prepares_node_a_and_a_reboot_published_started_drains_it_at_once(
    real_cluster: RealCluster, rkube: AsyncClient
) -> None:
    """Installed with `-approveEvents`. A SpotRebalanceRecommendation for node A's VM (read by the
    handler at the api-version IMDS names as its newest, beside the chart's default endpoint): node A
    gets the PreferNoSchedule taint and stays schedulable, no container gets SIGTERM; withdrawn, the
    taint goes. Then a Reboot published already Started, as after a hardware failure: node A is
    cordoned, its containers get SIGTERM and come back on node B with the PodDisruptionBudget held,
    and no StartRequests is sent."""
    node_a, node_b = real_cluster.nodes
    simulator = real_cluster.simulator
    assert simulator is not None
    namespace = await new_namespace(rkube, "fidelity")
    async with released(Release(real_cluster, values={"args": ["-approveEvents"]}), rkube):
        await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes], image=HANDLER_IMAGE)
        await set_schedulable(rkube, node_b.name, schedulable=False)
        try:
            spec = workload_pod_spec(real_cluster)
            await rkube.create(workload("Deployment", "web", namespace, spec, replicas=2))
            await rkube.create(pdb("web", namespace, app="web", min_available=1))
            before = await wait_pods(
                rkube, namespace, labels="app=web", count=2, node=node_a.name, what="web on A"
            )
        finally:
            await set_schedulable(rkube, node_b.name, schedulable=True)

        advisory_id = simulator.schedule(
            EventType.SPOT_REBALANCE_RECOMMENDATION.value, [node_a.spec.resource_name]
        )

        async def prepared() -> Node | None:
            node = await rkube.get(Node, node_a.name)
            return node if handler_marks(node).taints.get(ADVISORY_TAINT) == advisory_id else None

        node = await eventually(
            prepared, what="node A tainted PreferNoSchedule for the advisory", timeout_seconds=60
        )
        assert not node.spec.unschedulable
        effects = {t.key: t.effect for t in node.spec.taints or []}
        assert effects[ADVISORY_TAINT] == "PreferNoSchedule"
        simulator.cancel(advisory_id)

        async def withdrawn() -> bool:
            return ADVISORY_TAINT not in handler_marks(await rkube.get(Node, node_a.name)).taints

        await eventually(withdrawn, what="the advisory's taint removed", timeout_seconds=60)
        assert sigterm_times(real_cluster, namespace) == {}
        assert {p.spec.nodeName for p in await pods(rkube, namespace, labels="app=web")} == {node_a.name}

        async with ReadyWatch(rkube, namespace, "web") as web_ready:
            reboot_id = simulator.schedule(
                "Reboot", [node_a.spec.resource_name], started=True, duration_seconds=600
            )
            published = simulator.publication_time(reboot_id)

            async def cordoned() -> bool:
                return bool((await rkube.get(Node, node_a.name)).spec.unschedulable)

            await eventually(cordoned, what="node A cordoned for the Started Reboot")
            await wait_pods(rkube, namespace, labels="app=web", count=2, node=node_b.name, what="web on B")
        assert web_ready.lowest is not None and web_ready.lowest >= 1, "the PodDisruptionBudget was broken"
        terms = sigterm_times(real_cluster, namespace)
        for pod in before:
            assert terms.get(pod.metadata.name, 0) >= published, (pod.metadata.name, terms, published)
        assert simulator.approvals == []
        assert not handler_marks(await rkube.get(Node, node_b.name)).any
    await rkube.delete(Namespace, namespace)
