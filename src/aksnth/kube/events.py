"""Kubernetes Events (core/v1) about the node and its pods, as ``kubectl describe`` shows them.

Repeats are aggregated like client-go's recorder does: the same (object, type, reason, message)
within a window increments ``count`` and moves ``lastTimestamp`` on the existing Event instead of
creating another one. The cache of recent Events lives in memory only: after a restart the next
repeat starts a fresh Event, which is fine.

Recording never fails the caller: an Event is a courtesy, the drain is the job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from aksnth.errors import KubeError
from aksnth.kube.api import MERGE_PATCH, KubeClient, namespaced_path
from aksnth.kube.client import api_call
from aksnth.kube.keys import COMPONENT, NODE_EVENTS_NAMESPACE

log = logging.getLogger(__name__)

# "Info" only for the Go original's start-up Event, recorded as it recorded it (core/v1 accepts any type).
EventKind = Literal["Normal", "Warning", "Info"]

# --- reasons (CamelCase, as Kubernetes reasons are) -----------------------------------------------
REASON_EVENT_SEEN: Final = "EventSeen"
REASON_CORDONED: Final = "Cordoned"
REASON_DRAIN_STARTED: Final = "DrainStarted"
REASON_DRAIN_FINISHED: Final = "DrainFinished"
REASON_DRAIN_FAILED: Final = "DrainFailed"
REASON_APPROVED: Final = "EventApproved"
# -approveEvents, yet no StartRequests: the drain did not complete here, another node the event lists
# was still draining at its deadline, or the event lists VMs that are not nodes of this cluster.
REASON_APPROVAL_WITHHELD: Final = "ApprovalWithheld"
REASON_GIVEN_BACK: Final = "NodeGivenBack"
REASON_POD_EVICTED: Final = "PodEvicted"  # recorded on the pod
REASON_LAST_RESORT_STOP: Final = "LastResortStop"  # on the pod: deleted past its PodDisruptionBudget
REASON_TAINTED_NO_EXECUTE: Final = "NodeTaintedNoExecute"
# An advisory (Spot rebalance recommendation): the node got a PreferNoSchedule taint; nothing is drained.
REASON_PREPARED: Final = "NodePrepared"

# --- the Go original's Events, kept word for word so that alerts and dashboards keyed on them work ------
#: At start-up: type "Info", this reason and message.
REASON_GO_READ_EVENTS: Final = "ReadEvents"
MESSAGE_GO_READ_EVENTS: Final = "Start to listen events from Azure API"
#: For every Scheduled Event of this VM, ignored ones included: type "Warning", the event type as the
#: reason ("Preempt", "Freeze", …) and this message.
MESSAGE_GO_EVENT_RECEIVED: Final = "Azure API sended schedule event for this node"

#: Repeats within this many seconds are folded into one Event (client-go uses 10 minutes).
AGGREGATION_WINDOW_SECONDS: Final = 600.0
#: Recently recorded Events remembered for aggregation.
CACHE_SIZE: Final = 256
#: Event messages are for people; the API server also caps them.
MAX_MESSAGE_CHARS: Final = 1024
#: Bound of one Event request: an Event is never worth waiting long for.
REQUEST_TIMEOUT_SECONDS: Final = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectRef:
    """The object an Event is about (``involvedObject``)."""

    kind: str
    name: str
    namespace: str = ""
    uid: str = ""
    api_version: str = "v1"

    @classmethod
    def node(cls, name: str) -> ObjectRef:
        # The kubelet uses the node's name as its uid in Events, and ``kubectl describe node``
        # searches for exactly that: with the real uid our Events would not show there.
        return cls(kind="Node", name=name, uid=name)

    @classmethod
    def pod(cls, namespace: str, name: str, uid: str = "") -> ObjectRef:
        return cls(kind="Pod", name=name, namespace=namespace, uid=uid)

    @property
    def event_namespace(self) -> str:
        """Events live in the object's namespace; those about cluster-scoped objects in "default"."""
        return self.namespace or NODE_EVENTS_NAMESPACE


