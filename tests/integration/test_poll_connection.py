"""The Scheduled Events poll on its own connection, against real HTTP servers on loopback.

A tiny asyncio server answers each request with the next reply of a script (well-behaved answers,
and the misbehaviour a careful client must survive), and counts the connections it accepted and
still holds, so that reuse and closing are seen from the server's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import socket
import struct
import termios
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aksnth import __version__
from aksnth.azure.documents import MAX_DOCUMENT_BYTES
from aksnth.azure.firstpoll import send_first_poll
from aksnth.azure.imds import ERROR_BODY_BYTES, METADATA_HEADERS, ImdsClient
from aksnth.azure.pollconn import PollConnection
from aksnth.config import ImdsSettings
from aksnth.errors import ImdsDocumentError, ImdsUnavailable
from aksnth.observe.httpmetrics import InstrumentedTransport, path_label
from imds_simulator import ImdsSimulator
from testkit.ports import free_loopback_port

PATH = "/metadata/scheduledevents?api-version=2020-07-01"
DOCUMENT = json.dumps({"DocumentIncarnation": 7, "Events": []}).encode()

# A reply writes an answer (or misbehaves) and says whether the connection stays open.
Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


def answer(
    status: int = 200,
    body: bytes = DOCUMENT,
    *,
    reason: str = "OK",
    headers: dict[str, str] | None = None,
    close: bool = False,
) -> Reply:
    async def reply(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if close:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return not close

    return reply


def raw(data: bytes) -> Reply:
    """Write ``data`` as it is, then hang up."""

    async def reply(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        await writer.drain()
        return False

    return reply


async def hang_up(_: asyncio.StreamReader, __: asyncio.StreamWriter) -> bool:
    """Read the request, answer nothing, close: what a server closing an idle connection looks like."""
    return False


async def reset(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Answer nothing and end the connection with a TCP RST."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    return False


def stall_after(data: bytes) -> Reply:
    """Write ``data`` (maybe nothing, maybe half an answer), then wait until the client goes away."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        await writer.drain()
        while await reader.read(1024):
            pass
        return False

    return reply


async def endless_chunks(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """A chunked 200 body that never ends, until the client stops reading and hangs up."""
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
    try:
        for _ in range(10_000):  # 160 MiB at most: a bound, should the client not stop reading
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    return False


class ScriptedServer:
    """Answers request i with ``replies[i]`` (then with the document); counts connections."""

    def __init__(self, replies: list[Reply] | None = None) -> None:
        self.replies = list(replies or [])
        self.requests: list[bytes] = []
        self.accepted = 0
        self.open = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, host="127.0.0.1", port=0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(head)
                await self._notify()
                reply = self.replies.pop(0) if self.replies else answer()
                if not await reply(reader, writer):
                    return
        finally:
            self.open -= 1
            writer.close()
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], *, within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_until_all_closed(self) -> None:
        """Bounded wait for the server to see every connection end."""
        await self.wait_for(lambda: not self.open)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    async with ScriptedServer() as running:
        yield running


def settings_for(url: str, *, timeout: float = 2.0) -> ImdsSettings:
    return ImdsSettings(
        endpoint=url,
        poll_interval_seconds=1.0,
        request_timeout_seconds=timeout,
        first_request_timeout_seconds=timeout,  # no longer wait for a first answer here
    )


def isolated_transport(registry: CollectorRegistry) -> InstrumentedTransport:
    """An instrumented httpx2 transport as imds_transport() builds it, recording into ``registry``."""
    return InstrumentedTransport(
        httpx2.AsyncHTTPTransport(),
        in_flight=Gauge("http_events_in_flight_requests", "h", registry=registry),
        requests=Counter(
            "http_events_requests_total", "h", ["code", "method", "endpoint"], registry=registry
        ),
        duration=Histogram("http_events_request_duration_seconds", "h", ["method"], registry=registry),
        endpoint_label=path_label,
    )


async def poll(imds: ImdsClient) -> int:
    return (await imds.fetch_document()).incarnation


# --- reuse ---------------------------------------------------------------------------------------


async def test_one_connection_carries_every_poll_and_is_closed_with_the_client(
    server: ScriptedServer,
) -> None:
    async with ImdsClient(settings_for(server.url)) as imds:
        for _ in range(30):
            assert await poll(imds) == 7
        assert (server.accepted, server.open, len(server.requests)) == (1, 1, 30)
    await server.wait_until_all_closed()


