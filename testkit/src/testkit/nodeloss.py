"""One measurement of requests lost while a Spot node goes, for the tests and for `bench.zero_downtime`.

The web service of `testkit.traffic` serves from node 0 (the doomed VM), in one of two shapes:
- (a) `SPREAD`: two replicas, one on each node;
- (b) `SINGLE`: one replica, on node 0, with a PodDisruptionBudget of minAvailable 1;
- (c) `LONE`: one replica, on node 0, and no budget: nothing refuses its eviction.
With the handler installed (the caller's release), the client on node 1 sends requests through node 1's
kube-proxy; a Preempt is published for node 0's VM; when the event starts (NotBefore, or at once when
the handler approved it), the VM is gone (`vm_gone`). The measurement ends once every request of the
last `RECOVERED_SECONDS` succeeded after the VM's loss, or `cap_seconds` after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from dataclasses import dataclass, field

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event, Namespace, Node, Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from testkit.cluster import eventually
from testkit.realcluster import RealCluster
from testkit.scenario import (
    handler_user,
    is_ready,
    new_namespace,
    pdb,
    set_schedulable,
    sigterm_times,
    wait_pods,
    workload,
)
from testkit.traffic import SERVICE_PORT, TrafficReport, traffic, vm_gone, web_pod_spec, web_service

RECOVERED_SECONDS = 3.0
DEFAULT_CAP_SECONDS = 120.0


class Shape(enum.Enum):
    SPREAD = "a"  # two replicas, one per node
    SINGLE = "b"  # one replica, PodDisruptionBudget minAvailable 1
    LONE = "c"  # one replica, no budget

    @property
    def title(self) -> str:
        return {
            Shape.SPREAD: "(a) 2 replicas, one per node",
            Shape.SINGLE: "(b) 1 replica, PDB minAvailable 1",
            Shape.LONE: "(c) 1 replica, no PDB",
        }[self]


@dataclass(frozen=True)
class NodeLoss:
    """What one run saw; times are seconds after the event's publication."""

    shape: Shape
    traffic: TrafficReport
    published_at: float
    started_at: float  # the event turned Started: the VM was gone from then on
    sigterms: dict[str, float] = field(default_factory=dict)  # pod → its SIGTERM
    recovered: bool = True  # answering again within the cap
    evictions: int = 0  # the handler's accepted evictions of the web pods (the audit log)
    forced_stops: int = 0  # the handler's accepted DELETEs of them: last-resort stops (or -disableEviction)
    event_reasons: frozenset[str] = frozenset()  # of the Events in the workload's namespace
    # Whether a web pod on the other node was Ready when the doomed node's pod was deleted (got its
    # deletionTimestamp), in the order of the namespace's pod watch: a replacement (or the other
    # replica) Ready elsewhere before the eviction.
    ready_elsewhere_first: bool = False
    # When the Service's EndpointSlices, as the control plane wrote them, named no Ready endpoint:
    # (from, to) in wall clock. A request failing inside one was lost because no replica was Ready
    # (a readiness probe failed), not by the node's going or by kube-proxy.
    without_ready_endpoint: tuple[tuple[float, float], ...] = ()

    def line(self) -> str:
        terms = ", ".join(f"{t - self.published_at:+.1f} s" for t in sorted(self.sigterms.values()))
        tail = "" if self.recovered else " (not answering again by the end of the window)"
        unready = ", ".join(
            f"{start - self.published_at:+.1f} to {end - self.published_at:+.1f} s"
            for start, end in self.without_ready_endpoint
        )
        return (
            f"{self.shape.title}: {self.traffic.summary()}; SIGTERM at {terms or 'never'}; "
            f"{self.evictions} evicted, {self.forced_stops} stopped by DELETE; "
            f"{'a' if self.ready_elsewhere_first else 'no'} replica Ready elsewhere before the eviction; "
            f"Service without a Ready endpoint: {unready or 'never'}; "
            f"VM gone at {self.started_at - self.published_at:+.1f} s{tail}"
        )


