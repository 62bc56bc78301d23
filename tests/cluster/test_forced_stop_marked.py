"""Forced stops marked: a pod the handler deletes (here with `-disableEviction`) first gets the
`DisruptionTarget` condition, as an eviction would give it, so that the real Job controller applies a
podFailurePolicy that ignores disruptions: the stop counts as no failure and a replacement is made."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from lightkube import AsyncClient, codecs
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Namespace, Pod

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

            seen: list[str] = []

            async def running_on_a() -> Pod | None:
                listed = await pods(rkube, namespace, labels="app=batch")
                seen[:] = [f"{p.metadata.name} on {p.spec.nodeName}: {p.status.phase}" for p in listed]
                found = [p for p in listed if is_ready(p)]
                return found[0] if len(found) == 1 and found[0].spec.nodeName == node_a.name else None

            try:
                first = await eventually(
                    running_on_a, what="the Job's pod Ready on node A", timeout_seconds=90
                )
            except AssertionError as exc:
                job = await rkube.get(Job, "batch", namespace=namespace)
                raise AssertionError(f"{exc}; pods: {seen}; Job status: {job.status}") from None
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