async def test_the_request_carries_the_metadata_headers_and_host_only(server: ScriptedServer) -> None:
    async with ImdsClient(settings_for(server.url)) as imds:
        await poll(imds)
    request_line, *header_lines = server.requests[0].decode().strip().split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert request_line == f"GET {PATH} HTTP/1.1"
    assert headers == {
        "Host": f"127.0.0.1:{server.port}",
        "Metadata": "true",
        "User-Agent": f"aks-node-termination-handler/{__version__}",
    }
    assert headers.items() >= METADATA_HEADERS.items()


async def test_concurrent_polls_take_turns_on_the_one_connection(server: ScriptedServer) -> None:
    async with ImdsClient(settings_for(server.url)) as imds:
        assert await asyncio.gather(*(poll(imds) for _ in range(5))) == [7] * 5
    assert (server.accepted, len(server.requests)) == (1, 5)


async def test_an_environment_proxy_is_never_used(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nothing listens there
    async with ImdsClient(settings_for(server.url)) as imds:
        assert await poll(imds) == 7
    assert len(server.requests) == 1


async def test_an_ipv6_literal_endpoint() -> None:
    try:
        with ImdsSimulator(host="::1") as sim:
            async with ImdsClient(settings_for(sim.scheduled_events_url)) as imds:
                assert await poll(imds) == 1
            (request,) = sim.requests
    except OSError as exc:  # no IPv6 loopback on this machine
        pytest.skip(f"no IPv6 loopback: {exc}")
    assert sim.scheduled_events_url.startswith("http://[::1]:")
    assert request.headers["Host"] == f"[::1]:{sim.port}"


# --- connections the server ends ------------------------------------------------------------------


async def test_a_connection_the_server_closed_while_idle_is_replaced(server: ScriptedServer) -> None:
    server.replies = [answer(), hang_up]  # the second request finds the connection closed
    async with ImdsClient(settings_for(server.url)) as imds:
        assert await poll(imds) == 7
        assert await poll(imds) == 7  # retried once on a new connection: no error
        assert await poll(imds) == 7
    # the GET that met the closed connection was sent again, once
    assert (server.accepted, len(server.requests)) == (2, 4)


@pytest.mark.parametrize("idle_end", [hang_up, reset], ids=["closed", "reset"])
async def test_an_idle_connection_ended_before_the_next_poll_is_not_used(
    server: ScriptedServer, idle_end: Reply
) -> None:
    async def answer_then_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await answer()(reader, writer)
        return await idle_end(reader, writer)

    server.replies = [answer_then_end]
    async with ImdsClient(settings_for(server.url)) as imds:
        assert await poll(imds) == 7
        await server.wait_until_all_closed()
        await asyncio.sleep(0.05)  # the end of the connection reaches the client's loop
        assert await poll(imds) == 7
    assert (server.accepted, len(server.requests)) == (2, 2)


IDLE_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


async def delivered(writer: asyncio.StreamWriter, *, within: float = 5.0) -> None:
    """Wait until the peer's TCP has acknowledged every byte written (the kernel's send queue,
    TIOCOUTQ, is empty): the bytes are in the client's socket, whether it has read them or not."""
    sock = writer.get_extra_info("socket")
    async with asyncio.timeout(within):
        # Polled: the kernel's send queue draining is no event a coroutine can wait on.
        while struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]:  # noqa: ASYNC110
            await asyncio.sleep(0.001)


