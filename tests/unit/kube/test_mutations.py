"""Pure node mutations: protect, the after-drain taint, give-back, and the merge patch they produce."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from aksnth.config import TaintEffect
from aksnth.kube.keys import EXCLUDE_FROM_LB_LABEL, STATE_ANNOTATION, TO_BE_DELETED_TAINT
from aksnth.kube.mutations import (
    NodeState,
    Taint,
    give_back,
    merge_patch,
    prepare,
    protect,
    taint_after_drain,
)
from aksnth.lifecycle import Phase
from aksnth.model import EventType, ScheduledEvent
from testkit.events import scheduled_event

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
FOREIGN = Taint(key="dedicated", value="gpu", effect="NoSchedule", time_added=None)


def event(event_id: str = "E1", kind: EventType = EventType.REBOOT) -> ScheduledEvent:
    return scheduled_event(kind, event_id=event_id, not_before=NOW + timedelta(minutes=15))


def node(**kw) -> NodeState:
    defaults = dict(name="n1", resource_version="7", labels={"a": "b"}, taints=(FOREIGN,), boot_id="boot-1")
    return NodeState(**{**defaults, **kw})


def protected(state: NodeState, e: ScheduledEvent | None = None, **kw) -> NodeState:
    options = dict(taint=True, effect=TaintEffect.NO_SCHEDULE, exclude_from_lb=True, now=NOW)
    return protect(state, event=e or event(), **{**options, **kw}).after


def test_protect_labels_cordons_taints_and_records_in_one_change():
    change = protect(
        node(), event=event(), taint=True, effect=TaintEffect.NO_SCHEDULE, exclude_from_lb=True, now=NOW
    )
    after = change.after
    assert change.changed
    assert change.changes == (
        "label",
        "cordon",
        "taint aks-node-termination-handler/reboot=E1:NoSchedule",
        "record",
    )
    assert after.labels[EXCLUDE_FROM_LB_LABEL] == "true"
    assert after.unschedulable
    assert after.taints == (
        FOREIGN,
        Taint(key="aks-node-termination-handler/reboot", value="E1", effect="NoSchedule"),
    )
    record = change.record
    assert record.cordoned_by_us and record.label_added_by_us
    assert record.boot_id == "boot-1"
    assert record.events["E1"].phase is Phase.PROTECTED
    assert after.record == record


def test_protect_twice_changes_nothing_and_keeps_ownership():
    once = protected(node())
    again = protect(
        once, event=event(), taint=True, effect=TaintEffect.NO_SCHEDULE, exclude_from_lb=True, now=NOW
    )
    assert not again.changed
    assert again.record.cordoned_by_us and again.record.label_added_by_us
    assert len([t for t in again.after.taints if t.key.startswith("aks-node")]) == 1


def test_protect_of_an_admin_cordoned_node_does_not_claim_the_cordon():
    change = protect(
        node(unschedulable=True),
        event=event(),
        taint=False,
        effect=TaintEffect.NO_SCHEDULE,
        exclude_from_lb=False,
        now=NOW,
    )
    assert not change.record.cordoned_by_us
    assert "cordon" not in change.changes


def test_protect_does_not_claim_a_label_that_was_already_there():
    change = protect(
        node(labels={EXCLUDE_FROM_LB_LABEL: "yes"}),
        event=event(),
        taint=False,
        effect=TaintEffect.NO_SCHEDULE,
        exclude_from_lb=True,
        now=NOW,
    )
    assert not change.record.label_added_by_us
    assert change.after.labels[EXCLUDE_FROM_LB_LABEL] == "yes"


def test_no_execute_waits_for_the_drain_and_is_then_added_once():
    before_drain = protected(node(), effect=TaintEffect.NO_EXECUTE)
    assert before_drain.taints == (FOREIGN,)
    tainted = taint_after_drain(before_drain, event=event(), now=NOW)
    assert tainted.changes[0] == "taint aks-node-termination-handler/reboot=E1:NoExecute"
    assert not taint_after_drain(tainted.after, event=event(), now=NOW).changed
    assert tainted.record.events["E1"].taints[0].effect == "NoExecute"


def test_give_back_undoes_only_what_we_did():
    change, result = give_back(protected(node()), event_id="E1")
    after = change.after
    assert not after.unschedulable
    assert EXCLUDE_FROM_LB_LABEL not in after.labels
    assert after.taints == (FOREIGN,)
    assert after.labels == {"a": "b"}
    assert result.uncordoned and result.label_removed
    assert result.removed_taints == ("aks-node-termination-handler/reboot=E1:NoSchedule",)
    assert change.record.events["E1"].phase is Phase.GIVEN_BACK
    assert not change.record.cordoned_by_us


def test_give_back_leaves_an_admin_cordon_and_label_in_place():
    admin = node(unschedulable=True, labels={EXCLUDE_FROM_LB_LABEL: "true"})
    change, result = give_back(protected(admin), event_id="E1")
    assert change.after.unschedulable
    assert change.after.labels[EXCLUDE_FROM_LB_LABEL] == "true"
    assert result.kept_admin_cordon and not result.uncordoned and not result.label_removed
    assert "left the node cordoned" in str(result)


def test_give_back_is_idempotent():
    change, _ = give_back(protected(node()), event_id="E1")
    again, result = give_back(change.after, event_id="E1")
    assert not again.changed
    assert str(result) == "nothing to undo"


def test_another_active_event_keeps_the_node_protected():
    both = protected(protected(node(), event("E1")), event("E2", EventType.FREEZE))
    change, result = give_back(both, event_id="E1")
    assert change.after.unschedulable
    assert EXCLUDE_FROM_LB_LABEL in change.after.labels
    assert [t.key for t in change.after.taints] == ["dedicated", "aks-node-termination-handler/freeze"]
    assert result.still_active == ("E2",)
    last, result = give_back(change.after, event_id="E2")
    assert not last.after.unschedulable and EXCLUDE_FROM_LB_LABEL not in last.after.labels
    assert last.after.taints == (FOREIGN,)


def test_two_events_of_one_type_share_one_taint_which_stays_until_both_are_over():
    both = protected(protected(node(), event("E1")), event("E2"))
    ours = [t for t in both.taints if t.key == "aks-node-termination-handler/reboot"]
    assert ours == [Taint(key="aks-node-termination-handler/reboot", value="E1", effect="NoSchedule")]
    first, _ = give_back(both, event_id="E1")
    assert any(t.key == "aks-node-termination-handler/reboot" for t in first.after.taints)
    second, _ = give_back(first.after, event_id="E2")
    assert not any(t.key == "aks-node-termination-handler/reboot" for t in second.after.taints)


def test_give_back_without_record_removes_only_our_taint_with_that_event_id():
    ours = Taint(key="aks-node-termination-handler/reboot", value="E9", effect="NoSchedule")
    other = Taint(key="aks-node-termination-handler/freeze", value="E8", effect="NoSchedule")
    change, result = give_back(node(taints=(FOREIGN, ours, other), unschedulable=True), event_id="E9")
    assert change.after.taints == (FOREIGN, other)
    assert change.after.unschedulable  # no record: we claim no cordon
    assert result.kept_admin_cordon


def test_a_new_cycle_after_give_back_decides_ownership_afresh():
    given_back, _ = give_back(protected(node()), event_id="E1")
    admin_cordoned = replace(given_back.after, unschedulable=True)
    change = protect(
        admin_cordoned,
        event=event("E2"),
        taint=False,
        effect=TaintEffect.NO_SCHEDULE,
        exclude_from_lb=False,
        now=NOW,
    )
    assert not change.record.cordoned_by_us


def test_merge_patch_carries_resource_version_and_only_the_differences():
    before = node(taints=(Taint(key="x", effect="NoExecute", time_added="2024-01-01T00:00:00Z"),))
    after = protected(before)
    patch = merge_patch(before, after)
    assert patch["metadata"]["resourceVersion"] == "7"
    assert patch["metadata"]["labels"] == {EXCLUDE_FROM_LB_LABEL: "true"}
    assert set(patch["metadata"]["annotations"]) == {STATE_ANNOTATION}
    assert patch["spec"]["unschedulable"] is True
    assert patch["spec"]["taints"] == [
        {"key": "x", "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:00Z"},
        {"key": "aks-node-termination-handler/reboot", "value": "E1", "effect": "NoSchedule"},
    ]


def test_merge_patch_removes_with_null():
    before = protected(node())
    after, _ = give_back(before, event_id="E1")
    patch = merge_patch(before, after.after)
    assert patch["metadata"]["labels"] == {EXCLUDE_FROM_LB_LABEL: None}
    assert patch["spec"]["unschedulable"] is None
    assert patch["spec"]["taints"] == [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]


def test_merge_patch_of_the_last_taint_removes_the_list():
    before = node(taints=(Taint(key="aks-node-termination-handler/reboot", value="E1", effect="NoSchedule"),))
    after = replace(before, taints=())
    assert merge_patch(before, after)["spec"] == {"taints": None}


@pytest.mark.parametrize("effect", list(TaintEffect))
def test_taint_key_is_the_lower_case_event_type_and_value_the_event_id(effect):
    after = protected(node(), event("ABC-123", EventType.PREEMPT), effect=effect)
    if effect is TaintEffect.NO_EXECUTE:
        after = taint_after_drain(after, event=event("ABC-123", EventType.PREEMPT), now=NOW).after
    (ours,) = [t for t in after.taints if t.key.startswith("aks-node-termination-handler/")]
    assert (ours.key, ours.value, ours.effect) == (
        "aks-node-termination-handler/preempt",
        "ABC-123",
        effect.value,
    )


# --- an advisory's preparation (Spot rebalance recommendation) -----------------------------------------

ADVISORY = EventType.SPOT_REBALANCE_RECOMMENDATION


def test_an_advisory_adds_only_a_prefer_no_schedule_taint_and_records_it():
    change = prepare(node(), event=event("A1", ADVISORY), now=NOW, notified=("event",))
    after = change.after
    assert change.changes == (
        "taint aks-node-termination-handler/spotrebalancerecommendation=A1:PreferNoSchedule",
        "record",
    )
    assert not after.unschedulable and EXCLUDE_FROM_LB_LABEL not in after.labels
    entry = after.record.events["A1"]
    assert entry.phase is Phase.SEEN and not entry.holds_node
    assert entry.notified == ("event",)
    assert prepare(after, event=event("A1", ADVISORY), now=NOW).changed is False


def test_giving_an_advisory_back_removes_its_taint_and_leaves_a_preempts_cordon():
    """The advisory never held the node: its give-back removes its taint only, also when the cordon
    is ours (a Preempt's, still under way) or when no event of ours holds the node any more."""
    prepared = prepare(node(), event=event("A1", ADVISORY), now=NOW).after
    both = protected(prepared, event("P1", EventType.PREEMPT))
    change, result = give_back(both, event_id="A1")
    assert change.after.unschedulable
    assert [t.key for t in change.after.taints] == ["dedicated", "aks-node-termination-handler/preempt"]
    assert not result.uncordoned and not result.label_removed
    alone, result = give_back(prepared, event_id="A1")
    assert alone.after.taints == (FOREIGN,)
    assert not alone.after.unschedulable and not result.kept_admin_cordon
    assert alone.after.record.events["A1"].phase is Phase.GIVEN_BACK


# -- the cluster autoscaler's taint (load balancers first) ----------------------------------------------

TO_BE_DELETED = Taint(key=TO_BE_DELETED_TAINT, value=str(int(NOW.timestamp())), effect="NoSchedule")


@pytest.mark.parametrize("kind", [EventType.PREEMPT, EventType.TERMINATE])
def test_protect_adds_the_autoscaler_taint_on_events_that_remove_the_vm(kind: EventType):
    after = protected(node(), event(kind=kind), taint=False, to_be_deleted=True)
    assert TO_BE_DELETED in after.taints


@pytest.mark.parametrize("kind", [EventType.REBOOT, EventType.REDEPLOY, EventType.FREEZE])
def test_protect_leaves_the_autoscaler_taint_off_when_the_vm_stays(kind: EventType):
    after = protected(node(), event(kind=kind), to_be_deleted=True)
    assert all(t.key != TO_BE_DELETED_TAINT for t in after.taints)


def test_protect_without_the_option_adds_no_autoscaler_taint():
    after = protected(node(), event(kind=EventType.PREEMPT), to_be_deleted=False)
    assert all(t.key != TO_BE_DELETED_TAINT for t in after.taints)


def test_give_back_removes_the_autoscaler_taint_it_added():
    held = protected(node(), event(kind=EventType.TERMINATE), to_be_deleted=True)
    again = protect(
        held,
        event=event(kind=EventType.TERMINATE),
        taint=True,
        effect=TaintEffect.NO_SCHEDULE,
        exclude_from_lb=True,
        now=NOW + timedelta(seconds=5),
        to_be_deleted=True,
    )
    assert not again.changed
    change, result = give_back(held, event_id="E1")
    assert change.after.taints == (FOREIGN,)
    assert f"{TO_BE_DELETED_TAINT}={TO_BE_DELETED.value}:NoSchedule" in result.removed_taints


def test_give_back_leaves_the_autoscalers_own_taint():
    theirs = Taint(key=TO_BE_DELETED_TAINT, value="1700000000", effect="NoSchedule")
    held = protected(node(taints=(FOREIGN, theirs)), event(kind=EventType.TERMINATE), to_be_deleted=True)
    assert held.taints.count(theirs) == 1 and TO_BE_DELETED not in held.taints
    change, _ = give_back(held, event_id="E1")
    assert theirs in change.after.taints


def test_the_autoscaler_taint_stays_while_another_event_of_ours_holds_the_node():
    first = protected(node(), event("E1", EventType.TERMINATE), to_be_deleted=True)
    both = protected(first, event("E2", EventType.PREEMPT), to_be_deleted=True)
    change, _ = give_back(both, event_id="E1")
    assert TO_BE_DELETED in change.after.taints
