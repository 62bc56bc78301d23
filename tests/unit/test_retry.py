"""The one retry helper (aksnth.retry): the schedule of waits, its jitter, how a Retry-After counts, and
the retry loop's attempts, deadline and logging. No waiting: the sleep and the draw are passed in."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from aksnth.retry import Backoff, no_retry_after, retry


class Flaky(Exception):
    def __init__(self, retry_after_seconds: float | None = None) -> None:
        super().__init__("flaky")
        self.retry_after_seconds = retry_after_seconds


class Fatal(Exception):
    pass


def test_a_geometric_schedule_grows_to_its_cap_and_stays() -> None:
    backoff = Backoff(first_seconds=0.5, factor=2.0, max_seconds=3.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_a_table_of_steps_repeats_its_last_step() -> None:
    backoff = Backoff(steps=(1.0, 2.0, 5.0))
    assert [backoff.delay(n) for n in range(1, 6)] == [1.0, 2.0, 5.0, 5.0, 5.0]


def test_a_huge_retry_number_does_not_overflow() -> None:
    assert Backoff(first_seconds=1.0, max_seconds=30.0).delay(10_000) == 30.0


def test_jitter_scales_the_step_within_its_spread() -> None:
    equal = Backoff(first_seconds=4.0, max_seconds=4.0, spread=(0.5, 1.0))
    assert equal.delay(1, draw=0.0) == 2.0
    assert equal.delay(1, draw=0.5) == 3.0
    assert equal.delay(1, draw=0.999999) == pytest.approx(4.0)
    full = Backoff(first_seconds=1.0, spread=(0.0, 1.0), min_seconds=0.05)
    assert full.delay(1, draw=0.0) == 0.05  # never under the floor


def test_a_retry_after_is_a_floor_unless_it_replaces_the_step() -> None:
    floor = Backoff(first_seconds=2.0, max_retry_after_seconds=10.0)
    assert floor.delay(1, retry_after=1.0) == 2.0
    assert floor.delay(1, retry_after=7.0) == 7.0
    assert floor.delay(1, retry_after=3600.0) == 10.0  # bounded
    replaces = Backoff(first_seconds=2.0, retry_after_replaces=True, max_retry_after_seconds=10.0)
    assert replaces.delay(1, retry_after=0.5) == 0.5
    assert replaces.delay(1, retry_after=3600.0) == 10.0
    jittered = Backoff(first_seconds=0.1, retry_after_spread=(1.0, 1.5))
    assert jittered.delay(1, retry_after=2.0, draw=0.5) == 2.5


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_retry_after_that_is_no_number_of_seconds_leaves_the_step(value: float) -> None:
    backoff = Backoff(first_seconds=2.0, retry_after_replaces=True)
    assert backoff.delay(1, retry_after=value) == 2.0


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="spread"):
        Backoff(spread=(1.0, 0.5))
    with pytest.raises(ValueError, match="factor"):
        Backoff(factor=0.5)
    with pytest.raises(ValueError, match="count from 1"):
        Backoff().delay(0)


async def test_retry_retries_what_it_is_told_until_it_succeeds() -> None:
    slept: list[float] = []
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Flaky()
        return "ok"

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    result = await retry(
        attempt, backoff=Backoff(steps=(1.0, 2.0)), retry_on=(Flaky,), what="x", attempts=5, sleep=sleep
    )
    assert result == "ok" and calls == 3 and slept == [1.0, 2.0]


async def test_retry_raises_other_errors_at_once() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise Fatal()

    with pytest.raises(Fatal):
        await retry(attempt, backoff=Backoff(), retry_on=(Flaky,), what="x", attempts=5)
    assert calls == 1


async def test_retry_gives_up_after_its_attempts_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.retry")
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise Flaky()

    async def sleep(seconds: float) -> None:
        pass

    with pytest.raises(Flaky):
        await retry(
            attempt,
            backoff=Backoff(),
            retry_on=(Flaky,),
            what="writing w",
            attempts=3,
            sleep=sleep,
            logger=logging.getLogger("test.retry"),
        )
    assert calls == 3
    assert "writing w failed (attempt 1/3, retrying in 1.00s)" in caplog.text
    assert "writing w failed (attempt 3/3, giving up)" in caplog.text


async def test_retry_does_not_begin_a_wait_that_ends_past_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    calls = 0
    slept: list[float] = []

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise Flaky()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    with pytest.raises(Flaky):
        await retry(
            attempt,
            backoff=Backoff(steps=(1.0, 100.0)),
            retry_on=(Flaky,),
            what="x",
            deadline=loop.time() + 50.0,
            sleep=sleep,
        )
    assert calls == 2 and slept == [1.0]


async def test_retry_honours_the_retry_after_an_error_carries_unless_told_not_to() -> None:
    slept: list[float] = []
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Flaky(retry_after_seconds=4.0)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    backoff = Backoff(steps=(1.0,))
    await retry(attempt, backoff=backoff, retry_on=(Flaky,), what="x", attempts=2, sleep=sleep)
    calls = 0
    await retry(
        attempt,
        backoff=backoff,
        retry_on=(Flaky,),
        what="x",
        attempts=2,
        sleep=sleep,
        retry_after=no_retry_after,
    )
    assert slept == [4.0, 1.0]


async def test_retry_needs_at_least_one_attempt() -> None:
    async def attempt() -> None:
        pass

    with pytest.raises(ValueError, match="at least 1"):
        await retry(attempt, backoff=Backoff(), retry_on=(Flaky,), what="x", attempts=0)
