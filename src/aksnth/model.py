"""Typed values shared by every layer: the Scheduled Events document and its events.

Pure data (no I/O). The IMDS wire format (PascalCase JSON) is parsed into these in
``aksnth.azure.documents``; nothing above the parser sees IMDS's names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class EventType(enum.StrEnum):
    FREEZE = "Freeze"
    REBOOT = "Reboot"
    REDEPLOY = "Redeploy"
    PREEMPT = "Preempt"
    TERMINATE = "Terminate"
    # An early, best-effort warning that a Spot VM runs a heightened risk of eviction (Spot rebalance
    # recommendation, preview): EventStatus "Advisory", served only by a newer api-version than 2020-07-01.
    SPOT_REBALANCE_RECOMMENDATION = "SpotRebalanceRecommendation"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, text: str) -> EventType:
        """Case-insensitive; anything we do not know becomes UNKNOWN instead of an error."""
        for member in cls:
            if member.value.lower() == text.strip().lower():
                return member
        return cls.UNKNOWN


class EventStatus(enum.StrEnum):
    SCHEDULED = "Scheduled"
    STARTED = "Started"
    # A recommendation that never starts and cannot be approved ("acknowledging them has no effect").
    ADVISORY = "Advisory"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, text: str) -> EventStatus:
        for member in cls:
            if member.value.lower() == text.strip().lower():
                return member
        return cls.UNKNOWN


# Event types that end with the VM gone: the node is never given back after these.
FATAL_EVENT_TYPES = frozenset({EventType.PREEMPT, EventType.TERMINATE})
# Event types that only warn: nothing starts, StartRequests has no effect on them.
ADVISORY_EVENT_TYPES = frozenset({EventType.SPOT_REBALANCE_RECOMMENDATION})

# The least notice Azure documents for each event type, in seconds (NotBefore - publication): what a
# drain may count on. Terminate's is configurable per scale set from 5 to 15 minutes.
DOCUMENTED_NOTICE_SECONDS = {
    EventType.PREEMPT: 30,
    EventType.TERMINATE: 300,
    EventType.REDEPLOY: 600,
    EventType.REBOOT: 900,
    EventType.FREEZE: 900,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledEvent:
    event_id: str
    event_type: EventType
    event_type_raw: str
    resource_type: str
    resources: tuple[str, ...]
    status: EventStatus
    status_raw: str
    not_before: datetime | None  # timezone-aware UTC; None once Started (IMDS sends "")
    not_before_raw: str
    description: str = ""
    event_source: str = ""
    duration_seconds: int = -1  # -1: unknown; 0: no expected impact

    @property
    def advisory(self) -> bool:
        """A warning (a Spot rebalance recommendation), not an operation that will start."""
        return self.event_type in ADVISORY_EVENT_TYPES or self.status is EventStatus.ADVISORY

    def concerns(self, resource_name: str) -> bool:
        """True when this VM (by its Azure resource name) is among the event's resources."""
        wanted = resource_name.lower()
        return any(r.lower() == wanted for r in self.resources)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledEventsDocument:
    incarnation: int
    events: tuple[ScheduledEvent, ...] = field(default_factory=tuple)

    def by_id(self) -> dict[str, ScheduledEvent]:
        return {e.event_id: e for e in self.events}


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceMetadata:
    """The part of /metadata/instance/compute used in notifications. All strings, as IMDS sends."""

    name: str = ""
    vm_scale_set_name: str = ""
    location: str = ""
    zone: str = ""
    vm_size: str = ""
    priority: str = ""
    eviction_policy: str = ""
    resource_id: str = ""
    resource_group_name: str = ""
    subscription_id: str = ""
    vm_id: str = ""
    computer_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSnapshot:
    """What the handler and the notifications need to know about this node, read from the API."""

    name: str
    provider_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    boot_id: str = ""
    pod_names: tuple[str, ...] = ()
    condition_types: tuple[str, ...] = ()  # of status.conditions: Ready, ..., AzureScheduledEvent
