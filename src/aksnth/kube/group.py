"""Whether every node of this cluster under one Azure event has been drained: the rule for approval.

A StartRequests approval releases an event for every VM in its ``Resources``, not only the one that
sends it. So a handler that approves when its own node is empty would let Azure start the event on a
peer that is still draining, and that peer's pods would die without their SIGTERM. The rule:

* a listed VM that is this cluster's node is **done** when its handler recorded a complete drain of
  the event on the Node (the state annotation: ``drain.result`` ``drained``), or when it provably
  cannot drain: its Node is not Ready (no kubelet to stop the pods), or it left the cluster after the
  wait began;
* a listed VM that is no node of this cluster (an availability set shared with other VMs, a VM not
  registered yet) is **foreign**: its owner's workloads cannot be seen, so the event is not approved
  at all; Azure starts it at NotBefore, as without ``-approveEvents``;
* the event is approved once every listed node is done. Each handler asks when its own drain is over
  and again, with a growing interval, until the event's deadline; the last node to finish finds the
  others done at once, and several approving is harmless (IMDS answers 200 to a repeated approval).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from aksnth.errors import KubeError
from aksnth.kube.api import NODES, JsonObject, KubeClient, child, children
from aksnth.kube.client import api_call
from aksnth.kube.peers import ResourceOf
from aksnth.kube.record import NodeRecord

log = logging.getLogger(__name__)

#: Between two looks at the other nodes: the first and the longest interval. The last node to finish
#: approves the moment it is done; the others only look again in case a peer left or went NotReady.
LOOK_FIRST_SECONDS: Final = 1.0
LOOK_MAX_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupState:
    """One look at the nodes under an event (names of nodes, or of VMs for ``foreign``)."""

    drained: tuple[str, ...] = ()  # recorded a complete drain of the event
    not_ready: tuple[str, ...] = ()  # cannot drain: NotReady
    gone: tuple[str, ...] = ()  # left the cluster after the wait began
    waiting: tuple[str, ...] = ()  # still have pods to move (or have not recorded that they have none)
    foreign: tuple[str, ...] = ()  # VMs that are no node of this cluster

    @property
    def complete(self) -> bool:
        return not self.waiting and not self.foreign

    def describe(self) -> str:
        parts = [
            f"{label} {len(names)} ({_names(names)})"
            for label, names in (
                ("drained", self.drained),
                ("NotReady", self.not_ready),
                ("gone", self.gone),
                ("still draining", self.waiting),
                ("not nodes of this cluster", self.foreign),
            )
            if names
        ]
        return ", ".join(parts) or "no other node"


@dataclass(slots=True)
class GroupWatch:
    """What one event's approval has learnt across looks: which VMs were nodes of this cluster."""

    event_id: str
    resources: tuple[str, ...]  # the other VMs the event lists (not this one)
    resource_of: ResourceOf
    seen_as_node: set[str] = field(default_factory=set)  # lower-case VM names

    def look(self, nodes: Iterable[JsonObject]) -> GroupState:
        """Classify the listed VMs from one list of the cluster's nodes."""
        by_resource: dict[str, JsonObject] = {}
        found: JsonObject | None
        for node in nodes:
            resource = self.resource_of(child(node, "spec").get("providerID") or "")
            if resource is not None:
                by_resource[resource.lower()] = node
        drained: list[str] = []
        not_ready: list[str] = []
        gone: list[str] = []
        waiting: list[str] = []
        foreign: list[str] = []
        for vm in self.resources:
            found = by_resource.get(vm.lower())
            if found is None:
                (gone if vm.lower() in self.seen_as_node else foreign).append(vm)
                continue
            node = found
            self.seen_as_node.add(vm.lower())
            name = str(child(node, "metadata").get("name") or vm)
            if _drained(node, self.event_id):
                drained.append(name)
            elif not _ready(node):
                not_ready.append(name)
            else:
                waiting.append(name)
        return GroupState(
            drained=tuple(sorted(drained)),
            not_ready=tuple(sorted(not_ready)),
            gone=tuple(sorted(gone)),
            waiting=tuple(sorted(waiting)),
            foreign=tuple(sorted(foreign)),
        )


async def wait_group_drained(
    client: KubeClient,
    watch: GroupWatch,
    *,
    until: float,
    labels: Mapping[str, str] | None = None,
) -> GroupState:
    """Look at the nodes under the event until every one is done, one is foreign, or ``until`` (loop
    time); returns the last look. A failed list counts as a look that found everyone still waiting."""
    loop = asyncio.get_running_loop()
    interval = LOOK_FIRST_SECONDS
    while True:
        state = await _look(client, watch, labels=labels, until=until)
        if state.complete or state.foreign:
            return state
        left = until - loop.time()
        if left <= 0:
            return state
        await asyncio.sleep(min(interval, left))
        interval = min(interval * 2, LOOK_MAX_SECONDS)


async def _look(
    client: KubeClient, watch: GroupWatch, *, labels: Mapping[str, str] | None, until: float
) -> GroupState:
    timeout = max(until - asyncio.get_running_loop().time(), 1.0)
    try:
        async with api_call("list nodes", timeout_seconds=timeout):
            listed = await client.list(NODES, labels=dict(labels) if labels else None)
    except KubeError as exc:
        log.info("cannot list the other nodes under event %s (will look again): %s", watch.event_id, exc)
        return GroupState(waiting=watch.resources)
    return watch.look(listed.items)


def other_resources(resources: Collection[str], *, mine: str) -> tuple[str, ...]:
    """The VMs an event lists besides ``mine`` (case-insensitive, each once, in order)."""
    seen: set[str] = {mine.lower()}
    others: list[str] = []
    for resource in resources:
        if resource.lower() not in seen:
            seen.add(resource.lower())
            others.append(resource)
    return tuple(others)


def _drained(node: JsonObject, event_id: str) -> bool:
    # An unreadable record reads as empty: no proof of a drain.
    entry = NodeRecord.from_annotations(child(node, "metadata").get("annotations") or {}).events.get(event_id)
    return entry is not None and entry.drain is not None and entry.drain.result == "drained"


def _ready(node: JsonObject) -> bool:
    for condition in children(child(node, "status"), "conditions"):
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False  # a node that never reported Ready has no kubelet running its pods


def _names(names: tuple[str, ...], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, … (+{len(names) - limit})"
