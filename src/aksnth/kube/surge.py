"""Surge before evict: a replacement Ready on another node before the pod a budget protects goes.

A Deployment of one replica behind a PodDisruptionBudget of minAvailable 1 cannot be evicted at all:
the eviction API refuses it until the last-resort stop, and its replacement starts only after that
stop, while nothing serves. Its own controller can do better: a rollout (the change ``kubectl rollout
restart`` makes, a new ``kubectl.kubernetes.io/restartedAt`` annotation in the pod template) makes a
new ReplicaSet whose pod is scheduled on another node (this one is cordoned), and within maxSurge
it is added before any old pod is removed. Once it is Ready, the budget allows the eviction, which the
drain is still asking for, and the old pod goes without leaving the Service empty.

Two triggers, for a pod whose controller is a ReplicaSet owned by a Deployment that can surge
(RollingUpdate, not paused, maxSurge above 0):

- ``surge_for``: its eviction was refused by a budget; the drain keeps asking, and the budget allows it
  once the replacement is Ready.
- ``replace_first``: before its first eviction request, no other pod of its Deployment is Ready on
  another node, so that the eviction would leave the Deployment with no ready replica (one replica and
  no budget); the eviction then waits until one is, or until the pod's last chance.

Both only when at least ``SURGE_LEAD_SECONDS`` remain before the pod's last chance (the deadline minus
its shortened grace period and a margin): the replacement needs that long to be scheduled, started and
found Ready, and the pod must still be stopped gracefully. The pod's last chance also ends the wait of
``replace_first``: the eviction is then asked for, as the budget's refusals end there in the last-resort
stop. Once per Deployment per event (a drain resumed after a transient failure keeps the surges
already started; a restarted handler does not know them). Never for StatefulSets (their pods have
fixed identities: a replacement cannot run beside the old one) nor bare ReplicaSets. It needs
``get`` on replicasets and deployments and ``patch`` on deployments (the chart's
``surgeDeployments`` value), and ``list`` on pods (granted anyway); a refusal is logged once and the
drain goes on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aksnth.errors import KubeError, KubeForbidden
from aksnth.kube.api import MERGE_PATCH, JsonObject, KubeClient, child, children, namespaced_path
from aksnth.kube.client import api_call
from aksnth.kube.events import EventRecorder, ObjectRef
from aksnth.kube.labelselector import from_object
from aksnth.kube.pods import PodInfo, pod_info
from aksnth.observe.metrics import SURGES

log = logging.getLogger(__name__)

#: The pod template annotation ``kubectl rollout restart`` sets (to the time of the restart).
RESTARTED_AT_ANNOTATION: Final = "kubectl.kubernetes.io/restartedAt"
#: The least time before the pod's last chance for which a surge is started: scheduling, the start of
#: its container and a first successful readiness probe of the replacement, on a node that has the
#: image. A replacement that needs an image pull needs more, and then the last-resort stop comes first.
SURGE_LEAD_SECONDS: Final = 5.0
REASON_SURGED: Final = "SurgedBeforeEviction"  # an Event on the Deployment
#: How often a surged Deployment's pods are read while an eviction waits for the replacement.
REPLACEMENT_POLL_SECONDS: Final = 0.5

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


@dataclass(slots=True)
class _Target:
    """A pod's Deployment, as the event's drain first found it."""

    namespace: str
    name: str
    deployment: JsonObject
    surged: bool = False  # a rollout was started for it by this drain

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class Surger:
    """Starts at most one surge per Deployment for one event's drain, resumed or not."""

    def __init__(self, client: KubeClient, *, recorder: EventRecorder | None, because: str) -> None:
        self._client = client
        self._recorder = recorder
        self._because = because  # e.g. "Azure Preempt 1234-..." for messages
        self._targets: dict[str, _Target | None] = {}  # ReplicaSet (namespace/name) → its Deployment
        self._tried: set[str] = set()  # Deployments (namespace/name) already decided on
        self._forbidden_logged = False

    async def surge_for(self, pod: PodInfo, *, seconds_left: float, timeout_seconds: float) -> bool:
        """The budget trigger: ``pod``'s eviction was refused by a budget. Starts a rollout of its
        Deployment when the module's rules allow it; True if started."""
        with self._failures(pod):
            target = await self._target(pod, timeout_seconds)
            if target is None or target.key in self._tried:
                return False
            self._tried.add(target.key)
            if seconds_left < SURGE_LEAD_SECONDS:
                SURGES.labels(result="no_time").inc()
                log.info(
                    "no surge of Deployment %s: %.1fs left before the last chance of %s",
                    target.key,
                    seconds_left,
                    pod.key,
                )
                return False
            return await self._start(pod, target, timeout_seconds)
        return False

    async def replace_first(
        self, pod: PodInfo, *, until: float, clock: Callable[[], float], timeout_seconds: float
    ) -> None:
        """The trigger without a budget, before ``pod``'s first eviction request: when no other pod of
        its Deployment is Ready on another node, starts a rollout and returns once one is (or ``pod``
        is gone), or at ``until`` (its last chance, on ``clock``'s time) at the latest. Returns at once
        when a replica is Ready elsewhere, the pod is no Deployment's, the Deployment cannot surge, or
        less than ``SURGE_LEAD_SECONDS`` remain."""
        if pod.controller_kind != "ReplicaSet" or not pod.controller_name:
            return
        if until - clock() < SURGE_LEAD_SECONDS:
            return

        def call_timeout() -> float:
            return min(timeout_seconds, max(until - clock(), 0.1))

        with self._failures(pod):
            target = await self._target(pod, call_timeout())
            if target is None:
                return
            if target.key not in self._tried:
                if await self._ready_elsewhere(pod, target, call_timeout()) is not False:
                    return  # a replica serves elsewhere (or the pod is gone): the eviction may go
                self._tried.add(target.key)
                target.surged = await self._start(pod, target, call_timeout())
            if not target.surged:
                return
            log.info("eviction of %s waits for a replacement Ready on another node", pod.key)
            while clock() < until:
                ready = await self._ready_elsewhere(pod, target, call_timeout())
                if ready is not False:
                    if ready:
                        log.info("a replacement of %s is Ready on another node: evicting it", pod.key)
                    return
                await asyncio.sleep(max(min(REPLACEMENT_POLL_SECONDS, until - clock()), 0))
            log.warning(
                "no replacement of %s is Ready on another node at its last chance: evicting it now", pod.key
            )

    async def _target(self, pod: PodInfo, timeout_seconds: float) -> _Target | None:
        """``pod``'s Deployment (read once per event), or None when its controller is none."""
        if pod.controller_kind != "ReplicaSet" or not pod.controller_name:
            return None
        replica_set_key = f"{pod.namespace}/{pod.controller_name}"
        if replica_set_key not in self._targets:
            async with api_call(f"get replicaset {replica_set_key}", timeout_seconds=timeout_seconds):
                replica_set = await self._client.get(
                    _apps_path(pod.namespace, "replicasets", pod.controller_name)
                )
            name = _owner(replica_set, "Deployment")
            target = None
            if name:
                async with api_call(
                    f"get deployment {pod.namespace}/{name}", timeout_seconds=timeout_seconds
                ):
                    deployment = await self._client.get(_apps_path(pod.namespace, "deployments", name))
                target = _Target(pod.namespace, name, deployment)
            self._targets[replica_set_key] = target
        return self._targets[replica_set_key]

    async def _ready_elsewhere(self, pod: PodInfo, target: _Target, timeout_seconds: float) -> bool | None:
        """Whether a pod of the Deployment is Ready, not terminating, on another node than ``pod``'s;
        None when ``pod`` itself is gone or terminating (nothing left to wait for)."""
        label_selector = child(child(target.deployment, "spec"), "selector")
        selector = from_object(label_selector)
        match_labels = child(label_selector, "matchLabels")
        async with api_call(f"list pods of Deployment {target.key}", timeout_seconds=timeout_seconds):
            # The server narrows by matchLabels; matchExpressions are applied here.
            listed = await self._client.list(
                namespaced_path(pod.namespace, "pods"),
                labels={str(k): str(v) for k, v in match_labels.items()} or None,
            )
        replicas = [p for p in map(pod_info, listed.items) if selector.matches(p.labels)]
        if not any(p.name == pod.name and not p.deleting for p in replicas):
            return None
        return any(p.ready and not p.deleting and p.node_name != pod.node_name for p in replicas)

    async def _start(self, pod: PodInfo, target: _Target, timeout_seconds: float) -> bool:
        """The rollout itself, when the Deployment can surge; its Event; True if started."""
        why_not = why_no_surge(target.deployment)
        if why_not:
            SURGES.labels(result="cannot_surge").inc()
            log.info("no surge of Deployment %s before evicting %s: %s", target.key, pod.key, why_not)
            return False
        async with api_call(f"patch deployment {target.key}", timeout_seconds=timeout_seconds):
            await self._client.patch(
                _apps_path(target.namespace, "deployments", target.name),
                restart_patch(datetime.now(UTC)),
                content_type=MERGE_PATCH,
            )
        SURGES.labels(result="started").inc()
        message = (
            f"Rollout started so that a replacement of {pod.name} becomes Ready on another node before "
            f"it is evicted ({self._because})"
        )
        log.info("surged Deployment %s: %s", target.key, message)
        if self._recorder is not None:
            uid = str(child(target.deployment, "metadata").get("uid") or "")
            ref = ObjectRef(
                kind="Deployment",
                name=target.name,
                namespace=target.namespace,
                uid=uid,
                api_version="apps/v1",
            )
            await self._recorder.record(ref, type="Normal", reason=REASON_SURGED, message=message)
        return True

    @contextlib.contextmanager
    def _failures(self, pod: PodInfo) -> Iterator[None]:
        """An API error ends the surge (counted, logged; a refusal once): the drain goes on without it."""
        try:
            yield
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
        except (KubeError, ValueError) as exc:  # ValueError: a selector the API server would refuse
            SURGES.labels(result="failed").inc()
            log.warning("surge of the Deployment of %s failed: %s", pod.key, exc)
