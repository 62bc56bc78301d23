"""Client for the Azure Instance Metadata Service: Scheduled Events and compute metadata.

The edge to IMDS: httpx2 and connection errors and HTTP statuses become ``ImdsUnavailable``, bad
documents ``ImdsDocumentError``. The Scheduled Events poll to an ``http://`` endpoint goes on a
connection of its own (``pollconn``); everything else goes through httpx2. Every request is bounded
by ``ImdsSettings.request_timeout_seconds`` as a whole (connect, send, wait and read), and bodies
are streamed with a size cap so that an endless or huge answer cannot eat memory. IMDS must never
be reached through a proxy.

Until IMDS has answered a request for events once, the poll waits up to
``ImdsSettings.first_request_timeout_seconds``: the first request after Scheduled Events is switched on
for a VM can take up to two minutes, and giving up on it only to ask again would not make it faster.

``PollBackoff`` says how long to wait before the next poll; it never sleeps itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
from types import TracebackType
from typing import Self
from urllib.parse import parse_qsl, urlsplit

import httpx2

from aksnth.azure.documents import (
    MAX_DOCUMENT_BYTES,
    excerpt,
    parse_document,
    parse_instance_metadata,
    parse_version_refusal,
)
from aksnth.azure.firstpoll import METADATA_HEADERS
from aksnth.azure.pollconn import PollConnection, declared_too_long, longer_than_accepted
from aksnth.config import ImdsSettings
from aksnth.durations import parse_retry_after
from aksnth.errors import ImdsError, ImdsUnavailable
from aksnth.model import InstanceMetadata, ScheduledEventsDocument
from aksnth.observe.httpmetrics import InstrumentedTransport
from aksnth.retry import Backoff

log = logging.getLogger(__name__)

# How much of an error answer is read, to quote it in the message.
ERROR_BODY_BYTES = 2048


class ImdsClient:
    """Reads Scheduled Events, approves events and reads compute metadata from IMDS."""

    def __init__(
        self,
        settings: ImdsSettings,
        *,
        client: httpx2.AsyncClient | None = None,
        poll_transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        """``poll_transport``: the transport of ``client``, given when the caller built it: the
        Scheduled Events GET, sent every period, need not go through the client (which would add
        nothing to that one request: no auth, cookies, redirects or hooks).

        Then, and when no client is given, the poll to an ``http://`` endpoint goes on a connection
        of its own, at about a third of httpx2's CPU cost; an :class:`InstrumentedTransport` given as
        ``poll_transport`` lends it its metrics, so the poll is counted as the transport would count
        it. An ``https://`` endpoint is polled straight through ``poll_transport``. A client given
        without ``poll_transport`` carries every request, the poll included: its hooks and transport
        are the caller's choice."""
        self._settings = settings
        self._poll_transport = poll_transport
        self._owns_client = client is None
        self._poll_connection: PollConnection | None = None
        if settings.endpoint.lower().startswith("http://") and (client is None or poll_transport is not None):
            # trust_env does not matter here: the connection goes straight to the endpoint, never a proxy.
            self._poll_connection = PollConnection(
                settings.endpoint,
                headers=METADATA_HEADERS,
                max_body_bytes=MAX_DOCUMENT_BYTES,
                error_body_bytes=ERROR_BODY_BYTES,
                metrics=poll_transport.metrics if isinstance(poll_transport, InstrumentedTransport) else None,
            )
        # trust_env=False: no proxy from the environment, ever (IMDS rejects proxied requests, and
        # a proxy would see the traffic). A client passed in is the caller's to configure and close.
        self._client = client or httpx2.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            timeout=httpx2.Timeout(settings.request_timeout_seconds),
        )
        self._document_request: httpx2.Request | None = None
        self._first_poll: asyncio.Task[bytes] | None = None
        self._first_poll_answered_at = 0.0
        # The last document and the bytes it was parsed from: IMDS answers the same bytes poll after
        # poll, and while a Spot pool is being evicted that answer lists every VM of the pool (20
        # events: about 240 µs to parse, every second, on every node).
        self._last_body: bytes | None = None
        self._last_document: ScheduledEventsDocument | None = None
        self._answered = False  # IMDS has answered a request for events (any HTTP status)

    @property
    def settings(self) -> ImdsSettings:
        return self._settings

    @property
    def answered(self) -> bool:
        """IMDS has answered a request for events at least once (with any HTTP status): Scheduled
        Events is switched on for this VM, and requests get the ordinary -request.timeout."""
        return self._answered

    def _poll_timeout(self) -> float:
        settings = self._settings
        if self._answered:
            return settings.request_timeout_seconds
        return max(settings.first_request_timeout_seconds, settings.request_timeout_seconds)

    def start_first_poll(self, sent: socket.socket | None = None) -> None:
        """Send the first GET now, while start-up goes on; the next :meth:`fetch_document` returns
        its answer (or its error). An answer older than one poll interval by then is not used: that
        call polls again. Call it from the event loop.

        ``sent``: a socket on which that GET went out already, before the event loop ran
        (:func:`aksnth.azure.firstpoll.send_first_poll`): its answer is read instead. Closed here
        when this client has no poll connection of its own to read it with."""
        if self._first_poll is not None:
            if sent is not None:
                sent.close()
            return
        if sent is not None:
            if self._poll_connection is None:
                sent.close()
            else:
                self._poll_connection.take_over(sent)
        loop = asyncio.get_running_loop()

        def answered(_: asyncio.Task[bytes]) -> None:
            self._first_poll_answered_at = loop.time()

        self._first_poll = loop.create_task(self._poll(), name="first-imds-poll")
        self._first_poll.add_done_callback(answered)

    async def first_poll_head_start(self, seconds: float) -> None:
        """Let the first poll run alone for at most ``seconds`` (until it is answered, if sooner), so
        that its request is on the wire before start-up's synchronous work holds the event loop."""
        if self._first_poll is not None:
            await asyncio.wait({self._first_poll}, timeout=seconds)

    async def fetch_document(self) -> ScheduledEventsDocument:
        """GET the Scheduled Events document."""
        first, self._first_poll = self._first_poll, None
        if first is not None:
            age = asyncio.get_running_loop().time() - self._first_poll_answered_at
            if not first.done() or age <= self._settings.poll_interval_seconds:
                return self._parsed(await first)
            if not first.cancelled():
                first.exception()  # retrieved: a stale failure is not reported as "never retrieved"
        return self._parsed(await self._poll())

    def _parsed(self, body: bytes) -> ScheduledEventsDocument:
        """``body`` as a document; the previous one (immutable) when the bytes are the same."""
        if body != self._last_body or self._last_document is None:
            document = parse_document(body)  # raises before anything is remembered
            self._last_body, self._last_document = body, document
        return self._last_document

    async def approve_event(self, event_id: str) -> None:
        """POST a StartRequest for ``event_id``: Azure may then start the event before NotBefore."""
        if not event_id.strip():
            raise ValueError("approve_event needs a non-empty EventId")
        payload = json.dumps({"StartRequests": [{"EventId": event_id}]}).encode()
        await self._request("POST", self._settings.endpoint, content=payload)

    async def fetch_advisory_document(self, api_version: str) -> ScheduledEventsDocument:
        """GET the Scheduled Events document at ``api_version`` (the one that serves advisory events)."""
        return parse_document(await self._request("GET", self._settings.endpoint_at(api_version)))

    async def newest_versions(self) -> tuple[str, ...]:
        """The api-versions IMDS names as its newest for Scheduled Events, newest first: a request
        without api-version is refused with 400 and ``"newest-versions"``. ``()`` when the refusal names
        none; ``ImdsUnavailable`` when no refusal came (a timeout, a 5xx: ask again later)."""
        url = self._settings.endpoint_at(None)
        timeout = self._settings.request_timeout_seconds
        request = self._client.build_request("GET", url, headers=METADATA_HEADERS)
        try:
            async with asyncio.timeout(timeout):
                response = await self._client.send(request, stream=True)
                try:
                    if response.status_code == httpx2.codes.OK:
                        return ()  # served without an api-version: nothing to learn from it
                    if response.status_code != httpx2.codes.BAD_REQUEST:
                        raise await _unavailable("GET", url, response)
                    return parse_version_refusal(await _read_head(response))
                finally:
                    await response.aclose()
        except (TimeoutError, httpx2.HTTPError) as exc:
            raise _no_answer("GET", url, exc, timeout_seconds=timeout) from exc

    async def fetch_instance_metadata(self) -> InstanceMetadata:
        """GET ``/metadata/instance/compute`` on the same host as the Scheduled Events endpoint."""
        body = await self._request("GET", self._settings.compute_url)
        return parse_instance_metadata(body)

    async def aclose(self) -> None:
        first, self._first_poll = self._first_poll, None
        if first is not None and not first.done():
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError, ImdsError):
                await first
        if self._poll_connection is not None:
            await self._poll_connection.aclose()
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _poll(self) -> bytes:
        """The Scheduled Events GET; the body of a 200 answer, capped at MAX_DOCUMENT_BYTES."""
        url = self._settings.endpoint
        connection = self._poll_connection
        timeout = self._poll_timeout()
        if connection is None:
            request = (
                self._poll_request()
                if self._answered
                else self._client.build_request(
                    "GET", url, headers=METADATA_HEADERS, timeout=httpx2.Timeout(timeout)
                )
            )
            return await self._send(
                request, url, transport=self._poll_transport, timeout_seconds=timeout, answers_events=True
            )
        try:
            async with asyncio.timeout(timeout):
                answer = await connection.fetch()
        except TimeoutError as exc:
            raise ImdsUnavailable(f"GET {url}: no complete answer within {timeout:g}s") from exc
        self._answered = True
        if answer.status != httpx2.codes.OK:
            raise _status_error(
                "GET",
                url,
                status=answer.status,
                reason=answer.reason,
                head=answer.body,
                retry_after=answer.retry_after,
            )
        return answer.body

    def _poll_request(self) -> httpx2.Request:
        """The Scheduled Events GET, built once: the poll sends the same request every second, and
        building it (URL parsing, header merging) was a fifth of a poll's CPU time."""
        if self._document_request is None:
            self._document_request = self._client.build_request(
                "GET", self._settings.endpoint, headers=METADATA_HEADERS
            )
        return self._document_request

    async def _request(self, method: str, url: str, *, content: bytes | None = None) -> bytes:
        headers = dict(METADATA_HEADERS)
        if content is not None:
            headers["Content-Type"] = "application/json"
        return await self._send(
            self._client.build_request(method, url, headers=headers, content=content), url
        )

    async def _send(
        self,
        request: httpx2.Request,
        url: str,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout_seconds: float | None = None,
        answers_events: bool = False,
    ) -> bytes:
        """One request under one deadline; the body of a 200 answer, capped at MAX_DOCUMENT_BYTES.
        ``answers_events``: the request is the Scheduled Events poll (an answer marks :attr:`answered`)."""
        timeout = self._settings.request_timeout_seconds if timeout_seconds is None else timeout_seconds
        method = request.method
        try:
            async with asyncio.timeout(timeout):
                if transport is None:
                    response = await self._client.send(request, stream=True)
                else:
                    response = await transport.handle_async_request(request)
                if answers_events:
                    self._answered = True
                try:
                    if response.status_code != httpx2.codes.OK:
                        raise await _unavailable(method, url, response)
                    return await _read_capped(response, method, url)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx2.HTTPError) as exc:
            raise _no_answer(method, url, exc, timeout_seconds=timeout) from exc


