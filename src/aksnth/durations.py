"""Durations written as text, read as seconds: one parser for each form the program meets.

* ``Retry-After`` (RFC 9110: delay-seconds or an HTTP date), as IMDS, the API server and the
  notification receivers send it, and the numbers some of them put in their bodies instead
  (Telegram's ``parameters.retry_after``, a Kubernetes Status's ``details.retryAfterSeconds``).

Pure: no I/O, the clock only when the caller gives no ``now``. A value that is not a finite number
of seconds is *unusable* (None), never NaN or infinity: a NaN delay makes ``asyncio.sleep`` return
at once, which turns a backoff into a retry storm.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from datetime import UTC

# delay-seconds is 1*DIGIT; a fraction or a sign is tolerated (a negative wait means "now"), but not
# what float() would also take: "nan", "inf", "1e3", "1_000".
_DELAY_SECONDS = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header; None when absent or unusable.

    ``now`` is the current Unix time (default: the clock), for an HTTP date. A date in the past, or
    a negative number, is 0: retry now.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELAY_SECONDS.fullmatch(text):
        return finite_seconds(float(text))
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000" or no zone: HTTP dates are always GMT
        moment = moment.replace(tzinfo=UTC)
    return finite_seconds(moment.timestamp() - (time.time() if now is None else now))


def finite_seconds(value: object) -> float | None:
    """A number of seconds to wait, from a header or a JSON body: ``max(0, value)``, or None when
    ``value`` is not a finite number (NaN, infinity, a string, a boolean, None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
