"""One kept-alive HTTP/1.1 connection for the Scheduled Events poll: an asyncio protocol, h11 to parse.

The handler sends the same GET every second for as long as it runs, on every node. Through httpx2
(httpcore2, anyio, h11) that one request cost about 400 µs of CPU, nearly all of the idle budget;
written on asyncio with h11 alone it costs about a third of that. Only what the poll needs is
here: plain ``http://``, one request at a time, never a proxy, no redirects, no content decoding (no
``Accept-Encoding`` is sent, so the body arrives as it is).

Connection handling: connect when first needed and keep the connection while h11 says it can be
reused. Before a kept connection carries the next GET, it must have stayed silent while idle:
anything the server sent meanwhile (a ``408 Request Timeout`` before it hangs up, the end of the
stream, a reset), whether already received by the event loop or still in the socket, answers no
request of ours, and the connection is replaced instead of the stale bytes being read as the next
answer. A kept connection found closed only when sending, or before any byte of the answer, is
replaced once, because the GET is idempotent. A ``Connection: close`` answer, a protocol error, an
unread remainder of a body and any interruption (the caller's ``asyncio.timeout``, cancellation)
close the connection, so the next poll starts clean.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import h11
import httpx2

from aksnth.errors import ImdsDocumentError, ImdsUnavailable
from aksnth.observe.httpmetrics import CODE_CANCELLED, CODE_ERROR, RequestMetrics, RequestRecorder

# Bytes asked of the stream per read: a Scheduled Events document fits in one.
_READ_BYTES = 64 * 1024
_END = h11.EndOfMessage()


@dataclass(frozen=True, slots=True)
class PollAnswer:
    """An answer to the poll. ``body`` is whole for a 200, its first ``error_body_bytes`` otherwise."""

    status: int
    reason: str
    retry_after: str | None
    body: bytes


def declared_too_long(method: str, url: str, *, declared: str, limit: int) -> ImdsDocumentError:
    return ImdsDocumentError(
        f"{method} {url}: answer declares {declared} bytes, more than the {limit} accepted"
    )


def longer_than_accepted(method: str, url: str, *, limit: int) -> ImdsDocumentError:
    return ImdsDocumentError(
        f"{method} {url}: answer is longer than the {limit} bytes accepted; stopped reading"
    )


class _Failure(Exception):
    """No usable answer. ``before_answer``: the connection ended (or was reset) before any byte of
    the answer came, which on a kept connection means the server closed it while it was idle."""

    def __init__(self, what: str, *, before_answer: bool = False) -> None:
        super().__init__(what)
        self.before_answer = before_answer


class PollConnection:
    """Sends one prebuilt GET to an ``http://`` URL over one persistent connection.

    The request carries ``headers`` and ``Host``, nothing more. A 200 body longer than
    ``max_body_bytes`` is an :class:`ImdsDocumentError` (refused before reading when its
    ``Content-Length`` says so); of any other answer only the first ``error_body_bytes`` are read, to
    quote them. Failures to get an answer are :class:`ImdsUnavailable`. With ``metrics``, every call
    is recorded as :class:`~aksnth.observe.httpmetrics.InstrumentedTransport` records a request.

    Calls are serialised: the poll is sequential, and a second caller waits for the first. Bound the
    call with ``asyncio.timeout``; :meth:`aclose` closes the socket.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        max_body_bytes: int,
        error_body_bytes: int,
        metrics: RequestMetrics | None = None,
    ) -> None:
        parsed = httpx2.URL(url)
        if parsed.scheme != "http":
            raise ValueError(f"a poll connection speaks plain http only, not {parsed.scheme!r} ({url})")
        self.url = url
        self._host = parsed.host  # an IPv6 literal comes without brackets, as the socket wants it
        self._port = parsed.port or 80
        # Built once: h11 validates and normalises headers when an event is made, not when it is sent.
        self._request = h11.Request(
            method="GET",
            target=parsed.raw_path,
            headers=[("Host", parsed.netloc.decode("ascii")), *headers.items()],
        )
        self._max_body_bytes = max_body_bytes
        self._error_body_bytes = error_body_bytes
        self._recorder: RequestRecorder | None = None if metrics is None else metrics.labelled("GET", parsed)
        self._lock = asyncio.Lock()
        self._wire: _Wire | None = None
        self._h11 = h11.Connection(h11.CLIENT)
        self._closed = False
        self._sent: socket.socket | None = None

    def take_over(self, sent: socket.socket) -> None:
        """The next :meth:`fetch` reads its answer from ``sent``, a connected socket on which this
        GET went out already (:func:`aksnth.azure.firstpoll.send_first_poll`) instead of sending it.
        Taking it over needs no event loop; the socket is this connection's to close from now on."""
        if self._sent is not None:
            self._sent.close()
        self._sent = sent

    async def fetch(self) -> PollAnswer:
        """Send the GET and read the answer, whatever its status."""
        if self._closed:
            raise RuntimeError(f"the poll connection to {self.url} is closed")
        recorder = self._recorder
        started = 0.0 if recorder is None else recorder.started()
        code = CODE_ERROR
        try:
            async with self._lock:
                try:
                    response = await self._send()
                    code = str(response.status_code)
                    if recorder is not None:
                        recorder.answered(started)
                    answer = await self._read_answer(response)
                except BaseException:
                    self._drop()
                    raise
                if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
                    self._drop()  # Connection: close, an HTTP/1.0 answer or a body that ends with the stream
                return answer
        except asyncio.CancelledError:
            if code == CODE_ERROR:
                code = CODE_CANCELLED
            raise
        except _Failure as exc:
            raise ImdsUnavailable(f"GET {self.url}: {exc}") from exc
        except h11.ProtocolError as exc:
            raise ImdsUnavailable(f"GET {self.url}: {type(exc).__name__}: {exc}") from exc
        finally:
            if recorder is not None:
                recorder.finished(code)

    async def aclose(self) -> None:
        self._closed = True
        wire = self._wire
        self._drop()
        if self._sent is not None:
            self._sent.close()
            self._sent = None
        if wire is not None:
            # abort() closes the socket on the loop's next turn; wait for it, so that nothing is left
            # open when this returns.
            await wire.closed()

    # --- one exchange ------------------------------------------------------------------------------

    async def _send(self) -> h11.Response:
        """Send the request; the answer's status line and headers. Retries once on a new connection
        when a kept one turns out to have been closed by the server, or one taken over before any
        byte of its answer."""
        if (sent := self._sent) is not None:
            self._sent = None
            self._drop()
            await self._connect(sent)
            try:
                return await self._exchange_head(written=True)
            except _Failure as exc:
                if not exc.before_answer:
                    raise
            self._drop()
            await self._connect()
            return await self._exchange_head()
        reused = self._reusable()
        if not reused:
            self._drop()
            await self._connect()
        try:
            return await self._exchange_head()
        except _Failure as exc:
            if not (reused and exc.before_answer):
                raise
        self._drop()
        await self._connect()
        return await self._exchange_head()

    def _reusable(self) -> bool:
        wire, conn = self._wire, self._h11
        return (
            wire is not None
            and conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
            # Bytes after the last answer belong to no request of ours: the connection is out of step.
            and not conn.trailing_data[0]
            and wire.silent()
        )

    async def _connect(self, sent: socket.socket | None = None) -> None:
        """A new connection, or the event loop's hold on ``sent``."""
        loop = asyncio.get_running_loop()
        try:
            if sent is None:
                _, wire = await loop.create_connection(_Wire, self._host, self._port)
            else:
                _, wire = await loop.create_connection(_Wire, sock=sent)
        except OSError as exc:
            raise _Failure(f"ConnectError: {_describe(exc)}") from exc
        self._wire = wire
        self._h11 = h11.Connection(h11.CLIENT)

    async def _exchange_head(self, *, written: bool = False) -> h11.Response:
        """Send the GET (unless it was ``written`` already, on a socket taken over) and read the
        answer's head."""
        conn, wire = self._h11, self._wire
        assert wire is not None
        if conn.our_state is h11.DONE:
            conn.start_next_cycle()
        request = _sent(conn, self._request) + _sent(conn, _END)  # h11 must know the GET was sent
        if not written:
            wire.write(request)
        received = False
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await _read(wire, before_answer=not received)
                if not data and not received:
                    raise _Failure(
                        "RemoteProtocolError: server disconnected without sending a response",
                        before_answer=True,
                    )
                received = True
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                return event
            elif not isinstance(event, h11.InformationalResponse):  # 1xx answers precede the real one
                raise _Failure(f"RemoteProtocolError: unexpected {type(event).__name__} before the answer")

    async def _read_answer(self, response: h11.Response) -> PollAnswer:
        status = response.status_code
        retry_after: str | None = None
        declared = ""
        for name, value in response.headers:
            if name == b"content-length":
                declared = value.decode("latin-1")
            elif name == b"retry-after":
                retry_after = value.decode("latin-1")
        if status == 200:
            limit = self._max_body_bytes
            if declared.isdigit() and int(declared) > limit:
                raise declared_too_long("GET", self.url, declared=declared, limit=limit)
        else:
            limit = self._error_body_bytes
        body = await self._read_body(limit, cut=status != 200)
        return PollAnswer(
            status=status, reason=response.reason.decode("latin-1"), retry_after=retry_after, body=body
        )

    async def _read_body(self, limit: int, *, cut: bool) -> bytes:
        """The body, at most ``limit`` bytes: past it, an error or (``cut``) the part read so far."""
        conn, wire = self._h11, self._wire
        assert wire is not None
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await _read(wire, before_answer=False))
            elif isinstance(event, h11.Data):
                if size + len(event.data) > limit:
                    if not cut:
                        raise longer_than_accepted("GET", self.url, limit=limit)
                    chunks.append(event.data[: limit - size])
                    self._drop()  # the rest is not read: the connection cannot carry another request
                    return b"".join(chunks)
                chunks.append(event.data)
                size += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)

    def _drop(self) -> None:
        """Close the socket without waiting (it is closed on the loop's next turn)."""
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.abort()


