"""The demo's timeline: entries stamped with the wall-clock time at which something really happened
(on the simulator's clock, at the webhook receiver, or when a watch of the API server delivered it),
printed in time order a moment after they arrive, with their offset from the event's publication.

Observers on different sources report with different delays (a watch event arrives within
milliseconds, the simulator is polled), so each entry is held back for `settle_seconds` and the
entries are printed sorted: the printed order is the order in which things happened.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


class Step(enum.Enum):
    """The milestones of the handler's response, in their expected order; the summary lists them."""

    PUBLISHED = "event published"
    SEEN = "event seen"
    NOTIFIED = "notification received"
    CORDONED = "cordoned"
    DRAINED = "node drained"
    APPROVED = "event approved"
    STARTED = "event started"
    ENDED = "event ended"
    GIVEN_BACK = "node given back"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    at: float  # wall clock (time.time())
    label: str
    text: str
    step: Step | None = None


@dataclass(slots=True)
class Timeline:
    write: Callable[[str], None]
    settle_seconds: float = 0.25
    origin: float | None = None  # the publication of the event: offsets are relative to it
    milestones: dict[Step, float] = field(default_factory=dict)
    printed: list[Entry] = field(default_factory=list)
    _pending: list[tuple[float, int, Entry]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def add(self, at: float, label: str, text: str = "", *, step: Step | None = None) -> None:
        entry = Entry(at=at, label=label, text=text, step=step)
        if step is not None and step not in self.milestones:
            self.milestones[step] = at
            if step is Step.PUBLISHED and self.origin is None:
                self.origin = at
        heapq.heappush(self._pending, (at, next(self._order), entry))

    def milestone(self, step: Step, text: str, *, at: float | None = None) -> None:
        self.add(time.time() if at is None else at, step.value, text, step=step)

    def flush(self, *, now: float | None = None, everything: bool = False) -> None:
        """Print the entries that have settled (all of them with `everything`)."""
        limit = float("inf") if everything else (time.time() if now is None else now) - self.settle_seconds
        while self._pending and self._pending[0][0] <= limit:
            _, _, entry = heapq.heappop(self._pending)
            self.printed.append(entry)
            self.write(format_entry(entry, origin=self.origin))

    def missing(self, steps: Iterable[Step]) -> list[Step]:
        return [step for step in steps if step not in self.milestones]


def format_entry(entry: Entry, *, origin: float | None) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(entry.at)) + f".{int(entry.at % 1 * 1000):03d}"
    offset = "" if origin is None else f"{entry.at - origin:+8.3f}s"
    return f"{clock} {offset:>9}  {entry.label:<22} {entry.text}".rstrip()


def format_summary(milestones: dict[Step, float], steps: Iterable[Step], *, origin: float) -> list[str]:
    """One line per expected step: its time after publication and the time since the previous step,
    or that it did not happen."""
    lines = [f"  {'step':<22} {'after publication':>17} {'after previous':>15}"]
    previous: float | None = origin
    for step in steps:
        at = milestones.get(step)
        if at is None:
            lines.append(f"  {step.value:<22} {'did not happen':>17}")
            previous = None
            continue
        since_previous = "" if previous is None or step is Step.PUBLISHED else f"{at - previous:.3f} s"
        lines.append(f"  {step.value:<22} {f'{at - origin:.3f} s':>17} {since_previous:>15}".rstrip())
        previous = at
    return lines