@dataclass(slots=True)
class _Recent:
    name: str
    namespace: str
    count: int
    recorded_at: float  # clock() of the last write


class EventRecorder:
    """Records Events with ``source.component`` = ``component`` and ``source.host`` = ``host``."""

    def __init__(
        self,
        client: KubeClient,
        *,
        component: str = COMPONENT,
        host: str,
        window_seconds: float = AGGREGATION_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._component = component
        self._host = host
        self._window = window_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._recent: OrderedDict[tuple[str, ...], _Recent] = OrderedDict()
        self.recorded = 0  # Events created or updated
        self.failures = 0  # Events that could not be written (logged)

    async def record_node(self, *, type: EventKind, reason: str, message: str) -> None:
        """An Event about this recorder's own node (``host``)."""
        await self.record(ObjectRef.node(self._host), type=type, reason=reason, message=message)

    async def record(self, obj: ObjectRef, *, type: EventKind, reason: str, message: str) -> None:
        """Create (or, for a repeat, update) an Event about ``obj``. Never raises (but cancellation)."""
        message = message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"
        key = (obj.kind, obj.namespace, obj.name, obj.uid, type, reason, message)
        try:
            await self._record(key, obj, type=type, reason=reason, message=message)
            self.recorded += 1
        except asyncio.CancelledError:
            raise
        except KubeError as exc:
            self.failures += 1
            log.warning("could not record Event %s on %s %s: %s", reason, obj.kind, obj.name, exc)
        except Exception:
            self.failures += 1
            log.exception("could not record Event %s on %s %s", reason, obj.kind, obj.name)

    async def _record(
        self,
        key: tuple[str, ...],
        obj: ObjectRef,
        *,
        type: EventKind,
        reason: str,
        message: str,
    ) -> None:
        now = self._wall_clock()
        recent = self._recent.get(key)
        if recent is not None and self._clock() - recent.recorded_at <= self._window:
            try:
                await self._bump(recent, now)
                self._recent.move_to_end(key)
                return
            except KubeError as exc:
                if exc.status != 404:
                    raise
                # The Event expired (the API server keeps Events for an hour): start a new one.
            self._recent.pop(key, None)
        name = f"{obj.name}.{time.time_ns():x}"
        stamp = _timestamp(now)
        involved = {"kind": obj.kind, "name": obj.name, "apiVersion": obj.api_version}
        if obj.namespace:
            involved["namespace"] = obj.namespace
        if obj.uid:
            involved["uid"] = obj.uid
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": obj.event_namespace},
            "involvedObject": involved,
            "type": type,
            "reason": reason,
            "message": message,
            "source": {"component": self._component, "host": self._host},
            "reportingComponent": self._component,
            "reportingInstance": self._host,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        async with api_call(
            f"create Event {reason} on {obj.kind} {obj.name}", timeout_seconds=REQUEST_TIMEOUT_SECONDS
        ):
            await self._client.create(namespaced_path(obj.event_namespace, "events"), event)
        self._recent[key] = _Recent(
            name=name, namespace=obj.event_namespace, count=1, recorded_at=self._clock()
        )
        while len(self._recent) > CACHE_SIZE:
            self._recent.popitem(last=False)

    async def _bump(self, recent: _Recent, now: datetime) -> None:
        count = recent.count + 1
        patch = {"count": count, "lastTimestamp": _timestamp(now)}
        async with api_call(f"update Event {recent.name}", timeout_seconds=REQUEST_TIMEOUT_SECONDS):
            await self._client.patch(
                namespaced_path(recent.namespace, "events", recent.name), patch, content_type=MERGE_PATCH
            )
        recent.count = count
        recent.recorded_at = self._clock()


def _timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC to the second, as ``firstTimestamp``/``lastTimestamp`` are written."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
