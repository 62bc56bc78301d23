"""Pure decisions: given the latest Scheduled Events document and what we already know, what to do.

No I/O and no clock: ``now`` is an argument, so the whole decision table is unit-tested with fixed
datetimes. The handler executes the returned plan; every action in it is safe to run twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from aksnth.config import ResponseSettings
from aksnth.lifecycle import KnownEvent
from aksnth.model import (
    ADVISORY_EVENT_TYPES,
    FATAL_EVENT_TYPES,
    EventStatus,
    EventType,
    ScheduledEvent,
    ScheduledEventsDocument,
)

# A Preempt may come without NotBefore (or be seen late): Azure promises at most 30 s of notice.
PREEMPT_NOTICE = timedelta(seconds=30)
# Started events have no NotBefore. After a hardware failure Azure "bypasses the minimum notice
# period" and publishes a Reboot already Started: the impact is now, or was. The drain gets the
# shortest notice Azure documents for any event (a Preempt's 30 s) as a best effort: pods then get
# SIGTERM and a grace period cut to fit, rather than nothing; what the VM's end cuts short is reported.
STARTED_NOTICE = timedelta(seconds=30)
# An advisory (a Spot rebalance recommendation) has no NotBefore either: it warns of a Preempt, so a
# drain the user opted into (-eventTypes) counts on the Preempt's 30 s.
ADVISORY_NOTICE = PREEMPT_NOTICE
# Even when the deadline is already behind us the drain is attempted for at least this long.
MIN_DRAIN = timedelta(seconds=5)
# Before evicting, a response waits for the other nodes under the same document's events to be
# cordoned by their own handlers, so that evicted pods are not rescheduled onto nodes about to go too.
# Those handlers see the document within one poll period of ours: the wait is bounded by two periods
# and a second, and by this share of the time left.
PEER_WAIT_SHARE = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class Respond:
    """Protect the node and drain it: evictions go on until ``event_deadline``, the drain reports at
    ``drain_deadline`` if it is not over by then."""

    event: ScheduledEvent
    event_deadline: datetime  # when the VM is expected to be affected: grace periods and last chances
    # When the drain reports (-nodeGracePeriodSeconds, the Go meaning): the earlier of the event deadline
    # and the drain timeout. It never ends the evictions and never brings a last-resort stop forward.
    drain_deadline: datetime
    reason: str
    # Pods a PodDisruptionBudget still protects at their last chance (before event_deadline) are
    # stopped (-lastResort).
    last_resort: bool = False
    # Other VMs that selected events of the same document concern: their nodes are about to be
    # drained too, so the evictions wait (briefly) for them to be cordoned.
    peers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare:
    """An advisory (Spot rebalance recommendation) that is not in -eventTypes: prepare the node
    without taking anything away (a PreferNoSchedule taint, the Event, the notification, the
    condition); never cordon, drain or approve."""

    event: ScheduledEvent
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GiveBack:
    """Undo what we changed on the node for this event (uncordon only if we cordoned)."""

    event_id: str
    event_type: EventType
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish:
    """Forget an event without giving the node back (the VM is going away, or give-back is off)."""

    event_id: str
    event_type: EventType
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignore:
    """An event that concerns this VM but whose type is not selected; logged once."""

    event: ScheduledEvent
    reason: str


Action = Respond | Prepare | GiveBack | Finish | Ignore


def event_deadline(event: ScheduledEvent, *, first_seen: datetime) -> datetime:
    """When the event is expected to hit the VM: its NotBefore; without one (a Started event, an
    advisory) the first sighting plus the notice assumed for it."""
    if event.not_before is not None:
        return event.not_before
    if event.event_type is EventType.PREEMPT:
        return first_seen + PREEMPT_NOTICE
    if event.event_type in ADVISORY_EVENT_TYPES:
        return first_seen + ADVISORY_NOTICE
    return first_seen + STARTED_NOTICE


def drain_deadline(event_deadline_at: datetime, *, now: datetime, node_grace_period_seconds: int) -> datetime:
    """When the drain reports: the earlier of the event's deadline and the drain timeout, but never
    less than MIN_DRAIN away."""
    deadline = min(event_deadline_at, now + timedelta(seconds=node_grace_period_seconds))
    return max(deadline, now + MIN_DRAIN)


def peer_wait_seconds(*, poll_interval_seconds: float, time_left_seconds: float) -> float:
    """How long a response waits for the nodes of ``Respond.peers`` to be cordoned before evicting."""
    return max(0.0, min(2 * poll_interval_seconds + 1.0, PEER_WAIT_SHARE * time_left_seconds))


def peers_of(
    document: ScheduledEventsDocument, *, resource_name: str, settings: ResponseSettings
) -> tuple[str, ...]:
    """The other VMs that events of the selected types in ``document`` concern (each listed once)."""
    mine = resource_name.lower()
    selected = settings.selected_event_types
    found = {
        resource.lower(): resource
        for event in document.events
        if event.event_type in selected
        for resource in event.resources
        if resource.lower() != mine
    }
    return tuple(found[key] for key in sorted(found))


def decide(
    document: ScheduledEventsDocument,
    *,
    resource_name: str,
    known: Mapping[str, KnownEvent],
    settings: ResponseSettings,
    now: datetime,
    boot_id: str = "",
    first_seen: Mapping[str, datetime] | None = None,
) -> tuple[Action, ...]:
    """The plan for this document. ``known`` holds every event we remember, by EventId."""
    first_seen = first_seen or {}
    actions: list[Action] = []
    present: dict[str, ScheduledEvent] = {}
    selected = settings.selected_event_types
    peers = peers_of(document, resource_name=resource_name, settings=settings)

    for event in document.events:
        if not event.concerns(resource_name):
            continue
        present[event.event_id] = event
        memory = known.get(event.event_id)
        if memory is not None and not (memory.resume and not memory.finished):
            continue
        if event.event_type not in selected and event.event_type in ADVISORY_EVENT_TYPES:
            actions.append(
                Prepare(
                    event=event,
                    reason=(
                        f"resuming the preparation for {event.event_type.value} after a restart"
                        if memory is not None
                        else f"{event.event_type.value} {event.status_raw or event.status.value} for "
                        f"{resource_name}: preparing the node (a PreferNoSchedule taint); it is not "
                        "drained unless -eventTypes names the type"
                    ),
                )
            )
            continue
        if event.event_type not in selected:
            why = (
                "Freeze events are ignored unless -drainOnFreezeEvent is set"
                if event.event_type is EventType.FREEZE
                else f"event type {event.event_type_raw!r} is not in -eventTypes"
            )
            actions.append(Ignore(event=event, reason=why))
            continue
        seen_at = first_seen.get(event.event_id, now)
        deadline = event_deadline(event, first_seen=seen_at)
        actions.append(
            Respond(
                event=event,
                event_deadline=deadline,
                drain_deadline=drain_deadline(
                    deadline, now=now, node_grace_period_seconds=settings.node_grace_period_seconds
                ),
                reason=(
                    f"resuming the response to {event.event_type.value} {event.status.value} after a restart"
                    if memory is not None
                    else f"{event.event_type.value} {event.status.value} for {resource_name}"
                ),
                last_resort=settings.last_resort_for(event.event_type),
                peers=peers,
            )
        )

    # A Preempt or Terminate of this VM, in the document or being handled: the VM is going away, and what
    # an advisory prepared stays.
    fatal = any(e.event_type in FATAL_EVENT_TYPES for e in present.values()) or any(
        k.event_type in FATAL_EVENT_TYPES and k.responded and not k.finished for k in known.values()
    )
    for event_id, memory in known.items():
        if memory.finished or not memory.responded:
            continue
        rebooted = bool(boot_id and memory.boot_id and boot_id != memory.boot_id)
        if event_id in present and not rebooted:
            continue
        actions.append(_after_event(memory, rebooted=rebooted, settings=settings, fatal_follows=fatal))
    return tuple(actions)


def _after_event(
    memory: KnownEvent, *, rebooted: bool, settings: ResponseSettings, fatal_follows: bool = False
) -> GiveBack | Finish:
    """An event we responded to ended (left the document) or the node came back from a reboot."""
    kind = memory.event_type
    if kind in ADVISORY_EVENT_TYPES:
        return _after_advisory(memory, rebooted=rebooted, settings=settings, fatal_follows=fatal_follows)
    if rebooted:
        ended = "the node rebooted (its bootID changed)"
    elif memory.last_status is EventStatus.STARTED:
        ended = "the event ended"
    else:
        ended = "the event was cancelled before it started"
    if kind in FATAL_EVENT_TYPES and memory.last_status is EventStatus.STARTED and not rebooted:
        return Finish(
            event_id=memory.event_id, event_type=kind, reason=f"{ended}; {kind.value} removes the VM"
        )
    if not settings.uncordon_after_event:
        return Finish(event_id=memory.event_id, event_type=kind, reason=f"{ended}; -uncordonAfterEvent=false")
    return GiveBack(event_id=memory.event_id, event_type=kind, reason=ended)


def _after_advisory(
    memory: KnownEvent, *, rebooted: bool, settings: ResponseSettings, fatal_follows: bool
) -> GiveBack | Finish:
    """An advisory left the document. With a Preempt (or Terminate) of this VM under way, what it did
    stays: the VM is going away. Otherwise it is undone: a preparation only (not in -eventTypes) always,
    a drain the user opted into as any other event's (-uncordonAfterEvent)."""
    kind = memory.event_type
    ended = "the node rebooted (its bootID changed)" if rebooted else "the recommendation was withdrawn"
    if fatal_follows:
        return Finish(
            event_id=memory.event_id,
            event_type=kind,
            reason=f"{ended}; a Preempt or Terminate of this VM follows it, so what it prepared stays",
        )
    if kind in settings.selected_event_types and not settings.uncordon_after_event:
        return Finish(event_id=memory.event_id, event_type=kind, reason=f"{ended}; -uncordonAfterEvent=false")
    return GiveBack(event_id=memory.event_id, event_type=kind, reason=f"{ended} with no Preempt")
