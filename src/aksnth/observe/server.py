"""The metrics and health HTTP server: ``/metrics``, ``/healthz``, ``/readyz`` and a tiny index.

Read-only by construction: GET and HEAD only, no endpoint changes anything. The HTTP/1.1 parsing is
deliberately minimal and defensive (bounded request head, timeouts, one request per connection,
``Connection: close``), because the port is reachable from the pod network (and the node network
with ``hostNetwork``) and the handler must keep working whatever a client sends.

Whoever reaches the port must not be able to fail the kubelet's probes. Every request that arrives
is read and answered; what is bounded is the number of connections that have not sent a whole
request head yet. Over that bound the *oldest* of them is closed to make room, never the newcomer:
a probe sends its request as soon as it is connected, so a crowd of silent connections cannot keep
it out. An answer is quick (a small body, a bounded write), so answered connections do not pile up.

``/metrics`` negotiates as prometheus_client's own exposition does: OpenMetrics when the scraper
asks for it (``Accept``), gzip when it accepts it (``Accept-Encoding``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from aksnth.errors import ConfigError
from aksnth.observe.health import Health, Verdict

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD_BYTES = 8192
DEFAULT_READ_TIMEOUT_SECONDS = 5.0
DEFAULT_WRITE_TIMEOUT_SECONDS = 10.0
# Connections still waiting for their request head; a newcomer over this closes the oldest of them.
DEFAULT_MAX_IDLE_CONNECTIONS = 32
STOP_TIMEOUT_SECONDS = 5.0

_INDEX = b"""<!doctype html>
<html><head><title>aks-node-termination-handler</title></head><body>
<h1>aks-node-termination-handler</h1>
<ul>
<li><a href="/metrics">/metrics</a>: Prometheus metrics</li>
<li><a href="/healthz">/healthz</a>: liveness (the main loop is running)</li>
<li><a href="/readyz">/readyz</a>: readiness (Scheduled Events are being read)</li>
</ul></body></html>
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenAddress:
    """A parsed Go-style listen address; ``host`` None means every interface."""

    host: str | None
    port: int

    def __str__(self) -> str:
        if self.host is None:
            return f":{self.port}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen_address(address: str) -> ListenAddress:
    """Parse ``:17923``, ``127.0.0.1:17923``, ``[::1]:17923`` or ``localhost:17923`` (Go's form)."""
    problem = f"-web.address {address!r}: "
    if address.startswith("["):
        close = address.find("]")
        if close < 0 or not address[close + 1 :].startswith(":"):
            raise ConfigError(problem + "expected [IPv6]:port, e.g. [::1]:17923")
        host, port_text = address[1:close], address[close + 2 :]
        if not host:
            raise ConfigError(problem + "empty IPv6 address in brackets")
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep:
            raise ConfigError(problem + "missing port; expected host:port or :port, e.g. :17923")
        if ":" in host:
            raise ConfigError(problem + "an IPv6 address must be in brackets, e.g. [::1]:17923")
    if not port_text.isascii() or not port_text.isdigit():
        raise ConfigError(problem + f"port {port_text!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise ConfigError(problem + f"port {port} is out of range 0-65535")
    if any(c.isspace() or c in "/?#@" for c in host):
        raise ConfigError(problem + f"host {host!r} is not a valid host name or address")
    return ListenAddress(host=host or None, port=port)


@dataclass(frozen=True, slots=True)
class _Response:
    status: HTTPStatus
    content_type: str
    body: bytes
    extra_headers: tuple[tuple[str, str], ...] = ()


def _text(status: HTTPStatus, message: str | None = None) -> _Response:
    return _Response(status, "text/plain; charset=utf-8", f"{message or status.phrase}\n".encode())


def _probe(verdict: Verdict) -> _Response:
    body = json.dumps({"status": "ok" if verdict.ok else "unhealthy", "reason": verdict.reason})
    status = HTTPStatus.OK if verdict.ok else HTTPStatus.SERVICE_UNAVAILABLE
    return _Response(status, "application/json", body.encode() + b"\n")


class _BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str | None = None) -> None:
        super().__init__(message or status.phrase)
        self.status = status


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names


def _parse_request(head: bytes) -> _Request:
    """Method, path and headers of a request head (a repeated header keeps its last value)."""
    line, _, header_block = head.partition(b"\r\n")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "request line is not ASCII") from None
    parts = text.split(" ")
    if len(parts) != 3 or not all(parts):
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        if version.startswith("HTTP/"):
            raise _BadRequest(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED)
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed request line")
    if not method.isalpha() or not method.isupper():
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed method")
    if target.startswith(("http://", "https://")):  # absolute-form: keep only the path
        scheme_end = target.index("//") + 2
        slash = target.find("/", scheme_end)
        target = "/" if slash < 0 else target[slash:]
    if not target.startswith("/"):
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "request target must be a path")
    path = target.split("?", 1)[0].split("#", 1)[0]
    return _Request(method, path, _parse_headers(header_block))


def _parse_headers(block: bytes) -> dict[str, str]:
    # Only Accept and Accept-Encoding are ever looked at: a line that is not "name: value" is skipped
    # rather than refused, so that an odd client still gets its probe answered.
    headers: dict[str, str] = {}
    for raw in block.split(b"\r\n"):
        name, colon, value = raw.partition(b":")
        if colon and name and not name[-1:].isspace():
            headers[name.decode("latin-1").lower()] = value.decode("latin-1").strip()
    return headers


