"""The Kubernetes API client: opening it, and the one place where its errors become ours.

:class:`aksnth.kube.api.KubeClient` sits on ``httpx2``. Every request goes through a transport wrapper
that records ``apiserver_request_total{cluster,code}`` and ``apiserver_request_duration{cluster}``
(answered, failed and abandoned requests alike). Callers wrap each API call in :func:`api_call`,
which bounds it in time and translates :class:`~aksnth.kube.api.ApiError` and ``httpx2`` errors into
the ``KubeError`` tree.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import httpx2

from aksnth import __version__
from aksnth.config import KubeSettings
from aksnth.durations import finite_seconds, parse_retry_after
from aksnth.errors import (
    EvictionBlocked,
    KubeError,
    KubeForbidden,
    KubeUnavailable,
    WriteConflict,
)
from aksnth.kube.api import ApiError, KubeClient, UnreadableAnswer, shorten
from aksnth.kube.credentials import load_access
from aksnth.kube.keys import FIELD_MANAGER
from aksnth.observe.httpmetrics import ApiServerMetrics
from aksnth.retry import Backoff, retry

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Concurrent connections to the API server: the drain issues up to this many evictions at once.
MAX_CONNECTIONS: Final = 32
#: Upper bound of one API call as a whole (httpx2's timeouts bound each phase, not the sum).
DEFAULT_CALL_TIMEOUT_SECONDS: Final = 30.0
#: Longest wait that an answer's Retry-After (or ``details.retryAfterSeconds``) buys before a retry
#: of :func:`with_retries`. The API server itself asks for 1 s (API Priority and Fairness, a request
#: arriving while it starts) or 5 s (while it shuts down); a longer one comes from something in front
#: of it, and waiting it out would stall a cordon while the VM's notice runs out.
MAX_RETRY_AFTER_SECONDS: Final = 5.0
USER_AGENT: Final = f"aks-node-termination-handler/{__version__}"


def cluster_label(server: str) -> str:
    """The ``cluster`` label of the API server metrics: the server URL's ``host[:port]``, as client-go
    (and so the Go original) labels them, e.g. ``10.0.0.1:443`` in a pod."""
    netloc = urlsplit(server).netloc
    return netloc.rpartition("@")[2] or server


def open_client(settings: KubeSettings) -> KubeClient:
    """A client for the kubeconfig file's context (or in-cluster), metered, with timeouts.

    The caller closes it (``await client.close()``, or ``async with``). Requests go through the
    forward proxy that kubectl would use (``proxy-url``, else HTTPS_PROXY/HTTP_PROXY/NO_PROXY; see
    :mod:`aksnth.kube.proxy`), in a pod too, as client-go does.
    """
    access = load_access(settings.kubeconfig, settings.context)
    seconds = settings.request_timeout_seconds
    # verify=False only where no TLS is spoken (an http:// server): httpx2 would otherwise build a
    # context with the system's trust store for nothing, about 2.6 MiB.
    inner = httpx2.AsyncHTTPTransport(
        verify=access.ssl_context if access.ssl_context is not None else False,
        limits=httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=8),
        proxy=access.proxy,
    )
    transport = ApiServerMetrics(cluster_label(access.server)).transport(inner)
    http = httpx2.AsyncClient(
        base_url=access.server,
        auth=access.auth,
        transport=transport,  # type: ignore[arg-type]  # duck-typed httpx2 transport
        timeout=httpx2.Timeout(seconds, connect=min(seconds, 5.0)),
        headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        trust_env=False,  # the proxy was chosen as kubectl chooses it: httpx2's own rules differ
        follow_redirects=False,
    )
    return KubeClient(http, field_manager=FIELD_MANAGER)


# --- errors -----------------------------------------------------------------------------------------


def _retry_after(response: httpx2.Response | None, details: dict[str, Any]) -> float | None:
    """Seconds from the Retry-After header, else from ``status.details.retryAfterSeconds``."""
    if response is not None:
        header = parse_retry_after(response.headers.get("Retry-After"))
        if header is not None:
            return header
    seconds = finite_seconds(details.get("retryAfterSeconds"))
    return seconds or None  # 0 is the field's "not set"


def _budget_name(details: dict[str, Any], message: str) -> str | None:
    """The PodDisruptionBudget named in a 429 from the Eviction API (``causes[].message``)."""
    causes = details.get("causes")
    texts = [
        cause.get("message") or ""
        for cause in (causes if isinstance(causes, list) else [])
        if isinstance(cause, dict) and isinstance(cause.get("message") or "", str)
    ] + [message]
    for text in texts:
        marker = "disruption budget "
        start = text.find(marker)
        if start >= 0:
            name = text[start + len(marker) :].split()[0].rstrip(".,")
            if name and name != "is":
                return name
    return None


def translate(exc: BaseException, what: str, *, not_found: type[KubeError] = KubeError) -> KubeError | None:
    """The ``KubeError`` for an API or httpx2 error, or None if ``exc`` is none of theirs.

    ``not_found`` is the class for a 404 (``NodeNotFound`` when reading our own node); other 404s
    are a plain ``KubeError`` with ``status=404``.
    """
    if isinstance(exc, ApiError):
        status_code = exc.status.get("code")
        code = status_code if isinstance(status_code, int) and status_code > 0 else exc.code
        if not exc.status:
            # Not a JSON Status answer (a proxy, a load balancer): only the status code is trusted.
            text = shorten(f"{what}: HTTP {code} {exc.response.reason_phrase}".rstrip())
            return _by_status(code, text, response=exc.response, details={}, raw="", not_found=not_found)
        raw = exc.message
        text = shorten(f"{what}: {raw or exc.reason or f'HTTP {code}'}")
        return _by_status(
            code, text, response=exc.response, details=exc.details, raw=raw, not_found=not_found
        )
    if isinstance(exc, UnreadableAnswer):
        # Something between us and the API server answered (a proxy's page), or the answer was cut.
        return KubeUnavailable(shorten(f"{what}: {exc}"))
    if isinstance(exc, httpx2.HTTPError):
        kind = type(exc).__name__
        return KubeUnavailable(shorten(f"{what}: {kind}: {exc}" if str(exc) else f"{what}: {kind}"))
    return None


def _by_status(
    code: int,
    text: str,
    *,
    response: httpx2.Response | None,
    details: dict[str, Any],
    raw: str,
    not_found: type[KubeError],
) -> KubeError:
    if code == 404:
        return not_found(text, status=404)
    if code == 409:
        return WriteConflict(text, status=409)
    if code == 429:
        return EvictionBlocked(
            text, retry_after_seconds=_retry_after(response, details), budget=_budget_name(details, raw)
        )
    if code in (401, 403):
        return KubeForbidden(text, status=code)
    if code >= 500:
        return KubeUnavailable(text, status=code)
    return KubeError(text, status=code)


@asynccontextmanager
async def api_call(
    what: str,
    *,
    not_found: type[KubeError] = KubeError,
    timeout_seconds: float = DEFAULT_CALL_TIMEOUT_SECONDS,
) -> AsyncIterator[None]:
    """Bound one API call in time and translate its errors; ``what`` names it in messages.

    >>> async with api_call(f"get node {name}", not_found=NodeNotFound):
    ...     node = await client.get(node_path(name))
    """
    try:
        async with asyncio.timeout(timeout_seconds):
            yield
    except TimeoutError as exc:
        raise KubeUnavailable(f"{what}: no answer within {timeout_seconds:g}s") from exc
    except (ApiError, UnreadableAnswer, httpx2.HTTPError) as exc:
        translated = translate(exc, what, not_found=not_found)
        assert translated is not None
        raise translated from exc


# --- retries ----------------------------------------------------------------------------------------

#: Transient: the server is away or answered 5xx, a write lost a race (409), or the server asked us to
#: slow down (429, from API Priority and Fairness; its Retry-After is honoured, up to a bound).
RETRYABLE: Final = (KubeUnavailable, WriteConflict, EvictionBlocked)


#: The wait before retry 1, 2, 3… of :func:`with_retries`: up to 0.1 s doubling to 2 s, "full jitter"
#: (a random point of the step, never under 50 ms), so that a fleet of handlers spreads out.
KUBE_BACKOFF: Final = Backoff(
    first_seconds=0.1,
    max_seconds=2.0,
    spread=(0.0, 1.0),
    min_seconds=0.05,
    max_retry_after_seconds=MAX_RETRY_AFTER_SECONDS,
    retry_after_replaces=True,
)


def backoff_seconds(attempt: int) -> float:
    """The wait of :data:`KUBE_BACKOFF` before retry ``attempt`` (1, 2, 3…), drawn now."""
    return KUBE_BACKOFF.delay(attempt, draw=random.random())


def _asked_wait(exc: BaseException) -> float | None:
    """A 429's Retry-After (0 is "not said")."""
    return (exc.retry_after_seconds or None) if isinstance(exc, EvictionBlocked) else None


async def with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int = 5,
    deadline: float | None = None,
    retry_on: tuple[type[BaseException], ...] = RETRYABLE,
    what: str = "Kubernetes API call",
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Call ``fn`` until it succeeds, at most ``attempts`` times and not past ``deadline`` (loop time).

    Only ``retry_on`` errors are retried (a conflict means "re-read and try again": ``fn`` must
    re-read); the last error is raised as it is. A 429's Retry-After is honoured up to
    :data:`MAX_RETRY_AFTER_SECONDS`; a wait that would end past ``deadline`` is not begun (the error
    is raised at once). Sleeps (``sleep``) are cancellable.
    """
    return await retry(
        fn,
        backoff=KUBE_BACKOFF,
        retry_on=retry_on,
        what=what,
        attempts=attempts,
        deadline=deadline,
        retry_after=_asked_wait,
        logger=log,
        sleep=sleep,
    )
