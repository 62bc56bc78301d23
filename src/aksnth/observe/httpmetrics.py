"""HTTP client instrumentation: every outgoing request is counted, timed and tracked while in flight.

Three callers, three shapes:

* IMDS and notifications use httpx2 directly: wrap their transport in :class:`InstrumentedTransport`
  (or take one from :func:`imds_transport` / :func:`webhook_transport`). The Scheduled Events poll
  has a connection of its own; it records through the transport's :class:`RequestMetrics`, so its
  samples are those the transport would have written.
* The Kubernetes client (``aksnth.kube.api``) is metered by :class:`ApiServerMetrics`, which offers a
  transport wrapper (what ``open_client`` uses), an event-hook pair and a context manager. These are
  duck-typed on the ``httpx2`` transport interface.

Labels stay low-cardinality and secret-free: the endpoint label is the path for IMDS and only
``scheme://host[:port]`` for webhooks, because a webhook or Telegram URL may carry a token.
Durations are measured to the response headers, and only for answered requests, as the Go original's
round-tripper middleware does; its ``method`` labels are lower case (``get``, ``post``).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Protocol, Self

import httpx2
from prometheus_client import Counter, Gauge, Histogram

from aksnth.observe.metrics import (
    APISERVER_REACHABLE,
    APISERVER_REQUEST_DURATION,
    APISERVER_REQUESTS,
    HTTP_EVENTS_DURATION,
    HTTP_EVENTS_IN_FLIGHT,
    HTTP_EVENTS_REQUESTS,
    HTTP_WEBHOOK_DURATION,
    HTTP_WEBHOOK_IN_FLIGHT,
    HTTP_WEBHOOK_REQUESTS,
)

#: ``code`` label of a request that got no HTTP answer (connection refused, reset, TLS, timeout).
CODE_ERROR = "error"
#: ``code`` label of a request abandoned by its caller (task cancelled, e.g. by ``asyncio.timeout``).
CODE_CANCELLED = "cancelled"
#: ``code`` label of an API server request without an answer, as client-go (and so the Go original)
#: writes it: whether it failed or was abandoned.
API_CODE_ERROR = "<error>"
# Methods promhttp names in its duration histogram; any other is "unknown" there.
_PROMHTTP_METHODS = frozenset(
    {"get", "put", "head", "post", "delete", "connect", "options", "notify", "trace", "patch"}
)


def method_label(method: str) -> str:
    """``method`` of ``http_*_requests_total``: lower case, as the Go original's counter wrote it."""
    return method.lower()


def duration_method_label(method: str) -> str:
    """``method`` of ``http_*_request_duration_seconds``: promhttp's lower-case name, or ``unknown``."""
    lowered = method.lower()
    return lowered if lowered in _PROMHTTP_METHODS and method in (lowered, lowered.upper()) else "unknown"


def path_label(url: httpx2.URL) -> str:
    """The URL's path without query (``/metadata/scheduledevents``): the IMDS endpoint label."""
    return url.path or "/"


def origin_label(url: httpx2.URL) -> str:
    """``scheme://host[:port]`` only: no user info, path or query, which may carry secrets."""
    host = url.host
    if ":" in host:  # an IPv6 literal; httpx2 gives it without brackets
        host = f"[{host}]"
    port = "" if url.port is None else f":{url.port}"
    return f"{url.scheme}://{host}{port}"


class RequestMetrics:
    """The in-flight gauge, the counter and the duration histogram of one family of outgoing requests,
    and how its ``endpoint`` label is made. :class:`InstrumentedTransport` records through it, and so
    does anything that sends such requests without httpx2 (the Scheduled Events poll connection), so a
    request gets the same series and labels whichever way it goes."""

    __slots__ = ("duration", "endpoint_label", "in_flight", "requests")

    def __init__(
        self,
        *,
        in_flight: Gauge,
        requests: Counter,
        duration: Histogram,
        endpoint_label: Callable[[httpx2.URL], str],
    ) -> None:
        self.in_flight = in_flight
        self.requests = requests
        self.duration = duration
        self.endpoint_label = endpoint_label

    def labelled(self, method: str, url: httpx2.URL) -> RequestRecorder:
        return RequestRecorder(self, method, url)