class MetricsServer:
    """The HTTP server; ``start()`` returns the bound port (useful with port 0), ``stop()`` ends it."""

    def __init__(
        self,
        address: str,
        health: Health,
        *,
        registry: CollectorRegistry = REGISTRY,
        read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS,
        write_timeout_seconds: float = DEFAULT_WRITE_TIMEOUT_SECONDS,
        max_idle_connections: int = DEFAULT_MAX_IDLE_CONNECTIONS,
    ) -> None:
        if max_idle_connections < 1:
            raise ValueError(f"max_idle_connections must be at least 1, got {max_idle_connections}")
        self.address = parse_listen_address(address)
        self._health = health
        self._registry = registry
        self._read_timeout = read_timeout_seconds
        self._write_timeout = write_timeout_seconds
        self._max_idle = max_idle_connections
        self._server: asyncio.Server | None = None
        self._stopping = False
        # Every open connection, and (oldest first: dicts keep insertion order) those still waiting
        # for their request head.
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._idle: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._routes: dict[str, Callable[[_Request], _Response]] = {
            "/": lambda _: _Response(HTTPStatus.OK, "text/html; charset=utf-8", _INDEX),
            "/metrics": self._metrics,
            "/healthz": lambda _: _probe(self._health.liveness()),
            "/readyz": lambda _: _probe(self._health.readiness()),
        }

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the metrics server is not running")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> int:
        self._stopping = False
        try:
            self._server = await asyncio.start_server(
                self._handle,
                host=self.address.host,
                port=self.address.port,
                limit=MAX_REQUEST_HEAD_BYTES,
                reuse_address=True,
            )
        except OSError as exc:
            raise ConfigError(f"-web.address {self.address}: cannot listen: {exc.strerror or exc}") from exc
        # With port 0 the kernel picks one: the log names the port actually bound.
        bound = ListenAddress(host=self.address.host, port=self.port)
        log.info("metrics and health server listening", extra={"address": str(bound)})
        return self.port

    async def stop(self) -> None:
        """Stop listening and end every open connection.

        Connections are closed, not their tasks cancelled: each handler sees its stream end and
        returns. (On Python 3.11, asyncio logs a CancelledError traceback for every cancelled
        connection task of a server started with ``start_server``.)
        """
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping = True
        server.close()
        for writer in self._connections.values():
            writer.transport.abort()
        tasks = list(self._connections)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                await asyncio.gather(*tasks, return_exceptions=True)
                await server.wait_closed()
        for task in tasks:
            task.cancel()  # only a handler stuck past the timeout is still running here

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- one connection, one request ------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._stopping:  # accepted just before the listener closed
            writer.transport.abort()
            return
        self._connections[task] = writer
        try:
            self._make_room()
            self._idle[task] = writer
            try:
                head = await self._read_head(reader)
            finally:
                self._idle.pop(task, None)
            if isinstance(head, _Response):
                await self._send(writer, "GET", head)
            elif head is not None:
                method, response = self._answer(head)
                await self._send(writer, method, response)
        except (ConnectionError, TimeoutError):
            pass  # the client went away or is too slow; nothing to answer
        except Exception:
            log.exception("metrics server: unexpected error while answering a request")
        finally:
            del self._connections[task]
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    def _make_room(self) -> None:
        """Close the oldest connections that have not sent a request head, down to one below the cap."""
        while len(self._idle) >= self._max_idle:
            oldest = next(iter(self._idle))
            # Closed, its read ends: its handler answers nothing and returns.
            self._idle.pop(oldest).transport.abort()

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes | _Response | None:
        """The request head, an error to answer instead, or None when the client went away first."""
        try:
            async with asyncio.timeout(self._read_timeout):
                return await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # closed (by the client, or by us to make room) before a whole request head
        except asyncio.LimitOverrunError:
            return _text(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        except TimeoutError:
            return _text(HTTPStatus.REQUEST_TIMEOUT)

    def _answer(self, head: bytes) -> tuple[str, _Response]:
        try:
            request = _parse_request(head)
        except _BadRequest as exc:
            return "GET", _text(exc.status, str(exc))
        route = self._routes.get(request.path)
        if route is None:
            return request.method, _text(HTTPStatus.NOT_FOUND)
        if request.method not in ("GET", "HEAD"):
            return request.method, _Response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                b"Method Not Allowed\n",
                (("Allow", "GET, HEAD"),),
            )
        log.debug("metrics server: %s %s", request.method, request.path)
        return request.method, route(request)

    def _metrics(self, request: _Request) -> _Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = encoder(self._registry)
        headers = [("Vary", "Accept, Accept-Encoding")]
        if gzip_accepted(request.headers.get("accept-encoding", "")):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        return _Response(HTTPStatus.OK, content_type, body, tuple(headers))

    async def _send(self, writer: asyncio.StreamWriter, method: str, response: _Response) -> None:
        headers = [
            f"HTTP/1.1 {response.status.value} {response.status.phrase}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "Connection: close",
            *(f"{name}: {value}" for name, value in response.extra_headers),
        ]
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("ascii"))
        if method != "HEAD":
            writer.write(response.body)
        async with asyncio.timeout(self._write_timeout):
            await writer.drain()


async def serve(address: str, health: Health) -> None:
    """Serve metrics and probes on ``address`` until cancelled. A bad address is a ``ConfigError``."""
    server = MetricsServer(address, health)
    await server.start()
    try:
        await asyncio.Event().wait()  # until cancelled
    finally:
        await asyncio.shield(server.stop())
