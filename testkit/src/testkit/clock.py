"""A clock the test moves by hand, for time logic that takes its clock (and its sleep) as an argument:
tested without waiting."""

from __future__ import annotations


class FakeClock:
    """Seconds as ``time.time``/``time.monotonic`` give them; ``sleep`` only moves the clock on (and
    records how long it was asked to sleep, in ``slept``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
