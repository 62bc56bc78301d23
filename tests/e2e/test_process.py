"""The handler's life as a process: killed mid-drain and restarted, exiting after the drain, SIGTERM,
and refusing a bad configuration at start-up (exit code 2) before making any request."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightkube import AsyncClient
from lightkube.resources.policy_v1 import PodDisruptionBudget

from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.cluster import AksNode, create_pods, eventually, hold_one_pod
from testkit.controlplane import unreachable_kubeconfig
from testkit.kubelet import FakeKubelet
from testkit.nodestate import (
    node_event_counts,
    node_events,
    our_taints,
    pods_on,
    read_node,
    record_of,
    wait_phase,
    wait_polls,
)
from testkit.ports import silent_port
from testkit.process import HandlerProcess, handler_environment, spawn_handler
from testkit.receivers import Receiver
from tests.e2e.conftest import POLL_PERIOD, Launcher

pytestmark = pytest.mark.controlplane


async def test_killed_mid_drain_a_new_process_finishes_the_same_event_once(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 3)
    with Receiver() as receiver:
        args = ("-taint.node", f"-webhook.url={receiver.url('/hook')}")
        async with FakeKubelet(kube, node=node.name):
            pdb = await hold_one_pod(kube, namespace, node.name)
            first = await launch(node.name, *args)
            event_id = simulator.schedule("Terminate", [node.resource_name], notice_seconds=300)
            await wait_phase(kube, node.name, event_id, Phase.PROTECTED)

            async def only_held_left() -> bool:
                return len(await pods_on(kube, node.name)) == 1

            await eventually(only_held_left, what="all but the PDB-held pod evicted")
            await receiver.wait_for_requests(1)
            first.kill()
            assert first.returncode == -9
            # The budget is lifted while no handler runs; the pod's replacement starts elsewhere.
            await kube.delete(PodDisruptionBudget, pdb.metadata.name, namespace=namespace)
            second = await launch(node.name, *args)
            n = await wait_phase(kube, node.name, event_id, Phase.DRAINED)
        # A clean stop delivers whatever is still queued: a repeated notification would arrive now.
        second.terminate()
        assert await second.wait_exit(timeout_seconds=10) == 0
    assert await pods_on(kube, node.name) == []
    assert len(our_taints(n)) == 1
    assert record_of(n).events[event_id].notified == ("event",)
    events = await node_event_counts(kube, node.name)
    assert (events["EventSeen"], events["Cordoned"]) == (1, 1)
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert "resuming" in second.log_text()


async def test_exit_after_node_drain_exits_zero_once_drained(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 2)
    async with FakeKubelet(kube, node=node.name):
        handler = await launch(node.name, "-exitAfterNodeDrain")
        event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
        assert await handler.wait_exit(timeout_seconds=20) == 0
    n = await read_node(kube, node.name)
    assert record_of(n).events[event_id].phase is Phase.DRAINED
    assert await pods_on(kube, node.name) == []


async def test_sigterm_while_idle_exits_zero_within_the_grace_period_and_leaves_the_node_alone(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 1)
    before = await read_node(kube, node.name)
    handler = await launch(node.name, "-gracePeriodSeconds=5")
    await wait_polls(simulator, 2)
    handler.terminate()
    assert await handler.wait_exit(timeout_seconds=5) == 0
    after = await read_node(kube, node.name)
    assert after.metadata.resourceVersion == before.metadata.resourceVersion
    assert len(await pods_on(kube, node.name)) == 1
    # No Event but, at most, the start-up one the Go version records too.
    assert {ev.reason for ev in await node_events(kube, node.name)} <= {"ReadEvents"}


async def test_sigterm_mid_drain_exits_zero_within_the_grace_period_and_undoes_nothing(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    async with FakeKubelet(kube, node=node.name):
        await hold_one_pod(kube, namespace, node.name)
        handler = await launch(node.name, "-taint.node", "-gracePeriodSeconds=4")
        event_id = simulator.schedule("Terminate", [node.resource_name], notice_seconds=300)
        await wait_phase(kube, node.name, event_id, Phase.PROTECTED)
        handler.terminate()
        assert await handler.wait_exit(timeout_seconds=4) == 0
    # The VM is probably going away: the node stays cordoned and tainted, for a successor to resume.
    n = await read_node(kube, node.name)
    assert n.spec.unschedulable is True
    assert len(our_taints(n)) == 1
    assert record_of(n).events[event_id].phase is Phase.PROTECTED
    assert len(await pods_on(kube, node.name)) == 1


async def refused(args: list[str], folder: Path, started: list[HandlerProcess]) -> HandlerProcess:
    handler = spawn_handler(args, folder=folder, env=handler_environment("aks-spot-12345678-vmss000003"))
    started.append(handler)
    assert await handler.wait_exit(timeout_seconds=15) == 2
    return handler


async def test_a_broken_template_file_exits_2_naming_file_line_and_column_before_any_request(
    simulator: ImdsSimulator, tmp_path: Path, processes: list[HandlerProcess]
) -> None:
    template = tmp_path / "files" / "slack-payload.json"
    template.parent.mkdir()
    template.write_text('{\n  "channel": "#mychannel",\n  "text": "{{ .NodeName }"\n}\n')
    with silent_port() as api_port, silent_port() as hook_port:
        handler = await refused(
            [
                f"-kubeconfig={unreachable_kubeconfig(tmp_path, api_port)}",
                f"-endpoint={simulator.scheduled_events_url}",
                POLL_PERIOD,
                "-web.address=127.0.0.1:0",
                f"-webhook.url=http://127.0.0.1:{hook_port}/hook",
                f"-webhook.template-file={template}",
            ],
            tmp_path / "handler",
            processes,
        )
    stderr = handler.log_text()
    assert f"{template}:3:25:" in stderr
    assert simulator.requests == []
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("-taint.nodes", "-taint.nodes"),
        ("-taint.effect=NoEntry", "-taint.effect"),
        ("-period=100ms", "-period"),
    ],
)
async def test_a_bad_flag_exits_2_naming_it(
    bad: str, named: str, simulator: ImdsSimulator, tmp_path: Path, processes: list[HandlerProcess]
) -> None:
    handler = await refused(
        [f"-endpoint={simulator.scheduled_events_url}", POLL_PERIOD, bad], tmp_path / "handler", processes
    )
    first_line = handler.log_text().splitlines()[0]
    assert first_line.startswith("aks-node-termination-handler: ")
    assert named in first_line
    assert simulator.requests == []
