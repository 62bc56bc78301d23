"""A fleet for the reliability test and the bench: a whole Spot pool evicted at once.

One control plane that schedules and reconciles like a cluster (kube-scheduler, and the
kube-controller-manager controllers of workloads: Deployments, ReplicaSets, StatefulSets, DaemonSets
and PodDisruptionBudgets), N Spot nodes and M regular nodes played by one kubelet stand-in, and the
workloads users run there: Deployments spread over every node (one behind a PDB of `maxUnavailable:
1`, one behind `minAvailable: 80%`, one without), a StatefulSet behind `minAvailable`, and two
DaemonSets. `testkit.fleetwatch` watches what happens to them. The handlers (one process per
Spot node) are the caller's.

    shape = FleetShape(spot_nodes=5, regular_nodes=2, pods_per_node=10)
    with fleet_control_plane(audit_policy=...) as plane: ...
    spot, regular = await create_fleet_nodes(kube, shape)
    await create_workloads(kube, namespace, shape)
    async with FakeKubelet(kube, node=None, deletion_delay_seconds=1.0):
        await wait_workloads_ready(kube, namespace, shape)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from testkit.cluster import SPOT_TAINT, AksNode, create_aks_node, eventually, is_running_and_ready
from testkit.controlplane import ControlPlane

#: kube-controller-manager's controllers for workloads; nothing that acts on kubelet-less nodes
#: (node lifecycle, pod garbage collection) and nothing the fleet does not use.
FLEET_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "disruption-controller",
)
SPOT_VMSS = "aks-spot-12345678-vmss"
REGULAR_VMSS = "aks-system-87654321-vmss"
#: Regular nodes take the Spot pool's pods after the eviction: AKS allows up to 250 pods per node.
REGULAR_MAX_PODS = 250
#: Each workload pod's terminationGracePeriodSeconds (the Kubernetes default).
POD_GRACE_SECONDS = 30
DAEMONSETS = ("log-agent", "node-exporter")
_CALL_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetShape:
    spot_nodes: int = 20
    regular_nodes: int = 5
    pods_per_node: int = 30  # DaemonSet pods included

    @property
    def nodes(self) -> int:
        return self.spot_nodes + self.regular_nodes


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    kind: str  # Deployment, StatefulSet or DaemonSet
    name: str  # also its pods' `app` label
    replicas: int  # for a DaemonSet: one pod per node
    budget: Mapping[str, int | str] | None = None  # the PDB's spec (maxUnavailable / minAvailable)

    @property
    def budget_name(self) -> str | None:
        return None if self.budget is None else f"{self.name}-pdb"


def plan_workloads(shape: FleetShape) -> tuple[Workload, ...]:
    """About `pods_per_node` pods per node: two DaemonSets, one `web` and two `api` pods per node
    behind budgets, a three-replica StatefulSet, and `worker` pods without a budget for the rest."""
    nodes = shape.nodes
    worker = nodes * (shape.pods_per_node - len(DAEMONSETS) - 3) - 3
    if worker < nodes:
        raise ValueError(f"pods_per_node must be at least {len(DAEMONSETS) + 4}, got {shape.pods_per_node}")
    return (
        *(Workload(kind="DaemonSet", name=name, replicas=nodes) for name in DAEMONSETS),
        Workload(kind="Deployment", name="web", replicas=nodes, budget={"maxUnavailable": 1}),
        Workload(kind="Deployment", name="api", replicas=2 * nodes, budget={"minAvailable": "80%"}),
        Workload(kind="StatefulSet", name="db", replicas=3, budget={"minAvailable": 2}),
        Workload(kind="Deployment", name="worker", replicas=worker),
    )


def fleet_control_plane(*, audit_policy: Mapping[str, Any] | None = None) -> ControlPlane:
    """A control plane that schedules pods and reconciles workloads like a cluster's (not started)."""
    return ControlPlane(controllers=FLEET_CONTROLLERS, scheduler=True, audit_policy=audit_policy)


