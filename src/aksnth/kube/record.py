"""The state record we keep on the Node (annotation ``aks-node-termination-handler/state``).

It says, per EventId, what we saw and how far the response got, and what *we* changed on the node
(cordon, load-balancer label, taints) together with the bootID at that time. A restarted handler
resumes from it; a give-back undoes only what it lists. Pure: JSON in, JSON out, no I/O.

Every ``with_…`` method returns a new record; phases move as :mod:`aksnth.lifecycle` allows, only
forward, and only the persisted ones are kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from aksnth.kube.keys import STATE_ANNOTATION
from aksnth.lifecycle import Phase
from aksnth.model import EventStatus, EventType, ScheduledEvent

log = logging.getLogger(__name__)

RECORD_VERSION: Final = 1
#: At most this many events are kept; the oldest concluded ones go first (active ones always stay).
MAX_EVENTS: Final = 16


class RecordError(ValueError):
    """The annotation is not a record we can read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaintRef:
    """A taint we put on the node: key, value and effect (Kubernetes identifies taints by key+effect)."""

    key: str
    value: str
    effect: str


class DrainOutcomeLike(Protocol):
    """What the record keeps of a drain result (``aksnth.kube.drain.DrainResult`` has these)."""

    @property
    def result(self) -> str: ...
    @property
    def evicted(self) -> tuple[str, ...]: ...
    @property
    def deleted(self) -> tuple[str, ...]: ...
    @property
    def remaining(self) -> tuple[Any, ...]: ...
    @property
    def duration_seconds(self) -> float: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainSummary:
    result: str  # drained | timed_out | failed | dry_run
    evicted: int = 0
    deleted: int = 0
    remaining: int = 0
    duration_seconds: float = 0.0

    @classmethod
    def of(cls, outcome: DrainOutcomeLike) -> DrainSummary:
        return cls(
            result=str(outcome.result),
            evicted=len(outcome.evicted),
            deleted=len(outcome.deleted),
            remaining=len(outcome.remaining),
            duration_seconds=round(outcome.duration_seconds, 3),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    event_id: str
    event_type: EventType
    first_seen: datetime  # timezone-aware UTC
    phase: Phase = Phase.SEEN
    last_status: EventStatus = EventStatus.UNKNOWN
    notified: tuple[str, ...] = ()  # notification phases sent: "event", "drained"
    approved: bool = False
    taints: tuple[TaintRef, ...] = ()  # taints we added for this event
    drain: DrainSummary | None = None

    @property
    def finished(self) -> bool:
        """Concluded: given back or finished. Such an event needs nothing more from us."""
        return self.phase.concluded

    @property
    def active(self) -> bool:
        return not self.phase.concluded

    @property
    def holds_node(self) -> bool:
        """Protected and not yet concluded: this event keeps the node cordoned."""
        return self.phase.holds_node

    def advanced_to(self, phase: Phase) -> EventRecord:
        """This event at ``phase``, unless it is already there or further (see ``Phase.advance``)."""
        if not phase.persisted:
            raise ValueError(f"phase {phase.value} is not kept in the record on the node")
        later = self.phase.advance(phase)
        return self if later is self.phase else replace(self, phase=later)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    """Everything we remember on the node. ``events`` keeps insertion order (oldest first)."""

    events: Mapping[str, EventRecord] = field(default_factory=dict)
    cordoned_by_us: bool = False  # False when the node was already unschedulable (an admin's cordon)
    label_added_by_us: bool = False  # False when the exclude-from-LB label was already there
    boot_id: str = ""  # status.nodeInfo.bootID when we first protected the node

    # --- queries ------------------------------------------------------------------------------------
    def active_events(self) -> tuple[EventRecord, ...]:
        return tuple(e for e in self.events.values() if e.active)

    def holding_events(self) -> tuple[EventRecord, ...]:
        """Events that keep the node protected (see :attr:`EventRecord.holds_node`)."""
        return tuple(e for e in self.events.values() if e.holds_node)

    def our_taints(self) -> tuple[TaintRef, ...]:
        """Taints of the events that are still active (what a give-back may still have to remove)."""
        seen: dict[tuple[str, str], TaintRef] = {}
        for entry in self.active_events():
            for taint in entry.taints:
                seen.setdefault((taint.key, taint.effect), taint)
        return tuple(seen.values())

    # --- updates (each returns a new record) ------------------------------------------------------
    def _with(self, entry: EventRecord) -> NodeRecord:
        events = dict(self.events)
        events[entry.event_id] = entry
        return replace(self, events=events)

    def _update(self, event_id: str, change: Callable[[EventRecord], EventRecord]) -> NodeRecord:
        entry = self.events.get(event_id)
        if entry is None:
            return self
        updated = change(entry)
        return self if updated == entry else self._with(updated)

    def with_event_seen(self, event: ScheduledEvent, *, now: datetime) -> NodeRecord:
        """Remember ``event`` (first sighting at ``now``); an event already known only gets its status."""
        entry = self.events.get(event.event_id)
        if entry is None:
            fresh = EventRecord(
                event_id=event.event_id,
                event_type=event.event_type,
                first_seen=now.astimezone(UTC),
                last_status=event.status,
            )
            return self._with(fresh).pruned()
        if entry.last_status is event.status:
            return self
        return self._with(replace(entry, last_status=event.status))

    def with_phase(self, event_id: str, phase: Phase) -> NodeRecord:
        return self._update(event_id, lambda e: e.advanced_to(phase))

    def with_notified(self, event_id: str, notification_phase: str) -> NodeRecord:
        def add(entry: EventRecord) -> EventRecord:
            if notification_phase in entry.notified:
                return entry
            return replace(entry, notified=(*entry.notified, notification_phase))

        return self._update(event_id, add)

    def with_drain_result(self, event_id: str, outcome: DrainOutcomeLike | DrainSummary) -> NodeRecord:
        summary = outcome if isinstance(outcome, DrainSummary) else DrainSummary.of(outcome)
        return self._update(event_id, lambda e: replace(e.advanced_to(Phase.DRAINED), drain=summary))

    def with_approved(self, event_id: str) -> NodeRecord:
        return self._update(event_id, lambda e: replace(e.advanced_to(Phase.APPROVED), approved=True))

    def with_finished(self, event_id: str) -> NodeRecord:
        return self._update(event_id, lambda e: e.advanced_to(Phase.FINISHED)).pruned()

    def with_given_back(self, event_id: str) -> NodeRecord:
        return self._update(event_id, lambda e: e.advanced_to(Phase.GIVEN_BACK)).pruned()

    def with_taint(self, event_id: str, taint: TaintRef) -> NodeRecord:
        def add(entry: EventRecord) -> EventRecord:
            if taint in entry.taints:
                return entry
            return replace(entry, taints=(*entry.taints, taint))

        return self._update(event_id, add)

    def pruned(self, max_events: int = MAX_EVENTS) -> NodeRecord:
        """At most ``max_events`` events: drop the oldest concluded ones; active events always stay."""
        excess = len(self.events) - max_events
        if excess <= 0:
            return self
        concluded = sorted((e for e in self.events.values() if e.finished), key=lambda e: e.first_seen)
        dropped = {e.event_id for e in concluded[:excess]}
        return replace(self, events={k: v for k, v in self.events.items() if k not in dropped})

    # --- (de)serialisation ---------------------------------------------------------------------------
    def serialize(self) -> str:
        """Compact JSON for the annotation value."""
        document = {
            "version": RECORD_VERSION,
            "bootID": self.boot_id,
            "cordonedByUs": self.cordoned_by_us,
            "labelAddedByUs": self.label_added_by_us,
            "events": [_event_to_json(e) for e in self.events.values()],
        }
        return json.dumps(document, separators=(",", ":"), sort_keys=False)

    @classmethod
    def parse(cls, text: str) -> NodeRecord:
        """The record in ``text``; raises :class:`RecordError` naming what is wrong."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(f"not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise RecordError("not a JSON object")
        version = document.get("version", RECORD_VERSION)
        if not isinstance(version, int) or version < 1:
            raise RecordError(f"unknown version {version!r}")
        raw_events = document.get("events", [])
        if not isinstance(raw_events, list):
            raise RecordError("'events' is not a list")
        events: dict[str, EventRecord] = {}
        for index, raw in enumerate(raw_events):
            try:
                entry = _event_from_json(raw)
            except (KeyError, TypeError, ValueError) as exc:
                raise RecordError(f"events[{index}]: {exc}") from exc
            events[entry.event_id] = entry
        return cls(
            events=events,
            cordoned_by_us=_bool(document.get("cordonedByUs", False), "cordonedByUs"),
            label_added_by_us=_bool(document.get("labelAddedByUs", False), "labelAddedByUs"),
            boot_id=_str(document.get("bootID", ""), "bootID"),
        )

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str] | None) -> NodeRecord:
        """The record on a node, or an empty one when there is none or it cannot be read.

        An unreadable record is logged and treated as empty: we then claim nothing as ours, so a
        later give-back undoes nothing (the safe side).
        """
        text = (annotations or {}).get(STATE_ANNOTATION, "")
        if not text:
            return cls()
        try:
            return cls.parse(text)
        except RecordError as exc:
            log.warning("ignoring unreadable %s annotation: %s", STATE_ANNOTATION, exc)
            return cls()


# --- JSON helpers ------------------------------------------------------------------------------------


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise RecordError(f"{name!r} is not a boolean")
    return value


def _str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{name!r} is not a string")
    return value


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return moment.astimezone(UTC)


def _event_to_json(entry: EventRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": entry.event_id,
        "type": entry.event_type.value,
        "firstSeen": format_time(entry.first_seen),
        "phase": entry.phase.value,
        "status": entry.last_status.value,
    }
    if entry.notified:
        out["notified"] = list(entry.notified)
    if entry.approved:
        out["approved"] = True
    if entry.taints:
        out["taints"] = [{"key": t.key, "value": t.value, "effect": t.effect} for t in entry.taints]
    if entry.drain is not None:
        out["drain"] = {
            "result": entry.drain.result,
            "evicted": entry.drain.evicted,
            "deleted": entry.drain.deleted,
            "remaining": entry.drain.remaining,
            "durationSeconds": entry.drain.duration_seconds,
        }
    return out


def _event_from_json(raw: Any) -> EventRecord:
    if not isinstance(raw, dict):
        raise TypeError("not an object")
    event_id = _str(raw["id"], "id")
    if not event_id:
        raise ValueError("'id' is empty")
    try:
        phase = Phase(raw.get("phase", Phase.SEEN.value))
    except ValueError as exc:
        raise ValueError(f"unknown phase {raw.get('phase')!r}") from exc
    if not phase.persisted:
        raise ValueError(f"unknown phase {raw.get('phase')!r}")
    notified = raw.get("notified", [])
    if not isinstance(notified, list) or not all(isinstance(n, str) for n in notified):
        raise TypeError("'notified' is not a list of strings")
    taints = tuple(
        TaintRef(
            key=_str(t["key"], "key"),
            value=_str(t.get("value", ""), "value"),
            effect=_str(t["effect"], "effect"),
        )
        for t in raw.get("taints", [])
    )
    drain_raw = raw.get("drain")
    drain = None
    if drain_raw is not None:
        drain = DrainSummary(
            result=_str(drain_raw["result"], "result"),
            evicted=int(drain_raw.get("evicted", 0)),
            deleted=int(drain_raw.get("deleted", 0)),
            remaining=int(drain_raw.get("remaining", 0)),
            duration_seconds=float(drain_raw.get("durationSeconds", 0.0)),
        )
    return EventRecord(
        event_id=event_id,
        event_type=EventType.parse(_str(raw.get("type", ""), "type")),
        first_seen=parse_time(_str(raw["firstSeen"], "firstSeen")),
        phase=phase,
        last_status=EventStatus.parse(_str(raw.get("status", ""), "status")),
        notified=tuple(notified),
        approved=_bool(raw.get("approved", False), "approved"),
        taints=taints,
        drain=drain,
    )
