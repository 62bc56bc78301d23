"""A Telegram sink: the Bot API's ``sendMessage``, and ``getMe`` as a start-up check.

The bot token is part of every Bot API URL (``/bot<token>/method``): it is redacted from every
message this module produces, and only ``scheme://host`` of the API is ever logged.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx2

from aksnth.config import TelegramSettings
from aksnth.durations import finite_seconds
from aksnth.errors import ConfigError
from aksnth.notify.http import (
    DeliveryError,
    RetryPolicy,
    deliver,
    describe_refusal,
    header_retry_after,
    new_client,
    notify_backoff,
    safe_origin,
    url_secrets,
)
from aksnth.notify.webhook import check_http_url
from aksnth.observe.redaction import Redactor
from aksnth.retry import Backoff

log = logging.getLogger(__name__)

# The Bot API refuses longer texts with 400; a shortened message beats none.
MAX_TEXT_CHARS = 4096
SEND_RETRIES = 3
CHECK_RETRIES = 1
_TOKEN_STATUSES = (401, 404)  # what the Bot API answers for a wrong or revoked token


def _json(response: httpx2.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _result_field(response: httpx2.Response, name: str) -> object:
    result = _json(response).get("result")
    return result.get(name) if isinstance(result, dict) else None


def _refusal(response: httpx2.Response, redact: Redactor) -> str:
    if response.status_code in _TOKEN_STATUSES:
        return (
            f"the bot token was rejected (HTTP {response.status_code}); "
            "check -telegram.token (or TELEGRAM_TOKEN)"
        )
    description = _json(response).get("description")
    if isinstance(description, str) and description:
        return redact(f"HTTP {response.status_code}: {description}")
    return describe_refusal(response, redact)


def _retry_after(response: httpx2.Response) -> float | None:
    """The header, or the Bot API's own ``parameters.retry_after`` on a 429."""
    from_header = header_retry_after(response)
    if from_header is not None:
        return from_header
    parameters = _json(response).get("parameters")
    return finite_seconds(parameters.get("retry_after")) if isinstance(parameters, dict) else None


def shorten(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TelegramSink:
    """Sends texts to one chat through the Bot API."""

    kind = "telegram"  # the ``sink`` label of the notifications metric

    def __init__(
        self,
        settings: TelegramSettings,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        token = settings.token.reveal()
        if not token:
            raise ConfigError("-telegram.token: empty (set it, or TELEGRAM_TOKEN, or leave Telegram off)")
        api_url = settings.api_url.rstrip("/")
        check_http_url(api_url, flag="-telegram.apiURL")
        proxy = settings.http_proxy.reveal()
        if proxy:
            check_http_url(proxy, flag="-webhook.http-proxy")
        self._settings = settings
        self._base = f"{api_url}/bot{token}"
        self.target = f"telegram {safe_origin(api_url)}"
        self._redact = Redactor([self._base, f"bot{token}", token, *url_secrets(proxy)])
        backoff = backoff or notify_backoff()
        self._send_policy = RetryPolicy(
            retries=SEND_RETRIES, attempt_timeout_seconds=settings.timeout_seconds, backoff=backoff
        )
        self._check_policy = RetryPolicy(
            retries=CHECK_RETRIES, attempt_timeout_seconds=settings.timeout_seconds, backoff=backoff
        )
        self._client = new_client(
            transport=transport, verify=True, proxy=proxy, timeout_seconds=settings.timeout_seconds
        )

    async def send(self, text: str) -> None:
        """``sendMessage`` to the configured chat; raises NotifyError when it cannot be delivered."""
        payload = {"chat_id": self._settings.chat_id, "text": shorten(text)}
        request = self._client.build_request("POST", f"{self._base}/sendMessage", json=payload)
        response = await self._call(request, self._send_policy)
        message_id = _result_field(response, "message_id")
        log.debug("%s: message %s sent to chat %d", self.target, message_id, self._settings.chat_id)

    async def check(self) -> None:
        """``getMe``: proves the token and the path to the API. Raises NotifyError (never fatal)."""
        request = self._client.build_request("GET", f"{self._base}/getMe")
        response = await self._call(request, self._check_policy)
        username = _result_field(response, "username") or "?"
        log.info("%s: authorized as bot @%s", self.target, username)

    async def _call(self, request: httpx2.Request, policy: RetryPolicy) -> httpx2.Response:
        response = await deliver(
            self._client,
            request,
            policy=policy,
            target=self.target,
            redact=self._redact,
            refusal=_refusal,
            retry_after=_retry_after,
        )
        if _json(response).get("ok") is False:  # a 2xx that the Bot API still calls a failure
            raise DeliveryError(
                f"{self.target} refused the request: {_refusal(response, self._redact)}",
                attempts=1,
                status=response.status_code,
            )
        return response

    async def aclose(self) -> None:
        await self._client.aclose()