async def create_fleet_nodes(kube: AsyncClient, shape: FleetShape) -> tuple[list[AksNode], list[AksNode]]:
    """`spot_nodes` nodes of one Spot scale set (instances 0…N-1) and `regular_nodes` of another."""
    spot = await asyncio.gather(
        *(create_aks_node(kube, vmss=SPOT_VMSS, instance_id=str(i)) for i in range(shape.spot_nodes))
    )
    regular = await asyncio.gather(
        *(
            create_aks_node(kube, vmss=REGULAR_VMSS, instance_id=str(i), spot=False)
            for i in range(shape.regular_nodes)
        )
    )
    for node in regular:
        pods = str(REGULAR_MAX_PODS)
        async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
            await kube.patch(
                Node.Status,
                node.name,
                {"status": {"capacity": {"pods": pods}, "allocatable": {"pods": pods}}},
                patch_type=PatchType.MERGE,
            )
    return list(spot), list(regular)


def _pod_template(app: str, *, spread: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
        "terminationGracePeriodSeconds": POD_GRACE_SECONDS,
        # Workloads that may run on Spot nodes tolerate their taint, as on AKS.
        "tolerations": [{**SPOT_TAINT, "operator": "Equal"}],
    }
    if spread:
        # Spread over every node, but never refuse to schedule (cordoned nodes still count as domains).
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app": app}},
            }
        ]
    else:  # a DaemonSet's pods run everywhere, whatever the taints
        spec["tolerations"] = [{"operator": "Exists"}]
    return {"metadata": {"labels": {"app": app}}, "spec": spec}


def _manifest(namespace: str, workload: Workload) -> Deployment | StatefulSet | DaemonSet:
    metadata = {"name": workload.name, "namespace": namespace}
    selector = {"matchLabels": {"app": workload.name}}
    template = _pod_template(workload.name, spread=workload.kind != "DaemonSet")
    if workload.kind == "DaemonSet":
        ds_spec = {"selector": selector, "template": template}
        return DaemonSet.from_dict({"metadata": metadata, "spec": ds_spec})
    spec = {"replicas": workload.replicas, "selector": selector, "template": template}
    if workload.kind == "StatefulSet":
        spec |= {"serviceName": workload.name, "podManagementPolicy": "Parallel"}
        return StatefulSet.from_dict({"metadata": metadata, "spec": spec})
    return Deployment.from_dict({"metadata": metadata, "spec": spec})


async def create_workloads(kube: AsyncClient, namespace: str, shape: FleetShape) -> tuple[Workload, ...]:
    """Every workload of `plan_workloads(shape)` and its budget, in `namespace`."""
    workloads = plan_workloads(shape)
    for workload in workloads:
        async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
            await kube.create(_manifest(namespace, workload))
            if workload.budget is not None:
                await kube.create(
                    PodDisruptionBudget.from_dict(
                        {
                            "metadata": {"name": workload.budget_name, "namespace": namespace},
                            "spec": {"selector": {"matchLabels": {"app": workload.name}}, **workload.budget},
                        }
                    )
                )
    return workloads


def expected_pods(workloads: Sequence[Workload]) -> int:
    return sum(w.replicas for w in workloads)


async def wait_workloads_ready(
    kube: AsyncClient, namespace: str, workloads: Sequence[Workload], *, timeout_seconds: float = 300.0
) -> None:
    """Until every pod of every workload is Running and Ready on a node, and every budget's status
    counts all of its pods healthy (so the first evictions meet budgets as they are in a cluster)."""
    total = expected_pods(workloads)

    async def all_ready() -> bool:
        ready = 0
        async with asyncio.timeout(_CALL_TIMEOUT_SECONDS * 3):
            async for pod in kube.list(Pod, namespace=namespace):
                if pod.metadata.deletionTimestamp is None and is_running_and_ready(pod):
                    ready += 1
        return ready >= total

    await eventually(all_ready, what=f"{total} fleet pods Running and Ready", timeout_seconds=timeout_seconds)

    async def budgets_settled() -> bool:
        for workload in workloads:
            if workload.budget_name is None:
                continue
            async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
                pdb = await kube.get(PodDisruptionBudget, workload.budget_name, namespace=namespace)
            status = pdb.status
            if status is None or (status.observedGeneration or 0) < (pdb.metadata.generation or 0):
                return False
            if status.expectedPods != workload.replicas or status.currentHealthy != workload.replicas:
                return False
        return True

    await eventually(budgets_settled, what="every fleet budget to count its pods healthy", timeout_seconds=60)
