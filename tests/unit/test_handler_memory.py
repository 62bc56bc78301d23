"""The handler forgets events that are over and gone, so a long-lived pod does not accumulate them."""

from __future__ import annotations

from datetime import UTC, datetime

from aksnth.config import KubeSettings, ResponseSettings, Settings
from aksnth.handler import Handler
from aksnth.model import EventStatus, EventType, ScheduledEvent, ScheduledEventsDocument
from aksnth.observe.health import Health
from aksnth.policy import KnownEvent

ME = "aks-spot-12345678-vmss_3"


def freeze(event_id: str) -> ScheduledEvent:
    return ScheduledEvent(
        event_id=event_id,
        event_type=EventType.FREEZE,
        event_type_raw="Freeze",
        resource_type="VirtualMachine",
        resources=(ME,),
        status=EventStatus.SCHEDULED,
        status_raw="Scheduled",
        not_before=None,
        not_before_raw="",
    )


def finished_reboot(event_id: str) -> KnownEvent:
    return KnownEvent(
        event_id=event_id,
        event_type=EventType.REBOOT,
        last_status=EventStatus.STARTED,
        responded=True,
        finished=True,
    )


def handler() -> Handler:
    settings = Settings(kube=KubeSettings(node_name="node-1"), response=ResponseSettings(resource_name=ME))
    # Only ignored Freeze events flow through here: no response is started, so no client is touched.
    h = Handler(
        settings=settings,
        imds=None,  # type: ignore[arg-type]
        kube=None,  # type: ignore[arg-type]
        notifier=None,
        health=Health(poll_interval_seconds=1.0),
        recorder=None,  # type: ignore[arg-type]
        wall_clock=lambda: datetime(2026, 11, 25, tzinfo=UTC),
    )
    h.resource_name = ME
    return h


def test_ignored_and_finished_events_are_forgotten_once_they_leave_the_document() -> None:
    h = handler()
    h._known["OLD"] = KnownEvent(
        event_id="OLD",
        event_type=EventType.REBOOT,
        last_status=EventStatus.STARTED,
        responded=True,
        finished=True,
    )
    h.on_document(ScheduledEventsDocument(incarnation=1, events=(freeze("F1"),)))
    assert h._ignored == {"F1"}
    assert "F1" in h._first_seen
    assert "OLD" not in h._known  # finished and not listed

    h.on_document(ScheduledEventsDocument(incarnation=2, events=()))
    assert h._ignored == set()
    assert h._first_seen == {}


def test_a_finished_event_still_listed_is_remembered() -> None:
    h = handler()
    h._known["DONE"] = KnownEvent(
        event_id="DONE",
        event_type=EventType.REBOOT,
        last_status=EventStatus.STARTED,
        responded=True,
        finished=True,
    )
    listed = ScheduledEvent(
        event_id="DONE",
        event_type=EventType.REBOOT,
        event_type_raw="Reboot",
        resource_type="VirtualMachine",
        resources=(ME,),
        status=EventStatus.STARTED,
        status_raw="Started",
        not_before=None,
        not_before_raw="",
    )
    h.on_document(ScheduledEventsDocument(incarnation=1, events=(listed,)))
    # Forgetting it now would make the next document look like a new event, and the node be drained again.
    assert "DONE" in h._known
