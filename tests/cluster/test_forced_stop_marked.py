"""Forced stops marked: a pod the handler deletes (here with `-disableEviction`) first gets the
`DisruptionTarget` condition, as an eviction would give it, so that the real Job controller applies a
podFailurePolicy that ignores disruptions: the stop counts as no failure and a replacement is made."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from lightkube import AsyncClient, codecs
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Event, Namespace, Node, Pod

from testkit.cluster import eventually
from testkit.realcluster import HANDLER_IMAGE, WORKLOAD_IMAGE, RealCluster
from testkit.scenario import (
    SPOT_TOLERATION,
    Release,
    is_ready,
    new_namespace,
    pods,
    released,
    set_schedulable,
    wait_handlers_ready,
)
from testkit.tasks import stop_task

# A batch step killed mid-way: it exits 143 on SIGTERM (a failure, were it not a disruption).
_BATCH_SCRIPT = "trap 'exit 143' TERM; while true; do sleep 3600 & wait $!; done"


def batch_job(name: str, namespace: str) -> Any:
    return codecs.from_dict(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "backoffLimit": 0,
                "podFailurePolicy": {
                    "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
                },
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "restartPolicy": "Never",
                        "terminationGracePeriodSeconds": 10,
                        "tolerations": [SPOT_TOLERATION],
                        "containers": [
                            {
                                "name": "step",
                                "image": WORKLOAD_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": ["sh", "-c", _BATCH_SCRIPT],
                            }
                        ],
                    },
                },
            },
        }
    )


async def _watch_conditions(kube: AsyncClient, namespace: str, seen: dict[str, dict[str, Any]]) -> None:
    """Pod name → its DisruptionTarget condition (type, status, reason, message), once one is seen."""
    async for _, pod in kube.watch(Pod, namespace=namespace):
        for condition in pod.status.conditions or [] if pod.status else []:
            if condition.type == "DisruptionTarget":
                seen[pod.metadata.name] = {
                    "status": condition.status,
                    "reason": condition.reason,
                    "message": condition.message,
                }


async def _why_not_running(kube: AsyncClient, namespace: str) -> str:
    """What the Job's pods, the Job, the namespace's Events and the nodes said: where each pod was
    bound, its conditions (a PodScheduled False names the scheduler's reason) and its containers'
    waiting reasons, the Job's counts, the Events (FailedScheduling, FailedMount, FailedCreate, ...),
    and each node's cordon and taints."""
    lines = []
    for pod in await pods(kube, namespace, labels="app=batch"):
        status = pod.status
        conditions = [
            f"{c.type}={c.status} {c.reason or ''} {c.message or ''}".strip() for c in status.conditions or []
        ]
        waiting = [
            f"{c.name}: {c.state.waiting.reason} {c.state.waiting.message or ''}".strip()
            for c in status.containerStatuses or []
            if c.state and c.state.waiting
        ]
        lines.append(
            f"pod {pod.metadata.name} on {pod.spec.nodeName}: {status.phase}; {conditions}; {waiting}"
        )
    job = await kube.get(Job, "batch", namespace=namespace)
    lines.append(f"Job status: {job.status}")
    lines += [
        f"Event {e.involvedObject.kind}/{e.involvedObject.name} {e.reason}: {e.message}"
        async for e in kube.list(Event, namespace=namespace)
    ]
    async for node in kube.list(Node):
        taints = [f"{t.key}:{t.effect}" for t in node.spec.taints or []]
        lines.append(
            f"node {node.metadata.name}: unschedulable={bool(node.spec.unschedulable)} taints={taints}"
        )
    return "\n".join(lines)


async def test_a_deleted_job_pod_is_marked_as_disrupted_and_its_job_makes_a_replacement(
    real_cluster: RealCluster, rkube: AsyncClient
) -> None:
    """Installed with `-disableEviction=true`. A Job (backoffLimit 0; podFailurePolicy: Ignore on
    DisruptionTarget) runs its pod on node A; a Preempt for node A: the handler deletes the pod, whose
    container exits 143 on its SIGTERM. The pod carried `DisruptionTarget` (True, a reason naming the
    Azure event) before it stopped; the Job counts no failure, does not fail, and runs a replacement
    pod on node B."""
    node_a, node_b = real_cluster.nodes
    simulator = real_cluster.simulator
    assert simulator is not None
    namespace = await new_namespace(rkube, "jobmark")
    release = Release(real_cluster, values={"args": ["-disableEviction=true"]})
    async with released(release, rkube):
        await wait_handlers_ready(rkube, [n.name for n in real_cluster.nodes], image=HANDLER_IMAGE)
        await set_schedulable(rkube, node_b.name, schedulable=False)
        try:
            await rkube.create(batch_job("batch", namespace))

            async def running_on_a() -> Pod | None:
                found = [p for p in await pods(rkube, namespace, labels="app=batch") if is_ready(p)]
                return found[0] if len(found) == 1 and found[0].spec.nodeName == node_a.name else None

            try:
                first = await eventually(
                    running_on_a, what="the Job's pod Ready on node A", timeout_seconds=90
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}; {await _why_not_running(rkube, namespace)}") from None
        finally:
            await set_schedulable(rkube, node_b.name, schedulable=True)

        marks: dict[str, dict[str, Any]] = {}
        watcher = asyncio.create_task(_watch_conditions(rkube, namespace, marks))
        try:
            simulator.schedule("Preempt", [node_a.spec.resource_name])

            async def replaced_on_b() -> Pod | None:
                found = [
                    p
                    for p in await pods(rkube, namespace, labels="app=batch")
                    if is_ready(p) and p.spec.nodeName == node_b.name
                ]
                return found[0] if found else None

            await eventually(
                replaced_on_b, what="a replacement pod of the Job Ready on node B", timeout_seconds=90
            )
        finally:
            await stop_task(watcher)
        job = await rkube.get(Job, "batch", namespace=namespace)
        assert (job.status.failed or 0) == 0, f"the Job counted the forced stop as a failure: {job.status}"
        assert not any(c.type == "Failed" and c.status == "True" for c in job.status.conditions or [])
        mark = marks.get(first.metadata.name)
        assert mark is not None, "the deleted pod never carried a DisruptionTarget condition"
        assert mark["status"] == "True"
        assert "Preempt" in (mark["reason"] or ""), mark
    with contextlib.suppress(Exception):
        await rkube.delete(Namespace, namespace)
