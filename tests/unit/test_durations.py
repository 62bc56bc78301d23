"""Durations as text: the one Retry-After parser every client uses (IMDS, the API server, receivers)."""

from __future__ import annotations

import pytest

from aksnth.durations import finite_seconds, parse_retry_after

NOW = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("5", 5.0),
        ("120", 120.0),
        (" 2.5 ", 2.5),
        ("1.5", 1.5),
        ("-3", 0.0),  # a wait in the past: now
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
        ("Wed, 21 Oct 2015 07:28:30 -0000", 30.0),  # no zone: HTTP dates are GMT
    ],
)
def test_retry_after_is_delay_seconds_or_an_http_date(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


@pytest.mark.parametrize(
    "header",
    [
        "nan",
        "NaN",
        "-nan",
        "inf",
        "-inf",
        "Infinity",
        "1e3",
        "1e999",
        "1_000",
        "0x10",
        "9" * 400,
        "soon",
        "5s",
    ],
)
def test_retry_after_that_is_no_finite_number_of_seconds_is_unusable(header: str) -> None:
    """None, never NaN or infinity: a NaN delay makes asyncio.sleep return at once (a retry storm)."""
    assert parse_retry_after(header, now=NOW) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3.0),
        (2.5, 2.5),
        (-1, 0.0),
        (0, 0.0),
        (float("nan"), None),
        (float("inf"), None),
        (float("-inf"), None),
        (True, None),
        ("3", None),
        (None, None),
    ],
)
def test_finite_seconds_from_a_json_body(value: object, expected: float | None) -> None:
    assert finite_seconds(value) == expected
