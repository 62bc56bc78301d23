"""The linux/arm64 image on real kubelets: containerd takes the foreign image, runc starts it and the
kernel runs its programs through qemu-aarch64 (binfmt_misc, registered by the `arm64_image` fixture for
this module). Everything else is as on an arm64 node pool: the chart installed as the README says, the
kubelet's probes, the in-cluster configuration, 169.254.169.254, real containers getting SIGTERM.

The nodes still say `kubernetes.io/arch=amd64` (their kubelet is amd64), so the chart is installed
without a node selector on the architecture, as the README's command line installs it.
"""

from __future__ import annotations

from pathlib import Path

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Namespace, Node

from testkit.cluster import eventually
from testkit.realcluster import ARM64_HANDLER_IMAGE, RealCluster
from testkit.safety import accepted_evictions, check_safety, describe
from testkit.scenario import (
    Release,
    handler_marks,
    handler_processes,
    new_namespace,
    released,
    safety_watch,
    set_schedulable,
    sigterm_times,
    wait_handlers_ready,
    wait_pods,
    workload,
    workload_pod_spec,
)

PLATFORM = "linux/arm64"


async def test_the_arm64_image_runs_on_real_kubelets_and_drains_its_node_on_preempt(
    real_cluster: RealCluster, rkube: AsyncClient, arm64_image: Path
) -> None:
    """The arm64 image's archive, imported into each node's containerd for linux/arm64, is run by the
    kubelet: the README's install with that image gives one Ready handler pod per node (readiness
    through the kubelet's probe, so each has polled 169.254.169.254), each an emulated arm64 process
    (qemu-aarch64) as user 65532 on a read-only root filesystem. A Preempt for node A's VM: node A is
    cordoned and labelled out of load balancers, its Deployment's containers get SIGTERM between the
    publication and NotBefore (evicted: the audit log shows exactly their evictions) and come back on
    node B, node B is left alone, and the safety checks (a) to (d) find nothing."""
    node_a, node_b = real_cluster.nodes
    simulator = real_cluster.simulator
    assert simulator is not None
    for node in real_cluster.nodes:
        node.import_image(arm64_image / "aksnth-arm64.tar", platform=PLATFORM)
    namespace = await new_namespace(rkube, "arm64")
    release = Release(real_cluster, extra=["--set", f"image={ARM64_HANDLER_IMAGE}"])
    async with released(release, rkube):
        await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes], image=ARM64_HANDLER_IMAGE)
        for index, node in enumerate(real_cluster.nodes):
            processes = handler_processes(real_cluster, index)
            assert len(processes) == 1, f"{node.name}: handler processes {processes}"
            [process] = processes
            assert Path(process.executable).name.startswith("qemu-aarch64"), (
                f"{node.name}: the handler runs {process.executable}, not an emulated arm64 program"
            )
            assert process.uid == 65532
            assert process.root_read_only
        assert any(r.path.startswith("/metadata/scheduledevents") for r in simulator.requests)

        # The Deployment starts on node A (B cordoned meanwhile).
        await set_schedulable(rkube, node_b.name, schedulable=False)
        try:
            spec = workload_pod_spec(real_cluster)
            await rkube.create(workload("Deployment", "web", namespace, spec, replicas=2))
            before = await wait_pods(
                rkube, namespace, labels="app=web", count=2, node=node_a.name, what="web on A"
            )
        finally:
            await set_schedulable(rkube, node_b.name, schedulable=True)

        async with safety_watch(real_cluster, rkube, namespace) as safety:
            event = safety.publish("Preempt", [node_a])
            event_id, published = event.event_id, event.published_at
            not_before = next(e for e in simulator.state()["events"] if e["EventId"] == event_id)[
                "not_before"
            ]

            async def protected() -> bool:
                marks = handler_marks(await rkube.get(Node, node_a.name))
                return marks.unschedulable and bool(marks.labels)

            await eventually(protected, what="node A cordoned and out of load balancers by the arm64 handler")
            await wait_pods(rkube, namespace, labels="app=web", count=2, node=node_b.name, what="web on B")
            await safety.wait_empty([node_a])
            record = safety.record()
        findings = check_safety(record)
        assert findings == [], describe(findings)
        evicted = set(accepted_evictions(record))
        assert evicted == {p.metadata.name for p in before}, "the audit log shows other evictions"
        terms = sigterm_times(real_cluster, namespace)
        for pod in before:
            name = pod.metadata.name
            assert name in terms, f"{name} got no SIGTERM (recorded: {sorted(terms)})"
            assert published <= terms[name] <= not_before, (name, published, terms[name], not_before)
        assert not handler_marks(await rkube.get(Node, node_b.name)).any
    await rkube.delete(Namespace, namespace)
