"""Observers that turn what really happens into timeline entries: watches of the Node and of its
pods on the API server, and polls of the IMDS simulator's and the webhook receiver's records.

Nothing here reads the handler's log: the timeline is what the cluster, IMDS and the notification
receiver saw, which is what an operator of a real cluster would see.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Node, Pod

from aksnth.kube.keys import EXCLUDE_FROM_LB_LABEL, is_our_taint_key
from demo.scene import Scene
from demo.timeline import Step, Timeline
from imds_simulator import ImdsSimulator
from testkit.receivers import Receiver
from testkit.tasks import stop_task

log = logging.getLogger(__name__)

_RETRY_SECONDS = 0.1
_POLL_SECONDS = 0.02
_CALL_TIMEOUT_SECONDS = 10.0
ALL_PODS_UP_TO = 20  # above this many pods to evict, only every tenth one gets a line


class _Task:
    """An observer runs as one named task, cancelled on exit."""

    _task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> _Task:
        self._task = asyncio.create_task(self.run(), name=type(self).__name__)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await stop_task(self._task)


@dataclass(frozen=True, slots=True)
class _NodeView:
    unschedulable: bool
    taints: frozenset[str]  # ours, as key=value:effect
    excluded_from_lb: bool


def _view(node: Node) -> _NodeView:
    spec, labels = node.spec, (node.metadata.labels if node.metadata else None) or {}
    taints = frozenset(
        f"{t.key}={t.value}:{t.effect}"
        for t in (spec.taints if spec else None) or []
        if is_our_taint_key(t.key)
    )
    return _NodeView(
        unschedulable=bool(spec and spec.unschedulable),
        taints=taints,
        excluded_from_lb=EXCLUDE_FROM_LB_LABEL in labels,
    )


@dataclass
class NodeObserver(_Task):
    """Cordon, taints and the load-balancer label of one node, as the watch delivers them."""

    kube: AsyncClient
    node: str
    timeline: Timeline
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    _last: _NodeView | None = None

    async def run(self) -> None:
        while True:
            try:
                async for _, node in self.kube.watch(Node, fields={"metadata.name": self.node}):
                    self._changed(_view(node), time.time())
                    self.synced.set()
            except (ApiError, httpx2.HTTPError) as exc:
                log.debug("node watch interrupted (%s); watching again", exc)
            await asyncio.sleep(_RETRY_SECONDS)

    def _changed(self, view: _NodeView, at: float) -> None:
        before, self._last = self._last, view
        if before is None or before == view:
            return  # the first object is the baseline
        changes = []
        if view.taints - before.taints:
            changes += [f"taint {t}" for t in sorted(view.taints - before.taints)]
        if view.excluded_from_lb and not before.excluded_from_lb:
            changes.append(f"label {EXCLUDE_FROM_LB_LABEL}")
        removed = [f"taint {t.split('=')[0]} removed" for t in sorted(before.taints - view.taints)]
        if before.excluded_from_lb and not view.excluded_from_lb:
            removed.append("load-balancer label removed")
        if view.unschedulable and not before.unschedulable:
            self.timeline.milestone(Step.CORDONED, "; ".join(["unschedulable", *changes]), at=at)
        elif before.unschedulable and not view.unschedulable:
            self.timeline.milestone(Step.GIVEN_BACK, "; ".join(["uncordoned", *removed]), at=at)
        elif changes or removed:
            self.timeline.add(at, "node changed", "; ".join(changes + removed))


@dataclass
class PodObserver(_Task):
    """The pods bound to the Spot node: when each starts terminating and when it is gone."""

    kube: AsyncClient
    scene: Scene
    timeline: Timeline
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: dict[str, float] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)

    async def run(self) -> None:
        node = self.scene.spot.name
        async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
            listed = self.kube.list(Pod, namespace="*", fields={"spec.nodeName": node})
            async for _ in listed:
                pass
        self.synced.set()
        version = listed.resourceVersion
        while True:
            try:
                async for kind, pod in self.kube.watch(
                    Pod, namespace="*", fields={"spec.nodeName": node}, resource_version=version
                ):
                    if pod.metadata is not None:
                        version = pod.metadata.resourceVersion or version
                        self._changed(kind, pod, time.time())
            except (ApiError, httpx2.HTTPError) as exc:
                log.debug("pod watch interrupted (%s); watching again", exc)
            await asyncio.sleep(_RETRY_SECONDS)

    def _changed(self, kind: str, pod: Pod, at: float) -> None:
        assert pod.metadata is not None
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        evictable = self.scene.evictable
        total = len(evictable)
        every_pod = total <= ALL_PODS_UP_TO
        if kind != "DELETED" and pod.metadata.deletionTimestamp is not None and key not in self.stopping:
            self.stopping[key] = at
            if every_pod:
                grace = pod.metadata.deletionGracePeriodSeconds
                self.timeline.add(
                    at,
                    "pod stopping",
                    f"{key} (evicted; grace period {grace} s)" if grace is not None else key,
                )
        if kind == "DELETED" and key in evictable and key not in self.gone:
            self.gone.add(key)
            count = len(self.gone)
            if every_pod or count % 10 == 0 or count == total:
                took = (
                    f", stopped {at - self.stopping[key]:.1f} s after its eviction"
                    if key in self.stopping
                    else ""
                )
                self.timeline.add(at, f"evicted {count}/{total}", f"{key} is gone{took}")
            if count == total:
                staying = ", ".join(sorted(self.scene.staying))
                self.timeline.milestone(Step.DRAINED, f"only what a drain leaves is left: {staying}", at=at)


@dataclass
class RecordsObserver(_Task):
    """Polls what the IMDS simulator and the webhook receiver recorded, with their own timestamps:
    publications, the first poll that returned an event, approvals, starts and ends of events, and
    every notification received."""

    imds: ImdsSimulator
    receiver: Receiver
    timeline: Timeline
    _published: dict[str, float] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)
    _started: set[str] = field(default_factory=set)
    _ends_at: dict[str, float | None] = field(default_factory=dict)
    _not_before: dict[str, float] = field(default_factory=dict)
    _imds_requests: int = 0
    _notifications: int = 0
    # The receiver stamps requests with the monotonic clock; this turns them into wall-clock time.
    _wall_minus_monotonic: float = field(default_factory=lambda: time.time() - time.monotonic())

    async def run(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(_POLL_SECONDS)

    def poll(self) -> None:
        state = self.imds.state()
        events = {e["EventId"]: e for e in state["events"]}
        documented = {e["EventId"]: e for e in state["document"]["Events"]}
        for event_id, event in events.items():
            if event_id not in self._published:
                self._published[event_id] = event["published_at"]
                self._not_before[event_id] = event["not_before"]
                entry = documented[event_id]
                self.timeline.milestone(
                    Step.PUBLISHED,
                    f"{entry['EventType']} {event_id} for {', '.join(entry['Resources'])}, "
                    f"not before {time.strftime('%H:%M:%S', time.localtime(event['not_before']))} "
                    f"({event['not_before'] - event['published_at']:.0f} s notice)",
                    at=event["published_at"],
                )
            if event["started_at"] is not None and event_id not in self._started:
                self._started.add(event_id)
                early = self._not_before[event_id] - event["started_at"]
                why = f"approved, {early:.1f} s before NotBefore" if early > 0.5 else "NotBefore has come"
                self.timeline.milestone(Step.STARTED, f"Azure goes ahead ({why})", at=event["started_at"])
            self._ends_at[event_id] = event["ends_at"]
        for event_id, ends_at in list(self._ends_at.items()):
            if event_id not in events:
                del self._ends_at[event_id]
                self.timeline.milestone(
                    Step.ENDED, f"{event_id} left the document: the VM is back", at=ends_at or time.time()
                )
        self._poll_requests()
        self._poll_notifications()

    def _poll_requests(self) -> None:
        requests = self.imds.requests
        for request in requests[self._imds_requests :]:
            if "scheduledevents" not in request.path:
                continue
            if request.method == "GET" and request.status == 200:
                for event_id, published in self._published.items():
                    if event_id not in self._seen and request.time >= published:
                        self._seen.add(event_id)
                        self.timeline.milestone(
                            Step.SEEN, "the handler's next IMDS poll returned it", at=request.time
                        )
            elif request.method == "POST":
                body = request.body.decode(errors="replace")
                approved = [e for e in self._published if e in body]
                self.timeline.milestone(
                    Step.APPROVED,
                    f"POST StartRequests {', '.join(approved) or body} answered {request.status}",
                    at=request.time,
                )
        self._imds_requests = len(requests)

    def _poll_notifications(self) -> None:
        received = self.receiver.requests
        for request in received[self._notifications :]:
            try:
                payload = json.loads(request.body)
                text = payload.get("text") if isinstance(payload, dict) else None
            except ValueError:
                text = None
            shown = f"“{text}”" if text else request.body.decode(errors="replace")[:100]
            path = "/".join(request.path.split("/")[:3])
            self.timeline.milestone(
                Step.NOTIFIED,
                f"{request.method} {path}/… {shown}",
                at=request.received_at + self._wall_minus_monotonic,
            )
        self._notifications = len(received)
