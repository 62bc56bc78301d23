"""The ``AzureScheduledEvent`` Node condition: the events of this VM that are pending or being handled,
where every tool looks (``kubectl describe node``, the scheduler's plugins, autoscalers, alerts on
``kube_node_status_condition``).

While at least one event is listed the condition is ``True``, its reason is the type of the event seen
first (``Preempt``), and its message has one part per event, e.g.
``Preempt EventId=A1B2… NotBefore=2026-11-25T12:00:30Z Status=Scheduled Phase=protected``; the phase
is one of the phases of :mod:`aksnth.lifecycle` that are shown: the state record's (``seen``,
``protected``, ``drained``, ``approved``), ``ignored`` for an event whose type is not acted on, or
``prepared`` for an advisory (a Spot rebalance recommendation) whose PreferNoSchedule taint is on the
node. With no event left the condition is removed.

Writes go to the ``nodes/status`` subresource as strategic merge patches keyed by the condition type:
they touch nothing else of the status (the kubelet's conditions stay as they are) and need no
resourceVersion. One background writer sends them in order and coalesces: when several changes come
while a write is in flight, only the latest state is written next. A write that fails on a transient error is
tried again in the background for a while; any other failure is logged; none holds up the response,
and the next change writes the whole state again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from aksnth.errors import EvictionBlocked, KubeError, KubeForbidden, KubeUnavailable
from aksnth.kube.api import STRATEGIC_MERGE_PATCH, KubeClient, node_path
from aksnth.kube.client import api_call, with_retries
from aksnth.kube.keys import SCHEDULED_EVENT_CONDITION
from aksnth.lifecycle import Phase
from aksnth.retry import Backoff, no_retry_after, retry

log = logging.getLogger(__name__)

#: Longest condition message we write (the API server accepts 32 KiB; people read a line).
MAX_MESSAGE_CHARS: Final = 1024
WRITE_ATTEMPTS: Final = 4
#: After a write failed on a transient error (the API server restarting, throttling), the state is
#: written again after these waits (the last one repeats), for at most GIVE_UP_SECONDS: a condition
#: must not keep saying "Phase=drained" for hours because one removal met an API server restart.
RETRY_WAITS_SECONDS: Final = (1.0, 2.0, 5.0, 10.0, 30.0)
GIVE_UP_SECONDS: Final = 600.0
#: On shutdown, a write in flight gets this long to finish before it is abandoned.
CLOSE_TIMEOUT_SECONDS: Final = 2.0
FORBIDDEN_HINT: Final = "the ClusterRole needs patch on nodes/status (the chart grants it)"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListedEvent:
    """One event in the condition."""

    event_id: str
    event_type: str  # as IMDS names it: Preempt, Reboot, …
    first_seen: datetime
    status: str = ""  # Scheduled, Started, Advisory
    not_before: datetime | None = None
    phase: Phase = Phase.SEEN
    drain_result: str = ""  # drained, timed_out, failed (once the drain is over)

    def advanced(self, phase: Phase | str, *, drain_result: str = "", resumed: bool = False) -> ListedEvent:
        """At ``phase`` unless it is already further (see ``Phase.advance``); a phase the condition does
        not show (a concluded one) changes nothing. ``resumed``: the phase is the one recorded on the node
        by an earlier run, taken as it is (the steps between were taken by that run)."""
        target = Phase(phase)
        if not target.shown or target.rank <= self.phase.rank:
            return self
        later = target if resumed else self.phase.advance(target)
        return replace(self, phase=later, drain_result=drain_result or self.drain_result)

    def describe(self) -> str:
        not_before = _time(self.not_before) if self.not_before is not None else "none"
        text = f"{self.event_type} EventId={self.event_id} NotBefore={not_before}"
        if self.status:
            text += f" Status={self.status}"
        text += f" Phase={self.phase}"
        if self.drain_result:
            text += f" Drain={self.drain_result}"
        return text


def scheduled_event_condition(events: Iterable[ListedEvent], *, now: datetime) -> dict[str, Any] | None:
    """The condition for ``events`` (None: there is none to show, remove it). Pure."""
    listed = sorted(events, key=lambda e: (e.first_seen, e.event_id))
    if not listed:
        return None
    message = "; ".join(event.describe() for event in listed)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return {
        "type": SCHEDULED_EVENT_CONDITION,
        "status": "True",
        "reason": _reason(listed[0].event_type),
        "message": message,
        "lastHeartbeatTime": _time(now),
        "lastTransitionTime": _time(listed[0].first_seen),
    }


def condition_patch(condition: dict[str, Any] | None) -> dict[str, Any]:
    """The strategic merge patch of ``nodes/status`` that sets ``condition``, or removes ours (None)."""
    entry = condition if condition is not None else {"type": SCHEDULED_EVENT_CONDITION, "$patch": "delete"}
    return {"status": {"conditions": [entry]}}


def _reason(event_type: str) -> str:
    # A condition reason is CamelCase, letters only (an event type IMDS adds later may not be).
    cleaned = "".join(character for character in event_type if character.isalnum())
    return cleaned or "Unknown"


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConditionWriter:
    """Keeps the node's condition equal to the latest listed events, writing in the background."""

    def __init__(
        self,
        client: KubeClient,
        node_name: str,
        *,
        dry_run: bool = False,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry_waits_seconds: Sequence[float] = RETRY_WAITS_SECONDS,
    ) -> None:
        self._client = client
        self._backoff = Backoff(steps=tuple(retry_waits_seconds) or (0.0,))
        self._node_name = node_name
        self._dry_run = dry_run
        self._now = wall_clock
        self._wanted: tuple[ListedEvent, ...] = ()
        self._written: tuple[ListedEvent, ...] | None = ()  # None: unknown (the node may show a stale one)
        self._task: asyncio.Task[None] | None = None
        self._forbidden_said = False

    def node_shows_condition(self, present: bool) -> None:
        """What the node showed when read at start-up: a condition left by an earlier run is rewritten
        (or removed) with the next :meth:`show`, even when nothing changed since."""
        self._written = None if present else ()

    def show(self, events: Iterable[ListedEvent]) -> None:
        """Make the condition list ``events`` (none: remove it). Returns at once; never raises."""
        self._wanted = tuple(sorted(events, key=lambda e: (e.first_seen, e.event_id)))
        if self._wanted == self._written or (self._task is not None and not self._task.done()):
            return  # nothing to do, or the running writer picks the change up
        self._task = asyncio.create_task(self._write_until_current(), name="node-condition")

    async def flush(self) -> None:
        """Wait until what was last shown is written (or its write has failed)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self, timeout_seconds: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Give a write in flight a moment to finish, then abandon it (on shutdown)."""
        if self._task is None or self._task.done():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_seconds):
                await asyncio.shield(self._task)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _write_until_current(self) -> None:
        give_up_at = asyncio.get_running_loop().time() + GIVE_UP_SECONDS
        while self._wanted != self._written:
            try:
                self._written = await retry(
                    self._write_wanted,
                    backoff=self._backoff,
                    retry_on=(KubeUnavailable, EvictionBlocked),
                    what=f"writing the {SCHEDULED_EVENT_CONDITION} condition",
                    deadline=give_up_at,
                    retry_after=no_retry_after,  # each write already honoured it (with_retries)
                    logger=log,
                    give_up_level=logging.DEBUG,  # _report says it
                )
            except KubeError as exc:
                self._report(exc)
                return

    async def _write_wanted(self) -> tuple[ListedEvent, ...]:
        """Write the latest state wanted (it may have changed since the last attempt); return it."""
        wanted = self._wanted
        await self._write(wanted)
        return wanted

    async def _write(self, events: tuple[ListedEvent, ...]) -> None:
        condition = scheduled_event_condition(events, now=self._now())
        action = "remove" if condition is None else f"set ({condition['message']})"
        if self._dry_run:
            log.info(
                "[dry run] node %s condition %s would %s", self._node_name, SCHEDULED_EVENT_CONDITION, action
            )
            return
        patch = condition_patch(condition)

        async def attempt() -> None:
            async with api_call(f"patch nodes/status {self._node_name}"):
                await self._client.patch(
                    node_path(self._node_name, "status"), patch, content_type=STRATEGIC_MERGE_PATCH
                )

        await with_retries(
            attempt, attempts=WRITE_ATTEMPTS, what=f"{action} condition on node {self._node_name}"
        )
        log.info("node %s condition %s: %s", self._node_name, SCHEDULED_EVENT_CONDITION, action)

    def _report(self, exc: KubeError) -> None:
        if isinstance(exc, KubeForbidden):
            if not self._forbidden_said:
                log.warning(
                    "cannot write the %s condition: %s; %s", SCHEDULED_EVENT_CONDITION, exc, FORBIDDEN_HINT
                )
                self._forbidden_said = True
            return
        log.warning(
            "cannot write the %s condition (written again with the next change): %s",
            SCHEDULED_EVENT_CONDITION,
            exc,
        )
