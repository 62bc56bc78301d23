"""The Kubernetes API server away when the handler starts: kube-apiserver is stopped before the handler
runs, a Scheduled Event is published, and the API server is started again mid-event (and, in the last
test, stopped and started again mid-drain, repeatedly).

The handler runs in-process as a ServiceAccount with the chart's rights, at the default period of 1 s,
against the real control plane; notifications go to a real webhook receiver on loopback. Figures
(publication → notification while the API server is down, API server back → cordoned) are printed in
the run's summary; docs/reliability.md quotes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node
from lightkube.resources.policy_v1 import PodDisruptionBudget
from prometheus_client import REGISTRY

from aksnth.lifecycle import Phase
from imds_simulator import LATEST_SCHEDULED_EVENTS_VERSION, SCHEDULED_EVENTS_PATH, ImdsSimulator
from testkit.audit import read_audit_log
from testkit.cluster import (
    AksNode,
    create_pods,
    eventually,
    hold_one_pod,
)
from testkit.controlplane import ControlPlane
from testkit.handler import running_handler
from testkit.kubelet import FakeKubelet
from testkit.nodestate import node_event_counts, pods_on, record_of, wait_phase
from testkit.ports import free_loopback_port
from testkit.receivers import Receiver
from tests.reliability.tally import count, note
from tests.reliability.test_apiserver_faults import api_requests

pytestmark = pytest.mark.controlplane

PERIOD_SECONDS = 1.0  # the default -period: the figures are the ones users get
TEMPLATE = (
    '{"phase": {{ toJson .Phase }}, "event": {{ toJson .Event.EventId }}, "node": {{ toJson .NodeName }}, '
    '"cluster": {{ toJson .ClusterName }}, "pods": {{ toJson .NodePods }}, "vm": {{ toJson .Instance.Name }}}'
)
# How long the notification may take while the API server is down: a poll period, and the handler's
# patience with an API server that does not answer, with room for a loaded machine. A hang guard:
# the figure itself is measured and printed.
NOTIFIED_WITHIN_SECONDS = 15.0


class ApiServer:
    """Stops and starts the suite's kube-apiserver (same port, same etcd); started again on exit in any
    case, so that the next tests find it running."""

    def __init__(self, control_plane: ControlPlane) -> None:
        self._plane = control_plane
        self.down = False
        # Wall clock: when it first served a request again (a GET of a Node, as the admin). It serves
        # requests a moment before its /readyz says so, and a client sees it back from then on.
        self.back_at = 0.0

    async def stop(self) -> None:
        await self._plane.stop_apiserver_async(graceful=False)
        self.down = True

    async def start(self) -> None:
        first_answer = asyncio.create_task(self._first_answer())
        try:
            await self._plane.start_apiserver_async()
            async with asyncio.timeout(10):
                self.back_at = await first_answer
        finally:
            first_answer.cancel()
        self.down = False

    async def _first_answer(self) -> float:
        async with httpx2.AsyncClient(
            base_url=self._plane.server_url, verify=self._plane.admin_ssl_context(), timeout=1.0
        ) as client:
            while True:
                with contextlib.suppress(httpx2.HTTPError):
                    if (await client.get("/api/v1/nodes?limit=1")).status_code == 200:
                        return time.time()
                await asyncio.sleep(0.02)

    @contextlib.asynccontextmanager
    async def away(self) -> AsyncIterator[ApiServer]:
        await self.stop()
        try:
            yield self
        finally:
            if self.down:
                await self.start()
            # Its informers back off after each restart of the API server, for up to a minute: the
            # next tests' budgets would not be observed in time.
            await self._plane.restart_controller_manager_async()


def notifications(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(request.body) for request in receiver.requests]


def phases(receiver: Receiver) -> Counter[tuple[str, str]]:
    return Counter((body["event"], body["phase"]) for body in notifications(receiver))


@dataclass
class Outage:
    """What each scenario runs: the API server (stopped first), the IMDS simulator, the webhook
    receiver, the handler's -web.address port, and the budget that holds a pod (with `held_pod_in`)."""

    api: ApiServer
    simulator: ImdsSimulator
    receiver: Receiver
    web_port: int
    pdb: PodDisruptionBudget | None = None


