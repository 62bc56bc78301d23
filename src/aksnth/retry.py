"""Waiting before trying again: one schedule type and one retry loop for every retry of the handler.

A :class:`Backoff` says how long to wait before retry number *n*: a step from a table or a geometric
series (the last step repeats), scaled by a random point of its ``spread`` so that the pods of a
DaemonSet, all hit by the same outage, do not retry in lockstep; a server's ``Retry-After`` either
replaces the step or is a floor under it, and is honoured only up to a bound (a server, or something in
front of it, may ask for any wait, and a Preempt gives 30 s). :func:`retry` runs an attempt until it
succeeds, retrying only the errors it is told are transient, at most ``attempts`` times and never
past a deadline; its sleeps are cancellable and it logs "attempt i/N".

Pure except for :func:`retry`'s sleep: the random draw and the sleep are arguments, so the schedules are
unit-tested without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aksnth.durations import finite_seconds

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """The wait before retry number 1, 2, 3… (see :meth:`delay`)."""

    #: The steps before retry 1, 2, …; the last one repeats. Empty: the geometric series below.
    steps: tuple[float, ...] = ()
    first_seconds: float = 1.0
    factor: float = 2.0
    max_seconds: float = math.inf
    #: The step is scaled by ``low + (high - low) * draw`` (``draw`` in [0, 1)): (1, 1) is no jitter,
    #: (0.5, 1) "equal jitter" (a point in the upper half of the step).
    spread: tuple[float, float] = (1.0, 1.0)
    #: A wait never shorter than this (e.g. IMDS's limit of 5 requests per second).
    min_seconds: float = 0.0
    #: A server's Retry-After is honoured up to this many seconds.
    max_retry_after_seconds: float = math.inf
    #: True: the Retry-After replaces the step (it may be shorter); False: it is a floor under it.
    retry_after_replaces: bool = False
    #: The Retry-After is scaled by this spread too (the same draw as the step).
    retry_after_spread: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        for low, high in (self.spread, self.retry_after_spread):
            if not 0 <= low <= high:
                raise ValueError(f"a spread must satisfy 0 <= low <= high, got ({low}, {high})")
        if any(step < 0 for step in self.steps) or self.first_seconds < 0 or self.factor < 1:
            raise ValueError("steps must not be negative and the factor must be at least 1")

    def step(self, retry: int) -> float:
        """The step before retry number ``retry`` (1-based), before jitter and Retry-After."""
        if retry < 1:
            raise ValueError(f"retries count from 1, got {retry}")
        if self.steps:
            return self.steps[min(retry, len(self.steps)) - 1]
        # factor**n grows without bound: stop raising it once far past any cap.
        return min(self.max_seconds, self.first_seconds * self.factor ** min(retry - 1, 64))

    def delay(self, retry: int, *, retry_after: float | None = None, draw: float = 0.5) -> float:
        """Seconds to wait before retry number ``retry`` (1-based); ``draw`` is in [0, 1)."""
        wait = self.step(retry) * _scale(self.spread, draw)
        asked = finite_seconds(retry_after)
        if asked is not None:
            asked = min(asked, self.max_retry_after_seconds) * _scale(self.retry_after_spread, draw)
            wait = asked if self.retry_after_replaces else max(wait, asked)
        return max(wait, self.min_seconds)


def _scale(spread: tuple[float, float], draw: float) -> float:
    low, high = spread
    return low + (high - low) * draw


def no_retry_after(exc: BaseException) -> float | None:
    return None


def retry_after_of(exc: BaseException) -> float | None:
    """The Retry-After an error of ours carries (``retry_after_seconds``), if any."""
    seconds = getattr(exc, "retry_after_seconds", None)
    return seconds if isinstance(seconds, int | float) else None


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    retry_on: tuple[type[BaseException], ...],
    what: str,
    attempts: int | None = None,
    deadline: float | None = None,
    retry_after: Callable[[BaseException], float | None] = retry_after_of,
    logger: logging.Logger = log,
    retry_level: int = logging.INFO,
    give_up_level: int = logging.WARNING,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    draw: Callable[[], float] = random.random,
) -> T:
    """Call ``attempt`` until it succeeds: at most ``attempts`` times (None: no limit) and never waiting
    past ``deadline`` (the event loop's time; None: none).

    Only ``retry_on`` errors are retried, after ``backoff.delay``; the last one is raised as it is when
    the attempts are used up or the next wait would end past the deadline. Any other error is raised at
    once. Each retry is logged at ``retry_level`` as "``what`` failed (attempt i/N, retrying in Xs)",
    giving up at ``give_up_level``, on ``logger`` (the caller's, so the log says who retried).
    """
    if attempts is not None and attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    loop = asyncio.get_running_loop()
    count = 0
    while True:
        count += 1
        of = f"{count}/{attempts}" if attempts is not None else str(count)
        try:
            return await attempt()
        except retry_on as exc:
            delay = backoff.delay(count, retry_after=retry_after(exc), draw=draw())
            out_of_time = deadline is not None and loop.time() + delay >= deadline
            if count == attempts or out_of_time:
                logger.log(give_up_level, "%s failed (attempt %s, giving up): %s", what, of, exc)
                raise
            logger.log(retry_level, "%s failed (attempt %s, retrying in %.2fs): %s", what, of, delay, exc)
            await sleep(delay)
