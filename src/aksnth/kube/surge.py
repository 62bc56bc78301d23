"""Surge before evict: a replacement Ready on another node before the pod a budget protects goes.

A Deployment of one replica behind a PodDisruptionBudget of minAvailable 1 cannot be evicted at all:
the eviction API refuses it until the last-resort stop, and its replacement starts only after that
stop, while nothing serves. Its own controller can do better: a rollout (the change ``kubectl rollout
restart`` makes, a new ``kubectl.kubernetes.io/restartedAt`` annotation in the pod template) makes a
new ReplicaSet whose pod is scheduled on another node (this one is cordoned), and within maxSurge
it is added before any old pod is removed. Once it is Ready, the budget allows the eviction, which the
drain is still asking for, and the old pod goes without leaving the Service empty.

When: a pod's eviction was refused by a budget, its controller is a ReplicaSet owned by a Deployment
that can surge (RollingUpdate, not paused, maxSurge above 0), and at least ``SURGE_LEAD_SECONDS``
remain before the pod's last chance (the replacement needs that long to be scheduled, started and
found Ready; with less, the last-resort stop comes first anyway). Once per Deployment per drain. Never
for StatefulSets (their pods have fixed identities: a replacement cannot run beside the old one) nor
bare ReplicaSets. It needs ``get`` on replicasets and deployments and ``patch`` on deployments (the
chart's ``surgeDeployments`` value); a refusal is logged once and the drain goes on without it.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any, Final

from aksnth.errors import KubeError, KubeForbidden
from aksnth.kube.api import MERGE_PATCH, JsonObject, KubeClient, child, children
from aksnth.kube.client import api_call
from aksnth.kube.events import EventRecorder, ObjectRef
from aksnth.kube.pods import PodInfo
from aksnth.observe.metrics import SURGES

log = logging.getLogger(__name__)

#: The pod template annotation ``kubectl rollout restart`` sets (to the time of the restart).
RESTARTED_AT_ANNOTATION: Final = "kubectl.kubernetes.io/restartedAt"
#: The least time before the pod's last chance for which a surge is started: scheduling, the start of
#: its container and a first successful readiness probe of the replacement, on a node that has the
#: image. A replacement that needs an image pull needs more, and then the last-resort stop comes first.
SURGE_LEAD_SECONDS: Final = 5.0
REASON_SURGED: Final = "SurgedBeforeEviction"  # an Event on the Deployment

_APPS: Final = "/apis/apps/v1/namespaces"


def _apps_path(namespace: str, plural: str, name: str) -> str:
    return f"{_APPS}/{namespace}/{plural}/{name}"


def _owner(obj: JsonObject, kind: str) -> str:
    """The name of the controlling owner of ``kind`` ("" without one)."""
    for owner in children(child(obj, "metadata"), "ownerReferences"):
        if owner.get("controller") and owner.get("kind") == kind:
            return str(owner.get("name") or "")
    return ""


def _resolve(value: Any, replicas: int, *, round_up: bool) -> int:
    """maxSurge (rounded up) or maxUnavailable (rounded down) as a number of pods, as the Deployment
    controller resolves an int or a percentage."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        share = float(text[:-1]) * replicas / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(text)


def why_no_surge(deployment: JsonObject) -> str:
    """Why this Deployment cannot add a replica before removing one ("" when it can)."""
    spec = child(deployment, "spec")
    if spec.get("paused"):
        return "its rollout is paused"
    strategy = child(spec, "strategy")
    kind = strategy.get("type") or "RollingUpdate"
    if kind != "RollingUpdate":
        return f"its strategy is {kind}"
    replicas = spec.get("replicas")
    replicas = replicas if isinstance(replicas, int) else 1
    if _resolve(child(strategy, "rollingUpdate").get("maxSurge", "25%"), replicas, round_up=True) < 1:
        return "its maxSurge is 0"
    return ""


def restart_patch(now: datetime) -> JsonObject:
    """The merge patch ``kubectl rollout restart`` sends: only the pod template's restartedAt."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}}}}}


class Surger:
    """Starts at most one surge per Deployment for one drain."""

    def __init__(self, client: KubeClient, *, recorder: EventRecorder | None, because: str) -> None:
        self._client = client
        self._recorder = recorder
        self._because = because  # e.g. "Azure Preempt 1234-..." for messages
        self._tried: set[str] = set()  # Deployments (namespace/name) already tried
        self._forbidden_logged = False

    async def surge_for(self, pod: PodInfo, *, seconds_left: float, timeout_seconds: float) -> bool:
        """Starts a rollout of ``pod``'s Deployment when the module's rules allow it; True if started."""
        if pod.controller_kind != "ReplicaSet" or not pod.controller_name:
            return False
        try:
            async with api_call(
                f"get replicaset {pod.namespace}/{pod.controller_name}", timeout_seconds=timeout_seconds
            ):
                replica_set = await self._client.get(
                    _apps_path(pod.namespace, "replicasets", pod.controller_name)
                )
            name = _owner(replica_set, "Deployment")
            key = f"{pod.namespace}/{name}"
            if not name or key in self._tried:
                return False
            self._tried.add(key)
            if seconds_left < SURGE_LEAD_SECONDS:
                SURGES.labels(result="no_time").inc()
                log.info(
                    "no surge of Deployment %s: %.1fs left before the last chance of %s",
                    key,
                    seconds_left,
                    pod.key,
                )
                return False
            async with api_call(f"get deployment {key}", timeout_seconds=timeout_seconds):
                deployment = await self._client.get(_apps_path(pod.namespace, "deployments", name))
            why_not = why_no_surge(deployment)
            if why_not:
                SURGES.labels(result="cannot_surge").inc()
                log.info("no surge of Deployment %s before evicting %s: %s", key, pod.key, why_not)
                return False
            async with api_call(f"patch deployment {key}", timeout_seconds=timeout_seconds):
                await self._client.patch(
                    _apps_path(pod.namespace, "deployments", name),
                    restart_patch(datetime.now(UTC)),
                    content_type=MERGE_PATCH,
                )
        except KubeForbidden as exc:
            SURGES.labels(result="forbidden").inc()
            if not self._forbidden_logged:
                self._forbidden_logged = True
                log.error(
                    "cannot surge the Deployment of %s: %s. Install the chart with surgeDeployments=true, "
                    "or turn it off with -surgeDeployments=false",
                    pod.key,
                    exc,
                )
            return False
        except KubeError as exc:
            SURGES.labels(result="failed").inc()
            log.warning("surge of the Deployment of %s failed: %s", pod.key, exc)
            return False
        SURGES.labels(result="started").inc()
        message = (
            f"Rollout started so that a replacement of {pod.name} becomes Ready on another node before "
            f"it is evicted ({self._because})"
        )
        log.info("surged Deployment %s: %s", key, message)
        if self._recorder is not None:
            uid = str(child(deployment, "metadata").get("uid") or "")
            ref = ObjectRef(
                kind="Deployment", name=name, namespace=pod.namespace, uid=uid, api_version="apps/v1"
            )
            await self._recorder.record(ref, type="Normal", reason=REASON_SURGED, message=message)
        return True
