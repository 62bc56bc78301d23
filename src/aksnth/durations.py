"""Durations written as text, read as seconds: one parser for each form the program meets.

* Go's ``time.ParseDuration`` (``5s``, ``1m30s``, ``300ms``), as the Go original's flags and config
  file take them; ``format_duration`` writes them back.
* ``Retry-After`` (RFC 9110: delay-seconds or an HTTP date), as IMDS, the API server and the
  notification receivers send it, and the numbers some of them put in their bodies instead
  (Telegram's ``parameters.retry_after``, a Kubernetes Status's ``details.retryAfterSeconds``).

Pure: no I/O, the clock only when the caller gives no ``now``. A value that is not a finite number
of seconds is *unusable* (None), never NaN or infinity: a NaN delay makes ``asyncio.sleep`` return
at once, which turns a backoff into a retry storm.
"""

from __future__ import annotations

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
        # Imported here: an HTTP date is rare, and the email package is a few milliseconds of every
        # start (this module is on the path to the first poll).
        import email.utils  # noqa: PLC0415

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


# --- Go durations ------------------------------------------------------------------------------------

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# One "<number><unit>" component; like Go, the unit is everything up to the next digit or dot.
_DURATION_COMPONENT = re.compile(r"(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?(?P<unit>[^0-9.]*)")
DURATION_EXAMPLES = "examples: 300ms, 5s, 1m30s, 1h"


def parse_go_duration(text: str) -> float:
    """``time.ParseDuration`` in seconds: ``5s``, ``1m30s``, ``300ms``, ``1.5h``, ``-1s``; a bare ``0``."""
    rest = text
    sign = 1.0
    if rest[:1] in ("-", "+"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"not a duration ({DURATION_EXAMPLES})")
    total = 0.0
    position = 0
    while position < len(rest):
        match = _DURATION_COMPONENT.match(rest, position)
        assert match is not None  # every group may be empty, so it always matches
        integer, fraction, unit = match.group("int"), match.group("frac"), match.group("unit")
        if not integer and not fraction:
            raise ValueError(f"not a duration ({DURATION_EXAMPLES})")
        if not unit:
            raise ValueError(f"missing unit in duration ({DURATION_EXAMPLES})")
        if unit not in _DURATION_UNITS:
            raise ValueError(f"unknown unit {unit!r} in duration (units: ns, us, ms, s, m, h)")
        total += float(f"{integer or '0'}.{fraction or '0'}") * _DURATION_UNITS[unit]
        position = match.end()
    if not math.isfinite(total) or total > 2**63 / 1e9:
        raise ValueError("duration out of range")
    return sign * total


def format_duration(seconds: float) -> str:
    """Go's ``Duration.String`` for the values our defaults use: ``1s``, ``300ms``, ``1m30s``, ``0s``."""
    if seconds == 0:
        return "0s"
    if abs(seconds) < 1:
        milliseconds = seconds * 1000
        return f"{milliseconds:g}ms"
    sign = "-" if seconds < 0 else ""
    remaining = abs(seconds)
    hours, remaining = divmod(remaining, 3600)
    minutes, remaining = divmod(remaining, 60)
    text = ""
    if hours:
        text += f"{int(hours)}h"
    if hours or minutes:
        text += f"{int(minutes)}m"
    text += f"{remaining:g}s"
    return sign + text
