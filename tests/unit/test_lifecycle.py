"""The lifecycle of an event: the phases in order, the moves between them, what is persisted on the
Node and what the condition shows; the record and the condition obey it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aksnth.kube.conditions import ListedEvent
from aksnth.kube.record import NodeRecord, RecordError
from aksnth.lifecycle import MOVES, ORDER, IllegalTransition, Phase, done_phase
from aksnth.notify.payload import sample_event

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_the_whole_way_of_a_drained_and_approved_event_is_allowed() -> None:
    phase = Phase.SEEN
    for step in (Phase.PROTECTED, Phase.DRAINED, Phase.APPROVED, Phase.GIVEN_BACK):
        phase = phase.advance(step)
        assert phase is step


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (Phase.SEEN, Phase.DRAINED),  # a drain before the node was protected
        (Phase.SEEN, Phase.APPROVED),
        (Phase.PROTECTED, Phase.APPROVED),  # approving what was never drained
        (Phase.IGNORED, Phase.PROTECTED),  # an ignored event is never acted on
        (Phase.PREPARED, Phase.DRAINED),
    ],
)
def test_a_move_the_lifecycle_does_not_allow_is_an_error_that_names_it(start: Phase, target: Phase) -> None:
    assert not start.can_become(target)
    with pytest.raises(IllegalTransition, match=f"at {start.value} cannot become {target.value}"):
        start.advance(target)


def test_staying_or_going_back_leaves_the_event_where_it_is() -> None:
    """A resumed response repeats the step it was in: that is no move at all."""
    for phase in ORDER:
        for earlier in ORDER[: phase.rank + 1]:
            assert phase.advance(earlier) is phase
    assert Phase.FINISHED.advance(Phase.PROTECTED) is Phase.FINISHED


def test_a_concluded_event_is_never_reopened() -> None:
    for end in (Phase.GIVEN_BACK, Phase.FINISHED):
        assert all(not move.shown for move in MOVES[end])
        assert end.concluded and not end.shown and not end.holds_node


def test_what_is_persisted_and_what_is_shown() -> None:
    assert [p for p in ORDER if not p.persisted] == [Phase.IGNORED, Phase.PREPARED]
    assert [p for p in ORDER if not p.shown] == [Phase.GIVEN_BACK, Phase.FINISHED]
    assert [p for p in ORDER if p.holds_node] == [Phase.PROTECTED, Phase.DRAINED, Phase.APPROVED]
    assert done_phase(approve_events=True) is Phase.APPROVED
    assert done_phase(approve_events=False) is Phase.DRAINED


def test_every_phase_has_its_moves() -> None:
    assert set(MOVES) == set(Phase)
    for phase, moves in MOVES.items():
        assert all(move.rank > phase.rank for move in moves), phase


def test_the_record_refuses_an_illegal_move_and_keeps_no_shown_only_phase() -> None:
    event = sample_event("Preempt")
    event_id = event.event_id
    record = NodeRecord().with_event_seen(event, now=NOW)
    with pytest.raises(IllegalTransition):
        record.with_approved(event_id)  # never protected, never drained
    with pytest.raises(ValueError, match="not kept in the record"):
        record.with_phase(event_id, Phase.PREPARED)
    text = '{"events":[{"id":"E","type":"Preempt","firstSeen":"2026-11-25T12:00:00Z","phase":"ignored"}]}'
    with pytest.raises(RecordError, match="unknown phase 'ignored'"):
        NodeRecord.parse(text)


def test_the_condition_refuses_an_illegal_move_but_takes_a_recorded_phase_on_resume() -> None:
    listed = ListedEvent(event_id="E1", event_type="Preempt", first_seen=NOW)
    with pytest.raises(IllegalTransition):
        listed.advanced(Phase.DRAINED)
    assert listed.advanced(Phase.DRAINED, resumed=True).phase is Phase.DRAINED
    assert listed.advanced(Phase.GIVEN_BACK) == listed  # concluded: the condition drops it instead