@pytest.mark.parametrize("then", ["kept-open", "closed"])
async def test_an_answer_sent_while_idle_is_not_taken_for_the_next_polls(
    server: ScriptedServer, then: str
) -> None:
    """A server that sends a 408 on an idle kept-alive connection (and closes it, or not yet) has
    put bytes in the socket that answer no request of ours. The next poll sees them there and takes
    a new connection, instead of sending its GET and reading the 408 as the answer."""
    idle, sent = asyncio.Event(), asyncio.Event()

    async def answer_then_idle_timeout(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await answer()(reader, writer)
        await idle.wait()  # the client has read the answer: the connection is idle
        writer.write(IDLE_TIMEOUT_ANSWER)
        await writer.drain()
        await delivered(writer)
        sent.set()
        if then == "closed":
            return False
        with contextlib.suppress(ConnectionError):
            while await reader.read(1024):  # anything sent here now is out of step: not answered
                pass
        return False

    server.replies = [answer_then_idle_timeout]
    async with ImdsClient(settings_for(server.url)) as imds:
        assert await poll(imds) == 7
        idle.set()
        await sent.wait()
        assert await poll(imds) == 7
        assert await poll(imds) == 7
    assert (server.accepted, len(server.requests)) == (2, 3)


async def test_a_reset_kept_connection_is_retried_once(server: ScriptedServer) -> None:
    server.replies = [answer(), reset]
    async with ImdsClient(settings_for(server.url)) as imds:
        assert await poll(imds) == 7
        assert await poll(imds) == 7
    assert (server.accepted, len(server.requests)) == (2, 3)


async def test_a_new_connection_ended_without_an_answer_is_an_error_not_retried(
    server: ScriptedServer,
) -> None:
    server.replies = [hang_up]
    async with ImdsClient(settings_for(server.url)) as imds:
        with pytest.raises(ImdsUnavailable, match="server disconnected without sending a response") as caught:
            await poll(imds)
        assert caught.value.status is None
        assert str(caught.value).startswith(f"GET {server.url}: ")
        assert await poll(imds) == 7
    assert len(server.requests) == 2


async def test_the_retry_happens_once(server: ScriptedServer) -> None:
    server.replies = [answer(), hang_up, hang_up]
    async with ImdsClient(settings_for(server.url)) as imds:
        assert await poll(imds) == 7
        with pytest.raises(ImdsUnavailable, match="server disconnected without sending a response"):
            await poll(imds)
    assert len(server.requests) == 3


async def test_connection_close_answers_end_the_connection(server: ScriptedServer) -> None:
    server.replies = [answer(close=True), answer(close=True), answer()]
    async with ImdsClient(settings_for(server.url)) as imds:
        for _ in range(4):
            assert await poll(imds) == 7
    assert (server.accepted, len(server.requests)) == (3, 4)
    await server.wait_until_all_closed()


async def test_an_answer_delimited_by_the_end_of_the_connection(server: ScriptedServer) -> None:
    server.replies = [raw(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + DOCUMENT)]
    async with ImdsClient(settings_for(server.url)) as imds:
        assert await poll(imds) == 7
        assert await poll(imds) == 7
    assert server.accepted == 2


async def test_nothing_listening(server: ScriptedServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}{PATH}"
    async with ImdsClient(settings_for(url)) as imds:
        with pytest.raises(ImdsUnavailable, match=r"ConnectError: .*(refused|failed)") as caught:
            await poll(imds)
    assert caught.value.status is None


# --- broken answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + DOCUMENT),
            "RemoteProtocolError: peer closed",
        ),
        (raw(b"HTTP/1.1 200 OK\r\nContent-Le"), "RemoteProtocolError"),
        (raw(b"<html>not http</html>\r\n\r\n"), "RemoteProtocolError"),
        (raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), "RemoteProtocolError"),
        (raw(b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"x" * 70_000 + b"\r\n\r\n"), "RemoteProtocolError"),
    ],
    ids=["truncated-body", "truncated-head", "not-http", "bad-chunk", "endless-head"],
)
async def test_truncated_or_garbled_answers_then_a_clean_poll(
    server: ScriptedServer, reply: Reply, expected: str
) -> None:
    server.replies = [answer(), reply]
    async with ImdsClient(settings_for(server.url)) as imds:
        assert await poll(imds) == 7
        with pytest.raises(ImdsUnavailable, match=expected) as caught:
            await poll(imds)
        assert str(caught.value).startswith(f"GET {server.url}: ")
        assert caught.value.status is None
        assert await poll(imds) == 7
    assert server.accepted == 2
    await server.wait_until_all_closed()


async def test_a_declared_oversized_body_is_refused_before_it_is_read(server: ScriptedServer) -> None:
    declared = MAX_DOCUMENT_BYTES + 1
    server.replies = [stall_after(f"HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\n\r\n".encode())]
    async with ImdsClient(settings_for(server.url)) as imds:
        with pytest.raises(
            ImdsDocumentError, match=f"declares {declared} bytes, more than the {MAX_DOCUMENT_BYTES}"
        ):
            await poll(imds)
        assert await poll(imds) == 7
    assert server.accepted == 2
    await server.wait_until_all_closed()


async def test_an_endless_body_is_cut_at_the_cap(server: ScriptedServer) -> None:
    server.replies = [endless_chunks]
    async with ImdsClient(settings_for(server.url, timeout=10)) as imds:
        with pytest.raises(ImdsDocumentError, match=f"longer than the {MAX_DOCUMENT_BYTES} bytes accepted"):
            await poll(imds)
        assert await poll(imds) == 7
    assert server.accepted == 2
    await server.wait_until_all_closed()


