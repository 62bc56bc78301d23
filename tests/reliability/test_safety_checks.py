"""The safety checks (testkit/src/testkit/safety.py) can fail: each is fed a handler that breaks its promise
on purpose (testkit/src/testkit/misbehaving.py, a real process against the real API server and the IMDS
simulator) and must report it, pod by pod or event by event; a handler that keeps every promise gets
no finding. Then the real handler is held to the same checks.

Each scenario is small: one or two nodes of a scale set of its own, two pods per node played by the
kubelet stand-in (a pod stops one second after its SIGTERM), budgets that refuse every eviction where
the scenario needs protected pods, and notices of a few seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lightkube import AsyncClient

from imds_simulator import ImdsSimulator
from testkit.audit import kubeconfig_user, read_audit_log
from testkit.cluster import (
    AksNode,
    create_aks_node,
    create_pdb,
    create_pod,
    create_pods,
    eventually,
    unique_suffix,
    wait_pdb_observed,
)
from testkit.controlplane import ControlPlane
from testkit.fleetwatch import FleetWatch
from testkit.kubelet import FakeKubelet
from testkit.misbehaving import MisbehavingHandler
from testkit.process import HandlerProcess, handler_argv, handler_flags
from testkit.safety import (
    EARLY_APPROVAL,
    EARLY_STOP,
    GRACE_CUT,
    NO_REFUSAL,
    NO_SIGTERM,
    TOLERANCE_SECONDS,
    EventRecord,
    Finding,
    SafetyRecord,
    check_safety,
    describe,
    event_record,
    safety_figures,
    safety_record,
    start_requests,
)

pytestmark = pytest.mark.controlplane

PODS_PER_NODE = 2
#: The kubelet stand-in finishes a deletion this long after the SIGTERM (the pod exits then).
POD_STOP_SECONDS = 1.0


@dataclass
class Scene:
    """Nodes of a scale set of their own, their pods, a watch, and the handlers' processes."""

    kube: AsyncClient
    namespace: str
    plane: ControlPlane
    simulator: ImdsSimulator
    kubeconfig: Path
    logs: Path
    nodes: list[AksNode] = field(default_factory=list)
    watch: FleetWatch | None = None
    handlers: list[MisbehavingHandler | HandlerProcess] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)

    @property
    def user(self) -> str:
        """The handlers' user (their ServiceAccount), as the audit log names it."""
        return kubeconfig_user(self.kubeconfig)

    async def pods(self, node: AksNode, *, app: str, grace_seconds: int = 5, protected: bool = False) -> None:
        """PODS_PER_NODE pods of `app` on `node`; `protected`: behind a budget that refuses every eviction."""
        await create_pods(
            self.kube,
            self.namespace,
            node.name,
            PODS_PER_NODE,
            name_prefix=app,
            labels={"app": app},
            grace_seconds=grace_seconds,
        )
        if protected:
            budget = await create_pdb(self.kube, self.namespace, {"app": app}, min_available=PODS_PER_NODE)
            assert budget.metadata is not None and budget.metadata.name is not None
            await wait_pdb_observed(
                self.kube, self.namespace, budget.metadata.name, expected_pods=PODS_PER_NODE
            )

    async def misbehaving(self, mode: str, node: AksNode, *, approve: bool = False) -> MisbehavingHandler:
        """Starts a handler of `mode` on `node` and waits for its first poll."""
        handler = MisbehavingHandler(
            mode,
            kubeconfig=self.kubeconfig,
            node=node.name,
            vm=node.resource_name,
            endpoint=self.simulator.scheduled_events_url,
            log_path=self.logs / f"{mode}-{node.name}.log",
            approve=approve,
        ).start()
        self.handlers.append(handler)

        async def polled() -> bool:
            if handler.returncode is not None:
                raise AssertionError(
                    f"{mode} exited with {handler.returncode}:\n{handler.log_text()[-3000:]}"
                )
            return any(r.query.get("handler") == handler.tag for r in self.simulator.requests)

        await eventually(polled, what=f"the first poll of {mode} on {node.name}", timeout_seconds=30)
        return handler

    async def real_handler(self, node: AksNode, *, extra: Sequence[str] = ()) -> HandlerProcess:
        flags = handler_flags(
            kubeconfig=self.kubeconfig, node=node.name, simulator=self.simulator, extra=extra
        )
        handler = HandlerProcess(handler_argv(flags), log_path=self.logs / f"handler-{node.name}.log")
        self.handlers.append(handler)
        await handler.start_serving()
        await handler.wait_ready()
        return handler

    def keys(self, app: str) -> list[str]:
        """The `namespace/name` of the pods `pods(app=app)` created."""
        return [f"{self.namespace}/{app}-{i}" for i in range(PODS_PER_NODE)]

    def publish(self, event_type: str, nodes: Sequence[AksNode], *, notice_seconds: float) -> EventRecord:
        event_id = self.simulator.schedule(
            event_type, [n.resource_name for n in nodes], notice_seconds=notice_seconds
        )
        event = event_record(self.simulator, event_id)
        self.events.append(event)
        return event

    def record(self) -> SafetyRecord:
        assert self.watch is not None and self.plane.audit_log_path is not None
        return safety_record(
            self.watch,
            events=self.events,
            audited=read_audit_log(self.plane.audit_log_path),
            handler_users={self.user},
            imds_requests=self.simulator.requests,
        )

    async def until(self, condition: str, *, timeout_seconds: float) -> None:
        """Waits for one of the scenario's real conditions: every node `empty`, `approved` (a
        StartRequests came, and the checks' tolerance after it passed), `deadline` (every event's
        deadline and the tolerance passed), or `exited` (every handler ended on its own)."""
        watch = self.watch
        assert watch is not None

        async def reached() -> bool:
            now = time.time()
            if condition == "empty":
                return all(watch.empty_at(n.name) is not None for n in self.nodes)
            if condition == "approved":
                starts = start_requests(self.simulator.requests)
                return bool(starts) and now > starts[0].at + TOLERANCE_SECONDS
            if condition == "deadline":
                return now > max(e.deadline for e in self.events) + TOLERANCE_SECONDS
            if condition == "exited":
                return all(h.returncode is not None for h in self.handlers)
            raise ValueError(condition)

        await eventually(
            reached, what=f"the scenario's condition {condition!r}", timeout_seconds=timeout_seconds
        )

    def logs_tail(self) -> str:
        return "\n".join(f"--- {h.log_path.name}\n{h.log_text()[-2500:]}" for h in self.handlers)


