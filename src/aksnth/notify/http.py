"""HTTP delivery shared by the webhook and Telegram sinks: transport, retries, redacted messages.

One request function walks the retry schedule: each attempt is bounded as a whole by
``asyncio.timeout`` (connect, TLS, a slow body: everything), transient failures (connection errors,
timeouts, 429, 5xx) are retried with exponential backoff and jitter, ``Retry-After`` is honoured,
and any other answer ends the delivery at once. Every message that leaves this module is redacted:
webhook URLs and Telegram paths can carry tokens, so only ``scheme://host[:port]`` is ever shown.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import certifi
import httpx2

from aksnth.durations import parse_retry_after
from aksnth.errors import NotifyError
from aksnth.observe.httpmetrics import origin_label, webhook_transport
from aksnth.observe.redaction import Redactor
from aksnth.retry import Backoff, retry

log = logging.getLogger(__name__)

_BODY_SNIPPET_CHARS = 200


class DeliveryError(NotifyError):
    """A notification was not delivered; says after how many attempts and with which last status."""

    def __init__(self, message: str, *, attempts: int, status: int | None = None):
        super().__init__(message)
        self.attempts = attempts
        self.status = status


def notify_backoff(
    *,
    initial_seconds: float = 1.0,
    multiplier: float = 2.0,
    max_seconds: float = 10.0,
    max_retry_after_seconds: float = 30.0,
) -> Backoff:
    """Delays between attempts: ``initial * multiplier**(n-1)``, capped, with "equal jitter" (a random
    point in the upper half of the step) so that a DaemonSet's pods, all notified of the same platform
    event, do not retry a shared receiver in lock-step. A receiver's Retry-After replaces the step, up
    to ``max_retry_after_seconds``: longer, and the notification would be stale anyway."""
    return Backoff(
        first_seconds=initial_seconds,
        factor=multiplier,
        max_seconds=max_seconds,
        spread=(0.5, 1.0),
        max_retry_after_seconds=max_retry_after_seconds,
        retry_after_replaces=True,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    retries: int = 3  # attempts = retries + 1
    attempt_timeout_seconds: float = 30.0  # bounds one whole attempt
    backoff: Backoff = field(default_factory=notify_backoff)

    @property
    def attempts(self) -> int:
        return max(self.retries, 0) + 1


def is_retryable_status(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that may be secret: all of it, its user info, its path and query."""
    if not url:
        return []
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError):
        return [url]
    parts = [url, str(parsed)]
    if parsed.userinfo:
        parts.append(parsed.userinfo.decode("ascii", "replace"))
    if parsed.password:
        parts.append(parsed.password)
    if len(parsed.path) > 1:
        parts.append(parsed.path)
    if parsed.query:
        parts.append(parsed.query.decode("ascii", "replace"))
    return parts


def safe_origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, the only part of it that ever reaches a log."""
    try:
        return origin_label(httpx2.URL(url))
    except (httpx2.InvalidURL, TypeError):
        return "<invalid URL>"


def build_transport(*, verify: bool = True, proxy: str = "") -> httpx2.AsyncBaseTransport:
    """The network transport of one sink, counted in ``http_webhook_*``.

    TLS verification and the proxy live on the transport: httpx2 ignores a client's ``verify`` and
    ``proxy`` for requests that go through a custom transport. ``retries=0``: we retry ourselves.
    The transport is built on the first request (see :class:`_OnFirstRequest`).
    """

    def connect() -> httpx2.AsyncBaseTransport:
        return httpx2.AsyncHTTPTransport(
            verify=_verified_context() if verify else False,
            proxy=httpx2.Proxy(proxy) if proxy else None,
            retries=0,
        )

    return webhook_transport(_OnFirstRequest(connect))


@functools.cache
def _verified_context() -> ssl.SSLContext:
    """One certificate store for every sink: each load of the CA bundle costs 2.6 MiB of RSS and
    20 ms."""
    return ssl.create_default_context(cafile=certifi.where())


class _OnFirstRequest(httpx2.AsyncBaseTransport):
    """Builds the real transport when the first request goes out, not when the sink is configured.

    Building it loads the CA bundle (2.6 MiB, 20 ms): a handler that has nothing to notify yet,
    which is a handler at start-up and nearly always an idle one, does not pay for it, and its first
    IMDS poll does not wait for it. Certificate problems surface on the first delivery either way.
    """

    def __init__(self, connect: Callable[[], httpx2.AsyncBaseTransport]) -> None:
        self._connect = connect
        self._inner: httpx2.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._inner is None:
            self._inner = self._connect()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()


class _Borrowed(httpx2.AsyncBaseTransport):
    """A transport owned by someone else: our client uses it but never closes it."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        pass