# --- error statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "headers", "retry_after"),
    [
        (410, "Gone", {}, None),
        (429, "Too Many Requests", {"Retry-After": "7"}, 7.0),
        (503, "Service Unavailable", {"Retry-After": "2"}, 2.0),
        (500, "Internal Server Error", {}, None),
    ],
)
async def test_error_statuses_keep_status_reason_excerpt_and_retry_after(
    server: ScriptedServer, status: int, reason: str, headers: dict[str, str], retry_after: float | None
) -> None:
    body = json.dumps({"error": f"injected {status}"}).encode()
    server.replies = [answer(status, body, reason=reason, headers=headers)]
    async with ImdsClient(settings_for(server.url)) as imds:
        with pytest.raises(ImdsUnavailable) as caught:
            await poll(imds)
        assert await poll(imds) == 7
    assert (
        str(caught.value) == f'GET {server.url}: HTTP {status} {reason}: \'{{"error": "injected {status}"}}\''
    )
    assert (caught.value.status, caught.value.retry_after_seconds) == (status, retry_after)
    assert server.accepted == 1  # a small error body is read whole: the connection is kept


async def test_an_empty_reason_is_filled_in(server: ScriptedServer) -> None:
    server.replies = [answer(503, b"", reason="")]
    async with ImdsClient(settings_for(server.url)) as imds:
        with pytest.raises(
            ImdsUnavailable, match=r"scheduledevents\?api-version=2020-07-01: HTTP 503 Service Unavailable$"
        ):
            await poll(imds)


async def test_a_long_error_body_is_quoted_in_part_and_its_connection_dropped(server: ScriptedServer) -> None:
    server.replies = [answer(500, b"E" * (ERROR_BODY_BYTES * 4), reason="Internal Server Error")]
    async with ImdsClient(settings_for(server.url)) as imds:
        with pytest.raises(ImdsUnavailable, match=r"HTTP 500 Internal Server Error: 'E+'…$") as caught:
            await poll(imds)
        assert len(str(caught.value)) < ERROR_BODY_BYTES
        assert await poll(imds) == 7
    assert server.accepted == 2


# --- timeouts -------------------------------------------------------------------------------------