NewScene = Callable[[int], AbstractAsyncContextManager[Scene]]


@pytest.fixture
def new_scene(
    kube: AsyncClient,
    namespace: str,
    control_plane: ControlPlane,
    simulator: ImdsSimulator,
    handler_kubeconfig: Path,
    tmp_path: Path,
) -> NewScene:
    """`new_scene(nodes)`: a scene of that many nodes in the test's namespace, simulator and identity."""

    @asynccontextmanager
    async def scene(nodes: int) -> AsyncIterator[Scene]:
        """`nodes` nodes of a new scale set, a kubelet stand-in for each, a watch of the namespace from
        the start; the handlers started in it are stopped at the end."""
        vmss = f"aks-safety{unique_suffix()}-vmss"
        world = Scene(kube, namespace, control_plane, simulator, handler_kubeconfig, tmp_path)
        world.nodes = [await create_aks_node(kube, vmss=vmss, instance_id=str(i)) for i in range(nodes)]
        async with AsyncExitStack() as stack:
            for node in world.nodes:
                await stack.enter_async_context(
                    FakeKubelet(kube, node=node.name, deletion_delay_seconds=POD_STOP_SECONDS)
                )
            world.watch = await stack.enter_async_context(FleetWatch(kube, namespace))
            try:
                yield world
            finally:
                for handler in world.handlers:
                    await asyncio.to_thread(handler.stop)

    return scene


