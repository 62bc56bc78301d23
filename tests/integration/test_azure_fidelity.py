"""The whole handler against the IMDS simulator and the real control plane, one test per behaviour of
Microsoft's Scheduled Events documentation that docs/azure-fidelity.md lists and no older test proves:
advisory events, events published already Started, DurationInSeconds -1 and 0, the api-version that
serves advisories. Each docstring quotes the documentation it holds the handler to."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node
from prometheus_client import REGISTRY

from aksnth.kube import keys
from aksnth.lifecycle import Phase
from imds_simulator import LATEST_SCHEDULED_EVENTS_VERSION, SCHEDULED_EVENTS_PATH, ImdsSimulator
from testkit.cluster import AksNode, create_pods, eventually, hold_one_pod
from testkit.handler import RunningHandler, running_handler
from testkit.kubelet import FakeKubelet
from testkit.nodestate import (
    node_events,
    our_taints,
    pods_on,
    read_node,
    record_of,
    settled_event_counts,
    wait_phase,
)
from testkit.receivers import Receiver

pytestmark = pytest.mark.controlplane

ADVISORY = "SpotRebalanceRecommendation"
ADVISORY_TAINT = f"{keys.TAINT_KEY_PREFIX}spotrebalancerecommendation"
# Advisories are read every fifth period, and not at all below 250 ms: the tests poll every 0.3 s.
PERIOD = "-period=0.3s"
TEMPLATE = (
    '{"phase": {{ toJson .Phase }}, "event": {{ toJson .Event.EventId }}, '
    '"type": {{ toJson .Event.EventType }}, "status": {{ toJson .Event.EventStatus }}, '
    '"impact": {{ toJson .Event.DurationInSeconds }}}'
)


StartHandler = Callable[..., AbstractAsyncContextManager[RunningHandler]]


@pytest.fixture
def handler(node: AksNode, simulator: ImdsSimulator, handler_kubeconfig: Path) -> StartHandler:
    """`handler(extra=[...])`: `running_handler` for the test's node, simulator and the chart's identity."""
    return functools.partial(
        running_handler, kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator
    )


def notifications(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(request.body) for request in receiver.requests]


def webhook(receiver: Receiver) -> list[str]:
    return [f"-webhook.url={receiver.url('/hook')}", f"-webhook.template={TEMPLATE}"]


def advisory_gauge() -> float | None:
    return REGISTRY.get_sample_value("aks_node_termination_handler_advisory_events")


async def condition_message(kube: AsyncClient, node: str) -> str | None:
    current = await kube.get(Node, node)
    found = next(
        (c for c in current.status.conditions or [] if c.type == keys.SCHEDULED_EVENT_CONDITION), None
    )
    return found.message if found is not None else None


async def wait_taints(kube: AsyncClient, node: str, expected: list[tuple[str, str, str]]) -> Node:
    async def reached() -> Node | None:
        current = await read_node(kube, node)
        return current if our_taints(current) == expected else None

    return await eventually(reached, what=f"our taints to be {expected}", timeout_seconds=20)


async def test_an_advisory_taints_prefer_no_schedule_notifies_and_is_undone_when_withdrawn(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, handler: StartHandler
) -> None:
    """ "Spot eviction risk notifications": a SpotRebalanceRecommendation is "only advisory. Unlike
    preempt notifications, acknowledging them has no effect". By default the node is prepared — a
    PreferNoSchedule taint, the NodePrepared Event, the condition, a notification whose
    .Event.EventStatus is Advisory, the advisory_events gauge — and nothing is cordoned, evicted or
    approved (-approveEvents is on). When the recommendation leaves the document, all of it is undone."""
    await create_pods(kube, namespace, node.name, 2)
    with Receiver() as receiver:
        async with (
            FakeKubelet(kube, node=node.name),
            handler(
                extra=[PERIOD, "-approveEvents", *webhook(receiver)],
            ),
        ):
            event_id = simulator.schedule(ADVISORY, [node.resource_name])
            prepared = await wait_taints(kube, node.name, [(ADVISORY_TAINT, event_id, "PreferNoSchedule")])

            async def shown() -> str | None:
                message = await condition_message(kube, node.name)
                return message if message and "Phase=prepared" in message else None

            message = await eventually(shown, what="the condition at phase prepared")
            await receiver.wait_for_requests(1)
            assert advisory_gauge() == 1
            counts = await settled_event_counts(kube, node.name, NodePrepared=1)
            simulator.cancel(event_id)
            given_back = await wait_phase(kube, node.name, event_id, Phase.GIVEN_BACK)

            async def unlisted() -> bool:
                return await condition_message(kube, node.name) is None

            await eventually(unlisted, what="the condition removed")
            assert advisory_gauge() == 0
            after = await settled_event_counts(kube, node.name, NodeGivenBack=1)

    assert not prepared.spec.unschedulable and not given_back.spec.unschedulable
    assert keys.EXCLUDE_FROM_LB_LABEL not in (prepared.metadata.labels or {})
    assert our_taints(given_back) == []
    assert len(await pods_on(kube, node.name)) == 2
    assert f"{ADVISORY} EventId={event_id} NotBefore=none Status=Advisory Phase=prepared" in message
    assert notifications(receiver) == [
        {"phase": "event", "event": event_id, "type": ADVISORY, "status": "Advisory", "impact": -1}
    ]
    assert counts[ADVISORY] == 1  # the Go original's Warning, reason = the event type
    assert "Cordoned" not in after and "DrainStarted" not in after and "EventApproved" not in after
    assert simulator.approvals == []


async def test_a_preempt_that_follows_an_advisory_builds_on_it(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, handler: StartHandler
) -> None:
    """ "When you receive this recommendation, proactively [...] shift your workload": the Preempt that
    follows finds the node prepared, cordons, drains and taints it as always; the advisory leaving the
    document then undoes nothing (its record is finished, its taint stays until the VM goes)."""
    await create_pods(kube, namespace, node.name, 2)
    async with (
        FakeKubelet(kube, node=node.name),
        handler(extra=[PERIOD, "-taint.node"]),
    ):
        advisory_id = simulator.schedule(ADVISORY, [node.resource_name])
        await wait_taints(kube, node.name, [(ADVISORY_TAINT, advisory_id, "PreferNoSchedule")])
        preempt_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=20)
        drained = await wait_phase(kube, node.name, preempt_id, Phase.DRAINED)
        simulator.cancel(advisory_id)
        finished = await wait_phase(kube, node.name, advisory_id, Phase.FINISHED)
    assert drained.spec.unschedulable and finished.spec.unschedulable
    assert sorted(our_taints(finished)) == [
        (f"{keys.TAINT_KEY_PREFIX}preempt", preempt_id, "NoSchedule"),
        (ADVISORY_TAINT, advisory_id, "PreferNoSchedule"),
    ]
    assert await pods_on(kube, node.name) == []


async def test_an_advisory_named_in_event_types_is_drained_and_never_approved(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, handler: StartHandler
) -> None:
    """The user opts in with -eventTypes: the advisory is drained like any event, and still never
    approved — StartRequests has no effect on it."""
    await create_pods(kube, namespace, node.name, 2)
    async with (
        FakeKubelet(kube, node=node.name),
        handler(
            extra=[PERIOD, "-approveEvents", f"-eventTypes=Preempt,{ADVISORY}"],
        ),
    ):
        event_id = simulator.schedule(ADVISORY, [node.resource_name])
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        await settled_event_counts(kube, node.name, DrainFinished=1)
    assert drained.spec.unschedulable
    assert await pods_on(kube, node.name) == []
    assert record_of(drained).events[event_id].approved is False
    assert simulator.approvals == []


async def test_advisories_are_read_at_the_newest_version_imds_names_beside_the_endpoint(
    kube: AsyncClient, node: AksNode, simulator: ImdsSimulator, handler: StartHandler
) -> None:
    """The handler keeps polling -endpoint (2020-07-01) every period — what it gives is not lost — and
    asks IMDS once for its newest versions (a request without api-version, refused with
    "newest-versions"), then reads that version every fifth period for advisories."""
    async with handler(extra=[PERIOD]):
        event_id = simulator.schedule(ADVISORY, [node.resource_name])
        await wait_taints(kube, node.name, [(ADVISORY_TAINT, event_id, "PreferNoSchedule")])

        async def read_three_times() -> bool:
            return (
                sum(r.query.get("api-version") == simulator.advisory_version for r in simulator.requests) >= 3
            )

        await eventually(read_three_times, what="three reads at the advisory version")
        requests = [r for r in simulator.requests if r.path == SCHEDULED_EVENTS_PATH]
    versions = [r.query.get("api-version") for r in requests]
    assert versions.count(None) == 1  # the one question for the newest versions
    discovery = versions.index(None)
    assert requests[discovery].status == 400
    assert set(versions[discovery + 1 :]) == {"2020-07-01", simulator.advisory_version}
    assert versions.count("2020-07-01") > 3 * versions.count(simulator.advisory_version)


async def test_with_advisories_off_an_advisory_never_reaches_the_node(
    kube: AsyncClient, node: AksNode, simulator: ImdsSimulator, handler: StartHandler
) -> None:
    """-advisory.apiVersion=off: only -endpoint's version is read, which does not serve advisories."""
    async with handler(
        extra=[PERIOD, "-advisory.apiVersion=off"],
    ):
        simulator.schedule(ADVISORY, [node.resource_name])
        start = len(simulator.requests)

        async def polled() -> bool:
            return len(simulator.requests) >= start + 12

        await eventually(polled, what="a dozen polls")
        current = await read_node(kube, node.name)
    assert our_taints(current) == [] and record_of(current).events == {}
    assert {r.query.get("api-version") for r in simulator.requests} == {"2020-07-01"}


