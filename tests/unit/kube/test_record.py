"""The state record on the node: JSON round trip, tolerant reading, forward-only phases, pruning."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from aksnth.kube.drainplan import DrainOutcome, DrainResult, PodIssue
from aksnth.kube.keys import STATE_ANNOTATION
from aksnth.kube.record import MAX_EVENTS, NodeRecord, RecordError, TaintRef
from aksnth.lifecycle import Phase
from aksnth.model import EventStatus, EventType, ScheduledEvent
from testkit.events import scheduled_event

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def event(event_id: str = "E1", kind: EventType = EventType.PREEMPT) -> ScheduledEvent:
    return scheduled_event(
        kind,
        event_id=event_id,
        not_before=NOW + timedelta(seconds=30),
        not_before_raw="Wed, 01 May 2024 12:00:30 GMT",
    )


def full_record() -> NodeRecord:
    record = NodeRecord(cordoned_by_us=True, label_added_by_us=True, boot_id="boot-1")
    record = record.with_event_seen(event("E1"), now=NOW)
    record = record.with_phase("E1", Phase.PROTECTED)
    record = record.with_taint(
        "E1", TaintRef(key="aks-node-termination-handler/preempt", value="E1", effect="NoSchedule")
    )
    record = record.with_notified("E1", "event")
    drain = DrainResult(
        result=DrainOutcome.TIMED_OUT,
        evicted=("a/p1", "a/p2"),
        remaining=(PodIssue(pod="a/p3", reason="blocked by PodDisruptionBudget pdb"),),
        duration_seconds=12.3456,
    )
    return record.with_drain_result("E1", drain).with_approved("E1")


def test_round_trip_keeps_everything():
    record = full_record()
    assert NodeRecord.parse(record.serialize()) == record


def test_serialized_form_is_compact_json_with_documented_names():
    document = json.loads(full_record().serialize())
    assert document["version"] == 1
    assert document["cordonedByUs"] is True
    assert document["labelAddedByUs"] is True
    assert document["bootID"] == "boot-1"
    (entry,) = document["events"]
    assert entry["id"] == "E1"
    assert entry["type"] == "Preempt"
    assert entry["phase"] == "approved"
    assert entry["firstSeen"].startswith("2024-05-01T12:00:00")
    assert entry["drain"] == {
        "result": "timed_out",
        "evicted": 2,
        "deleted": 0,
        "remaining": 1,
        "durationSeconds": 12.346,
    }
    assert " " not in full_record().serialize()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"version": 0}', "unknown version"),
        ('{"events": {}}', "'events' is not a list"),
        ('{"events": [{"type": "Preempt"}]}', "events[0]"),
        ('{"events": [{"id": "E", "firstSeen": "2024-05-01T12:00:00Z", "phase": "later"}]}', "unknown phase"),
        ('{"events": [{"id": "E", "firstSeen": "2024-05-01T12:00:00"}]}', "no timezone"),
        ('{"cordonedByUs": "yes"}', "cordonedByUs"),
    ],
)
def test_parse_names_what_is_wrong(text, problem):
    with pytest.raises(RecordError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        NodeRecord.parse(text)


def test_unreadable_annotation_reads_as_empty_record_that_claims_nothing():
    record = NodeRecord.from_annotations({STATE_ANNOTATION: "not json"})
    assert record == NodeRecord()
    assert not record.cordoned_by_us and not record.label_added_by_us


def test_missing_annotation_reads_as_empty_record():
    assert NodeRecord.from_annotations({}) == NodeRecord()
    assert NodeRecord.from_annotations(None) == NodeRecord()


def test_unknown_event_type_and_newer_fields_are_tolerated():
    text = json.dumps(
        {
            "version": 2,
            "future": 1,
            "events": [{"id": "E", "type": "Hibernate", "firstSeen": "2024-05-01T12:00:00Z"}],
        }
    )
    record = NodeRecord.parse(text)
    assert record.events["E"].event_type is EventType.UNKNOWN


def test_phases_only_move_forward():
    seen = NodeRecord().with_event_seen(event(), now=NOW)
    record = seen.with_phase("E1", Phase.PROTECTED).with_phase("E1", Phase.DRAINED)
    assert record.with_phase("E1", Phase.PROTECTED).events["E1"].phase is Phase.DRAINED
    finished = record.with_finished("E1")
    assert finished.events["E1"].phase is Phase.FINISHED
    assert finished.with_phase("E1", Phase.PROTECTED).events["E1"].phase is Phase.FINISHED


def test_seeing_an_event_again_keeps_its_first_sighting_and_updates_status():
    record = NodeRecord().with_event_seen(event(), now=NOW)
    started = ScheduledEvent(**{**_fields(event()), "status": EventStatus.STARTED})
    again = record.with_event_seen(started, now=NOW + timedelta(minutes=5))
    assert again.events["E1"].first_seen == NOW
    assert again.events["E1"].last_status is EventStatus.STARTED


def _fields(e: ScheduledEvent) -> dict:
    return {name: getattr(e, name) for name in e.__dataclass_fields__}


def test_updates_are_idempotent_and_leave_unknown_events_alone():
    record = NodeRecord().with_event_seen(event(), now=NOW).with_notified("E1", "event")
    assert record.with_notified("E1", "event") is record
    assert record.with_approved("nope") is record
    assert record.events["E1"].notified == ("event",)


def test_holding_events_are_the_protected_unconcluded_ones():
    record = NodeRecord().with_event_seen(event("A"), now=NOW).with_event_seen(event("B"), now=NOW)
    record = record.with_phase("B", Phase.PROTECTED)
    assert [e.event_id for e in record.holding_events()] == ["B"]
    assert [e.event_id for e in record.with_given_back("B").holding_events()] == []


def test_pruning_drops_oldest_concluded_events_and_keeps_active_ones():
    record = NodeRecord()
    for i in range(MAX_EVENTS + 5):
        record = record.with_event_seen(event(f"E{i:02}"), now=NOW + timedelta(minutes=i))
        if i != 0:  # E00 stays active, although it is the oldest
            record = record.with_finished(f"E{i:02}")
    assert len(record.events) == MAX_EVENTS
    assert "E00" in record.events
    assert "E01" not in record.events  # the oldest concluded one went first
    assert f"E{MAX_EVENTS + 4:02}" in record.events
