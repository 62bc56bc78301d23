"""The handler forgets events that are over and gone, so a long-lived pod does not accumulate them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import REGISTRY

from aksnth.config import KubeSettings, ResponseSettings, Settings
from aksnth.handler import Handler
from aksnth.kube.conditions import ListedEvent
from aksnth.model import EventStatus, EventType, ScheduledEvent, ScheduledEventsDocument
from aksnth.observe.health import Health
from aksnth.policy import KnownEvent
from testkit.events import scheduled_event

ME = "aks-spot-12345678-vmss_3"


def freeze(event_id: str) -> ScheduledEvent:
    return scheduled_event(EventType.FREEZE, event_id=event_id, resources=(ME,))


def finished_reboot(event_id: str) -> KnownEvent:
    return KnownEvent(
        event_id=event_id,
        event_type=EventType.REBOOT,
        last_status=EventStatus.STARTED,
        responded=True,
        finished=True,
    )


class Recorder:
    """Keeps the Events the handler records instead of writing them."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str]] = []

    async def record_node(self, *, type: str, reason: str, message: str) -> None:
        self.recorded.append((type, reason, message))


class Conditions:
    """Keeps what the handler asks the AzureScheduledEvent condition to list instead of writing it."""

    def __init__(self) -> None:
        self.shown: list[list[ListedEvent]] = []

    def show(self, events: Iterable[ListedEvent]) -> None:
        listed = list(events)
        if not self.shown or self.shown[-1] != listed:
            self.shown.append(listed)

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass


def handler(
    recorder: Recorder | None = None, conditions: Conditions | None = None, *, surge: bool = False
) -> Handler:
    settings = Settings(
        kube=KubeSettings(node_name="node-1"),
        response=ResponseSettings(resource_name=ME, surge_deployments=surge),
    )
    # Only ignored Freeze events flow through here: no response is started, so no client is touched.
    h = Handler(
        settings=settings,
        imds=None,  # type: ignore[arg-type]
        kube=None,  # type: ignore[arg-type]
        notifier=None,
        health=Health(poll_interval_seconds=1.0),
        recorder=recorder or Recorder(),  # type: ignore[arg-type]
        wall_clock=lambda: datetime(2026, 11, 25, tzinfo=UTC),
        conditions=conditions or Conditions(),  # type: ignore[arg-type]
    )
    h.resource_name = ME
    h._deciding = True  # as once the record on the node has been read (nothing recorded there here)
    return h


def scheduled_events_total(event_type: str) -> float:
    labels = {"node": "node-1", "resource": ME, "type": event_type}
    return REGISTRY.get_sample_value("aks_node_termination_handler_scheduled_events_total", labels) or 0.0


async def test_an_ignored_event_is_counted_and_reported_once_as_the_go_version_did() -> None:
    """Every event of this VM counts in scheduled_events_total and gets the Go version's Warning Event
    (reason = event type), once per EventId, also when its type is not acted on."""
    recorder = Recorder()
    h = handler(recorder)
    before = scheduled_events_total("Freeze")
    h.on_document(ScheduledEventsDocument(incarnation=1, events=(freeze("F1"),)))
    h.on_document(ScheduledEventsDocument(incarnation=2, events=(freeze("F1"), freeze("F2"))))
    await h.wait_idle()
    assert scheduled_events_total("Freeze") - before == 2
    assert recorder.recorded == [
        ("Warning", "Freeze", "Azure API sended schedule event for this node"),
        ("Warning", "Freeze", "Azure API sended schedule event for this node"),
    ]


async def test_ignored_and_finished_events_are_forgotten_once_they_leave_the_document() -> None:
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


async def test_a_finished_event_still_listed_is_remembered() -> None:
    h = handler()
    h._known["DONE"] = KnownEvent(
        event_id="DONE",
        event_type=EventType.REBOOT,
        last_status=EventStatus.STARTED,
        responded=True,
        finished=True,
    )
    listed = scheduled_event(EventType.REBOOT, event_id="DONE", status=EventStatus.STARTED, resources=(ME,))
    h.on_document(ScheduledEventsDocument(incarnation=1, events=(listed,)))
    # Forgetting it now would make the next document look like a new event, and the node be drained again.
    assert "DONE" in h._known