@contextlib.asynccontextmanager
async def handler_after_the_api_server(
    kube: AsyncClient,
    control_plane: ControlPlane,
    node: AksNode,
    *,
    kubeconfig: Path,
    extra: Sequence[str] = (),
    held_pod_in: str | None = None,
) -> AsyncIterator[Outage]:
    """The kubelet stand-in on `node` (and, with `held_pod_in`, a pod a budget holds in that namespace),
    the API server stopped, then the handler started for `node` (in-process), notifying the receiver
    with the test's template and serving on a free loopback port."""
    web_port = free_loopback_port()
    flags = [
        f"-period={PERIOD_SECONDS:g}s",
        f"-web.address=127.0.0.1:{web_port}",
        f"-webhook.template={TEMPLATE}",
        *extra,
    ]
    with ImdsSimulator(vm_name=node.resource_name) as simulator, Receiver() as receiver:
        api = ApiServer(control_plane)
        outage = Outage(api=api, simulator=simulator, receiver=receiver, web_port=web_port)
        flags.append(f"-webhook.url={receiver.url('/hook')}")
        async with FakeKubelet(kube, node=node.name):
            if held_pod_in is not None:
                # After earlier restarts of the API server, the controller manager's informers come back
                # with client-go's backoff (up to 30 s): the budget may take that long to be observed.
                outage.pdb = await hold_one_pod(kube, held_pod_in, node.name, timeout_seconds=90)
            async with (
                outage.api.away(),
                running_handler(kubeconfig=kubeconfig, node=node.name, simulator=simulator, extra=flags),
            ):
                yield outage


async def drained_after_a_preempt_seen_while_away(
    kube: AsyncClient, outage: Outage, node: AksNode
) -> tuple[str, Node]:
    """A Preempt of 30 s published while the API server is down and its event notification sent, then
    the API server back: the event's id and the node once the handler drained it."""
    event_id = outage.simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
    await notified(outage.receiver, "event", event_id)
    await outage.api.start()
    return event_id, await wait_phase(kube, node.name, event_id, Phase.DRAINED)


Away = Callable[..., contextlib.AbstractAsyncContextManager[Outage]]


@pytest.fixture
def away(kube: AsyncClient, control_plane: ControlPlane, node: AksNode, handler_kubeconfig: Path) -> Away:
    """`away(extra=..., held_pod_in=...)`: `handler_after_the_api_server` for the test's node, with the
    test's control plane and the handler's identity."""
    return functools.partial(
        handler_after_the_api_server, kube, control_plane, node, kubeconfig=handler_kubeconfig
    )


def reachable_gauge() -> float | None:
    return REGISTRY.get_sample_value("aks_node_termination_handler_apiserver_reachable")


def sightings(node: AksNode, event_type: str) -> float:
    labels = {"node": node.name, "resource": node.resource_name, "type": event_type}
    return REGISTRY.get_sample_value("aks_node_termination_handler_scheduled_events_total", labels) or 0.0


def polls_between(simulator: ImdsSimulator, start: float, end: float) -> int:
    """Scheduled Events polls (at -endpoint's api-version) the handler made strictly between two
    wall-clock times."""
    return sum(
        1
        for r in simulator.requests
        if r.path == SCHEDULED_EVENTS_PATH
        and r.query.get("api-version") == LATEST_SCHEDULED_EVENTS_VERSION  # not the advisory reads
        and start < r.time < end
    )


def handler_user(namespace: str, kubeconfig: Path) -> str:
    return f"system:serviceaccount:{namespace}:{kubeconfig.stem.removeprefix(f'{namespace}-')}"


async def notified(receiver: Receiver, phase: str, event_id: str) -> dict[str, Any]:
    async def arrived() -> dict[str, Any] | None:
        return next(
            (b for b in notifications(receiver) if b["phase"] == phase and b["event"] == event_id), None
        )

    return await eventually(
        arrived, what=f"the {phase} notification of {event_id}", timeout_seconds=NOTIFIED_WITHIN_SECONDS
    )