def of(findings: Sequence[Finding], kind: str) -> list[str]:
    return sorted(f.subject for f in findings if f.kind == kind)


async def preempted_under(
    new_scene: NewScene, mode: str, *, notice_seconds: float, until: str, grace_seconds: int = 5
) -> tuple[Scene, list[Finding]]:
    """One node with `web` pods of `grace_seconds`, a handler of `mode` on it and a Preempt of
    `notice_seconds`; the scene and its findings once the condition `until` holds."""
    async with new_scene(1) as world:
        (node,) = world.nodes
        await world.pods(node, app="web", grace_seconds=grace_seconds)
        await world.misbehaving(mode, node)
        world.publish("Preempt", [node], notice_seconds=notice_seconds)
        await world.until(until, timeout_seconds=30)
        return world, check_safety(world.record())


# --- misbehaving handlers, one per promise ----------------------------------------------------------


@pytest.mark.timeout(120)
async def test_checks_a_and_b_report_a_handler_that_deletes_protected_pods_the_moment_the_event_appears(
    new_scene: NewScene,
) -> None:
    async with new_scene(1) as world:
        (node,) = world.nodes
        await world.pods(node, app="web", protected=True)
        await create_pod(world.kube, world.namespace, node.name, name="agent", owner="DaemonSet")
        await world.misbehaving("delete-at-once", node)
        world.publish("Preempt", [node], notice_seconds=20)
        await world.until("empty", timeout_seconds=30)
        findings = check_safety(world.record())
    web = world.keys("web")
    assert of(findings, NO_REFUSAL) == web, describe(findings)  # (a): no budget refused them
    assert of(findings, EARLY_STOP) == web, describe(findings)  # (b): ~15 s before their last chance
    assert f"{world.namespace}/agent" not in {f.subject for f in findings}  # a DaemonSet pod stays, rightly


@pytest.mark.timeout(120)
async def test_check_c_reports_a_handler_that_approves_the_event_at_once(new_scene: NewScene) -> None:
    async with new_scene(1) as world:
        (node,) = world.nodes
        await world.pods(node, app="web")
        await world.misbehaving("approve-at-once", node)
        event = world.publish("Terminate", [node], notice_seconds=300)
        await world.until("approved", timeout_seconds=30)
        findings = check_safety(world.record())
    assert of(findings, EARLY_APPROVAL) == [event.event_id], describe(findings)
    assert node.name in next(f.detail for f in findings if f.kind == EARLY_APPROVAL)
    # (d) too: the approval let Azure start the event with both pods still running.
    assert of(findings, NO_SIGTERM) == world.keys("web"), describe(findings)


@pytest.mark.timeout(120)
async def test_check_c_reports_an_approval_while_another_node_the_event_lists_still_drains(
    new_scene: NewScene,
) -> None:
    """The group approval of issue 23: one node drains fast and approves an event that lists a peer
    whose protected pods wait for their last chance."""
    async with new_scene(2) as world:
        fast, slow = world.nodes
        await world.pods(fast, app="web")
        await world.pods(slow, app="db", protected=True)
        await world.misbehaving("approve-own-node", fast)
        await world.misbehaving("keep-promises", slow)
        event = world.publish("Terminate", world.nodes, notice_seconds=30)
        await world.until("approved", timeout_seconds=30)
        record = world.record()
    findings = check_safety(record)
    approvals = [f for f in findings if f.kind == EARLY_APPROVAL]
    assert [f.subject for f in approvals] == [event.event_id], describe(findings)
    assert slow.name in approvals[0].detail and fast.name not in approvals[0].detail
    assert safety_figures(record, findings).approval_after_empty_seconds == {event.event_id: None}


@pytest.mark.timeout(120)
async def test_check_d_reports_a_handler_that_deletes_pods_without_a_grace_period(
    new_scene: NewScene,
) -> None:
    world, findings = await preempted_under(new_scene, "kill-at-once", notice_seconds=30, until="empty")
    web = world.keys("web")
    assert of(findings, NO_SIGTERM) == web, describe(findings)
    assert safety_figures(world.record(), findings).pods_without_sigterm == PODS_PER_NODE


