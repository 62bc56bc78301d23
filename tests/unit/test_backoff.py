"""The delay between IMDS polls (aksnth.azure.imds.PollBackoff): pure arithmetic, no sleeping."""

from __future__ import annotations

import random

import pytest

from aksnth.azure.imds import MIN_REQUEST_SPACING_SECONDS, PollBackoff
from aksnth.errors import ImdsDocumentError, ImdsUnavailable


def unavailable(status: int | None = 500, retry_after: float | None = None) -> ImdsUnavailable:
    return ImdsUnavailable("test", status=status, retry_after_seconds=retry_after)


def test_success_waits_the_interval_and_resets_the_attempt() -> None:
    backoff = PollBackoff(1.0, rng=random.Random(1))
    assert backoff.on_success() == 1.0
    backoff.on_error(unavailable())
    backoff.on_error(unavailable())
    assert backoff.attempt == 2
    assert backoff.on_success() == 1.0
    assert backoff.attempt == 0


def test_errors_back_off_exponentially_from_the_interval_to_the_cap() -> None:
    backoff = PollBackoff(1.0, cap_seconds=30.0, jitter=0.0)
    delays = [backoff.on_error(unavailable(500)) for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff.attempt == 8


@pytest.mark.parametrize(
    "error", [unavailable(429), unavailable(503), unavailable(None), ImdsDocumentError("bad")]
)
def test_every_non_gone_error_backs_off(error: Exception) -> None:
    backoff = PollBackoff(1.0, jitter=0.0)
    assert [backoff.on_error(error) for _ in range(3)] == [1.0, 2.0, 4.0]  # type: ignore[arg-type]


def test_jitter_spreads_delays_downwards_but_never_below_the_interval_or_above_the_cap() -> None:
    for seed in range(50):
        backoff = PollBackoff(1.0, cap_seconds=30.0, jitter=0.2, rng=random.Random(seed))
        delays = [backoff.on_error(unavailable()) for _ in range(12)]
        for attempt, delay in enumerate(delays, start=1):
            raw = min(30.0, 2.0 ** (attempt - 1))
            assert max(1.0, raw * 0.8) <= delay <= raw
    spread = {PollBackoff(1.0, rng=random.Random(seed)).on_error(unavailable()) for seed in range(5)}
    assert spread == {1.0}  # attempt 1 is the interval itself
    third = set()
    for seed in range(20):
        backoff = PollBackoff(1.0, rng=random.Random(seed))
        third.add(round([backoff.on_error(unavailable()) for _ in range(3)][-1], 6))
    assert len(third) > 10  # pods of a DaemonSet do not retry in lockstep


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    backoff = PollBackoff(1.0, cap_seconds=30.0, jitter=0.0)
    assert backoff.on_error(unavailable(429, retry_after=7.0)) == 7.0
    assert (
        backoff.on_error(unavailable(429, retry_after=0.0)) == 2.0
    )  # shorter than the backoff: backoff wins
    assert backoff.on_error(unavailable(429, retry_after=3600.0)) == 30.0


def test_gone_is_retried_quickly_for_70_seconds_then_backs_off() -> None:
    backoff = PollBackoff(1.0, cap_seconds=30.0, jitter=0.0)
    quick = []
    while True:
        delay = backoff.on_error(unavailable(410))
        if delay > 1.0:
            break
        quick.append(delay)
    assert len(quick) == 70
    assert set(quick) == {1.0}
    assert delay == 30.0  # by now the attempt count is past the cap
    assert backoff.on_success() == 1.0
    assert backoff.on_error(unavailable(410)) == 1.0  # a new run of 410s gets its quick window again


def test_gone_with_a_long_interval_is_still_retried_every_second() -> None:
    backoff = PollBackoff(10.0, cap_seconds=30.0, jitter=0.0)
    assert backoff.on_error(unavailable(410)) == 1.0
    assert backoff.on_error(unavailable(500)) == 20.0  # 500 after 410: exponential on the attempt count


@pytest.mark.parametrize("interval", [0.001, 0.05, 0.2])
def test_never_more_than_five_requests_per_second(interval: float) -> None:
    backoff = PollBackoff(interval, jitter=0.0)
    delays = [backoff.on_success()]
    delays += [backoff.on_error(unavailable(status)) for status in (410, 410, 429, 500, 410)]
    delays += [backoff.on_error(unavailable(429, retry_after=0.0))]
    assert min(delays) >= MIN_REQUEST_SPACING_SECONDS


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        PollBackoff(0)
    with pytest.raises(ValueError, match="jitter"):
        PollBackoff(1.0, jitter=1.0)


def test_the_default_cap_leaves_most_of_a_preempts_notice() -> None:
    """After any outage the next poll comes within 5 s: a Preempt gives at most 30 s of notice."""
    backoff = PollBackoff(1.0, jitter=0.0)
    delays = [backoff.on_error(unavailable(503)) for _ in range(20)]
    assert max(delays) == 5.0
    assert backoff.on_error(unavailable(429, retry_after=3600.0)) == 5.0