def _no_answer(method: str, url: str, exc: Exception, *, timeout_seconds: float) -> ImdsUnavailable:
    """What a request that got no usable answer in time (or none at all) raises."""
    if isinstance(exc, TimeoutError):
        return ImdsUnavailable(f"{method} {url}: no complete answer within {timeout_seconds:g}s")
    if isinstance(exc, httpx2.TimeoutException):
        return ImdsUnavailable(f"{method} {url}: timed out ({type(exc).__name__})")
    return ImdsUnavailable(f"{method} {url}: {type(exc).__name__}: {exc}")


async def _read_capped(response: httpx2.Response, method: str, url: str) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
        raise declared_too_long(method, url, declared=declared, limit=MAX_DOCUMENT_BYTES)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_DOCUMENT_BYTES:
            raise longer_than_accepted(method, url, limit=MAX_DOCUMENT_BYTES)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_head(response: httpx2.Response) -> bytes:
    """The start of an answer's body (up to ERROR_BODY_BYTES), to quote or to read an error from."""
    head = bytearray()
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) >= ERROR_BODY_BYTES:
            break
    return bytes(head)


async def _unavailable(method: str, url: str, response: httpx2.Response) -> ImdsUnavailable:
    return _status_error(
        method,
        url,
        status=response.status_code,
        reason=response.reason_phrase,
        head=await _read_head(response),
        retry_after=response.headers.get("Retry-After"),
    )