async def test_an_endpoint_at_the_advisory_version_serves_advisories_itself(
    kube: AsyncClient, node: AksNode, simulator: ImdsSimulator, handler: StartHandler
) -> None:
    """A user may point -endpoint at the newer version: its documents carry the advisories and every
    other event, nothing more is read beside it."""
    async with handler(
        extra=[PERIOD, f"-endpoint={simulator.advisory_url}"],
    ):
        event_id = simulator.schedule(ADVISORY, [node.resource_name])
        await wait_taints(kube, node.name, [(ADVISORY_TAINT, event_id, "PreferNoSchedule")])
    versions = {r.query.get("api-version") for r in simulator.requests if r.path == SCHEDULED_EVENTS_PATH}
    assert versions <= {None, simulator.advisory_version}


async def test_an_event_published_started_is_cordoned_on_the_poll_that_sees_it_and_never_approved(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, handler: StartHandler
) -> None:
    """ "If there is a hardware failure, Azure bypasses the 'Scheduled' state and immediately move[s] to
    the EventStatus:'Started' state" (with NotBefore blank). The response starts on the first document
    that lists it (its first sighting comes before the next poll), the drain counts on 30 s, no
    StartRequests is sent (-approveEvents is on), and the node is given back when the event ends."""
    await create_pods(kube, namespace, node.name, 2)
    async with (
        FakeKubelet(kube, node=node.name),
        handler(extra=["-approveEvents"]),
    ):
        event_id = simulator.schedule("Reboot", [node.resource_name], started=True, duration_seconds=8)
        published = simulator.publication_time(event_id)
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        counts = await settled_event_counts(kube, node.name, DrainStarted=1)
        given_back = await wait_phase(kube, node.name, event_id, Phase.GIVEN_BACK)
    # The handler's polls at its own api-version: its read of the newest version (for advisories, every
    # fifth period) is another request that can arrive a few milliseconds after a poll.
    polls = sorted(
        r.time
        for r in simulator.requests
        if r.path == SCHEDULED_EVENTS_PATH
        and r.method == "GET"
        and r.query.get("api-version") == LATEST_SCHEDULED_EVENTS_VERSION
        and r.time > published
    )
    first_seen = record_of(drained).events[event_id].first_seen.timestamp()
    assert polls[0] <= first_seen < polls[1]
    started = next(e for e in await node_events(kube, node.name) if e.reason == "DrainStarted")
    assert "within 30s" in started.message or "within 29s" in started.message
    assert drained.spec.unschedulable and not given_back.spec.unschedulable
    assert await pods_on(kube, node.name) == []
    assert "EventApproved" not in counts and "ApprovalWithheld" not in counts
    assert simulator.approvals == []


