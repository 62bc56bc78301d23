"""The linux/arm64 image, built from docker/Dockerfile by `hack/build-test-image`, runs its handler.

The image's programs are arm64: here they run under emulation (qemu-user-static through binfmt_misc,
registered for this module by the `arm64_image` fixture and undone after it when it was not there
before). The container runs as the chart runs it (user 65532, read-only root filesystem, no
capabilities, in-cluster configuration from a ServiceAccount volume), sharing the machine's network so
that it reaches the test control plane and the IMDS simulator on loopback. The real-node suite runs
the same image on real kubelets (tests/cluster/test_arm64.py).

What this proves that the amd64 tests cannot: every dependency of the lock has a wheel for arm64
(else the build fails), and the arm64 image's Python, byte code and paths run the handler as a user on
an arm64 node pool runs it. Timings under emulation say nothing of a real arm64 VM: only the waits
are longer here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from lightkube import AsyncClient

import aksnth
from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.cluster import AksNode, create_pod, create_pods, eventually
from testkit.container import (
    HandlerContainer,
    image_facts,
    process_facts,
    running_container,
    service_account_volume,
)
from testkit.controlplane import ControlPlane
from testkit.kubelet import FakeKubelet
from testkit.nodestate import has_lb_label, pods_on, wait_phase
from testkit.ports import free_loopback_port
from testkit.realcluster import ARM64_HANDLER_IMAGE
from tests.support.reporting import report

pytestmark = pytest.mark.controlplane

PLATFORM = "linux/arm64"
# Emulated, the interpreter starts in seconds rather than a fraction of one; generous bounds for a
# loaded 2-core machine. They bound waits for real conditions, they assert no speed.
_START_SECONDS = 90.0
_DRAIN_SECONDS = 60.0


def test_the_arm64_image_is_linux_arm64_non_root_and_prints_its_version(arm64_image: Path) -> None:
    """The image `hack/build-test-image` built for linux/arm64 says so, runs as user 65532 with the
    handler as its entrypoint, and, run as the chart runs it (read-only root filesystem), its
    emulated handler prints this build's version and exits 0."""
    facts = image_facts(arm64_image, ARM64_HANDLER_IMAGE)
    assert (facts["Os"], facts["Architecture"]) == ("linux", "arm64"), facts.get("Architecture")
    assert facts["Config"]["User"] == "65532:65532"
    assert facts["Config"]["Entrypoint"] == ["aks-node-termination-handler"]
    done = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "--pull=never",
            f"--platform={PLATFORM}",
            "--read-only",
            "--user=65532:65532",
            "--cap-drop=ALL",
            "--network=none",
            ARM64_HANDLER_IMAGE,
            "-version",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=_START_SECONDS,
        env={"CONTAINERS_CONF": str(arm64_image / "containers.conf"), "PATH": os.environ["PATH"]},
    )
    assert (done.returncode, done.stdout.strip()) == (
        0,
        f"aks-node-termination-handler {aksnth.__version__}",
    ), done.stderr


async def test_the_arm64_handler_polls_imds_and_cordons_and_drains_its_node_on_preempt(
    arm64_image: Path,
    kube: AsyncClient,
    control_plane: ControlPlane,
    namespace: str,
    node: AksNode,
    simulator: ImdsSimulator,
    handler_kubeconfig: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """The arm64 handler in its container, emulated (its process is qemu-aarch64 running the image's
    Python), as user 65532 on a read-only root filesystem, with the chart's ServiceAccount through the
    in-cluster configuration: it serves /readyz once it has polled the IMDS simulator; on a Preempt for
    its VM it cordons the node, labels it out of load balancers and evicts its pods (the DaemonSet's
    pod stays), recording the event as drained; on SIGTERM it exits 0."""
    workloads = {p.metadata.name for p in await create_pods(kube, namespace, node.name, 3)}
    agent = await create_pod(kube, namespace, node.name, owner="DaemonSet")
    volume = service_account_volume(
        tmp_path / "serviceaccount", kubeconfig=handler_kubeconfig, namespace=namespace
    )
    web_port = free_loopback_port()
    with (
        running_container(
            image_dir=arm64_image,
            image=ARM64_HANDLER_IMAGE,
            platform=PLATFORM,
            args=[
                f"-endpoint={simulator.scheduled_events_url}",
                "-period=0.2s",
                f"-web.address=127.0.0.1:{web_port}",
            ],
            env={
                "MY_NODE_NAME": node.name,
                "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(control_plane.port),
            },
            folder=tmp_path / "container",
            service_account=volume,
        ) as container,
        _output_on_failure(container),
    ):
        async with FakeKubelet(kube, node=node.name):
            first_poll = await _wait_first_poll(container, simulator)
            pid = await container.wait_main_pid(_START_SECONDS)
            facts = process_facts(pid)
            report(
                request,
                f"arm64 handler, emulated: first IMDS poll {first_poll - container.started_at:.2f} s after "
                f"podman run, RSS {facts['rss_kib'] / 1024:.1f} MiB (for comparison only)",
            )
            assert facts["uid"] == 65532
            assert facts["root_read_only"]
            assert Path(facts["exe"]).name.startswith("qemu-aarch64"), (
                f"the handler's process runs {facts['exe']}, not an emulated arm64 program"
            )
            await _wait_ready(container, web_port)

            event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
            drained = await wait_phase(
                kube, node.name, event_id, Phase.DRAINED, timeout_seconds=_DRAIN_SECONDS
            )
            assert drained.spec.unschedulable is True
            assert has_lb_label(drained)
            left = {p.metadata.name for p in await pods_on(kube, node.name)}
            assert left == {agent.metadata.name}, (
                f"left on the node: {sorted(left)} (workloads {sorted(workloads)})"
            )
        container.check_running()
        code = await asyncio.to_thread(container.stop)
        assert code == 0, f"the handler exited {code} on SIGTERM; output tail:\n{container.tail()}"


@contextlib.contextmanager
def _output_on_failure(container: HandlerContainer) -> Iterator[None]:
    """A failed assertion in the block carries the tail of the handler's output."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n--- output of container {container.name} (tail) ---\n{container.tail()}"
        ) from exc


async def _wait_first_poll(container: HandlerContainer, simulator: ImdsSimulator) -> float:
    async def polled() -> float | None:
        container.check_running()
        for request in simulator.requests:
            if request.time >= container.started_at and "scheduledevents" in request.path:
                return request.time
        return None

    return await eventually(
        polled,
        what="the arm64 handler's first IMDS poll",
        timeout_seconds=_START_SECONDS,
        interval_seconds=0.05,
    )


async def _wait_ready(container: HandlerContainer, port: int) -> None:
    async def ready() -> bool:
        container.check_running()
        with contextlib.suppress(httpx2.TransportError):
            async with httpx2.AsyncClient(trust_env=False, timeout=5.0) as client:
                return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        return False

    await eventually(ready, what="/readyz of the arm64 handler to answer 200", timeout_seconds=_START_SECONDS)
