"""How a drain paces its eviction requests when the API server answers "not now" (HTTP 429).

Two different refusals arrive as a 429, and they call for different answers:

- a PodDisruptionBudget refuses the eviction (the answer names the budget). The budget frees up when
  a replacement is Ready, not sooner for being asked more often: :class:`BudgetTurns` lets one pod
  per budget ask at a time and spaces the questions with a growing, jittered wait, never shorter than
  the server's Retry-After. When a whole Spot pool is evicted at once, many handlers ask the same
  budget; the jitter keeps them from asking in lockstep, and their number of questions per second
  stays bounded by the number of budgets, not of pods.
- API Priority and Fairness rejects the request (the server sheds load; no budget is named).
  :class:`Throttle` pauses every eviction of the drain for the server's Retry-After (jittered) and
  halves the number in flight, which grows back by one per round of accepted requests: never a
  retry storm.

The waits themselves are pure functions of :mod:`aksnth.kube.drainplan`; the clock, the sleep and the
random draws are passed in, so the unit tests run without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aksnth.kube.drainplan import budget_retry_delay, overload_pause

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Draw = Callable[[], float]


class Throttle:
    """At most ``limit`` requests in flight, fewer after the server shed load, none during a pause."""

    def __init__(
        self, limit: int, *, clock: Clock, sleep: Sleep = asyncio.sleep, draw: Draw = random.random
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.max_limit = limit
        self.limit = limit
        self.in_flight = 0
        self.paused_until = 0.0
        self.overloads = 0  # 429s without a budget, for the drain's log line
        self._credit = 0  # accepted requests since the limit last grew
        self._clock = clock
        self._sleep = sleep
        self._draw = draw
        self._freed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for the pause to end and for a free slot; hold it for one request."""
        while True:
            now = self._clock()
            if now < self.paused_until:
                await self._sleep(self.paused_until - now)
                continue
            if self.in_flight < self.limit:
                break
            self._freed.clear()
            await self._freed.wait()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._freed.set()

    def overloaded(self, retry_after: float | None) -> float:
        """A request was rejected for load: pause everyone, halve the limit. Returns the pause.

        The rejections of one burst arrive together: only the first halves the limit; those that
        arrive during its pause may only lengthen it.
        """
        self.overloads += 1
        now = self._clock()
        pause = overload_pause(retry_after=retry_after, draw=self._draw())
        if now >= self.paused_until:
            self.limit = max(1, self.limit // 2)
        self.paused_until = max(self.paused_until, now + pause)
        return pause

    def accepted(self) -> None:
        """A request went through. After ``limit`` of them (a round), one more may run at once, up
        to the configured limit: growing by one per request would double the limit each round and
        overload the server again at once."""
        if self.limit >= self.max_limit:
            return
        self._credit += 1
        if self._credit >= self.limit:
            self._credit = 0
            self.limit += 1
            self._freed.set()


@dataclass(slots=True)
class _Budget:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    refusals: int = 0  # in a row
    not_before: float = 0.0  # clock time before which nobody asks this budget again


class BudgetTurns:
    """One question at a time per PodDisruptionBudget, spaced after refusals."""

    def __init__(self, *, clock: Clock, sleep: Sleep = asyncio.sleep, draw: Draw = random.random) -> None:
        self._clock = clock
        self._sleep = sleep
        self._draw = draw
        self._budgets: dict[str, _Budget] = {}

    def refused(self, budget: str, retry_after: float | None, *, escalate: bool = True) -> float:
        """The budget refused an eviction: the next question waits. Returns that wait.

        ``escalate=False`` for a refusal of a question asked outside the budget's turn (the first
        burst of a drain, or a pod at its last chance): it delays the next question but does not make
        the waits grow, as refusals in a row would.
        """
        state = self._budgets.setdefault(budget, _Budget())
        state.refusals = state.refusals + 1 if escalate or not state.refusals else state.refusals
        delay = budget_retry_delay(state.refusals, retry_after=retry_after, draw=self._draw())
        state.not_before = max(state.not_before, self._clock() + delay)
        return delay

    def allowed(self, budget: str) -> None:
        """The budget let an eviction through: it may allow more, so the next pod asks at once."""
        state = self._budgets.setdefault(budget, _Budget())
        state.refusals = 0
        state.not_before = self._clock()

    @contextlib.asynccontextmanager
    async def turn(self, budget: str, *, until: float) -> AsyncIterator[bool]:
        """Wait for this budget's turn and its spacing, but not past ``until`` (clock time).

        Yields True holding the turn, or False when ``until`` came first (the caller then asks
        anyway: it is the pod's last chance, or the deadline).
        """
        state = self._budgets.setdefault(budget, _Budget())
        acquired = False
        try:
            left = until - self._clock()
            if left > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await state.lock.acquire()
                        acquired = True
            if acquired:
                wait = min(state.not_before, until) - self._clock()
                if wait > 0:
                    await self._sleep(wait)
            yield acquired
        finally:
            if acquired:
                state.lock.release()