# --- (a) the event is notified while the API server is down ------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("named_by", ["-resource.name", "IMDS compute metadata"])
async def test_a_preempt_published_while_the_api_server_is_down_is_notified_before_it_returns(
    named_by: str,
    kube: AsyncClient,
    namespace: str,
    node: AksNode,
    away: Away,
) -> None:
    """The API server is stopped before the handler starts. The handler polls IMDS all the same: a
    Preempt published then is notified at once (fields that need the Node are empty), counted in
    scheduled_events_total, /readyz names the API server as the reason, /healthz stays up, and
    apiserver_reachable is 0. The VM is named by -resource.name, or, without it, by IMDS's compute
    metadata. Once the API server is back, the node is cordoned and drained."""
    await create_pods(kube, namespace, node.name, 2)
    named = [f"-resource.name={node.resource_name}"] if named_by == "-resource.name" else []
    seen_before = sightings(node, "Preempt")
    async with away(extra=named) as outage:
        await eventually(
            lambda: _true(polls_between(outage.simulator, 0, time.time()) >= 2),
            what="the handler polling while the API server is down",
            timeout_seconds=15,
        )
        published = time.monotonic()
        event_id = outage.simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
        body = await notified(outage.receiver, "event", event_id)
        latency = outage.receiver.requests[0].received_at - published
        assert outage.api.down, "the notification must arrive while the API server is down"
        assert body["node"] == node.name
        assert body["cluster"] == "" and body["pods"] == []  # they need the Node
        assert body["vm"] == node.resource_name  # IMDS's view of the VM needs no API server
        assert sightings(node, "Preempt") == seen_before + 1
        assert reachable_gauge() == 0
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{outage.web_port}") as probe:
            ready = await probe.get("/readyz")
            live = await probe.get("/healthz")
        assert ready.status_code == 503
        assert "Kubernetes API server" in ready.json()["reason"]
        assert live.status_code == 200

        await outage.api.start()
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{outage.web_port}") as probe:

            async def ready_again() -> bool:
                return (await probe.get("/readyz")).status_code == 200

            await eventually(ready_again, what="/readyz 200 once the API server is back")
    assert drained.spec.unschedulable is True
    assert await pods_on(kube, node.name) == []
    count("Preempts notified while the API server was down")
    note(f"API server down ({named_by}): Preempt published -> notification in {latency:.2f}s")


async def _true(value: bool) -> bool:
    return value


# --- (b) the response starts within one poll period of the API server answering --------------------


@pytest.mark.timeout(120)
async def test_cordon_and_drain_begin_within_one_poll_period_of_the_api_server_answering_again(
    kube: AsyncClient,
    control_plane: ControlPlane,
    namespace: str,
    node: AksNode,
    handler_kubeconfig: Path,
    away: Away,
) -> None:
    """An event seen (and notified) while the API server is down starts its response as soon as the API
    server answers, not at some later retry: the cordon and the first eviction reach the API server
    (its audit log says when) with at most two of the handler's polls since the API server served
    requests again, i.e. within one poll period."""
    await create_pods(kube, namespace, node.name, 3)
    user = handler_user(namespace, handler_kubeconfig)
    async with away(extra=[f"-resource.name={node.resource_name}"]) as outage:
        await drained_after_a_preempt_seen_while_away(kube, outage, node)
    assert control_plane.audit_log_path is not None
    mine = [r for r in read_audit_log(control_plane.audit_log_path) if r.user == user and r.code]
    cordoned_at = next(
        r.received_at
        for r in mine
        if r.verb == "patch" and r.resource == "nodes" and not r.subresource and r.name == node.name
    )
    evicting_at = next(r.received_at for r in mine if r.is_eviction)
    # The test's own GETs come every 20 ms: the handler's can only come after the first of them
    # (within the audit log's and the clocks' precision, which are the same machine's).
    back_at = outage.api.back_at
    assert back_at - 0.05 < cordoned_at <= evicting_at
    polls_to_cordon = polls_between(outage.simulator, back_at, cordoned_at)
    polls_to_eviction = polls_between(outage.simulator, back_at, evicting_at)
    assert polls_to_cordon <= 2, f"cordoned {cordoned_at - back_at:.2f}s after the API server was back"
    assert polls_to_eviction <= 2, f"evicting {evicting_at - back_at:.2f}s after the API server was back"
    count("responses started once the API server was back")
    note(
        f"API server back -> node cordoned in {cordoned_at - back_at:.2f}s, first eviction in "
        f"{evicting_at - back_at:.2f}s ({polls_to_cordon} poll(s) in between, "
        f"period {PERIOD_SECONDS:g}s)"
    )


