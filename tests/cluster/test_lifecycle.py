"""The handler's life on real nodes: a reboot and the give-back, its own pod killed mid-drain, an
image upgrade by helm, an uninstall."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Namespace, Node, Pod

from testkit.cluster import eventually
from testkit.realcluster import HANDLER_IMAGE, RealCluster, RealNode
from testkit.scenario import (
    Release,
    handler_marks,
    handler_pods,
    is_ready,
    new_namespace,
    node_events,
    pdb,
    pods,
    released,
    set_schedulable,
    sigterm_times,
    slack_values,
    wait_handlers_ready,
    wait_pods,
    workload,
    workload_pod_spec,
)


async def _start_on(kube: AsyncClient, cluster: RealCluster, node: RealNode, objects: list[object]) -> None:
    """Creates `objects` while every other node is cordoned, so their pods start on `node`."""
    others = [n for n in cluster.nodes if n is not node]
    for other in others:
        await set_schedulable(kube, other.name, schedulable=False)
    try:
        for obj in objects:
            await kube.create(obj)
        await eventually(
            lambda: _all_ready_on(kube, objects, node.name), what=f"the workloads Ready on {node.name}"
        )
    finally:
        for other in others:
            await set_schedulable(kube, other.name, schedulable=True)


async def _all_ready_on(kube: AsyncClient, objects: list[object], node: str) -> bool:
    namespaces = {obj.metadata.namespace for obj in objects}  # type: ignore[attr-defined]
    wanted = sum(getattr(obj.spec, "replicas", 0) or 0 for obj in objects)  # type: ignore[attr-defined]
    found = [p for ns in namespaces for p in await pods(kube, ns)]
    return len(found) == wanted and all(is_ready(p) and p.spec.nodeName == node for p in found)


async def _reason_counts(kube: AsyncClient, node: str, since: float) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for event in await node_events(kube, node, since):
        counts[event.reason] += event.count or 1
    return counts


async def test_reboot_drains_then_the_rebooted_node_is_given_back(
    real_cluster: RealCluster, rkube: AsyncClient
) -> None:
    """A Reboot for node A's VM: the handler drains node A (the pods go to B); while the event is
    Started the VM reboots (every process of the node dies, the kubelet comes back with a new boot
    ID); the handler's pod, restarted by the kubelet, sees the new bootID and gives the node back
    (uncordoned, its label gone) while Azure still lists the event."""
    node_a, node_b = real_cluster.nodes
    simulator = real_cluster.simulator
    assert simulator is not None
    namespace = await new_namespace(rkube, "reboot")
    async with released(Release(real_cluster), rkube):
        handlers = await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes])
        spec = workload_pod_spec(real_cluster)
        await _start_on(
            rkube, real_cluster, node_a, [workload("Deployment", "web", namespace, spec, replicas=2)]
        )
        old_boot_id = (await rkube.get(Node, node_a.name)).status.nodeInfo.bootID

        event_id = simulator.schedule(
            "Reboot", [node_a.spec.resource_name], notice_seconds=15, duration_seconds=120
        )

        async def drained() -> bool:
            node = await rkube.get(Node, node_a.name)
            on_a = [p for p in await pods(rkube, namespace) if p.spec.nodeName == node_a.name]
            return handler_marks(node).unschedulable and not on_a

        await eventually(drained, what="node A cordoned and drained", timeout_seconds=60)
        await wait_pods(rkube, namespace, labels="app=web", count=2, node=node_b.name, what="web on B")

        async def started() -> bool:
            return any(e["EventId"] == event_id and e["started_at"] for e in simulator.state()["events"])

        await eventually(started, what="the Reboot event Started", timeout_seconds=30)
        new_boot_id = str(uuid.uuid4())
        rebooted_at = time.time()
        await asyncio.to_thread(node_a.reboot, new_boot_id=new_boot_id)

        async def given_back() -> Node | None:
            node = await rkube.get(Node, node_a.name)
            marks = handler_marks(node)
            if (
                node.status.nodeInfo.bootID != new_boot_id
                or marks.unschedulable
                or marks.labels
                or marks.taints
            ):
                return None
            return node

        await eventually(given_back, what="node A given back after its reboot", timeout_seconds=120)
        assert old_boot_id != new_boot_id
        # The give-back came from the reboot, not from the event's end: Azure still lists it.
        assert any(e["EventId"] == event_id for e in simulator.state()["events"])

        async def restarted_after_the_reboot() -> bool:
            # The kubelet reports the new container's state some time after starting it; the handler
            # can give the node back before that report.
            pods = [p for p in await handler_pods(rkube) if p.spec.nodeName == node_a.name]
            assert len(pods) == 1
            assert pods[0].metadata.uid == handlers[node_a.name].metadata.uid  # the same pod, restarted
            running = pods[0].status.containerStatuses[0].state.running
            return running is not None and running.startedAt.timestamp() >= int(rebooted_at)

        await eventually(
            restarted_after_the_reboot,
            what="the handler's container running since the reboot",
            timeout_seconds=60,
        )
        await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes])
    await rkube.delete(Namespace, namespace)


async def test_handler_pod_deleted_mid_drain_is_restarted_and_resumes_without_repeating_a_step(
    real_cluster: RealCluster, rkube: AsyncClient
) -> None:
    """A Terminate for node A while two pods behind a PodDisruptionBudget (minAvailable 1) and slow
    readiness keep the drain going: the handler's pod is deleted after the first eviction. The
    DaemonSet starts a new one on the cordoned node; it resumes the same event from the record on
    the node: the second pod is evicted, the drain finishes, and nothing is done twice (one
    EventSeen, one Cordoned, one DrainFinished Event; one notification per phase)."""
    node_a, node_b = real_cluster.nodes
    simulator = real_cluster.simulator
    assert simulator is not None
    namespace = await new_namespace(rkube, "restart")
    with real_cluster.receiver() as webhook:
        values = slack_values(webhook.url("/hook"), "-notify.drainFinished=true")
        async with released(Release(real_cluster, values=values), rkube):
            handlers = await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes])
            spec = workload_pod_spec(real_cluster)
            # Replacements become Ready 10 s after they start: the second eviction waits that long.
            spec["containers"][0]["readinessProbe"] = {
                "exec": {"command": ["/bin/busybox", "true"]},
                "initialDelaySeconds": 10,
                "periodSeconds": 1,
            }
            web = workload("Deployment", "web", namespace, spec, replicas=2)
            await _start_on(rkube, real_cluster, node_a, [web])
            await rkube.create(pdb("web", namespace, app="web", min_available=1))
            since = time.time()

            event_id = simulator.schedule("Terminate", [node_a.spec.resource_name], notice_seconds=300)

            async def one_evicted() -> bool:
                return len(sigterm_times(real_cluster, namespace)) == 1

            await eventually(one_evicted, what="the first eviction", timeout_seconds=60)
            old = handlers[node_a.name]
            await rkube.delete(Pod, old.metadata.name, namespace=old.metadata.namespace)

            async def replaced() -> Pod | None:
                mine = [p for p in await handler_pods(rkube) if p.spec.nodeName == node_a.name]
                fresh = [p for p in mine if p.metadata.uid != old.metadata.uid and is_ready(p)]
                return fresh[0] if fresh and len(mine) == 1 else None

            await eventually(replaced, what="a new handler pod Ready on node A", timeout_seconds=90)
            await wait_pods(rkube, namespace, labels="app=web", count=2, node=node_b.name, what="web on B")

            async def finished() -> collections.Counter[str] | None:
                counts = await _reason_counts(rkube, node_a.name, since)
                return counts if counts.get("DrainFinished") else None

            counts = await eventually(finished, what="DrainFinished on node A", timeout_seconds=60)
            assert counts["EventSeen"] == 1 and counts["Cordoned"] == 1 and counts["DrainFinished"] == 1, (
                counts
            )
            assert len(sigterm_times(real_cluster, namespace)) == 2
            # The seed's Slack template for both phases (-notify.drainFinished): once each.
            await webhook.wait_for_requests(2, within_seconds=30)
            assert len(webhook.requests) == 2, [r.body for r in webhook.requests]
            node = await rkube.get(Node, node_a.name)
            assert handler_marks(node).unschedulable
            assert event_id in next(iter(handler_marks(node).annotations.values()))
    await rkube.delete(Namespace, namespace)


async def test_helm_upgrade_to_a_new_image_tag_keeps_at_most_one_handler_per_node(
    real_cluster: RealCluster, rkube: AsyncClient
) -> None:
    """`helm upgrade` to another image tag while idle: the DaemonSet rolls node by node; no node
    ever runs two handlers at once, and each ends with one Ready handler of the new image."""
    next_image = "localhost/aksnth:next"
    for node in real_cluster.nodes:
        node.sandbox.run(["ctr", "-n", "k8s.io", "images", "tag", "--force", HANDLER_IMAGE, next_image])
    async with released(Release(real_cluster), rkube):
        await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes], image=HANDLER_IMAGE)
        most: collections.Counter[str] = collections.Counter()

        async def watch() -> None:
            while True:
                running = collections.Counter(
                    p.spec.nodeName
                    for p in await handler_pods(rkube)
                    if p.status.phase == "Running" and p.metadata.deletionTimestamp is None
                )
                for node, count in running.items():
                    most[node] = max(most[node], count)
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        try:
            Release(real_cluster, extra=["--set", f"image={next_image}"]).install()
            await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes], image=next_image)
        finally:
            watcher.cancel()
        assert most and max(most.values()) == 1, most


async def test_helm_uninstall_leaves_no_handler_taint_label_or_annotation_on_idle_nodes(
    real_cluster: RealCluster, rkube: AsyncClient
) -> None:
    """Installed, Ready on every node, then `helm uninstall`: the handler pods are gone and no node
    carries a taint, label or annotation of the handler."""
    async with released(Release(real_cluster), rkube):
        await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes])
    assert await handler_pods(rkube) == []
    for node in real_cluster.nodes:
        assert not handler_marks(await rkube.get(Node, node.name)).any, node.name