class _Wire(asyncio.Protocol):
    """The socket of one connection: what it received and has not been read yet, and whether it
    ended. Written for one reader at a time (the connection's lock sees to that)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._received = bytearray()
        self._ended = False  # the peer closed or reset the connection, or we aborted it
        self._error: OSError | None = None  # why the connection was lost, if not cleanly
        self._waiter: asyncio.Future[None] | None = None
        self._lost = asyncio.get_running_loop().create_future()

    # --- asyncio's side --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._received += data
        if len(self._received) >= _READ_BYTES:
            self._transport_or_fail().pause_reading()  # read() resumes it: at most this much is held
        self._wake()

    def eof_received(self) -> bool:
        self._ended = True
        self._wake()
        return False  # the transport closes itself: the server is done with this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        if isinstance(exc, OSError):
            self._error = exc
        self._wake()
        if not self._lost.done():
            self._lost.set_result(None)

    # --- ours ------------------------------------------------------------------------------------

    def silent(self) -> bool:
        """Nothing came since the last read and the connection is open: neither bytes nor an end
        that the event loop has received, nor any waiting in the socket for it to receive."""
        transport = self._transport
        if self._received or self._ended or transport is None or transport.is_closing():
            return False
        try:
            readable, _, _ = select.select([transport.get_extra_info("socket")], [], [], 0)
        except (OSError, ValueError):  # cannot tell (a descriptor beyond select's reach): assume used
            return False
        return not readable

    def write(self, data: bytes) -> None:
        """Queue ``data``; a connection that has ended is a :class:`_Failure` before any answer."""
        if self._ended:
            raise _Failure(
                f"WriteError: {_describe(self._error) if self._error else 'connection closed'}",
                before_answer=True,
            )
        self._transport_or_fail().write(data)

    async def read(self) -> bytes:
        """What arrived since the last read, waiting for something; b"" once the peer closed."""
        while not self._received:
            if self._ended:
                if self._error is not None:
                    raise self._error
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = bytes(self._received)
        self._received.clear()
        if self._transport is not None:
            self._transport.resume_reading()  # does nothing unless data_received paused it
        return data

    def abort(self) -> None:
        self._ended = True
        if self._transport is not None:
            self._transport.abort()

    async def closed(self) -> None:
        """Wait until the socket is closed (after :meth:`abort`, on the loop's next turn)."""
        await asyncio.shield(self._lost)

    def _transport_or_fail(self) -> asyncio.Transport:
        assert self._transport is not None, "used before connection_made"
        return self._transport

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


async def _read(wire: _Wire, *, before_answer: bool) -> bytes:
    try:
        return await wire.read()
    except OSError as exc:
        raise _Failure(f"ReadError: {_describe(exc)}", before_answer=before_answer) from exc


def _sent(conn: h11.Connection, event: h11.Request | h11.EndOfMessage) -> bytes:
    return conn.send(event) or b""  # None only for ConnectionClosed, which is never sent here


def _describe(exc: OSError) -> str:
    return str(exc) or type(exc).__name__