async def test_an_ignored_event_is_listed_in_the_condition_until_it_leaves_the_document() -> None:
    """A pending event that is not acted on is still shown (phase ignored), and no longer once it is gone."""
    conditions = Conditions()
    h = handler(conditions=conditions)
    h.on_document(ScheduledEventsDocument(incarnation=1, events=(freeze("F1"),)))
    h.on_document(ScheduledEventsDocument(incarnation=1, events=(freeze("F1"),)))  # unchanged: nothing new
    h.on_document(ScheduledEventsDocument(incarnation=2, events=()))
    assert [[(e.event_id, e.event_type, e.phase) for e in shown] for shown in conditions.shown] == [
        [("F1", "Freeze", "ignored")],
        [],
    ]


async def test_a_change_of_the_advisories_read_beside_the_endpoint_is_decided_on_at_once() -> None:
    """DocumentIncarnation "increases when the events array changes": an unchanged incarnation is not
    decided on again. Advisories are read at another api-version and do not move -endpoint's
    incarnation, so a change of them is decided on at once, on the last document (here an advisory of
    a type not known, shown as ignored), and the advisory_events gauge follows them."""
    conditions = Conditions()
    h = handler(conditions=conditions)
    first = ScheduledEventsDocument(incarnation=1, events=(freeze("F1"),))
    h.on_document(first)
    h.on_document(first)
    advisory = scheduled_event("SomeNewAdvice", event_id="A1", status=EventStatus.ADVISORY, resources=(ME,))
    unchanged = len(conditions.shown)
    h._take_advisories((advisory,))
    with_advisory = [(e.event_id, e.phase) for e in conditions.shown[-1]]
    gauge = REGISTRY.get_sample_value("aks_node_termination_handler_advisory_events")
    h._take_advisories(())
    assert unchanged == 1  # the same incarnation twice: one decision
    assert with_advisory == [("F1", "ignored"), ("A1", "ignored")]
    assert [(e.event_id, e.phase) for e in conditions.shown[-1]] == [("F1", "ignored")]
    assert gauge == 1
    assert REGISTRY.get_sample_value("aks_node_termination_handler_advisory_events") == 0


async def test_an_events_surger_lasts_as_long_as_the_event_and_no_longer() -> None:
    """With -surgeDeployments each event has one surger, the same for every attempt of its drain (a
    drain resumed after a transient failure does not surge a Deployment twice); another event has its
    own. Once the event is over and gone from the document, its surger and its notifications are
    dropped; a finished event still listed keeps them."""
    h = handler(surge=True)
    responder = h._responder
    preempt = scheduled_event(EventType.PREEMPT, event_id="P1", resources=(ME,))
    other = scheduled_event(EventType.PREEMPT, event_id="P2", resources=(ME,))
    first = responder._surger(preempt)
    assert first is not None
    assert responder._surger(preempt) is first  # the resumed drain's
    assert responder._surger(other) is not first
    responder.notified.update({("P1", "event"), ("P1", "drained"), ("P2", "event")})
    for event_id in ("P1", "P2"):
        h._known[event_id] = KnownEvent(
            event_id=event_id,
            event_type=EventType.PREEMPT,
            last_status=EventStatus.STARTED,
            responded=True,
            finished=True,
        )

    h.on_document(ScheduledEventsDocument(incarnation=1, events=(other,)))  # P1 over and gone

    assert responder.notified == {("P2", "event")}
    assert responder._surger(preempt) is not first  # a new one: P1 is unknown now
    assert "P2" in h._known


def test_without_the_flag_there_is_no_surger() -> None:
    assert handler()._responder._surger(scheduled_event(EventType.PREEMPT, resources=(ME,))) is None
