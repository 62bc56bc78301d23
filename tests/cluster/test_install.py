"""The chart installed as the README says, on real nodes: Ready pods, as a user's cluster runs them."""

from __future__ import annotations

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event, Node

from testkit.realcluster import HANDLER_IMAGE, RealCluster
from testkit.scenario import (
    RELEASE_NAMESPACE,
    Release,
    handler_marks,
    handler_processes,
    released,
    scrape,
    wait_handlers_ready,
)


async def test_readme_install_gives_a_ready_non_root_read_only_handler_on_each_node(
    real_cluster: RealCluster, rkube: AsyncClient
) -> None:
    """`helm upgrade --install` with the README's command line (plus the image and pull policy of
    this build): each kubelet runs one handler pod from the image built from docker/Dockerfile; the
    kubelet's readiness probe makes it Ready; its liveness probe never fails (no restart, no Event);
    its process runs as uid 65532 on a read-only root filesystem; it found its Azure resource from
    the node's providerID and polls 169.254.169.254."""
    async with released(Release(real_cluster), rkube):
        pods = await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes], image=HANDLER_IMAGE)
        for index, node in enumerate(real_cluster.nodes):
            pod = pods[node.name]
            processes = handler_processes(real_cluster, index)
            assert len(processes) == 1, f"{node.name}: handler processes {processes}"
            assert processes[0].uid == 65532
            assert processes[0].root_read_only
            status = pod.status.containerStatuses[0]
            assert status.restartCount == 0 and status.ready
            # /readyz at the pod's own address (what the kubelet probes) says which VM it is.
            readyz = scrape(real_cluster, pod.status.podIP, "/readyz")
            assert node.spec.resource_name in readyz, readyz
        # The IMDS simulator saw the handlers' polls (through the fabric, masqueraded to node IPs).
        requests = real_cluster.simulator.requests if real_cluster.simulator else []
        assert any(r.path.startswith("/metadata/scheduledevents") for r in requests)
        # No liveness failure was recorded by a kubelet. (A readiness probe may fail before the
        # first IMDS poll: "not ready yet" is what /readyz is for.)
        liveness_failures = [
            e.message
            async for e in rkube.list(Event, namespace=RELEASE_NAMESPACE)
            if e.reason == "Unhealthy"
            and (e.involvedObject.name or "").startswith("aks-node-termination-handler")
            and (e.message or "").startswith("Liveness")
        ]
        assert liveness_failures == []
    for node in real_cluster.nodes:
        assert not handler_marks(await rkube.get(Node, node.name)).any
