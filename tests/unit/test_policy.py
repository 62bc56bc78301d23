"""The decision table, with fixed datetimes and no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aksnth.config import ResponseSettings
from aksnth.model import EventStatus, EventType, ScheduledEvent, ScheduledEventsDocument
from aksnth.policy import (
    Finish,
    GiveBack,
    Ignore,
    KnownEvent,
    Prepare,
    Respond,
    decide,
    drain_deadline,
    event_deadline,
    peer_wait_seconds,
)
from testkit.events import scheduled_event

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
ME = "aks-spot-12345678-vmss_3"


def event(
    kind: str = "Preempt",
    *,
    event_id: str = "E1",
    status: str = "Scheduled",
    not_before: datetime | None = None,
    resources: tuple[str, ...] = (ME,),
) -> ScheduledEvent:
    return scheduled_event(kind, event_id=event_id, status=status, not_before=not_before, resources=resources)


def doc(*events: ScheduledEvent) -> ScheduledEventsDocument:
    return ScheduledEventsDocument(incarnation=1, events=events)


def known(
    kind: str, status: str = "Scheduled", *, event_id: str = "E1", **kw: object
) -> dict[str, KnownEvent]:
    return {
        event_id: KnownEvent(
            event_id=event_id,
            event_type=EventType.parse(kind),
            last_status=EventStatus.parse(status),
            responded=True,
            **kw,  # type: ignore[arg-type]
        )
    }


def plan(document, *, settings=None, memory=None, boot_id=""):
    return decide(
        document,
        resource_name=ME,
        known=memory or {},
        settings=settings or ResponseSettings(),
        now=NOW,
        boot_id=boot_id,
    )


@pytest.mark.parametrize("kind", ["Preempt", "Terminate", "Reboot", "Redeploy"])
def test_default_types_are_responded_to(kind):
    (action,) = plan(doc(event(kind, not_before=NOW + timedelta(minutes=10))))
    assert isinstance(action, Respond)
    assert action.event.event_type.value == kind


def test_freeze_is_ignored_by_default_and_drained_with_the_flag():
    (ignored,) = plan(doc(event("Freeze", not_before=NOW + timedelta(minutes=15))))
    assert isinstance(ignored, Ignore)
    assert "-drainOnFreezeEvent" in ignored.reason
    (respond,) = plan(
        doc(event("Freeze", not_before=NOW + timedelta(minutes=15))),
        settings=ResponseSettings(drain_on_freeze=True),
    )
    assert isinstance(respond, Respond)


def test_event_types_flag_narrows_the_selection():
    settings = ResponseSettings(event_types=frozenset({EventType.PREEMPT}))
    (action,) = plan(doc(event("Reboot")), settings=settings)
    assert isinstance(action, Ignore)
    assert "-eventTypes" in action.reason


@pytest.mark.parametrize(
    ("kind", "settings", "expected"),
    [
        ("Preempt", ResponseSettings(), True),  # the VM does not come back: the stop is on by default
        ("Terminate", ResponseSettings(), True),
        ("Reboot", ResponseSettings(), False),  # it does: the budget is honoured to the end
        ("Redeploy", ResponseSettings(), False),
        ("Reboot", ResponseSettings(last_resort_event_types=frozenset(EventType)), True),  # opted in
        ("Preempt", ResponseSettings(last_resort=False), False),  # -lastResort=false
    ],
)
def test_the_last_resort_stop_is_decided_by_event_type_and_flag(kind, settings, expected):
    (action,) = plan(doc(event(kind, not_before=NOW + timedelta(minutes=10))), settings=settings)
    assert isinstance(action, Respond)
    assert action.last_resort is expected


def test_a_response_names_the_other_vms_under_selected_events_of_the_document():
    document = doc(
        event("Preempt", resources=(ME, "aks-spot-12345678-vmss_4", "AKS-SPOT-12345678-VMSS_5")),
        event("Reboot", event_id="E2", resources=("aks-spot-12345678-vmss_6", ME.upper())),
        event("Freeze", event_id="E3", resources=("aks-spot-12345678-vmss_7",)),  # not acted on
    )
    actions = plan(document)
    responds = [a for a in actions if isinstance(a, Respond)]
    assert len(responds) == 2
    for action in responds:
        assert action.peers == (
            "aks-spot-12345678-vmss_4",
            "AKS-SPOT-12345678-VMSS_5",
            "aks-spot-12345678-vmss_6",
        )


def test_a_response_to_an_event_of_this_vm_alone_waits_for_no_one():
    (action,) = plan(doc(event("Preempt")))
    assert isinstance(action, Respond) and action.peers == ()


@pytest.mark.parametrize(
    ("period", "left", "expected"),
    [
        (1.0, 29.0, 2.9),  # a Preempt: a tenth of the time left
        (1.0, 300.0, 3.0),  # a Terminate: two poll periods and a second
        (0.2, 300.0, 1.4),
        (1.0, -5.0, 0.0),  # past the deadline: no wait
    ],
)
def test_the_wait_for_the_other_nodes_is_bounded_by_the_poll_period_and_the_time_left(period, left, expected):
    assert peer_wait_seconds(poll_interval_seconds=period, time_left_seconds=left) == pytest.approx(expected)


def test_event_for_another_vm_is_not_ours():
    assert plan(doc(event(resources=("aks-spot-12345678-vmss_4",)))) == ()


def test_resource_names_match_case_insensitively():
    (action,) = plan(doc(event(resources=(ME.upper(),))))
    assert isinstance(action, Respond)


def test_known_event_still_present_does_nothing():
    assert plan(doc(event()), memory=known("Preempt")) == ()


def test_preempt_without_not_before_gets_thirty_seconds_from_sighting():
    assert event_deadline(event("Preempt"), first_seen=NOW) == NOW + timedelta(seconds=30)


def test_drain_deadline_is_the_earlier_of_event_and_grace_period():
    far = NOW + timedelta(minutes=15)
    assert drain_deadline(far, now=NOW, node_grace_period_seconds=120) == NOW + timedelta(seconds=120)
    near = NOW + timedelta(seconds=20)
    assert drain_deadline(near, now=NOW, node_grace_period_seconds=120) == near


def test_drain_deadline_in_the_past_still_leaves_a_best_effort_window():
    past = NOW - timedelta(seconds=10)
    assert drain_deadline(past, now=NOW, node_grace_period_seconds=120) == NOW + timedelta(seconds=5)


@pytest.mark.parametrize(
    ("kind", "status", "expected", "reason_part"),
    [
        ("Reboot", "Started", GiveBack, "ended"),
        ("Redeploy", "Started", GiveBack, "ended"),
        ("Freeze", "Started", GiveBack, "ended"),
        ("Reboot", "Scheduled", GiveBack, "cancelled"),
        ("Preempt", "Scheduled", GiveBack, "cancelled"),
        ("Terminate", "Scheduled", GiveBack, "cancelled"),
        ("Preempt", "Started", Finish, "removes the VM"),
        ("Terminate", "Started", Finish, "removes the VM"),
    ],
)
def test_an_event_that_leaves_the_document(kind, status, expected, reason_part):
    (action,) = plan(doc(), memory=known(kind, status))
    assert type(action) is expected
    assert reason_part in action.reason


def test_uncordon_after_event_false_never_gives_back():
    (action,) = plan(
        doc(), memory=known("Reboot", "Started"), settings=ResponseSettings(uncordon_after_event=False)
    )
    assert isinstance(action, Finish)
    assert "-uncordonAfterEvent=false" in action.reason


def test_a_changed_boot_id_gives_back_even_while_the_event_is_listed():
    memory = known("Reboot", "Started", boot_id="boot-1")
    assert plan(doc(event("Reboot", status="Started")), memory=memory, boot_id="boot-1") == ()
    (action,) = plan(doc(event("Reboot", status="Started")), memory=memory, boot_id="boot-2")
    assert isinstance(action, GiveBack)
    assert "bootID" in action.reason


def test_finished_or_unanswered_events_are_left_alone():
    memory = {
        "E1": KnownEvent(
            event_id="E1",
            event_type=EventType.REBOOT,
            last_status=EventStatus.STARTED,
            responded=True,
            finished=True,
        ),
        "E2": KnownEvent(
            event_id="E2", event_type=EventType.FREEZE, last_status=EventStatus.SCHEDULED, responded=False
        ),
    }
    assert plan(doc(), memory=memory) == ()


def test_two_events_at_once_each_get_a_response():
    actions = plan(doc(event("Reboot", event_id="A"), event("Redeploy", event_id="B")))
    assert [a.event.event_id for a in actions if isinstance(a, Respond)] == ["A", "B"]


def test_an_unfinished_response_recorded_by_an_earlier_run_is_resumed():
    memory = {
        "E1": KnownEvent(
            event_id="E1",
            event_type=EventType.PREEMPT,
            last_status=EventStatus.SCHEDULED,
            responded=True,
            resume=True,
        ),
    }
    (action,) = plan(doc(event("Preempt", not_before=NOW + timedelta(seconds=20))), memory=memory)
    assert isinstance(action, Respond)
    assert "resuming" in action.reason


def test_a_resumable_event_that_is_gone_is_concluded_instead():
    memory = {
        "E1": KnownEvent(
            event_id="E1",
            event_type=EventType.REBOOT,
            last_status=EventStatus.SCHEDULED,
            responded=True,
            resume=True,
        ),
    }
    (action,) = plan(doc(), memory=memory)
    assert isinstance(action, GiveBack)


# --- Azure fidelity: Started events and advisories (docs/azure-fidelity.md) ---------------------------


@pytest.mark.parametrize("kind", ["Reboot", "Redeploy", "Terminate", "Preempt"])
def test_an_event_first_seen_started_is_responded_to_with_thirty_seconds_from_sighting(kind):
    """After a hardware failure Azure publishes a Reboot already Started with a blank NotBefore: the
    response starts at once, and the drain counts on the shortest notice Azure documents (30 s)."""
    (action,) = plan(doc(event(kind, status="Started")))
    assert isinstance(action, Respond)
    assert action.event_deadline == NOW + timedelta(seconds=30)


def test_an_advisory_prepares_the_node_and_is_never_responded_to_by_default():
    """SpotRebalanceRecommendation (Advisory) is its own type: not in the default -eventTypes, it is
    prepared for (a Prepare action), neither ignored nor drained."""
    (action,) = plan(doc(event("SpotRebalanceRecommendation", status="Advisory")))
    assert isinstance(action, Prepare)
    assert action.event.event_type is EventType.SPOT_REBALANCE_RECOMMENDATION
    assert action.event.status is EventStatus.ADVISORY
    assert "not drained unless -eventTypes names the type" in action.reason


def test_an_advisory_named_in_event_types_is_drained_counting_on_a_preempts_thirty_seconds():
    settings = ResponseSettings(
        event_types=frozenset({EventType.PREEMPT, EventType.SPOT_REBALANCE_RECOMMENDATION})
    )
    (action,) = plan(doc(event("SpotRebalanceRecommendation", status="Advisory")), settings=settings)
    assert isinstance(action, Respond)
    assert action.event_deadline == NOW + timedelta(seconds=30)
    assert action.last_resort is False  # not in -lastResort.eventTypes by default


def test_an_advisory_that_leaves_the_document_without_a_preempt_is_undone():
    (action,) = plan(doc(), memory=known("SpotRebalanceRecommendation", "Advisory"))
    assert isinstance(action, GiveBack)
    assert "withdrawn with no Preempt" in action.reason


def test_an_advisory_is_undone_also_with_uncordon_after_event_off_when_it_only_prepared():
    settings = ResponseSettings(uncordon_after_event=False)
    (action,) = plan(doc(), settings=settings, memory=known("SpotRebalanceRecommendation", "Advisory"))
    assert isinstance(action, GiveBack)


@pytest.mark.parametrize("where", ["document", "memory"])
def test_an_advisory_followed_by_a_preempt_keeps_what_it_did(where):
    """The Preempt that follows (in the same document, or already being handled) builds on the
    preparation: the advisory leaving the document undoes nothing."""
    memory = known("SpotRebalanceRecommendation", "Advisory", event_id="A1")
    if where == "document":
        document = doc(event("Preempt", event_id="P1", not_before=NOW + timedelta(seconds=30)))
    else:
        memory |= known("Preempt", event_id="P1")
        document = doc(event("Preempt", event_id="P1", not_before=NOW + timedelta(seconds=30)))
    actions = plan(document, memory=memory)
    finish = next(a for a in actions if getattr(a, "event_id", "") == "A1")
    assert isinstance(finish, Finish)
    assert "follows it" in finish.reason


def test_an_unknown_type_with_status_advisory_is_ignored_not_prepared():
    (action,) = plan(doc(event("SomethingNew", status="Advisory")))
    assert isinstance(action, Ignore)


def test_an_advisory_resumed_after_a_restart_is_prepared_again():
    memory = known("SpotRebalanceRecommendation", "Advisory", resume=True)
    (action,) = plan(doc(event("SpotRebalanceRecommendation", status="Advisory")), memory=memory)
    assert isinstance(action, Prepare)
    assert "resuming" in action.reason


def test_an_event_days_ahead_is_responded_to_now_and_reports_at_the_drain_timeout():
    """Degraded hardware: "a scheduled event with a NotBefore that is typically a few days in the
    future" (up to 7 days). Like any selected event it is responded to on sighting; its deadline is
    NotBefore, the drain reports after -nodeGracePeriodSeconds."""
    not_before = NOW + timedelta(days=7)
    (action,) = plan(doc(event("Redeploy", not_before=not_before)))
    assert isinstance(action, Respond)
    assert action.event_deadline == not_before
    assert action.drain_deadline == NOW + timedelta(seconds=120)