async def test_a_timeout_mid_body_closes_the_connection_and_the_next_poll_is_clean(
    server: ScriptedServer,
) -> None:
    half = DOCUMENT[: len(DOCUMENT) // 2]
    server.replies = [
        stall_after(f"HTTP/1.1 200 OK\r\nContent-Length: {len(DOCUMENT)}\r\n\r\n".encode() + half)
    ]
    async with ImdsClient(settings_for(server.url, timeout=0.3)) as imds:
        with pytest.raises(ImdsUnavailable, match=r"no complete answer within 0.3s") as caught:
            await poll(imds)
        assert caught.value.status is None
        await server.wait_until_all_closed()  # the stalled connection was closed by the client
        assert await poll(imds) == 7
    assert server.accepted == 2
    await server.wait_until_all_closed()


async def test_a_cancelled_poll_closes_the_connection(server: ScriptedServer) -> None:
    server.replies = [stall_after(b"")]
    async with ImdsClient(settings_for(server.url)) as imds:
        task = asyncio.create_task(poll(imds))
        await server.wait_for(lambda: bool(server.requests))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.wait_until_all_closed()
        assert await poll(imds) == 7


async def test_closing_the_client_during_a_first_poll_leaves_no_connection(server: ScriptedServer) -> None:
    server.replies = [stall_after(b"")]
    imds = ImdsClient(settings_for(server.url))
    imds.start_first_poll()
    await server.wait_for(lambda: bool(server.requests))
    assert server.open == 1
    await imds.aclose()
    await server.wait_until_all_closed()


# --- metrics --------------------------------------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# One of each outcome the transport distinguishes.
SCRIPT: list[Callable[[], Reply]] = [
    answer,
    answer,
    lambda: answer(500, b"{}", reason="Internal Server Error"),
    lambda: answer(429, b"{}", reason="Too Many Requests", headers={"Retry-After": "1"}),
    lambda: answer(410, b"", reason="Gone"),
    lambda: stall_after(b""),  # abandoned at the request timeout (1 s): "cancelled"
    lambda: raw(b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n{"),  # answered, then cut short: "200"
    answer,
]


def exposed(registry: CollectorRegistry) -> Samples:
    """Every sample; durations are timing, so of the histogram only the count and the label sets."""
    found = {}
    for family in registry.collect():
        for sample in family.samples:
            timed = sample.name.endswith(("_sum", "_bucket", "_created"))
            found[sample.name, tuple(sorted(sample.labels.items()))] = -1.0 if timed else sample.value
    return found


async def record_script(*, own_connection: bool) -> Samples:
    """Poll through the script, then once where nothing listens ("error"); what was recorded."""
    registry = CollectorRegistry()
    transport = isolated_transport(registry)
    # Given the transport, ImdsClient polls on its own connection; without it, through the client,
    # whose transport records as the handler's did before the poll had a connection of its own.
    poll_transport = transport if own_connection else None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}{PATH}"
    async with (
        ScriptedServer([reply() for reply in SCRIPT]) as server,
        httpx2.AsyncClient(transport=transport, trust_env=False) as http,
    ):
        for url, polls in ((server.url, len(SCRIPT)), (nowhere, 1)):
            async with ImdsClient(
                settings_for(url, timeout=1.0), client=http, poll_transport=poll_transport
            ) as imds:
                for _ in range(polls):
                    with contextlib.suppress(ImdsUnavailable, ImdsDocumentError):
                        await poll(imds)
    return exposed(registry)


async def test_the_poll_records_the_same_samples_as_through_the_instrumented_transport() -> None:
    own = await record_script(own_connection=True)
    through_httpx2 = await record_script(own_connection=False)
    assert own == through_httpx2
    codes = {dict(labels)["code"]: value for (name, labels), value in own.items() if name.endswith("_total")}
    assert codes == {"200": 4, "500": 1, "429": 1, "410": 1, "cancelled": 1, "error": 1}
    assert own["http_events_request_duration_seconds_count", (("method", "get"),)] == 7  # answered ones
    assert own["http_events_in_flight_requests", ()] == 0


# --- the connection alone -------------------------------------------------------------------------


def test_only_plain_http() -> None:
    with pytest.raises(ValueError, match="plain http only"):
        PollConnection(
            "https://169.254.169.254/metadata/scheduledevents",
            headers={},
            max_body_bytes=1,
            error_body_bytes=1,
        )


async def test_a_closed_connection_is_not_used_again(server: ScriptedServer) -> None:
    connection = PollConnection(
        server.url, headers=METADATA_HEADERS, max_body_bytes=MAX_DOCUMENT_BYTES, error_body_bytes=64
    )
    assert (await connection.fetch()).status == 200
    await connection.aclose()
    await server.wait_until_all_closed()
    with pytest.raises(RuntimeError, match="closed"):
        await connection.fetch()


# --- the first poll, sent before the event loop runs (aksnth.azure.firstpoll) ----------------------


async def test_the_early_get_is_the_same_request_the_poll_connection_sends(server: ScriptedServer) -> None:
    """The GET written before the libraries are loaded is, byte for byte, the poll connection's."""
    connection = PollConnection(
        server.url, headers=METADATA_HEADERS, max_body_bytes=MAX_DOCUMENT_BYTES, error_body_bytes=64
    )
    try:
        await connection.fetch()
    finally:
        await connection.aclose()
    sent = send_first_poll(server.url)
    assert sent is not None
    try:
        await server.wait_for(lambda: len(server.requests) == 2)
    finally:
        sent.close()
    assert server.requests[1] == server.requests[0]


async def test_the_first_document_is_read_from_the_socket_sent_before_the_loop(
    server: ScriptedServer,
) -> None:
    """``send_first_poll`` connects and writes the GET synchronously (the server has not even
    accepted yet); the client given that socket reads its answer as the first document, without a
    second GET, and keeps the connection for the next poll."""
    sent = send_first_poll(server.url)
    assert sent is not None
    async with ImdsClient(settings_for(server.url)) as imds:
        imds.start_first_poll(sent)
        assert await poll(imds) == 7
        assert (server.accepted, len(server.requests)) == (1, 1)
        assert await poll(imds) == 7
        assert (server.accepted, len(server.requests)) == (1, 2)


async def test_a_socket_sent_before_the_loop_and_hung_up_on_is_replaced_once() -> None:
    """When the server closes the early connection without answering, the GET (idempotent) goes out
    once more on a new connection, and its answer is the first document."""
    async with ScriptedServer([hang_up]) as server:
        sent = send_first_poll(server.url)
        assert sent is not None
        async with ImdsClient(settings_for(server.url)) as imds:
            imds.start_first_poll(sent)
            assert await poll(imds) == 7
        assert (server.accepted, len(server.requests)) == (2, 2)


def test_no_early_poll_without_an_ip_address_over_plain_http_that_accepts_at_once() -> None:
    """A host name (a DNS lookup would block the start), https, or a refused connection: nothing is
    sent early, and the usual first poll does the work."""
    port = free_loopback_port()
    assert send_first_poll(f"http://localhost:{port}{PATH}") is None
    assert send_first_poll(f"https://127.0.0.1:{port}{PATH}") is None
    assert send_first_poll(f"http://127.0.0.1:{port}{PATH}") is None
