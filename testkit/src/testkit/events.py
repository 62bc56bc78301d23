"""Scheduled Events as the handler's model holds them (``aksnth.model.ScheduledEvent``), for tests that
need one without an IMDS document to parse."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from aksnth.model import EventStatus, EventType, ScheduledEvent


def scheduled_event(
    kind: EventType | str = EventType.PREEMPT,
    *,
    event_id: str = "E1",
    status: EventStatus | str = EventStatus.SCHEDULED,
    resources: Sequence[str] = ("vmss_0",),
    not_before: datetime | None = None,
    not_before_raw: str = "",
    description: str = "",
    event_source: str = "",
    duration_seconds: int = -1,
) -> ScheduledEvent:
    """One event of a VirtualMachine; `kind` and `status` as the enum or as the text IMDS sends (an
    unknown text becomes UNKNOWN, as the parser makes it), the raw fields keeping that text."""
    event_type = kind if isinstance(kind, EventType) else EventType.parse(kind)
    event_status = status if isinstance(status, EventStatus) else EventStatus.parse(status)
    return ScheduledEvent(
        event_id=event_id,
        event_type=event_type,
        event_type_raw=kind.value if isinstance(kind, EventType) else kind,
        resource_type="VirtualMachine",
        resources=tuple(resources),
        status=event_status,
        status_raw=status.value if isinstance(status, EventStatus) else status,
        not_before=not_before,
        not_before_raw=not_before_raw,
        description=description,
        event_source=event_source,
        duration_seconds=duration_seconds,
    )