class RequestRecorder:
    """Records requests of one method to one URL: ``started``, then ``answered`` when the response
    headers arrive, then ``finished`` with the ``code`` label, always.

    The labels are worked out once; a caller that sends the same request every second keeps one
    recorder. Series are created when first used, as a direct ``labels()`` call would create them.
    """

    __slots__ = ("_counts", "_duration", "_duration_method", "_endpoint", "_method", "_metrics")

    def __init__(self, metrics: RequestMetrics, method: str, url: httpx2.URL) -> None:
        self._metrics = metrics
        self._method = method_label(method)
        self._duration_method = duration_method_label(method)
        self._endpoint = metrics.endpoint_label(url)
        self._duration: Histogram | None = None
        self._counts: dict[str, Counter] = {}

    def started(self) -> float:
        """Count the request in flight; the start time to give to :meth:`answered`."""
        self._metrics.in_flight.inc()
        return time.perf_counter()

    def answered(self, started: float) -> None:
        if self._duration is None:
            self._duration = self._metrics.duration.labels(method=self._duration_method)
        self._duration.observe(time.perf_counter() - started)

    def finished(self, code: str) -> None:
        """``code``: the HTTP status as text, :data:`CODE_ERROR` or :data:`CODE_CANCELLED`."""
        counter = self._counts.get(code)
        if counter is None:
            counter = self._metrics.requests.labels(code=code, method=self._method, endpoint=self._endpoint)
            self._counts[code] = counter
        counter.inc()
        self._metrics.in_flight.dec()


class InstrumentedTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport that records in-flight, count (code, method, endpoint) and duration (method).

    ``code`` is the HTTP status as text, ``"error"`` when no answer came back and ``"cancelled"``
    when the caller gave up first. The wrapped transport is closed with this one.
    """

    def __init__(
        self,
        inner: httpx2.AsyncBaseTransport,
        *,
        in_flight: Gauge,
        requests: Counter,
        duration: Histogram,
        endpoint_label: Callable[[httpx2.URL], str],
    ) -> None:
        self._inner = inner
        self.metrics = RequestMetrics(
            in_flight=in_flight, requests=requests, duration=duration, endpoint_label=endpoint_label
        )

    @property
    def inner(self) -> httpx2.AsyncBaseTransport:
        return self._inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        recorder = self.metrics.labelled(request.method, request.url)
        code = CODE_ERROR
        started = recorder.started()
        try:
            response = await self._inner.handle_async_request(request)
            code = str(response.status_code)
            recorder.answered(started)
            return response
        except asyncio.CancelledError:
            code = CODE_CANCELLED
            raise
        finally:
            recorder.finished(code)

    async def aclose(self) -> None:
        await self._inner.aclose()


def imds_transport(inner: httpx2.AsyncBaseTransport | None = None) -> InstrumentedTransport:
    """A transport for the Scheduled Events client, counted in ``http_events_*``.

    IMDS must never go through a proxy. httpx2 mounts no environment proxy in front of a custom
    transport (only a client that builds its own transport reads HTTP_PROXY and the like); build the
    client with ``trust_env=False`` all the same, so that this holds should the transport be left out.
    """
    return InstrumentedTransport(
        inner if inner is not None else httpx2.AsyncHTTPTransport(),
        in_flight=HTTP_EVENTS_IN_FLIGHT,
        requests=HTTP_EVENTS_REQUESTS,
        duration=HTTP_EVENTS_DURATION,
        endpoint_label=path_label,
    )


def webhook_transport(inner: httpx2.AsyncBaseTransport | None = None) -> InstrumentedTransport:
    """A transport for webhook and Telegram requests, counted in ``http_webhook_*``.

    Pass an ``httpx2.AsyncHTTPTransport(verify=..., proxy=...)`` as ``inner`` when TLS verification
    or a proxy is configured: httpx2 ignores the client's ``verify``/``proxy`` for a custom transport.
    """
    return InstrumentedTransport(
        inner if inner is not None else httpx2.AsyncHTTPTransport(),
        in_flight=HTTP_WEBHOOK_IN_FLIGHT,
        requests=HTTP_WEBHOOK_REQUESTS,
        duration=HTTP_WEBHOOK_DURATION,
        endpoint_label=origin_label,
    )


# --- Kubernetes API server ------------------------------------------------------------------------


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def request(self) -> Any: ...


class AsyncTransportLike(Protocol):
    """What ``httpx`` and ``httpx2`` clients need from a transport."""

    async def handle_async_request(self, request: Any) -> Any: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class ApiCall:
    """Filled in by the caller of :meth:`ApiServerMetrics.measure` when it knows the status code."""

    code: int | str | None = None


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries: ``KubeError.status`` or ``ApiError.code``."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


class ApiServerMetrics:
    """Records ``apiserver_request_total{cluster,code}`` and ``apiserver_request_duration{cluster}``.

    ``cluster`` is the API server's ``host[:port]`` as its URL gives it, as client-go (and so the Go
    original) labels it; one value per process, so the label stays bounded. A request without an
    answer is ``code="<error>"``, as in client-go. ``apiserver_reachable`` follows the last request:
    1 when the API server answered (any status), 0 when nothing did, or only a gateway in front of it
    (502, 504); a request the handler abandoned changes nothing.
    """

    def __init__(
        self,
        cluster: str,
        *,
        requests: Counter = APISERVER_REQUESTS,
        duration: Histogram = APISERVER_REQUEST_DURATION,
        reachable: Gauge = APISERVER_REACHABLE,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.cluster = cluster
        self._requests = requests
        self._duration = duration
        self._reachable = reachable
        self._clock = clock
        # Start times for the event hooks, keyed by request object; weak, so a request that never
        # gets a response (network error) does not leak an entry.
        self._started: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def record(self, *, code: int | str, duration_seconds: float) -> None:
        self._requests.labels(cluster=self.cluster, code=str(code)).inc()
        self._duration.labels(cluster=self.cluster).observe(duration_seconds)

    @contextmanager
    def measure(self) -> Iterator[ApiCall]:
        """Time one API call. Set ``call.code`` when the status is known; otherwise a normal exit
        counts as ``200`` and an exception as its status (``KubeError``/``ApiError``) or ``"<error>"``.

        >>> with metrics.measure() as call:
        ...     node = await client.get(Node, name)
        """
        call = ApiCall()
        started = self._clock()
        try:
            yield call
        except asyncio.CancelledError:
            # Abandoned by us (a deadline, shutdown): it says nothing of the server, the gauge stays.
            self.record(code=API_CODE_ERROR, duration_seconds=self._clock() - started)
            raise
        except BaseException as exc:
            status = call.code if call.code is not None else _status_of(exc)
            elapsed = self._clock() - started
            self.record(code=API_CODE_ERROR if status is None else status, duration_seconds=elapsed)
            self._reachable.set(_reached(status))
            raise
        code = 200 if call.code is None else call.code
        self.record(code=code, duration_seconds=self._clock() - started)
        self._reachable.set(_reached(code))

    def event_hooks(self) -> dict[str, list[Callable[[Any], Any]]]:
        """``event_hooks`` for an ``httpx``/``httpx2`` ``AsyncClient``: counts every answered request.

        Requests that get no answer at all are not seen by response hooks; use :meth:`transport`
        or :meth:`measure` where network failures must be counted too.
        """

        async def on_request(request: Any) -> None:
            self._started[request] = self._clock()

        async def on_response(response: _Response) -> None:
            started = self._started.pop(response.request, None)
            if started is not None:
                self.record(code=response.status_code, duration_seconds=self._clock() - started)
                self._reachable.set(_reached(response.status_code))

        return {"request": [on_request], "response": [on_response]}

    def transport(self, inner: AsyncTransportLike) -> ApiServerTransport:
        return ApiServerTransport(inner, metrics=self)


#: Answers from something in front of the API server (a forward proxy, a load balancer) that could
#: not reach it: no answer from the API server itself.
_GATEWAY_FAILURES: Final = frozenset({502, 504})


def _reached(status: int | str | None) -> int:
    """``apiserver_reachable`` after a request that ended with ``status`` (None: no answer)."""
    return 0 if status is None or status == API_CODE_ERROR or status in _GATEWAY_FAILURES else 1


class ApiServerTransport:
    """A transport wrapper (``httpx`` or ``httpx2``) that records every API server request."""

    def __init__(self, inner: AsyncTransportLike, *, metrics: ApiServerMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def handle_async_request(self, request: Any) -> Any:
        with self._metrics.measure() as call:
            response = await self._inner.handle_async_request(request)
            call.code = response.status_code
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


__all__ = [
    "API_CODE_ERROR",
    "CODE_CANCELLED",
    "CODE_ERROR",
    "ApiCall",
    "ApiServerMetrics",
    "ApiServerTransport",
    "AsyncTransportLike",
    "InstrumentedTransport",
    "RequestMetrics",
    "RequestRecorder",
    "duration_method_label",
    "imds_transport",
    "method_label",
    "origin_label",
    "path_label",
    "webhook_transport",
]
