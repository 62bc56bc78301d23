"""Reading what the handler did to the cluster: the node, its pods, its Events, our state record, and
the simulator's count of the polls that led there."""

from __future__ import annotations

from collections import Counter

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event, Node, Pod

from aksnth.kube import keys
from aksnth.kube.record import NodeRecord
from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.cluster import eventually

EXCLUDE_LB = "node.kubernetes.io/exclude-from-external-load-balancers"


async def read_node(kube: AsyncClient, name: str) -> Node:
    return await kube.get(Node, name)


async def pods_on(kube: AsyncClient, node: str) -> list[Pod]:
    return [p async for p in kube.list(Pod, namespace="*", fields={"spec.nodeName": node})]


async def node_events(kube: AsyncClient, node: str) -> list[Event]:
    """The Kubernetes Events recorded on the Node object."""
    return [
        ev
        async for ev in kube.list(Event, namespace="*", fields={"involvedObject.name": node})
        if ev.involvedObject.kind == "Node"
    ]


async def node_event_counts(kube: AsyncClient, node: str) -> Counter[str]:
    """Events on the node by reason, counting repeats folded into one Event (``count``)."""
    counts: Counter[str] = Counter()
    for ev in await node_events(kube, node):
        counts[ev.reason or ""] += ev.count or 1
    return counts


async def settled_event_counts(kube: AsyncClient, node: str, **at_least: int) -> Counter[str]:
    """Node Events by reason, once every given reason has reached its count. An Event is written just
    after the step it reports, so a test that has seen the step may otherwise read the Events a
    moment early; callers still compare exact counts, so a duplicate still fails."""

    async def reached() -> Counter[str] | None:
        counts = await node_event_counts(kube, node)
        return counts if all(counts[reason] >= n for reason, n in at_least.items()) else None

    return await eventually(reached, what=f"node Events {at_least}", timeout_seconds=15)


def our_taints(node: Node) -> list[tuple[str, str, str]]:
    return [
        (t.key, t.value or "", t.effect)
        for t in (node.spec.taints or [])
        if t.key.startswith(keys.TAINT_KEY_PREFIX)
    ]


def record_of(node: Node) -> NodeRecord:
    return NodeRecord.from_annotations(node.metadata.annotations or {})


def has_lb_label(node: Node) -> bool:
    return (node.metadata.labels or {}).get(EXCLUDE_LB) == "true"


async def wait_phase(
    kube: AsyncClient,
    node: str,
    event_id: str,
    phase: Phase,
    *,
    timeout_seconds: float = 30,
    or_later: bool = False,
) -> Node:
    """Until the state record on the node says ``event_id`` reached ``phase`` (or a later one, with
    ``or_later``); returns the node then."""

    async def reached() -> Node | None:
        current = await read_node(kube, node)
        entry = record_of(current).events.get(event_id)
        if entry is None:
            return None
        return current if entry.phase is phase or (or_later and entry.phase.rank > phase.rank) else None

    return await eventually(
        reached, what=f"event {event_id} at phase {phase.value}", timeout_seconds=timeout_seconds
    )


def scheduled_event_polls(simulator: ImdsSimulator) -> int:
    return sum(1 for r in simulator.requests if "scheduledevents" in r.path and r.method == "GET")


async def wait_polls(simulator: ImdsSimulator, count: int) -> None:
    """Until the handler has polled Scheduled Events ``count`` more times (each answered)."""
    target = scheduled_event_polls(simulator) + count

    async def polled() -> bool:
        return scheduled_event_polls(simulator) >= target

    await eventually(polled, what=f"{count} more Scheduled Events polls", timeout_seconds=10)