class EndpointHistory:
    """The Ready endpoints of a Service over time, from a watch of its EndpointSlices: what every
    kube-proxy is told to send its connections to. Each change is stamped when the watch delivers it."""

    def __init__(self) -> None:
        self.changes: list[tuple[float, frozenset[str]]] = []

    async def follow(self, kube: AsyncClient, namespace: str, service: str) -> None:
        """Records changes until cancelled."""
        slices: dict[str, frozenset[str]] = {}
        labels = {"kubernetes.io/service-name": service}
        async for kind, endpoint_slice in kube.watch(EndpointSlice, namespace=namespace, labels=labels):
            name = endpoint_slice.metadata.name
            if kind == "DELETED":
                slices.pop(name, None)
            else:
                slices[name] = frozenset(
                    address
                    for endpoint in endpoint_slice.endpoints or []
                    if endpoint.conditions is not None and endpoint.conditions.ready
                    for address in endpoint.addresses
                )
            self.changes.append((time.time(), frozenset().union(*slices.values())))

    def without_ready(self, since: float, until: float) -> tuple[tuple[float, float], ...]:
        """The intervals within [since, until] in which no endpoint was Ready (none recorded yet counts
        as none Ready)."""
        at_since = frozenset[str]()
        for moment, ready in self.changes:
            if moment <= since:
                at_since = ready
        states = [(since, at_since), *((t, r) for t, r in self.changes if since < t <= until)]
        windows: list[tuple[float, float]] = []
        empty_since: float | None = None
        for moment, ready in states:
            if empty_since is None and not ready:
                empty_since = moment
            elif empty_since is not None and ready:
                windows.append((empty_since, moment))
                empty_since = None
        if empty_since is not None:
            windows.append((empty_since, until))
        return tuple(windows)