@pytest.mark.timeout(120)
async def test_check_d_reports_pods_a_handler_leaves_on_the_node_until_the_deadline(
    new_scene: NewScene,
) -> None:
    world, findings = await preempted_under(new_scene, "ignore", notice_seconds=5, until="deadline")
    assert of(findings, NO_SIGTERM) == world.keys("web"), describe(findings)
    assert all("not deleted" in f.detail for f in findings)


@pytest.mark.timeout(120)
async def test_check_d_reports_a_grace_period_that_runs_past_the_deadline(new_scene: NewScene) -> None:
    """Evicted 2 s before the deadline with their own 30 s: SIGTERM came, the grace period could not."""
    world, findings = await preempted_under(
        new_scene, "evict-late", notice_seconds=6, until="empty", grace_seconds=30
    )
    assert of(findings, GRACE_CUT) == world.keys("web"), describe(findings)


@pytest.mark.timeout(120)
async def test_a_handler_that_keeps_every_promise_gets_no_finding(new_scene: NewScene) -> None:
    """Evictions first; protected pods stopped at their last chance after a refusal; the event
    approved once both nodes it lists are empty: the checks see it all and report nothing."""
    async with new_scene(2) as world:
        free, protected = world.nodes
        await world.pods(free, app="web")
        await world.pods(protected, app="db", grace_seconds=3, protected=True)
        await create_pod(world.kube, world.namespace, free.name, name="agent", owner="DaemonSet")
        for node in world.nodes:
            await world.misbehaving("keep-promises", node, approve=True)
        event = world.publish("Terminate", world.nodes, notice_seconds=12)
        await world.until("exited", timeout_seconds=60)
        record = world.record()
    findings = check_safety(record)
    assert findings == [], describe(findings) + world.logs_tail()
    figures = safety_figures(record, findings)
    assert figures.stops == PODS_PER_NODE  # the protected pods, at their last chance
    assert figures.earliest_stop_after_last_chance_seconds is not None
    assert figures.earliest_stop_after_last_chance_seconds >= 0
    after_empty = figures.approval_after_empty_seconds[event.event_id]
    assert after_empty is not None and after_empty >= 0


# --- the real handler, held to the same checks ---------------------------------------------------


@pytest.mark.timeout(120)
async def test_the_real_handler_stops_protected_pods_no_earlier_than_their_last_chance(
    new_scene: NewScene,
) -> None:
    """Issue 23's case: a drain timeout (-nodeGracePeriodSeconds=4) much shorter than the notice (20 s),
    pods a budget protects until the end. The drain timeout must not bring their stop forward."""
    async with new_scene(1) as world:
        (node,) = world.nodes
        await world.pods(node, app="db", protected=True)
        await world.real_handler(node, extra=["-nodeGracePeriodSeconds=4"])
        world.publish("Preempt", [node], notice_seconds=20)
        await world.until("deadline", timeout_seconds=60)
        findings = check_safety(world.record())
    assert findings == [], describe(findings) + world.logs_tail()


@pytest.mark.timeout(120)
async def test_the_real_handler_approves_an_event_only_when_every_node_it_lists_is_empty(
    new_scene: NewScene,
) -> None:
    """One Terminate for two nodes, both handlers with -approveEvents; one node's pods leave at once, the
    other's are protected until their last chance. No StartRequests while they are there."""
    async with new_scene(2) as world:
        fast, slow = world.nodes
        await world.pods(fast, app="web")
        await world.pods(slow, app="db", protected=True)
        for node in world.nodes:
            await world.real_handler(node, extra=["-approveEvents"])
        world.publish("Terminate", world.nodes, notice_seconds=20)
        await world.until("deadline", timeout_seconds=60)
        findings = check_safety(world.record())
    assert findings == [], describe(findings) + world.logs_tail()