async def test_a_user_event_the_vm_policy_approves_at_once_is_handled_as_started(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, handler: StartHandler
) -> None:
    """The VM's scheduledEventsPolicy (userInitiatedReboot.automaticallyApprove) lets a user's Reboot
    start without waiting: modelled as a User event with no notice, it is Started when first read."""
    await create_pods(kube, namespace, node.name, 1)
    async with (
        FakeKubelet(kube, node=node.name),
        handler(extra=["-approveEvents"]),
    ):
        event_id = simulator.schedule("Reboot", [node.resource_name], source="User", notice_seconds=0)
        drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
    assert record_of(drained).events[event_id].last_status.value == "Started"
    assert simulator.approvals == []


async def test_a_restarted_handler_resumes_a_started_event_from_its_first_sighting(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, handler: StartHandler
) -> None:
    """Killed mid-drain of a Started event (a budget holds the last pod), started again: it resumes
    from the record — the same first sighting, so the same 30 s deadline — finishes the drain once,
    and still approves nothing."""
    await create_pods(kube, namespace, node.name, 2)
    async with FakeKubelet(kube, node=node.name):
        pdb = await hold_one_pod(kube, namespace, node.name)
        async with handler(extra=["-approveEvents"]):
            event_id = simulator.schedule("Reboot", [node.resource_name], started=True, duration_seconds=600)
            protected = await wait_phase(kube, node.name, event_id, Phase.PROTECTED)

            async def held_only() -> bool:
                return len(await pods_on(kube, node.name)) == 1

            await eventually(held_only, what="all but the held pod evicted")
        await kube.delete(type(pdb), pdb.metadata.name, namespace=namespace)
        async with handler(extra=["-approveEvents"]):
            drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
            counts = await settled_event_counts(kube, node.name, DrainFinished=1)
    first = record_of(protected).events[event_id].first_seen
    assert record_of(drained).events[event_id].first_seen == first
    assert await pods_on(kube, node.name) == []
    assert counts["EventSeen"] == 1 and counts["Cordoned"] == 1
    assert simulator.approvals == []


