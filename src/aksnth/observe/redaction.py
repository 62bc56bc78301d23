"""Redaction: secrets never reach a log line or an error message.

Two kinds of masking, both applied by :class:`Redactor`: the values it was given (tokens, webhook
and proxy URLs with their passwords, paths and queries, header values) and known secret shapes
(Telegram bot tokens, passwords in URLs, ``Authorization`` headers, bearer tokens, token-like query
parameters), which catch what nobody registered.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"

# (pattern, replacement); every replacement keeps enough around the secret to tell what was there.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # https://api.telegram.org/bot<token>/sendMessage
    (re.compile(r"(/bot)[^/\s'\"?#]+"), rf"\g<1>{MASK}"),
    # a bare Telegram bot token: <bot id>:<35 characters>
    (re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}"), MASK),
    # scheme://user:password@host (proxies, webhooks); greedy up to the last @ of the authority
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@'\"]*:)[^/\s'\"]*@"), rf"\g<1>{MASK}@"),
    # Authorization: Bearer x / 'authorization': 'Basic x' / Proxy-Authorization=x
    (
        re.compile(
            r"(?i)((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)"
            r"(?:(bearer|basic|digest|token|negotiate)\s+)?[^\s'\",;}]+"
        ),
        rf"\g<1>\g<2> {MASK}",
    ),
    # a bearer token anywhere else
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\g<1>{MASK}"),
    # token-like query parameters (?token=, &sig= of an Azure SAS URL, api_key=, password=)
    (
        re.compile(
            r"(?i)([?&;](?:token|access_token|auth|sig|signature|api[_-]?key|key|password|passwd|secret)=)"
            r"[^&\s#'\"]+"
        ),
        rf"\g<1>{MASK}",
    ),
)

MIN_SECRET_LENGTH = 4


class Redactor:
    """Masks secret values and known secret shapes in text; callable, ``redact(text)`` in short.

    One per process masks the logs (``aksnth.observe.logging``); each notification sink has its own,
    holding its URL, token and headers, for the messages it builds. Thread-safe: secrets can be
    registered while other threads redact.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        for secret in secrets:
            self.register_secret(secret)

    def register_secret(self, value: str) -> None:
        """Mask ``value`` (and its URL-encoded form) from now on.

        Values shorter than ``MIN_SECRET_LENGTH`` are ignored: masking them would shred ordinary
        words (or every ``/`` of a URL path); secrets that short still get masked by the URL and
        header patterns.
        """
        if len(value) < MIN_SECRET_LENGTH:
            return
        forms = {value, quote(value, safe="")}
        with self._lock:
            # longest first, so a secret that contains another (a URL, its password) is masked whole
            self._secrets = tuple(sorted(set(self._secrets) | forms, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    __call__ = redact
