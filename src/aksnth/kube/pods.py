"""The pods bound to one node: listed with a field selector (never all pods of the cluster), and seen
through a plain, frozen view that the drain's pure planning works on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod

from aksnth.kube.client import api_call
from aksnth.kube.keys import POD_NODE_NAME_FIELD

#: Terminated pods hold no workload: nothing to evict.
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
#: What the API server fills in when a pod does not say (``spec.terminationGracePeriodSeconds``).
DEFAULT_POD_GRACE_SECONDS = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class PodInfo:
    namespace: str
    name: str
    uid: str = ""
    phase: str = ""
    node_name: str = ""  # spec.nodeName
    labels: Mapping[str, str] = field(default_factory=dict)  # what PodDisruptionBudgets select on
    ready: bool = False  # the Ready condition is True: a PodDisruptionBudget counts the pod as healthy
    controller_kind: str = ""  # kind of the controlling owner (ReplicaSet, DaemonSet, …), "" if none
    controller_name: str = ""
    controller_uid: str = ""  # the replicas of one workload share it
    # Kind of the first owner reference that names one: how the Go original told DaemonSet pods apart
    # when it listed .NodePods (it reads no ``controller`` flag).
    first_owner_kind: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    priority_class: str = ""
    grace_period_seconds: int = DEFAULT_POD_GRACE_SECONDS
    empty_dir_volumes: tuple[str, ...] = ()  # names of its emptyDir volumes: their data dies with the pod
    deleting: bool = False  # deletionTimestamp set: already terminating

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def has_empty_dir(self) -> bool:
        return bool(self.empty_dir_volumes)

    @property
    def controller(self) -> str:
        """``ReplicaSet shop/web-5d8f7`` (as ``kubectl describe pod`` names it), or "" without one."""
        return (
            f"{self.controller_kind} {self.namespace}/{self.controller_name}" if self.controller_kind else ""
        )


def pod_info(pod: Pod) -> PodInfo:
    meta = pod.metadata
    spec = pod.spec
    owners = (meta.ownerReferences or []) if meta else []
    controller = next((o for o in owners if o.controller), None)
    grace = spec.terminationGracePeriodSeconds if spec is not None else None
    conditions = (pod.status.conditions if pod.status else None) or []
    return PodInfo(
        namespace=(meta.namespace if meta else None) or "",
        name=(meta.name if meta else None) or "",
        uid=(meta.uid if meta else None) or "",
        phase=(pod.status.phase if pod.status else None) or "",
        node_name=(spec.nodeName if spec else None) or "",
        labels=dict((meta.labels if meta else None) or {}),
        ready=any(c.type == "Ready" and c.status == "True" for c in conditions),
        controller_kind=controller.kind if controller is not None else "",
        controller_name=controller.name if controller is not None else "",
        controller_uid=controller.uid if controller is not None else "",
        first_owner_kind=next((o.kind for o in owners if o.kind), ""),
        annotations=dict((meta.annotations if meta else None) or {}),
        priority_class=(spec.priorityClassName if spec else None) or "",
        grace_period_seconds=DEFAULT_POD_GRACE_SECONDS if grace is None else grace,
        empty_dir_volumes=tuple(
            v.name for v in ((spec.volumes if spec else None) or []) if v.emptyDir is not None
        ),
        deleting=bool(meta and meta.deletionTimestamp),
    )


async def delete_pod(
    client: AsyncClient, pod: PodInfo, *, grace_period_seconds: int | None, timeout_seconds: float
) -> None:
    """Delete ``pod`` with that grace period (None: its own), only if it is still the pod we listed.

    The UID precondition travels as the ``uid`` query parameter, which the API server reads into
    ``DeleteOptions.preconditions`` (a mismatch is a 409): a namesake that replaced the pod, as a
    StatefulSet's does, is never deleted. lightkube's ``delete()`` takes no precondition, so this
    goes through its generic request, with the same parameters ``delete()`` sends.
    """
    params: dict[str, object] = {"gracePeriodSeconds": grace_period_seconds}
    if pod.uid:
        params["uid"] = pod.uid
    async with api_call(f"delete pod {pod.key}", timeout_seconds=timeout_seconds):
        await client._client.request("delete", res=Pod, name=pod.name, namespace=pod.namespace, params=params)


async def list_pods_on_node(client: AsyncClient, node_name: str) -> list[PodInfo]:
    """Every pod bound to ``node_name``, in all namespaces (one list call, paginated by the server)."""
    async with api_call(f"list pods on node {node_name}"):
        return [
            pod_info(pod)
            async for pod in client.list(Pod, namespace="*", fields={POD_NODE_NAME_FIELD: node_name})
        ]