@pytest.mark.parametrize(("impact", "said"), [(-1, ""), (0, ", no interruption expected")])
async def test_duration_in_seconds_minus_one_and_zero_are_shown_and_change_nothing(
    kube: AsyncClient,
    namespace: str,
    node: AksNode,
    simulator: ImdsSimulator,
    handler: StartHandler,
    impact: int,
    said: str,
) -> None:
    """DurationInSeconds: "-1: the default value used if the impact duration is either unknown or not
    applicable", "0: The event won't interrupt the VM". The type decides the response (a Reboot is
    drained either way: "a VM scheduled for EventType:'Reboot' may experience a freeze event instead");
    the value reaches the EventSeen message and the notification."""
    await create_pods(kube, namespace, node.name, 1)
    with Receiver() as receiver:
        async with (
            FakeKubelet(kube, node=node.name),
            handler(extra=webhook(receiver)),
        ):
            event_id = simulator.schedule(
                "Reboot", [node.resource_name], notice_seconds=60, impact_seconds=impact
            )
            drained = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
            await receiver.wait_for_requests(1)
    seen = next(e for e in await node_events(kube, node.name) if e.reason == "EventSeen")
    assert f"(Platform{said}):" in seen.message
    assert drained.spec.unschedulable
    assert notifications(receiver)[0]["impact"] == impact


async def test_an_advisory_version_imds_refuses_is_asked_for_once(
    node: AksNode, simulator: ImdsSimulator, handler: StartHandler
) -> None:
    """A pinned -advisory.apiVersion that IMDS refuses (400, as for any version it does not serve):
    said once, never asked again; -endpoint's polls go on."""
    async with handler(
        extra=[PERIOD, "-advisory.apiVersion=2098-01-01"],
    ):

        async def refused_then_polled_on() -> bool:
            versions = [r.query.get("api-version") for r in simulator.requests]
            return (
                "2098-01-01" in versions
                and versions[versions.index("2098-01-01") :].count("2020-07-01") >= 12
            )

        await eventually(refused_then_polled_on, what="the refusal, then a dozen polls")
    refused = [r for r in simulator.requests if r.query.get("api-version") == "2098-01-01"]
    assert [r.status for r in refused] == [400]