async def measure_node_loss(
    cluster: RealCluster,
    kube: AsyncClient,
    shape: Shape,
    *,
    cap_seconds: float = DEFAULT_CAP_SECONDS,
) -> NodeLoss:
    """Runs the scenario of the module's docstring with the handler already installed and Ready."""
    doomed, other = cluster.nodes
    simulator = cluster.simulator
    assert simulator is not None
    user = await handler_user(kube)
    namespace = await new_namespace(kube, f"loss-{shape.value}")
    try:
        if shape is Shape.SPREAD:
            await kube.create(
                workload("Deployment", "web", namespace, web_pod_spec(cluster, spread=True), replicas=2)
            )
            placed = await wait_pods(kube, namespace, labels="app=web", count=2, what="2 web replicas")
            assert {p.spec.nodeName for p in placed} == {doomed.name, other.name}, (
                "the scheduler put both replicas on one node"
            )
        else:  # (b) and (c): the one replica on node 0
            await set_schedulable(kube, other.name, schedulable=False)
            try:
                await kube.create(
                    workload("Deployment", "web", namespace, web_pod_spec(cluster, spread=False), replicas=1)
                )
                if shape is Shape.SINGLE:
                    await kube.create(pdb("web", namespace, app="web", min_available=1))
                await wait_pods(
                    kube, namespace, labels="app=web", count=1, node=doomed.name, what="web on node 0"
                )
            finally:
                await set_schedulable(kube, other.name, schedulable=True)
        await kube.create(web_service(namespace))
        service = await kube.get(Service, "web", namespace=namespace)
        cluster_ip = service.spec.clusterIP

        # No request before node 1's kube-proxy sends the ClusterIP to the endpoints: a SYN sent
        # earlier leaves the namespace's conntrack with an entry that no DNAT rule translated
        # (SYN_SENT, 120 s), and a later connection from the same source port belongs to it and goes
        # nowhere (Network is unreachable) — kubernetes#48719, a client's start-up race, not a loss.
        async def proxied() -> bool:
            return await asyncio.to_thread(other.proxies, cluster_ip, SERVICE_PORT)

        await eventually(
            proxied,
            what="node 1's kube-proxy proxying the Service",
            timeout_seconds=60,
            interval_seconds=0.2,  # each look is an nsenter and an iptables
        )

        order = asyncio.create_task(_ready_elsewhere_first(kube, namespace, doomed.name))
        endpoints = EndpointHistory()
        following = asyncio.create_task(endpoints.follow(kube, namespace, "web"))
        with traffic(other, cluster_ip) as client:

            async def answering() -> bool:
                return client.answering_since(RECOVERED_SECONDS)

            await eventually(
                answering, what="the Service answering through node 1's kube-proxy", timeout_seconds=60
            )
            untranslated = await asyncio.to_thread(other.untranslated_connections, cluster_ip)
            assert not untranslated, (
                "connections to the ClusterIP that kube-proxy did not translate, before the window: "
                f"{untranslated[:3]}"
            )
            published_at = time.time()
            event_id = simulator.schedule("Preempt", [doomed.spec.resource_name])

            async def started() -> float | None:
                event = next(e for e in simulator.state()["events"] if e["EventId"] == event_id)
                started_at = event["started_at"]
                return float(started_at) if started_at is not None else None

            started_at = await eventually(started, what="the Preempt starting", timeout_seconds=90)
            with vm_gone(cluster, doomed):
                gone_at = time.time()
                recovered = True
                while (
                    not client.answering_since(RECOVERED_SECONDS) or time.time() < gone_at + RECOVERED_SECONDS
                ):
                    if time.time() > gone_at + cap_seconds:
                        recovered = False
                        break
                    await asyncio.sleep(0.2)
                until = time.time()
            report = client.report(since=published_at - 1.0, until=until)
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        if order.done():
            ready_first = order.result()
        else:  # the doomed pod was never deleted
            order.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await order
            ready_first = False
        accepted = [
            r
            for r in cluster.audited()
            if r.user == user and r.namespace == namespace and r.code is not None and 200 <= r.code < 300
        ]
        result = NodeLoss(
            shape=shape,
            traffic=report,
            published_at=published_at,
            started_at=started_at,
            sigterms=sigterm_times(cluster, namespace),
            recovered=recovered,
            evictions=sum(1 for r in accepted if r.is_eviction),
            forced_stops=sum(1 for r in accepted if r.kind == "delete pods"),
            event_reasons=frozenset(
                [e.reason async for e in kube.list(Event, namespace=namespace) if e.reason]
            ),
            ready_elsewhere_first=ready_first,
            without_ready_endpoint=endpoints.without_ready(report.since, report.until),
        )
        await _node_back(kube, doomed.name)
        return result
    finally:
        simulator.reset()
        await kube.delete(Namespace, namespace)


async def _ready_elsewhere_first(kube: AsyncClient, namespace: str, doomed: str) -> bool:
    """Watches the namespace's web pods until the doomed node's pod is deleted (a deletionTimestamp,
    or gone): True when, just before that change, a pod on another node was Ready. A watch delivers
    the changes in the order they were written (etcd's), so a replacement found Ready in that state
    became Ready before the eviction; polling could miss a short interval. Cancelled at the end of the
    window when the pod is never deleted."""
    current: dict[str, Pod] = {}
    async for kind, pod in kube.watch(Pod, namespace=namespace, labels={"app": "web"}):
        name = pod.metadata.name
        if pod.spec.nodeName == doomed and (kind == "DELETED" or pod.metadata.deletionTimestamp is not None):
            return any(is_ready(p) for p in current.values() if p.spec.nodeName != doomed)
        if kind == "DELETED":
            current.pop(name, None)
        else:
            current[name] = pod
    return False


async def _node_back(kube: AsyncClient, name: str) -> None:
    """Until the node (its link back) reports Ready again, as a new VM under its name would."""

    async def ready() -> bool:
        node = await kube.get(Node, name)
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    await eventually(ready, what=f"{name} Ready again", timeout_seconds=120)
