"""InstrumentedTransport around a real httpx2 transport, against real HTTP servers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aksnth.observe.httpmetrics import InstrumentedTransport, imds_transport, origin_label, webhook_transport
from aksnth.observe.metrics import HTTP_EVENTS_REQUESTS, HTTP_WEBHOOK_IN_FLIGHT, HTTP_WEBHOOK_REQUESTS

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def loopback_server(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, host="127.0.0.1", port=0)
    return server, server.sockets[0].getsockname()[1]


def http_answer(status: int, body: bytes = b"ok") -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


class Receiver:
    """Answers /status/<code> with that code; holds /hold until released; hangs up on /hangup."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            path = head.split(b" ")[1].decode().split("?", 1)[0]
            if path.startswith("/hangup"):
                return
            if path.startswith("/hold"):
                await asyncio.wait_for(self.release.wait(), timeout=10)
            code = int(path.rsplit("/", 1)[1]) if "/status/" in path else 200
            writer.write(http_answer(code))
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    handler = Receiver()
    server, port = await loopback_server(handler)
    async with server:
        yield handler, port


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def transport(registry: CollectorRegistry) -> InstrumentedTransport:
    return InstrumentedTransport(
        httpx2.AsyncHTTPTransport(),
        in_flight=Gauge("t_in_flight", "h", registry=registry),
        requests=Counter("t_requests", "h", ["code", "method", "endpoint"], registry=registry),
        duration=Histogram("t_duration_seconds", "h", ["method"], registry=registry),
        endpoint_label=origin_label,
    )


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_counts_codes_methods_and_network_errors(
    receiver: tuple[Receiver, int], transport: InstrumentedTransport, registry: CollectorRegistry
) -> None:
    _, port = receiver
    origin = f"http://127.0.0.1:{port}"
    async with httpx2.AsyncClient(transport=transport, trust_env=False, timeout=5) as client:
        assert (await client.get(f"{origin}/status/200")).status_code == 200
        assert (await client.post(f"{origin}/status/503", content=b"{}")).status_code == 503
        assert (
            await client.post(f"http://user:s3cret@127.0.0.1:{port}/bot1:x/status/429")
        ).status_code == 429
        with pytest.raises(httpx2.TransportError):
            await client.get(f"{origin}/hangup")

    def requests(code: str, method: str) -> float:
        return sample(registry, "t_requests_total", code=code, method=method, endpoint=origin)

    # Method labels in lower case and durations of answered requests only, as the Go version's
    # round-tripper middleware recorded them; a request without an answer is counted as "error".
    assert requests("200", "get") == 1
    assert requests("503", "post") == 1
    assert requests("429", "post") == 1
    assert requests("error", "get") == 1
    assert sample(registry, "t_duration_seconds_count", method="get") == 1
    assert sample(registry, "t_duration_seconds_count", method="post") == 2
    assert sample(registry, "t_in_flight") == 0
    exposed = {s.labels.get("endpoint") for m in registry.collect() for s in m.samples}
    assert not any("s3cret" in str(endpoint) or "bot" in str(endpoint) for endpoint in exposed)


async def test_in_flight_rises_while_waiting_and_falls_after(
    receiver: tuple[Receiver, int], transport: InstrumentedTransport, registry: CollectorRegistry
) -> None:
    handler, port = receiver
    async with httpx2.AsyncClient(transport=transport, trust_env=False, timeout=10) as client:
        pending = asyncio.gather(*(client.get(f"http://127.0.0.1:{port}/hold") for _ in range(3)))
        for _ in range(500):  # bounded wait for all three to be on the wire
            if sample(registry, "t_in_flight") == 3:
                break
            await asyncio.sleep(0.01)
        assert sample(registry, "t_in_flight") == 3
        handler.release.set()
        responses = await pending
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert sample(registry, "t_in_flight") == 0


async def test_cancelled_request_is_counted_and_in_flight_released(
    receiver: tuple[Receiver, int], transport: InstrumentedTransport, registry: CollectorRegistry
) -> None:
    handler, port = receiver
    async with httpx2.AsyncClient(transport=transport, trust_env=False, timeout=10) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.get(f"http://127.0.0.1:{port}/hold")
    handler.release.set()  # let the receiver finish its side before the server closes
    endpoint = f"http://127.0.0.1:{port}"
    assert sample(registry, "t_requests_total", code="cancelled", method="get", endpoint=endpoint) == 1
    assert sample(registry, "t_in_flight") == 0


async def test_factories_wire_the_shared_metrics(receiver: tuple[Receiver, int]) -> None:
    _, port = receiver
    imds_labels = {"code": "200", "method": "get", "endpoint": "/status/200"}
    webhook_labels = {"code": "204", "method": "post", "endpoint": f"http://127.0.0.1:{port}"}
    imds_before = HTTP_EVENTS_REQUESTS.labels(**imds_labels)._value.get()
    webhook_before = HTTP_WEBHOOK_REQUESTS.labels(**webhook_labels)._value.get()

    async with httpx2.AsyncClient(transport=imds_transport(), trust_env=False, timeout=5) as imds:
        await imds.get(f"http://127.0.0.1:{port}/status/200?api-version=2020-07-01")
    async with httpx2.AsyncClient(transport=webhook_transport(), trust_env=False, timeout=5) as webhook:
        await webhook.post(f"http://127.0.0.1:{port}/status/204")

    assert HTTP_EVENTS_REQUESTS.labels(**imds_labels)._value.get() == imds_before + 1
    assert HTTP_WEBHOOK_REQUESTS.labels(**webhook_labels)._value.get() == webhook_before + 1
    assert HTTP_WEBHOOK_IN_FLIGHT._value.get() == 0
