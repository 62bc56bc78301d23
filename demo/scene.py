"""What the demo puts into the local control plane: an AKS Spot node with a realistic mix of pods, a
healthy node for the replacements, and a ReplicaSet controller stand-in that recreates evicted pods
on the healthy node (without it, the PodDisruptionBudget would stop the drain after one eviction).

Built with the test harness (`testkit.cluster`), so the objects look like the ones the
integration tests use: AKS labels, the Spot taint, a providerID the handler derives its Azure
resource name from.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.core_v1 import Namespace, Pod

from testkit.cluster import (
    AksNode,
    create_aks_node,
    create_pdb,
    create_pod,
    create_replicaset,
    wait_pdb_observed,
)
from testkit.tasks import stop_task

log = logging.getLogger(__name__)

SPOT_VMSS = "aks-spot-12345678-vmss"
HEALTHY_VMSS = "aks-nodepool1-12345678-vmss"
APP_NAMESPACE = "shop"
SYSTEM_NAMESPACE = "kube-system"
MIN_PODS = 7  # the five fixed pods and a ReplicaSet of at least two behind its budget
MAX_WEB_REPLICAS = 4  # each eviction waits for the previous replacement: keep the chain short
_CALL_TIMEOUT_SECONDS = 10.0
_POD_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated names


@dataclass(frozen=True, slots=True, kw_only=True)
class PodPlan:
    """One pod to put on the Spot node, and what the drain should do with it."""

    namespace: str
    name: str
    role: str  # shown in the inventory
    owner: OwnerReference | None
    labels: dict[str, str]
    priority_class: str | None = None
    mirror: bool = False
    stays: bool = False  # the drain leaves it (DaemonSet, mirror pod)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Scene:
    spot: AksNode
    healthy: AksNode
    pods: tuple[PodPlan, ...]
    pdb_name: str
    web_replicas: int

    @property
    def evictable(self) -> frozenset[str]:
        return frozenset(p.key for p in self.pods if not p.stays)

    @property
    def staying(self) -> frozenset[str]:
        return frozenset(p.key for p in self.pods if p.stays)


def generated_name(prefix: str, rng: random.Random) -> str:
    return f"{prefix}-{''.join(rng.choice(_POD_NAME_ALPHABET) for _ in range(5))}"


def controller(
    kind: str, name: str, *, api_version: str = "apps/v1", uid: str | None = None
) -> OwnerReference:
    return OwnerReference(
        apiVersion=api_version,
        kind=kind,
        name=name,
        uid=uid or str(uuid.uuid4()),
        controller=True,
        blockOwnerDeletion=True,
    )


def plan_pods(total: int, *, spot_node: str, web_owner: OwnerReference, rng: random.Random) -> list[PodPlan]:
    """`total` pods: the handler's own DaemonSet pod and a static pod's mirror (both stay), CoreDNS
    (kube-system, system-cluster-critical: evicted last), a StatefulSet's two pods, the `web`
    ReplicaSet behind a PodDisruptionBudget, and `api` ReplicaSet pods for the rest."""
    if total < MIN_PODS:
        raise ValueError(f"the demo needs at least {MIN_PODS} pods, got {total}")
    web = min(total - 5, MAX_WEB_REPLICAS)
    api = total - 5 - web
    postgres = controller("StatefulSet", "postgres")
    api_owner = controller("ReplicaSet", "api-6c9f8d7b54")
    coredns_owner = controller("ReplicaSet", "coredns-5d78c9869d")
    plans = [
        PodPlan(
            namespace=SYSTEM_NAMESPACE,
            name=generated_name("aks-node-termination-handler", rng),
            role="DaemonSet (the handler's own pod): stays",
            owner=controller("DaemonSet", "aks-node-termination-handler"),
            labels={"app.kubernetes.io/name": "aks-node-termination-handler"},
            priority_class="system-node-critical",
            stays=True,
        ),
        PodPlan(
            namespace=SYSTEM_NAMESPACE,
            name=f"static-web-{spot_node}",
            role="mirror pod of a static pod: stays",
            owner=None,
            labels={"app": "static-web"},
            mirror=True,
            stays=True,
        ),
        PodPlan(
            namespace=SYSTEM_NAMESPACE,
            name=generated_name(str(coredns_owner.name), rng),
            role="kube-system, system-cluster-critical: evicted last",
            owner=coredns_owner,
            labels={"k8s-app": "kube-dns"},
            priority_class="system-cluster-critical",
        ),
        *(
            PodPlan(
                namespace=APP_NAMESPACE,
                name=f"postgres-{i}",
                role="StatefulSet",
                owner=postgres,
                labels={"app": "postgres"},
            )
            for i in range(2)
        ),
    ]
    for owner, role, app, count in (
        (web_owner, "ReplicaSet behind a PodDisruptionBudget", "web", web),
        (api_owner, "ReplicaSet", "api", api),
    ):
        plans += [
            PodPlan(
                namespace=APP_NAMESPACE,
                name=generated_name(str(owner.name), rng),
                role=role,
                owner=owner,
                labels={"app": app},
            )
            for _ in range(count)
        ]
    return plans


async def build_scene(kube: AsyncClient, *, total_pods: int, rng: random.Random) -> Scene:
    """Creates both nodes, the namespace, the `web` ReplicaSet and its budget, and the pods (Pending:
    a FakeKubelet makes them Running); waits until the disruption controller has seen the budget."""
    spot = await create_aks_node(kube, f"{SPOT_VMSS}000000", vmss=SPOT_VMSS, instance_id="0")
    healthy = await create_aks_node(
        kube, f"{HEALTHY_VMSS}000000", vmss=HEALTHY_VMSS, instance_id="0", spot=False, zone="2"
    )
    async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
        await kube.create(Namespace(metadata=ObjectMeta(name=APP_NAMESPACE)))
    web_replicas = min(total_pods - 5, MAX_WEB_REPLICAS)
    web_rs = await create_replicaset(
        kube, APP_NAMESPACE, labels={"app": "web"}, replicas=web_replicas, name="web-7d9f8b6c5"
    )
    assert web_rs.metadata is not None
    web_owner = controller("ReplicaSet", str(web_rs.metadata.name), uid=web_rs.metadata.uid)
    plans = plan_pods(total_pods, spot_node=spot.name, web_owner=web_owner, rng=rng)
    await asyncio.gather(*(_create(kube, plan, spot) for plan in plans))
    # minAvailable = all but one: the budget lets one web pod go at a time, and the next one only
    # once its replacement runs elsewhere.
    pdb = await create_pdb(kube, APP_NAMESPACE, {"app": "web"}, min_available=web_replicas - 1, name="web")
    assert pdb.metadata is not None and pdb.metadata.name is not None
    return Scene(
        spot=spot, healthy=healthy, pods=tuple(plans), pdb_name=pdb.metadata.name, web_replicas=web_replicas
    )


async def wait_budget_ready(kube: AsyncClient, scene: Scene) -> None:
    await wait_pdb_observed(kube, APP_NAMESPACE, scene.pdb_name, expected_pods=scene.web_replicas)


async def _create(kube: AsyncClient, plan: PodPlan, node: AksNode) -> Pod:
    return await create_pod(
        kube,
        plan.namespace,
        node,
        name=plan.name,
        owner=plan.owner,
        mirror=plan.mirror,
        priority_class_name=plan.priority_class,
        labels=plan.labels,
    )


@dataclass(slots=True)
class ReplicaSetStandIn:
    """Plays the ReplicaSet controller for the pods on one node: as soon as a ReplicaSet's pod there
    starts terminating, a replacement is created on `target` (as a real controller plus the scheduler
    would do), so budgets recover and the drain can go on."""

    kube: AsyncClient
    source: str
    target: str
    on_replacement: Callable[[str, str], None] = lambda old, new: None
    rng: random.Random = field(default_factory=random.Random)
    replaced: set[str] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ReplicaSetStandIn:
        self._task = asyncio.create_task(self._watch(), name=f"replicaset-stand-in:{self.source}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await stop_task(self._task)

    async def _watch(self) -> None:
        while True:
            try:
                async for _, pod in self.kube.watch(
                    Pod, namespace="*", fields={"spec.nodeName": self.source}
                ):
                    await self._consider(pod)
            except (ApiError, httpx2.HTTPError) as exc:
                log.debug("replicaset stand-in watch interrupted (%s); watching again", exc)
            await asyncio.sleep(0.1)

    async def _consider(self, pod: Pod) -> None:
        meta = pod.metadata
        if meta is None or meta.deletionTimestamp is None or meta.uid in self.replaced:
            return
        owner = next((o for o in meta.ownerReferences or [] if o.controller), None)
        if owner is None or owner.kind != "ReplicaSet" or meta.namespace is None:
            return
        self.replaced.add(str(meta.uid))
        spec = pod.spec
        replacement = await create_pod(
            self.kube,
            meta.namespace,
            self.target,
            name=generated_name(owner.name, self.rng),
            owner=owner,
            labels=meta.labels or {},
            priority_class_name=spec.priorityClassName if spec is not None else None,
        )
        assert replacement.metadata is not None
        self.on_replacement(f"{meta.namespace}/{meta.name}", f"{meta.namespace}/{replacement.metadata.name}")