def new_client(
    *, transport: httpx2.AsyncBaseTransport | None, verify: bool, proxy: str, timeout_seconds: float
) -> httpx2.AsyncClient:
    """A client for one sink: its own instrumented transport, or a borrowed one when given.

    ``trust_env=False``: proxies come from our settings only, never from the environment.
    """
    chosen = build_transport(verify=verify, proxy=proxy) if transport is None else _Borrowed(transport)
    return httpx2.AsyncClient(transport=chosen, trust_env=False, timeout=httpx2.Timeout(timeout_seconds))


def is_certificate_error(exc: BaseException) -> bool:
    """True when a connection failed because the server's certificate was not trusted."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        current = current.__cause__ or current.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _describe(exc: BaseException, redact: Redactor) -> str:
    text = redact(str(exc).strip())
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _snippet(response: httpx2.Response, redact: Redactor) -> str:
    try:
        text = response.text.strip()
    except (UnicodeDecodeError, LookupError):
        return ""
    if len(text) > _BODY_SNIPPET_CHARS:
        text = text[:_BODY_SNIPPET_CHARS] + "…"
    return redact(text)


def describe_refusal(response: httpx2.Response, redact: Redactor) -> str:
    """The default wording of a non-retryable answer: status, reason and the start of the body."""
    body = _snippet(response, redact)
    reason = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    return f"{reason}: {body}" if body else reason


def header_retry_after(response: httpx2.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds; None when absent or not a finite delay."""
    return parse_retry_after(response.headers.get("retry-after"))


async def deliver(
    client: httpx2.AsyncClient,
    request: httpx2.Request,
    *,
    policy: RetryPolicy,
    target: str,
    redact: Redactor,
    certificate_hint: str = "",
    refusal: Callable[[httpx2.Response, Redactor], str] = describe_refusal,
    retry_after: Callable[[httpx2.Response], float | None] = header_retry_after,
    rand: Callable[[], float] = random.random,
) -> httpx2.Response:
    """Send ``request`` until it gets a 2xx answer; return that answer or raise :class:`DeliveryError`.

    ``target`` names the receiver in messages (``webhook https://host``); it must hold no secret.
    The error is raised ``from None`` on purpose: httpx2 exceptions keep the request URL, and a
    chained traceback is exactly where a token would leak; its text is in the message, redacted.
    """
    attempts = policy.attempts
    timeout = policy.attempt_timeout_seconds
    tried = 0
    last_status: int | None = None

    async def attempt() -> httpx2.Response:
        nonlocal tried, last_status
        tried += 1
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                response = await client.send(request)
        except (TimeoutError, httpx2.TimeoutException):
            raise _Transient(f"no complete answer within {timeout:g}s") from None
        except httpx2.ProxyError as exc:
            # The proxy itself refused (e.g. 407 on CONNECT): a configuration problem, not transient.
            raise DeliveryError(
                f"{target}: the proxy refused the request ({_describe(exc, redact)}); "
                "check -webhook.http-proxy and its credentials",
                attempts=tried,
                status=last_status,
            ) from None
        except httpx2.TransportError as exc:
            if is_certificate_error(exc):
                hint = f"; {certificate_hint}" if certificate_hint else ""
                raise DeliveryError(
                    f"{target}: TLS certificate verification failed ({_describe(exc, redact)}){hint}",
                    attempts=tried,
                    status=last_status,
                ) from None
            raise _Transient(f"connection failed ({_describe(exc, redact)})") from None
        status = response.status_code
        if 200 <= status <= 299:
            log.debug(
                "%s answered HTTP %d in %.3fs (attempt %d/%d)",
                target,
                status,
                time.monotonic() - started,
                tried,
                attempts,
            )
            return response
        last_status = status
        if not is_retryable_status(status):
            raise DeliveryError(
                f"{target} refused the request: {refusal(response, redact)} "
                f"(attempt {tried}/{attempts}; client errors are not retried)",
                attempts=tried,
                status=status,
            ) from None
        raise _Transient(refusal(response, redact), retry_after=retry_after(response))

    try:
        return await retry(
            attempt,
            backoff=policy.backoff,
            retry_on=(_Transient,),
            what=target,
            attempts=attempts,
            logger=log,
            retry_level=logging.WARNING,
            give_up_level=logging.DEBUG,  # the DeliveryError below says it
            draw=rand,
        )
    except _Transient as exc:
        status_text = "none" if last_status is None else str(last_status)
        raise DeliveryError(
            f"{target}: {exc} (gave up after {attempts} attempt{'s' if attempts != 1 else ''}, "
            f"last HTTP status {status_text})",
            attempts=attempts,
            status=last_status,
        ) from None


class _Transient(Exception):
    """An attempt failed in a way another attempt may not: said by ``problem``."""

    def __init__(self, problem: str, *, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.retry_after_seconds = retry_after
