"""The metrics and health server over real HTTP on loopback: scrape, probes, errors, hostile clients."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
from collections.abc import AsyncIterator

import httpx2
import pytest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

import aksnth.observe.metrics  # noqa: F401 - registers every metric in the default registry
from aksnth.errors import ConfigError
from aksnth.observe.health import Health
from aksnth.observe.server import DEFAULT_MAX_IDLE_CONNECTIONS, MetricsServer, serve
from testkit.clock import FakeClock
from testkit.ports import PORT_ATTEMPTS, free_loopback_port, listening_ports, port_taken

PREFIX = "aks_node_termination_handler_"
# The Go original's metric families, as a dashboard built for it queries them.
ORIGINAL_METRICS = {
    "scheduled_events_total": "counter",
    "error_reading_endpoint_total": "counter",
    "apiserver_request_total": "counter",
    "apiserver_request_duration": "histogram",
    "http_events_in_flight_requests": "gauge",
    "http_events_requests_total": "counter",
    "http_events_request_duration_seconds": "histogram",
    "http_webhook_in_flight_requests": "gauge",
    "http_webhook_requests_total": "counter",
    "http_webhook_request_duration_seconds": "histogram",
}
ADDED_METRICS = {
    "drain_duration_seconds": "histogram",
    "evictions_total": "counter",
    "event_to_cordon_seconds": "histogram",
    "notifications_total": "counter",
    "document_incarnation": "gauge",
    "last_successful_poll_timestamp_seconds": "gauge",
    "apiserver_reachable": "gauge",
    "build_info": "gauge",
    "readiness_pods_at_risk": "gauge",
    "readiness_drains_within_notice": "gauge",
    "readiness_last_check_timestamp_seconds": "gauge",
    "readiness_checks_total": "counter",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


@pytest.fixture
def health(clock: FakeClock) -> Health:
    return Health(poll_interval_seconds=1.0, clock=clock)


@pytest.fixture
async def server(health: Health) -> AsyncIterator[MetricsServer]:
    async with MetricsServer("127.0.0.1:0", health, read_timeout_seconds=0.5) as running:
        yield running


@pytest.fixture
async def client(server: MetricsServer) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", trust_env=False, timeout=5
    ) as http:
        yield http


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes and read the whole answer (the server closes every connection)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout=5)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()


async def test_metrics_exposes_every_metric_family_with_help_and_type(client: httpx2.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_PLAIN_0_0_4  # what a plain GET is answered
    text = response.text
    for name, kind in {**ORIGINAL_METRICS, **ADDED_METRICS}.items():
        assert f"# HELP {PREFIX}{name} " in text, name
        assert f"# TYPE {PREFIX}{name} {kind}" in text, name
    assert f"{PREFIX}http_events_in_flight_requests 0.0" in text
    assert "process_resident_memory_bytes" in text or "python_info" in text
    assert "_created" not in text  # like the Go original: no *_created series


async def test_probes_follow_the_health_state(
    client: httpx2.AsyncClient, health: Health, clock: FakeClock
) -> None:
    health.beat()

    before_first_poll = await client.get("/readyz")
    assert before_first_poll.status_code == 503
    assert before_first_poll.json()["status"] == "unhealthy"
    assert "first Scheduled Events poll" in before_first_poll.json()["reason"]
    assert (await client.get("/healthz")).json() == {"status": "ok", "reason": "main loop running"}

    health.resource_known("aks-spot-vmss_0")
    health.polled(False, error="IMDS answered 500")
    while_failing = await client.get("/readyz")
    assert while_failing.status_code == 503
    assert "IMDS answered 500" in while_failing.json()["reason"]
    assert (await client.get("/healthz")).status_code == 200

    health.polled(True)
    health.api_server(answers=False, problem="is unreachable: get node n1: connection refused")
    api_away = await client.get("/readyz")
    assert api_away.status_code == 503
    assert api_away.json()["reason"].startswith("Kubernetes API server is unreachable: get node n1")
    assert (await client.get("/healthz")).status_code == 200

    health.api_server(answers=True)
    after = await client.get("/readyz")
    assert after.status_code == 200
    assert after.headers["content-type"] == "application/json"
    assert after.json()["status"] == "ok"

    clock.now += 31  # the loop stopped beating and polling
    stalled = await client.get("/healthz")
    assert stalled.status_code == 503
    assert json.loads(stalled.content) == {"status": "unhealthy", "reason": stalled.json()["reason"]}
    assert "has not beaten" in stalled.json()["reason"]


async def test_index_lists_the_endpoints(client: httpx2.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert all(path in response.text for path in ("/metrics", "/healthz", "/readyz"))


async def test_head_answers_headers_without_body(client: httpx2.AsyncClient) -> None:
    response = await client.head("/healthz")
    assert response.status_code in (200, 503)
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0
    assert response.headers["connection"] == "close"


async def test_unknown_path_is_404_and_query_is_ignored(client: httpx2.AsyncClient) -> None:
    assert (await client.get("/nope")).status_code == 404
    assert (await client.get("/metrics?name[]=x")).status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_are_405(client: httpx2.AsyncClient, method: str) -> None:
    response = await client.request(method, "/healthz")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"garbage\r\n\r\n", b"400"),
        (b"GET /healthz\r\n\r\n", b"400"),
        (b"GET healthz HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/2.0\r\n\r\n", b"505"),
        (b"\xff\xfe /x HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", b"431"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: y\r\n" * 2000 + b"\r\n", b"431"),
    ],
)
async def test_malformed_requests_get_an_error_and_the_server_keeps_serving(
    server: MetricsServer, client: httpx2.AsyncClient, request_bytes: bytes, status: bytes
) -> None:
    answer = await raw_exchange(server.port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]
    assert (await client.get("/metrics")).status_code == 200


async def test_absolute_form_target_is_served(server: MetricsServer) -> None:
    answer = await raw_exchange(server.port, b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_a_silent_client_is_timed_out(server: MetricsServer, client: httpx2.AsyncClient) -> None:
    answer = await raw_exchange(server.port, b"GET /healthz HTTP/1.1\r\n")  # head never ends
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert (await client.get("/healthz")).status_code in (200, 503)


async def test_a_client_that_hangs_up_early_does_not_disturb_the_server(
    server: MetricsServer, client: httpx2.AsyncClient
) -> None:
    for _ in range(20):
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.port), timeout=5)
        writer.write(b"GET /met")
        writer.close()
    assert (await client.get("/metrics")).status_code == 200


async def test_concurrent_scrapes(client: httpx2.AsyncClient) -> None:
    responses = await asyncio.gather(*(client.get("/metrics") for _ in range(20)))
    assert {response.status_code for response in responses} == {200}


async def serving(address: str, health: Health) -> asyncio.Task[None] | None:
    """``serve(address)`` as a task, once this process listens on the address's port; None when the
    port was taken by someone else before ``serve`` could bind it."""
    port = int(address.rpartition(":")[2])
    task = asyncio.create_task(serve(address, health))
    while port not in listening_ports(os.getpid()):
        if task.done():
            error = task.exception()
            if isinstance(error, ConfigError) and port_taken(str(error)):
                return None
            raise AssertionError(f"serve() ended before listening: {error!r}")
        await asyncio.sleep(0.01)
    return task


async def test_serve_runs_until_cancelled_and_frees_the_port(health: Health) -> None:
    for _ in range(PORT_ATTEMPTS):  # a port picked here can be taken before serve() binds it
        port = free_loopback_port()
        task = await serving(f"127.0.0.1:{port}", health)
        if task is not None:
            break
    else:
        pytest.fail(f"every port picked for serve() was taken meanwhile ({PORT_ATTEMPTS} attempts)")
    async with httpx2.AsyncClient(trust_env=False, timeout=5) as http:
        assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert port not in listening_ports(os.getpid())


async def test_a_busy_port_is_a_config_error(server: MetricsServer, health: Health) -> None:
    with pytest.raises(ConfigError, match="cannot listen"):
        await MetricsServer(f"127.0.0.1:{server.port}", health).start()


async def test_ipv6_loopback(health: Health) -> None:
    try:
        server = MetricsServer("[::1]:0", health)
        port = await server.start()
    except ConfigError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        async with httpx2.AsyncClient(trust_env=False, timeout=5) as http:
            assert (await http.get(f"http://[::1]:{port}/healthz")).status_code == 200
    finally:
        await server.stop()


# --- a port anyone on the network can reach ---------------------------------------------------------


async def idle_connections(port: int, count: int) -> list[asyncio.StreamWriter]:
    """``count`` connections that send nothing, each accepted by the server before this returns.

    The kernel hands connections to ``accept`` in the order they were made, so once a request made
    after them is answered, the server has accepted every one of them.
    """
    writers = []
    for _ in range(count):
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout=5)
        writers.append(writer)
    answer = await raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    return writers


@pytest.fixture
async def patient_server(health: Health) -> AsyncIterator[MetricsServer]:
    """A server whose idle connections stay open for the whole test unless the server closes them."""
    async with MetricsServer("127.0.0.1:0", health, read_timeout_seconds=60.0) as running:
        yield running


async def test_idle_connections_beyond_the_cap_do_not_keep_the_probes_out(
    patient_server: MetricsServer, health: Health
) -> None:
    """Three times DEFAULT_MAX_IDLE_CONNECTIONS silent connections: /healthz and /readyz still answer
    (the kubelet's probes get through), and so does a scrape."""
    health.beat()
    port = patient_server.port
    held = await idle_connections(port, 3 * DEFAULT_MAX_IDLE_CONNECTIONS)
    try:
        async with httpx2.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=5
        ) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 503  # answered: not ready, no poll yet
            assert (await http.get("/metrics")).status_code == 200
    finally:
        for writer in held:
            writer.close()