def _status_error(
    method: str, url: str, *, status: int, reason: str, head: bytes, retry_after: str | None
) -> ImdsUnavailable:
    """An answer other than 200: its status, reason, the start of its body and its Retry-After. A refused
    api-version is said in words, with the versions IMDS names (the excerpt would cut them off)."""
    reason = reason or httpx2.codes.get_reason_phrase(status)
    quoted = f": {excerpt(head)}" if head.strip() else ""
    versions = parse_version_refusal(head) if status == httpx2.codes.BAD_REQUEST else ()
    if versions:
        requested = dict(parse_qsl(urlsplit(url).query)).get("api-version", "")
        refused = f"api-version {requested} is refused" if requested else "no api-version was given"
        quoted = f": {refused}; IMDS names its newest versions: {', '.join(versions)}"
    return ImdsUnavailable(
        f"{method} {url}: HTTP {status} {reason}{quoted}",
        status=status,
        retry_after_seconds=parse_retry_after(retry_after),
    )


# --- backoff -----------------------------------------------------------------------------------

# IMDS allows 5 requests per second per VM; never poll faster than that, whatever else says so.
MIN_REQUEST_SPACING_SECONDS = 0.2
# The cap bounds how late the first poll after an outage can be: a Preempt gives 30 s of notice at
# most, so a long cap could swallow it whole. 5 s keeps a failing VM at well under IMDS's limit.
DEFAULT_BACKOFF_CAP_SECONDS = 5.0
# Microsoft: "410 Gone: retry after some time for a max of 70 seconds". The first answers after
# Scheduled Events is switched on can also take long. Retried quickly for that long, then backed off.
GONE_RETRY_WINDOW_SECONDS = 70.0
GONE_RETRY_DELAY_SECONDS = 1.0


