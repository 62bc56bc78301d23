"""What happened to a fleet (`testkit.fleet`), seen by watches: when each node was cordoned,
where each pod was bound, when its deletion began (its SIGTERM) and when it was gone, and every
PodDisruptionBudget status that broke its budget. Times are wall-clock seconds (time.time()), the
clock of the IMDS simulator's publications and of the API server's audit log.

`fleet_outcome` turns that record into the figures and verdicts both the reliability test and the
bench use: every Spot node cordoned and empty before its deadline, no replacement bound to a node
under the event, no pod left without its SIGTERM, no budget broken before the last-resort step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget

from aksnth.azure.resource_name import ProviderIdError, resource_name_from_provider_id
from aksnth.kube.keys import MIRROR_POD_ANNOTATION

log = logging.getLogger(__name__)

_RETRY_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class DeletionSeen:
    """One state of a pod's deletion, as the watch saw it: the first is its SIGTERM (the kubelet acts on
    it); later ones shorten the grace period (another DELETE, or the kubelet's final one of grace 0)."""

    seen_at: float
    grace_seconds: int | None  # deletionGracePeriodSeconds
    deletion_timestamp: float  # when the grace period ends, as the API server wrote it (whole seconds)


@dataclass(slots=True)
class PodTrack:
    key: str  # namespace/name
    app: str
    daemonset: bool
    node: str = ""
    bound_at: float | None = None  # first seen with spec.nodeName
    deletion_at: float | None = None  # first seen with a deletionTimestamp: the kubelet's SIGTERM
    deletion_grace: int | None = None
    gone_at: float | None = None
    uid: str = ""
    mirror: bool = False  # a static pod's mirror: the API cannot remove it
    created_at: float | None = None  # metadata.creationTimestamp (whole seconds, as the API writes it)
    deletions: list[DeletionSeen] = field(default_factory=list)  # every change, in the order seen

    @property
    def must_go(self) -> bool:
        """Whether a drain has to remove it: DaemonSet and mirror pods stay on their node."""
        return not (self.daemonset or self.mirror)


@dataclass(frozen=True, slots=True)
class Violation:
    at: float
    budget: str
    current_healthy: int
    desired_healthy: int


@dataclass(slots=True)
class FleetWatch:
    """Watches the pods and budgets of one namespace, and every node, from `start()` on."""

    kube: AsyncClient
    namespace: str
    pods: dict[str, PodTrack] = field(default_factory=dict)  # by uid
    cordoned_at: dict[str, float] = field(default_factory=dict)  # node -> first seen unschedulable
    vm_of_node: dict[str, str] = field(default_factory=dict)  # node -> its VM's name in IMDS Resources
    violations: list[Violation] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _synced: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> FleetWatch:
        self._tasks = [
            asyncio.create_task(self._forever(self._watch_pods), name="fleet-watch-pods"),
            asyncio.create_task(self._forever(self._watch_nodes), name="fleet-watch-nodes"),
            asyncio.create_task(self._forever(self._watch_budgets), name="fleet-watch-budgets"),
        ]
        async with asyncio.timeout(60):
            await self._synced.wait()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- reading ------------------------------------------------------------------------------

    def on_node(self, node: str, *, at: float) -> list[PodTrack]:
        """The workload pods (no DaemonSet or mirror pods) bound to `node` and not gone at time `at`."""
        return [
            p
            for p in self.pods.values()
            if p.node == node
            and p.must_go
            and (p.bound_at or 0.0) <= at
            and (p.gone_at is None or p.gone_at > at)
        ]

    def empty_at(self, node: str) -> float | None:
        """When the last workload pod ever bound to `node` was gone; None while one is left."""
        tracks = [p for p in self.pods.values() if p.node == node and p.must_go]
        if any(p.gone_at is None for p in tracks):
            return None
        return max((p.gone_at for p in tracks if p.gone_at is not None), default=0.0)

    # --- watching -----------------------------------------------------------------------------

    async def _forever(self, watch: Callable[[], Any]) -> None:
        while True:
            try:
                await watch()
            except (ApiError, httpx2.HTTPError) as exc:
                log.debug("fleet watch interrupted (%s); listing again", exc)
            await asyncio.sleep(_RETRY_SECONDS)

    async def _watch_pods(self) -> None:
        listed = self.kube.list(Pod, namespace=self.namespace)
        present: set[str] = set()
        async for pod in listed:
            present.add(pod.metadata.uid)
            self._see_pod(pod, time.time())
        now = time.time()
        for uid, track in self.pods.items():  # deleted while the watch was down
            if uid not in present and track.gone_at is None:
                track.gone_at = now
        self._synced.set()
        async for kind, pod in self.kube.watch(
            Pod, namespace=self.namespace, resource_version=listed.resourceVersion
        ):
            now = time.time()
            track = self._see_pod(pod, now)
            if kind == "DELETED" and track.gone_at is None:
                track.gone_at = now

    def _see_pod(self, pod: Pod, now: float) -> PodTrack:
        meta = pod.metadata
        track = self.pods.get(meta.uid)
        if track is None:
            owners = meta.ownerReferences or []
            track = PodTrack(
                key=f"{meta.namespace}/{meta.name}",
                app=(meta.labels or {}).get("app", ""),
                daemonset=any(o.kind == "DaemonSet" for o in owners),
                uid=meta.uid or "",
                mirror=MIRROR_POD_ANNOTATION in (meta.annotations or {}),
                created_at=meta.creationTimestamp.timestamp() if meta.creationTimestamp else None,
            )
            self.pods[meta.uid] = track
        if pod.spec.nodeName and track.bound_at is None:
            track.node, track.bound_at = pod.spec.nodeName, now
        if meta.deletionTimestamp is not None:
            if track.deletion_at is None:
                track.deletion_at, track.deletion_grace = now, meta.deletionGracePeriodSeconds
            state = (meta.deletionGracePeriodSeconds, meta.deletionTimestamp.timestamp())
            last = track.deletions[-1] if track.deletions else None
            if last is None or (last.grace_seconds, last.deletion_timestamp) != state:
                track.deletions.append(DeletionSeen(now, *state))
        return track

    async def _watch_nodes(self) -> None:
        async for _, node in self.kube.watch(Node):
            name = node.metadata.name
            if node.spec and node.spec.unschedulable and name not in self.cordoned_at:
                self.cordoned_at[name] = time.time()
            if node.spec and node.spec.providerID and name not in self.vm_of_node:
                with contextlib.suppress(ProviderIdError):  # not an Azure node: no event can list it
                    self.vm_of_node[name] = resource_name_from_provider_id(node.spec.providerID)

    async def _watch_budgets(self) -> None:
        async for _, pdb in self.kube.watch(PodDisruptionBudget, namespace=self.namespace):
            status = pdb.status
            if status is None or (status.observedGeneration or 0) < (pdb.metadata.generation or 0):
                continue
            if status.currentHealthy < status.desiredHealthy:
                self.violations.append(
                    Violation(
                        at=time.time(),
                        budget=pdb.metadata.name,
                        current_healthy=status.currentHealthy,
                        desired_healthy=status.desiredHealthy,
                    )
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetOutcome:
    """Per Spot node, seconds after the publication (None: did not happen); and the pods at fault."""

    cordon_seconds: Mapping[str, float | None]
    empty_seconds: Mapping[str, float | None]
    deadline_seconds: float
    replacements_on_doomed: tuple[str, ...]  # workload pods bound to a Spot node after the publication
    on_node_at_deadline: tuple[str, ...]  # on a Spot node at the deadline, terminating or not
    # Budget statuses with fewer healthy pods than required, seen after the publication. Not a verdict:
    # a stop at a pod's last chance does this by design; whether each stop was legitimate is
    # `testkit.safety`'s checks (a) and (b), per pod.
    budgets_below_minimum: tuple[Violation, ...]

    @property
    def all_cordoned(self) -> bool:
        return all(v is not None for v in self.cordon_seconds.values())

    @property
    def all_empty_before_deadline(self) -> bool:
        return all(v is not None and v <= self.deadline_seconds for v in self.empty_seconds.values())


def fleet_outcome(
    watch: FleetWatch, *, doomed: Collection[str], published: float, deadline: float
) -> FleetOutcome:
    at_deadline = [p for node in doomed for p in watch.on_node(node, at=deadline)]

    def since(moment: float | None) -> float | None:
        return None if moment is None else moment - published

    return FleetOutcome(
        cordon_seconds={node: since(watch.cordoned_at.get(node)) for node in doomed},
        empty_seconds={node: since(watch.empty_at(node)) for node in doomed},
        deadline_seconds=deadline - published,
        replacements_on_doomed=tuple(
            sorted(
                p.key
                for p in watch.pods.values()
                if p.node in doomed and p.must_go and (p.bound_at or 0.0) > published
            )
        ),
        on_node_at_deadline=tuple(sorted(p.key for p in at_deadline)),
        budgets_below_minimum=tuple(v for v in watch.violations if v.at >= published),
    )
