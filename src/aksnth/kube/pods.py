"""The pods bound to one node: listed with a field selector (never all pods of the cluster), and seen
through a plain, frozen view that the drain's pure planning works on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aksnth.kube.api import PODS, JsonObject, KubeClient, child, children, namespaced_path
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


def pod_info(pod: JsonObject) -> PodInfo:
    """The view of a Pod object as the API server sends it (missing fields read as their defaults)."""
    meta, spec, status = child(pod, "metadata"), child(pod, "spec"), child(pod, "status")
    owners = children(meta, "ownerReferences")
    controller = next((o for o in owners if o.get("controller")), None)
    grace = spec.get("terminationGracePeriodSeconds")
    conditions = children(status, "conditions")
    return PodInfo(
        namespace=meta.get("namespace") or "",
        name=meta.get("name") or "",
        uid=meta.get("uid") or "",
        phase=status.get("phase") or "",
        node_name=spec.get("nodeName") or "",
        labels=dict(meta.get("labels") or {}),
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        controller_kind=(controller.get("kind") or "") if controller is not None else "",
        controller_name=(controller.get("name") or "") if controller is not None else "",
        controller_uid=(controller.get("uid") or "") if controller is not None else "",
        first_owner_kind=next((o["kind"] for o in owners if o.get("kind")), ""),
        annotations=dict(meta.get("annotations") or {}),
        priority_class=spec.get("priorityClassName") or "",
        grace_period_seconds=DEFAULT_POD_GRACE_SECONDS if not isinstance(grace, int) else grace,
        empty_dir_volumes=tuple(
            v.get("name") or "" for v in children(spec, "volumes") if v.get("emptyDir") is not None
        ),
        deleting=bool(meta.get("deletionTimestamp")),
    )


async def delete_pod(
    client: KubeClient, pod: PodInfo, *, grace_period_seconds: int | None, timeout_seconds: float
) -> None:
    """Delete ``pod`` with that grace period (None: its own), only if it is still the pod we listed.

    The UID precondition travels as the ``uid`` query parameter, which the API server reads into
    ``DeleteOptions.preconditions`` (a mismatch is a 409): a namesake that replaced the pod, as a
    StatefulSet's does, is never deleted.
    """
    params: dict[str, str | int] = {}
    if grace_period_seconds is not None:
        params["gracePeriodSeconds"] = grace_period_seconds
    if pod.uid:
        params["uid"] = pod.uid
    async with api_call(f"delete pod {pod.key}", timeout_seconds=timeout_seconds):
        await client.delete(namespaced_path(pod.namespace, "pods", pod.name), params=params)


async def list_pods_on_node(client: KubeClient, node_name: str) -> list[PodInfo]:
    """Every pod bound to ``node_name``, in all namespaces (one list call, paginated by the server)."""
    async with api_call(f"list pods on node {node_name}"):
        listed = await client.list(PODS, fields={POD_NODE_NAME_FIELD: node_name})
    return [pod_info(pod) for pod in listed.items]
