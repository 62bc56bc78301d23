"""Endpoint labels carry no secret; ApiServerMetrics counts by cluster and code whichever hook is used."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aksnth.errors import KubeUnavailable
from aksnth.observe.httpmetrics import ApiServerMetrics, origin_label, path_label


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.telegram.org/bot123456:AAH-secret-token/sendMessage", "https://api.telegram.org"),
        ("http://user:s3cret@hooks.example.com:8080/path?token=x", "http://hooks.example.com:8080"),
        ("https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com"),
        ("http://[::1]:9091/metrics/job/x", "http://[::1]:9091"),
        ("https://example.com:443/x", "https://example.com"),
    ],
)
def test_origin_label_keeps_only_scheme_host_and_port(url: str, expected: str) -> None:
    assert origin_label(httpx2.URL(url)) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "http://127.0.0.1/metadata/scheduledevents?api-version=2020-07-01",
            "/metadata/scheduledevents",
        ),
        ("http://127.0.0.1:8080", "/"),
    ],
)
def test_path_label_drops_the_query(url: str, expected: str) -> None:
    assert path_label(httpx2.URL(url)) == expected


class Steps:
    """A clock that advances by a fixed step each time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> ApiServerMetrics:
    requests = Counter("apiserver_request", "h", ["cluster", "code"], registry=registry)
    duration = Histogram("apiserver_request_duration", "h", ["cluster"], registry=registry)
    reachable = Gauge("apiserver_reachable", "h", registry=registry)
    return ApiServerMetrics(
        "aks-prod", requests=requests, duration=duration, reachable=reachable, clock=Steps(0.25)
    )


def reachable(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("apiserver_reachable")


def count(registry: CollectorRegistry, code: str) -> float:
    value = registry.get_sample_value("apiserver_request_total", {"cluster": "aks-prod", "code": code})
    return value or 0.0


def duration_sum(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("apiserver_request_duration_sum", {"cluster": "aks-prod"}) or 0.0


def answer(request: httpx2.Request) -> httpx2.Response:
    if request.url.path == "/down":
        raise httpx2.ConnectError("connection refused", request=request)
    if request.url.path == "/behind-a-proxy":  # the proxy answers: the API server did not
        return httpx2.Response(502)
    return httpx2.Response(404 if request.url.path == "/missing" else 200)


async def test_transport_counts_codes_and_network_errors(
    metrics: ApiServerMetrics, registry: CollectorRegistry
) -> None:
    transport = metrics.transport(httpx2.MockTransport(answer))
    async with httpx2.AsyncClient(transport=transport, base_url="https://kube.test") as client:  # type: ignore[arg-type]
        await client.get("/api/v1/nodes/n1")
        await client.get("/missing")
        with pytest.raises(httpx2.ConnectError):
            await client.get("/down")
    assert (count(registry, "200"), count(registry, "404"), count(registry, "<error>")) == (1, 1, 1)
    assert duration_sum(registry) == pytest.approx(0.75)


async def test_event_hooks_count_answered_requests(
    metrics: ApiServerMetrics, registry: CollectorRegistry
) -> None:
    async with httpx2.AsyncClient(
        transport=httpx2.MockTransport(answer),
        base_url="https://kube.test",
        event_hooks=metrics.event_hooks(),
    ) as client:
        await client.get("/ok")
        await client.get("/missing")
    assert (count(registry, "200"), count(registry, "404")) == (1, 1)
    assert duration_sum(registry) == pytest.approx(0.5)


async def test_measure_uses_the_status_of_a_kube_error(
    metrics: ApiServerMetrics, registry: CollectorRegistry
) -> None:
    with pytest.raises(KubeUnavailable), metrics.measure():
        raise KubeUnavailable("API server answered 503", status=503)
    with pytest.raises(OSError), metrics.measure():
        raise OSError("no route to host")
    with metrics.measure():
        pass
    with metrics.measure() as call:
        call.code = 201
    assert [count(registry, code) for code in ("503", "<error>", "200", "201")] == [1, 1, 1, 1]


async def test_measure_counts_a_cancelled_call_as_client_go_error_and_lets_cancellation_through(
    metrics: ApiServerMetrics, registry: CollectorRegistry
) -> None:
    entered = asyncio.Event()

    async def call() -> None:
        with metrics.measure():
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(call())
    await asyncio.wait_for(entered.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert count(registry, "<error>") == 1  # client-go (the Go version) has no other code for it


async def test_transport_works_with_httpx2_the_kubernetes_clients_stack(
    metrics: ApiServerMetrics, registry: CollectorRegistry
) -> None:
    httpx2 = pytest.importorskip("httpx2")
    transport = metrics.transport(httpx2.MockTransport(lambda request: httpx2.Response(409)))
    async with httpx2.AsyncClient(transport=transport, base_url="https://kube.test") as client:
        await client.patch("/api/v1/nodes/n1", json={})
    assert count(registry, "409") == 1


async def test_reachable_follows_whether_the_last_request_got_an_answer(
    metrics: ApiServerMetrics, registry: CollectorRegistry
) -> None:
    """apiserver_reachable: 0 until an answer, 1 after any answer of the API server (an error status
    too), 0 after a request that got none or only a gateway's 502/504; a request the handler
    abandoned says nothing about the server."""
    assert reachable(registry) == 0
    transport = metrics.transport(httpx2.MockTransport(answer))
    async with httpx2.AsyncClient(transport=transport, base_url="https://kube.test") as client:  # type: ignore[arg-type]
        await client.get("/api/v1/nodes/n1")
        assert reachable(registry) == 1
        with pytest.raises(httpx2.ConnectError):
            await client.get("/down")
        assert reachable(registry) == 0
        await client.get("/missing")
        assert reachable(registry) == 1
        await client.get("/behind-a-proxy")
        assert reachable(registry) == 0
        await client.get("/missing")
    with pytest.raises(KubeUnavailable), metrics.measure():
        raise KubeUnavailable("API server answered 503", status=503)
    assert reachable(registry) == 1

    async def abandoned() -> None:
        with metrics.measure():
            await asyncio.Event().wait()

    with pytest.raises(OSError), metrics.measure():
        raise OSError("no route to host")
    task = asyncio.create_task(abandoned())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reachable(registry) == 0  # as the unanswered request before it left it
