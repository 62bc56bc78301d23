"""A webhook sink: one rendered body to one URL (Slack, Teams, a Pushgateway, any HTTP receiver).

The URL may carry a token (Slack's path, a password, a query parameter), so only its
``scheme://host[:port]`` ever appears in logs and errors.
"""

from __future__ import annotations

import logging

import httpx2

from aksnth import __version__
from aksnth.config import WebhookSettings
from aksnth.errors import ConfigError
from aksnth.notify.http import (
    RetryPolicy,
    deliver,
    new_client,
    notify_backoff,
    safe_origin,
    url_secrets,
)
from aksnth.observe.redaction import Redactor
from aksnth.retry import Backoff

log = logging.getLogger(__name__)

CERTIFICATE_HINT = "set -webhook.insecureSkip=true to skip verification (not recommended)"
USER_AGENT = f"aks-node-termination-handler/{__version__}"


def check_http_url(url: str, *, flag: str, schemes: tuple[str, ...] = ("http", "https")) -> httpx2.URL:
    """Parse a URL from a flag; a ConfigError names the flag and shows no more than scheme://host."""
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError) as exc:
        raise ConfigError(f"{flag}: not a valid URL ({safe_origin(url)})") from exc
    if parsed.scheme not in schemes or not parsed.host:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{flag}: must be an absolute {wanted} URL, got {safe_origin(url)}")
    return parsed


def wire_body(rendered: str) -> str:
    """The bytes a webhook receives for a rendered template: it plus a newline, as in the Go original."""
    return rendered + "\n"


class WebhookSink:
    """Delivers a body to one webhook with the settings' method, content type, headers and retries."""

    kind = "webhook"  # the ``sink`` label of the notifications metric

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        url = settings.url.reveal()
        proxy = settings.http_proxy.reveal()
        check_http_url(url, flag="-webhook.url")
        if proxy:
            check_http_url(proxy, flag="-webhook.http-proxy")
        self._settings = settings
        self._url = url
        self.target = f"webhook {safe_origin(url)}"
        self._redact = Redactor(
            [
                *url_secrets(url),
                *url_secrets(proxy),
                *(value for _, value in settings.headers),
            ]
        )
        self._policy = RetryPolicy(
            retries=settings.retries,
            attempt_timeout_seconds=settings.timeout_seconds,
            backoff=backoff or notify_backoff(),
        )
        self._headers = {"Content-Type": settings.content_type, "User-Agent": USER_AGENT}
        self._headers.update(dict(settings.headers))  # the user's headers win, Content-Type included
        self._client = new_client(
            transport=transport,
            verify=not settings.insecure_skip_verify,
            proxy=proxy,
            timeout_seconds=settings.timeout_seconds,
        )
        if settings.insecure_skip_verify:
            log.warning(
                "%s: TLS certificate verification is off (-webhook.insecureSkip=true); "
                "anyone on the path can read or change notifications",
                self.target,
            )
        if proxy:
            log.info("%s: requests go through the proxy %s", self.target, safe_origin(proxy))

    async def send(self, body: str) -> None:
        """POST (or the configured method) ``body``; raises NotifyError when it cannot be delivered.

        A newline is appended to every body, as the Go original did (also to a body that ends with
        one): receivers get the same bytes as before, and the Prometheus text format (a Pushgateway
        payload given inline with -webhook.template) needs its final newline.
        """
        content = wire_body(body)
        request = self._client.build_request(
            self._settings.method.upper(), self._url, content=content.encode(), headers=self._headers
        )
        log.debug("%s: sending %d bytes (%s)", self.target, len(request.content), self._settings.content_type)
        await deliver(
            self._client,
            request,
            policy=self._policy,
            target=self.target,
            redact=self._redact,
            certificate_hint=CERTIFICATE_HINT,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
