"""What the handler process exposes on -web.address: Prometheus metrics and its health probes."""

from __future__ import annotations

import pytest
from lightkube import AsyncClient

from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.cluster import AksNode, create_pods, eventually
from testkit.controlplane import ControlPlane
from testkit.kubelet import FakeKubelet
from testkit.metrics import PREFIX, Scrape
from testkit.nodestate import wait_phase
from testkit.process import HandlerProcess
from testkit.receivers import Receiver
from tests.e2e.conftest import Launcher

pytestmark = pytest.mark.controlplane

# Every metric of the Go original, as its /metrics names them (dashboards and alerts depend on them).
ORIGINAL_METRICS = (
    "scheduled_events_total",
    "error_reading_endpoint_total",
    "apiserver_request_total",
    "apiserver_request_duration",
    "http_events_in_flight_requests",
    "http_events_requests_total",
    "http_events_request_duration_seconds",
    "http_webhook_in_flight_requests",
    "http_webhook_requests_total",
    "http_webhook_request_duration_seconds",
)


async def scrape(handler: HandlerProcess) -> Scrape:
    response = handler.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text, prefix=PREFIX)


async def test_metrics_move_after_a_preempt_and_keep_the_original_names(
    kube: AsyncClient,
    namespace: str,
    node: AksNode,
    simulator: ImdsSimulator,
    launch: Launcher,
    control_plane: ControlPlane,
) -> None:
    await create_pods(kube, namespace, node.name, 3)
    with Receiver() as receiver:
        async with FakeKubelet(kube, node=node.name):
            handler = await launch(node.name, f"-webhook.url={receiver.url('/hook')}")
            idle = await scrape(handler)
            event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
            await wait_phase(kube, node.name, event_id, Phase.DRAINED)
            await receiver.wait_for_requests(1)

            async def counted() -> Scrape | None:
                # The notification is counted once its delivery has been answered.
                current = await scrape(handler)
                return current if current.value("notifications_total", result="sent") else None

            after = await eventually(counted, what="the notification counted", timeout_seconds=10)

    missing = [name for name in ORIGINAL_METRICS if PREFIX + name not in after.declared]
    assert missing == []
    assert idle.value("scheduled_events_total") == 0
    assert idle.value("drain_duration_seconds_count") == 0
    assert (
        after.value("scheduled_events_total", type="Preempt", node=node.name, resource=node.resource_name)
        == 1
    )
    assert after.value("drain_duration_seconds_count", type="Preempt", result="drained") == 1
    assert after.value("evictions_total", result="evicted") == 3
    assert after.value("event_to_cordon_seconds_count", since="sighting") == 1
    assert after.value("notifications_total", sink="webhook", phase="event", result="sent") == 1
    assert after.value("http_webhook_requests_total", code="200", method="post") == 1
    assert after.value("http_events_requests_total", code="200", method="get") > 0
    # As client-go labels them (and so the Go version): the API server's host:port.
    cluster = control_plane.server_url.removeprefix("https://")
    assert after.value("apiserver_request_total", code="201", cluster=cluster) > 0  # evictions, Events
    assert after.value("error_reading_endpoint_total") == 0


async def probe(handler: HandlerProcess, path: str) -> tuple[int, str]:
    response = handler.get(path)
    return response.status_code, response.json()["reason"]


async def test_health_and_readiness_before_the_first_poll_while_imds_fails_and_after_recovery(
    node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    # The first poll hangs for a while, then every poll fails until the faults are cleared.
    simulator.inject_fault(delay_seconds=3.0, count=1)
    simulator.inject_fault(status=500, count=None)
    handler = await launch(node.name)

    async def waiting_for_first_poll() -> tuple[int, str] | None:
        answer = await probe(handler, "/readyz")
        return answer if "first Scheduled Events poll" in answer[1] else None

    assert await eventually(waiting_for_first_poll, what="readyz waiting for the first poll") == (
        503,
        "waiting for the first Scheduled Events poll",
    )
    assert await probe(handler, "/healthz") == (200, "main loop running")

    async def failing() -> tuple[int, str] | None:
        answer = await probe(handler, "/readyz")
        return answer if "failing" in answer[1] else None

    status, reason = await eventually(failing, what="readyz reporting the failing endpoint")
    assert status == 503
    assert "500" in reason
    # Liveness never depends on IMDS: the loop is turning, so the kubelet must not restart the pod.
    assert await probe(handler, "/healthz") == (200, "main loop running")

    simulator.clear_faults()

    async def ready() -> tuple[int, str] | None:
        answer = await probe(handler, "/readyz")
        return answer if answer[0] == 200 else None

    assert await eventually(ready, what="readyz after recovery") == (
        200,
        f"watching Scheduled Events for {node.resource_name}",
    )
    assert await probe(handler, "/healthz") == (200, "main loop running")
    assert (await scrape(handler)).value("error_reading_endpoint_total") >= 1