async def test_the_server_closes_the_oldest_idle_connection_to_make_room(
    patient_server: MetricsServer,
) -> None:
    """Over DEFAULT_MAX_IDLE_CONNECTIONS silent connections, the oldest are closed by the server (the
    client reads the end of the stream), so that idle connections cannot pile up."""
    port = patient_server.port
    first, first_writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout=5)
    held = await idle_connections(port, DEFAULT_MAX_IDLE_CONNECTIONS)
    try:
        assert await asyncio.wait_for(first.read(), timeout=5) == b""
    finally:
        for writer in [first_writer, *held]:
            writer.close()


async def test_stopping_with_open_connections_reports_no_error(
    health: Health, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping the server while connections are open ends them quietly: no exception reaches the
    event loop's handler (Python 3.11's asyncio logged a CancelledError traceback per connection
    when the connection's task was cancelled)."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        server = MetricsServer("127.0.0.1:0", health, read_timeout_seconds=60.0)
        port = await server.start()
        held = await idle_connections(port, 3)
        with caplog.at_level(logging.DEBUG):
            await server.stop()
        for writer in held:
            writer.close()
    finally:
        loop.set_exception_handler(previous)
    assert reported == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# --- content negotiation: what prometheus_client's own exposition offers ----------------------------


async def test_metrics_are_served_as_openmetrics_when_the_scraper_asks(server: MetricsServer) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    async with httpx2.AsyncClient(trust_env=False, timeout=5) as http:
        response = await http.get(f"http://127.0.0.1:{server.port}/metrics", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.text.endswith("# EOF\n")
    assert f"# TYPE {PREFIX}evictions counter" in response.text


async def test_metrics_are_gzipped_when_the_scraper_accepts_gzip(server: MetricsServer) -> None:
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"
    answer = await raw_exchange(server.port, head)
    headers, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\ncontent-encoding: gzip" in headers.lower()
    assert int(headers.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) == len(body)
    assert f"# HELP {PREFIX}build_info ".encode() in gzip.decompress(body)


async def test_metrics_without_accept_headers_are_plain_prometheus_text(server: MetricsServer) -> None:
    answer = await raw_exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    headers, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8" in headers.lower()
    assert b"content-encoding" not in headers.lower()
    assert f"# TYPE {PREFIX}build_info gauge".encode() in body


async def test_a_server_on_port_0_names_the_port_the_kernel_picked(
    health: Health, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aksnth.observe.server")
    async with MetricsServer("127.0.0.1:0", health) as running:
        port = running.port
    [record] = [r for r in caplog.records if r.getMessage() == "metrics and health server listening"]
    assert port > 0 and record.address == f"127.0.0.1:{port}"  # type: ignore[attr-defined]