class PollBackoff:
    """The delay before the next IMDS poll, from the outcome of the last one. Pure logic: no sleeping.

    * success: the poll interval;
    * 410 Gone: quick retries (at most once a second) for up to 70 s of consecutive 410s;
    * any other error (429, 5xx, timeouts, network errors, bad documents): exponential from the
      interval up to ``cap_seconds``, with jitter (downwards, never below the interval) so that the
      pods of a DaemonSet do not retry in lockstep; a ``Retry-After`` is honoured up to the cap;
    * never less than 0.2 s between requests (the IMDS limit is 5 requests per second).

    ``attempt`` counts the consecutive failures (0 after a success), for "attempt i" logging.
    """

    def __init__(
        self,
        interval_seconds: float,
        *,
        cap_seconds: float = DEFAULT_BACKOFF_CAP_SECONDS,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError(f"poll interval must be positive, got {interval_seconds}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.interval_seconds = max(interval_seconds, MIN_REQUEST_SPACING_SECONDS)
        self.cap_seconds = max(cap_seconds, self.interval_seconds)
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.attempt = 0
        self._gone_seconds = 0.0  # time spent waiting in the current run of 410s
        # Exponential from the interval to the cap, cut by up to ``jitter``, never below the interval.
        self._backoff = Backoff(
            first_seconds=self.interval_seconds,
            max_seconds=self.cap_seconds,
            spread=(1.0 - jitter, 1.0),
            min_seconds=self.interval_seconds,
            max_retry_after_seconds=self.cap_seconds,
        )
        # 410 Gone: quick retries, at most once a second.
        self._gone = Backoff(
            steps=(min(self.interval_seconds, GONE_RETRY_DELAY_SECONDS),),
            min_seconds=MIN_REQUEST_SPACING_SECONDS,
            max_retry_after_seconds=self.cap_seconds,
        )

    def on_success(self) -> float:
        self.attempt = 0
        self._gone_seconds = 0.0
        return self.interval_seconds

    def on_error(self, exc: ImdsError) -> float:
        self.attempt += 1
        status = exc.status if isinstance(exc, ImdsUnavailable) else None
        retry_after = exc.retry_after_seconds if isinstance(exc, ImdsUnavailable) else None
        if status == httpx2.codes.GONE and self._gone_seconds < GONE_RETRY_WINDOW_SECONDS:
            delay = self._gone.delay(1, retry_after=retry_after)
        else:
            if status != httpx2.codes.GONE:
                self._gone_seconds = 0.0
            delay = self._backoff.delay(self.attempt, retry_after=retry_after, draw=self._rng.random())
        if status == httpx2.codes.GONE:
            self._gone_seconds += delay
        return delay
