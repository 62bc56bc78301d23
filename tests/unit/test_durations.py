"""Durations as text: the handler's one Go duration parser (flags, -config file) and its one Retry-After
parser (IMDS, the API server, notification receivers); and the IMDS simulator's own reading of Go
durations (it depends on nothing of the handler), held to read every Go duration as the handler does."""

from __future__ import annotations

import argparse

import pytest

from aksnth.durations import finite_seconds, format_duration, parse_go_duration, parse_retry_after
from imds_simulator import parse_duration as simulator_duration

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


GO_DURATIONS = [
    ("5s", 5.0),
    ("1m30s", 90.0),
    ("300ms", 0.3),
    ("1h", 3600.0),
    ("1.5h", 5400.0),
    (".5s", 0.5),
    ("5.s", 5.0),
    ("1h2m3s4ms", 3723.004),
    ("100us", 1e-4),
    ("100\u00b5s", 1e-4),
    ("100\u03bcs", 1e-4),
    ("10ns", 1e-8),
    ("0", 0.0),
    ("0s", 0.0),
    ("-1s", -1.0),
    ("+2s", 2.0),
]


@pytest.mark.parametrize(("text", "seconds"), GO_DURATIONS)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


BAD_GO_DURATIONS = ["", "5", "s", "1x", ".s", "1.2.3s", "5 s", "-", "1d", "5S", "1s5"]


@pytest.mark.parametrize("text", BAD_GO_DURATIONS)
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(1.0, "1s"), (0.3, "300ms"), (90.0, "1m30s"), (0.0, "0s")])
def test_format_duration_writes_what_go_writes(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "seconds"), [("1m30s", 90.0), ("100\u03bcs", 1e-4), (" 30s ", 30.0), ("30", 30.0), ("1.5", 1.5)]
)
def test_the_simulator_reads_go_durations_and_plain_seconds(text: str, seconds: float) -> None:
    assert simulator_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "seconds"), GO_DURATIONS)
def test_the_simulator_reads_every_go_duration_as_the_handler_does(text: str, seconds: float) -> None:
    assert simulator_duration(text) == pytest.approx(parse_go_duration(text)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", [*(bad for bad in BAD_GO_DURATIONS if bad != "5"), "nan", "inf", "1e3", "1_000", "1" * 400 + "h"]
)
def test_the_simulator_refuses_what_is_no_duration(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        simulator_duration(text)