# --- (c) nothing is done twice once it is back ------------------------------------------------------


@pytest.mark.timeout(120)
async def test_after_the_api_server_returns_nothing_is_done_twice(
    kube: AsyncClient,
    namespace: str,
    node: AksNode,
    away: Away,
) -> None:
    """What happened while the API server was away (the sighting, the event notification) is merged
    with the record on the node once it answers: one notification per phase, the record says the event
    notification was sent, one record entry, one taint, one of each Event (the Go original's Warning
    included, recorded late rather than lost)."""
    await create_pods(kube, namespace, node.name, 3)
    async with away(
        extra=[f"-resource.name={node.resource_name}", "-notify.drainFinished", "-taint.node"]
    ) as outage:
        event_id, drained = await drained_after_a_preempt_seen_while_away(kube, outage, node)
        await notified(outage.receiver, "drained", event_id)
        # The handler has stopped and delivered everything it queued: the count is final.
    assert phases(outage.receiver) == {(event_id, "event"): 1, (event_id, "drained"): 1}
    record = record_of(drained)
    assert list(record.events) == [event_id]
    assert sorted(record.events[event_id].notified) == ["drained", "event"]
    # Once each: ours, and the cluster autoscaler's that takes the node out of load balancers.
    assert sorted(t.key for t in record.events[event_id].taints) == [
        "ToBeDeletedByClusterAutoscaler",
        "aks-node-termination-handler/preempt",
    ]
    events = await node_event_counts(kube, node.name)
    for reason in ("Preempt", "EventSeen", "Cordoned", "DrainStarted", "DrainFinished"):
        assert events.get(reason) == 1, events
    count("events merged with the record once the API server was back")


# --- (d) the API server going away mid-drain, again and again ----------------------------------------

OUTAGES = 2


@pytest.mark.timeout(240)
async def test_a_drain_interrupted_by_api_server_outages_again_and_again_finishes_once(
    kube: AsyncClient,
    namespace: str,
    node: AksNode,
    away: Away,
) -> None:
    """The API server is down when the event comes, then goes away (SIGKILL) and comes back twice more
    while the drain is retrying a pod a PodDisruptionBudget holds: apiserver_reachable follows each
    outage, the drain finishes once the budget is lifted, and still nothing was done twice."""
    await create_pods(kube, namespace, node.name, 3)
    async with away(
        extra=[f"-resource.name={node.resource_name}", "-notify.drainFinished"], held_pod_in=namespace
    ) as outage:
        event_id = outage.simulator.schedule("Terminate", [node.resource_name], notice_seconds=300)
        await notified(outage.receiver, "event", event_id)
        await outage.api.start()

        async def only_the_held_pod_left() -> bool:
            return len(await pods_on(kube, node.name)) == 1

        await eventually(only_the_held_pod_left, what="all but the PDB-held pod evicted")
        for _ in range(OUTAGES):
            errors_before = api_requests("<error>")
            await outage.api.stop()

            async def handler_saw_the_outage(before: float = errors_before) -> bool:
                return api_requests("<error>") >= before + 3

            await eventually(
                handler_saw_the_outage, what="the handler's requests failing", timeout_seconds=30
            )
            assert reachable_gauge() == 0
            await outage.api.start()

            async def reachable_again() -> bool:
                return reachable_gauge() == 1

            await eventually(reachable_again, what="apiserver_reachable back at 1", timeout_seconds=30)
        await kube.delete(PodDisruptionBudget, outage.pdb.metadata.name, namespace=namespace)
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED, timeout_seconds=60)
        await notified(outage.receiver, "drained", event_id)
    assert await pods_on(kube, node.name) == []
    assert phases(outage.receiver) == {(event_id, "event"): 1, (event_id, "drained"): 1}
    record = record_of(drained)
    assert list(record.events) == [event_id]
    assert record.events[event_id].drain is not None and record.events[event_id].drain.result == "drained"
    events = await node_event_counts(kube, node.name)
    for reason in ("Terminate", "EventSeen", "Cordoned", "DrainStarted", "DrainFinished"):
        assert events.get(reason) == 1, events
    count("API server outages survived mid-drain after a start without it", OUTAGES)
