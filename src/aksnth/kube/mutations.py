"""Pure node mutations: a plain view of the Node in, the changed view and what changed out.

``aksnth.kube.node`` reads the Node, calls one of these, and writes the difference (a JSON merge
patch carrying the ``resourceVersion`` it read, so a concurrent writer makes it re-read and retry).
Every function here is idempotent: run on its own output it changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from aksnth.config import TaintEffect
from aksnth.kube.keys import (
    EXCLUDE_FROM_LB_LABEL,
    EXCLUDE_FROM_LB_VALUE,
    STATE_ANNOTATION,
    TO_BE_DELETED_TAINT,
    is_our_taint_key,
    taint_key,
)
from aksnth.kube.record import NodeRecord, TaintRef
from aksnth.lifecycle import Phase
from aksnth.model import FATAL_EVENT_TYPES, ScheduledEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class Taint:
    key: str
    effect: str
    value: str = ""
    time_added: str | None = None  # RFC 3339, kept as the server sent it

    def to_json(self) -> dict[str, str]:
        out = {"key": self.key, "effect": self.effect}
        if self.value:
            out["value"] = self.value
        if self.time_added:
            out["timeAdded"] = self.time_added
        return out

    def same_slot(self, key: str, effect: str) -> bool:
        """Kubernetes allows one taint per (key, effect)."""
        return self.key == key and self.effect == effect


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeState:
    """The parts of a Node that we read and write."""

    name: str
    resource_version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    taints: tuple[Taint, ...] = ()
    boot_id: str = ""
    provider_id: str = ""
    condition_types: tuple[str, ...] = ()  # read only: conditions live in status, written elsewhere

    @property
    def record(self) -> NodeRecord:
        return NodeRecord.from_annotations(self.annotations)

    def with_record(self, record: NodeRecord) -> NodeState:
        """This node with ``record`` in its annotation (unchanged if the record is the same)."""
        if record == self.record and STATE_ANNOTATION in self.annotations:
            return self
        return replace(self, annotations={**self.annotations, STATE_ANNOTATION: record.serialize()})


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """The result of a mutation: the node after it, its record, and a word per change."""

    before: NodeState
    after: NodeState
    record: NodeRecord
    changes: tuple[str, ...] = ()  # e.g. "label", "cordon", "taint k=v:NoSchedule", "record"

    @property
    def changed(self) -> bool:
        return self.after != self.before


def _change(before: NodeState, after: NodeState, record: NodeRecord, words: list[str]) -> Change:
    after = after.with_record(record)
    if after.annotations != before.annotations:
        words.append("record")
    return Change(before=before, after=after, record=record, changes=tuple(words))


def _add_taint(
    node: NodeState, record: NodeRecord, event: ScheduledEvent, effect: str
) -> tuple[NodeState, NodeRecord, str | None]:
    key = taint_key(event.event_type)
    ours = TaintRef(key=key, value=event.event_id, effect=effect)
    if any(t.same_slot(key, effect) for t in node.taints):
        # Already there (ours for this or another event of the same type): never duplicated. The
        # record still names it, so the give-back of this event knows it may remove it.
        return node, record.with_taint(event.event_id, ours), None
    node = replace(node, taints=(*node.taints, Taint(key=key, value=event.event_id, effect=effect)))
    return node, record.with_taint(event.event_id, ours), f"taint {key}={event.event_id}:{effect}"


def _add_to_be_deleted(
    node: NodeState, record: NodeRecord, event: ScheduledEvent, now: datetime
) -> tuple[NodeState, NodeRecord, str | None]:
    """The cluster autoscaler's ``ToBeDeletedByClusterAutoscaler:NoSchedule``, valued as it values it
    (Unix seconds). Already there: recorded for this event too when another event of ours added it, else
    (the autoscaler's) left out of the record, so that a give-back never removes the autoscaler's own."""
    present = next((t for t in node.taints if t.key == TO_BE_DELETED_TAINT), None)
    if present is not None:
        ref = TaintRef(key=present.key, value=present.value, effect=present.effect)
        added_by_us = any(ref in entry.taints for entry in record.holding_events())
        return node, record.with_taint(event.event_id, ref) if added_by_us else record, None
    added = Taint(key=TO_BE_DELETED_TAINT, value=str(int(now.timestamp())), effect="NoSchedule")
    ours = TaintRef(key=added.key, value=added.value, effect=added.effect)
    node = replace(node, taints=(*node.taints, added))
    return node, record.with_taint(event.event_id, ours), f"taint {added.key}={added.value}:{added.effect}"


def protect(
    node: NodeState,
    *,
    event: ScheduledEvent,
    taint: bool,
    effect: TaintEffect,
    exclude_from_lb: bool,
    now: datetime,
    notified: tuple[str, ...] = (),
    to_be_deleted: bool = False,
    changed_at: datetime | None = None,
) -> Change:
    """Stop new traffic and new pods: exclude-from-LB label, cordon, taint (NoExecute waits for the drain),
    and with ``to_be_deleted``, for an event that removes the VM, the cluster autoscaler's taint (which
    makes kube-proxy fail its ``/healthz``, so that load balancers stop first).

    Remembers whether the cordon and the label were already there (an admin's or AKS's), so that
    a give-back never undoes them. ``notified`` phases are recorded in the same write, so that a
    handler killed right after the cordon does not send them again. ``now`` is when the event was seen
    (the record's first sighting); ``changed_at`` (default ``now``) is when this change is written, the
    value of the autoscaler's taint, from which the load balancer's reaction is timed.
    """
    record = node.record.with_event_seen(event, now=now)
    for phase in notified:
        record = record.with_notified(event.event_id, phase)
    if not record.holding_events():
        # A new protection cycle: what we own is decided afresh against the node as it is now.
        record = replace(record, cordoned_by_us=False, label_added_by_us=False, boot_id=node.boot_id)
    after = node
    words: list[str] = []
    if exclude_from_lb and EXCLUDE_FROM_LB_LABEL not in after.labels:
        after = replace(after, labels={**after.labels, EXCLUDE_FROM_LB_LABEL: EXCLUDE_FROM_LB_VALUE})
        record = replace(record, label_added_by_us=True)
        words.append("label")
    if not after.unschedulable:
        after = replace(after, unschedulable=True)
        record = replace(record, cordoned_by_us=True)
        words.append("cordon")
    if taint and effect is not TaintEffect.NO_EXECUTE:
        after, record, word = _add_taint(after, record, event, effect.value)
        if word:
            words.append(word)
    if to_be_deleted and event.event_type in FATAL_EVENT_TYPES:
        after, record, word = _add_to_be_deleted(after, record, event, changed_at or now)
        if word:
            words.append(word)
    record = record.with_phase(event.event_id, Phase.PROTECTED)
    return _change(node, after, record, words)


def prepare(
    node: NodeState, *, event: ScheduledEvent, now: datetime, notified: tuple[str, ...] = ()
) -> Change:
    """An advisory's preparation: the taint ``aks-node-termination-handler/<type>=<id>:PreferNoSchedule``,
    so that the scheduler prefers other nodes for new pods, and the event in the record (with the
    ``notified`` phases). No cordon, no label: nothing already running is disturbed."""
    record = node.record.with_event_seen(event, now=now)
    for phase in notified:
        record = record.with_notified(event.event_id, phase)
    after, record, word = _add_taint(node, record, event, TaintEffect.PREFER_NO_SCHEDULE.value)
    return _change(node, after, record, [word] if word else [])


def taint_after_drain(
    node: NodeState, *, event: ScheduledEvent, effect: TaintEffect = TaintEffect.NO_EXECUTE, now: datetime
) -> Change:
    """Add this event's taint with ``effect`` (NoExecute: only once the drain has honoured PDBs)."""
    record = node.record.with_event_seen(event, now=now)
    after, record, word = _add_taint(node, record, event, effect.value)
    return _change(node, after, record, [word] if word else [])


@dataclass(frozen=True, slots=True, kw_only=True)
class GiveBackResult:
    """What a give-back undid, and why it left the rest."""

    event_id: str
    removed_taints: tuple[str, ...] = ()
    uncordoned: bool = False
    label_removed: bool = False
    still_active: tuple[str, ...] = ()  # other events of ours that keep the node protected
    kept_admin_cordon: bool = False  # the node stays unschedulable: we did not cordon it
    changed: bool = False
    dry_run: bool = False

    def __str__(self) -> str:
        done = [f"removed taint {t}" for t in self.removed_taints]
        if self.uncordoned:
            done.append("uncordoned")
        if self.label_removed:
            done.append("removed the exclude-from-load-balancers label")
        if self.kept_admin_cordon:
            done.append("left the node cordoned (it was cordoned before us)")
        if self.still_active:
            done.append(f"kept the node protected for {', '.join(self.still_active)}")
        text = "; ".join(done) or "nothing to undo"
        return f"[dry run] would have: {text}" if self.dry_run and done else text


def give_back(node: NodeState, *, event_id: str) -> tuple[Change, GiveBackResult]:
    """Undo our changes for ``event_id``: its taint; and, when no other event of ours is active,
    the cordon (only if we cordoned) and the label (only if we added it).
    """
    record = node.record
    entry = record.events.get(event_id)
    # An event that never held the node (an advisory's preparation: a soft taint only) has only its
    # taints to undo; the cordon and the label are another event's business.
    held = entry is None or entry.holds_node
    others = tuple(e for e in record.holding_events() if e.event_id != event_id)
    still_needed = {(t.key, t.effect) for e in others for t in e.taints}
    if entry is not None:
        mine = {(t.key, t.effect) for t in entry.taints}
    else:
        # Not in the record (lost or never written): our taints that carry this EventId.
        mine = {(t.key, t.effect) for t in node.taints if is_our_taint_key(t.key) and t.value == event_id}
    removable = mine - still_needed
    kept = tuple(t for t in node.taints if (t.key, t.effect) not in removable)
    removed = tuple(f"{t.key}={t.value}:{t.effect}" for t in node.taints if (t.key, t.effect) in removable)
    after = replace(node, taints=kept) if removed else node
    words = [f"untaint {r}" for r in removed]

    uncordoned = label_removed = kept_admin_cordon = False
    if held and not others:
        if record.cordoned_by_us and after.unschedulable:
            after = replace(after, unschedulable=False)
            uncordoned = True
            words.append("uncordon")
        elif after.unschedulable and not record.cordoned_by_us:
            kept_admin_cordon = True
        if record.label_added_by_us and EXCLUDE_FROM_LB_LABEL in after.labels:
            after = replace(
                after, labels={k: v for k, v in after.labels.items() if k != EXCLUDE_FROM_LB_LABEL}
            )
            label_removed = True
            words.append("unlabel")
        record = replace(record, cordoned_by_us=False, label_added_by_us=False)
    record = record.with_given_back(event_id)
    change = _change(node, after, record, words)
    result = GiveBackResult(
        event_id=event_id,
        removed_taints=removed,
        uncordoned=uncordoned,
        label_removed=label_removed,
        still_active=tuple(e.event_id for e in others),
        kept_admin_cordon=kept_admin_cordon,
        changed=change.changed,
    )
    return change, result


def set_record(node: NodeState, record: NodeRecord) -> Change:
    return _change(node, node, record, [])


def merge_patch(before: NodeState, after: NodeState) -> dict[str, Any]:
    """The JSON merge patch from ``before`` to ``after``, guarded by ``before``'s resourceVersion.

    Labels and annotations are patched key by key (``null`` removes one); the taint list is
    replaced as a whole, which is safe because the resourceVersion makes a concurrent change a 409.
    """
    metadata: dict[str, Any] = {"resourceVersion": before.resource_version}
    labels = _map_diff(before.labels, after.labels)
    if labels:
        metadata["labels"] = labels
    annotations = _map_diff(before.annotations, after.annotations)
    if annotations:
        metadata["annotations"] = annotations
    patch: dict[str, Any] = {"metadata": metadata}
    spec: dict[str, Any] = {}
    if before.unschedulable != after.unschedulable:
        spec["unschedulable"] = True if after.unschedulable else None
    if before.taints != after.taints:
        spec["taints"] = [t.to_json() for t in after.taints] or None
    if spec:
        patch["spec"] = spec
    return patch


def _map_diff(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str | None]:
    diff: dict[str, str | None] = {k: v for k, v in after.items() if before.get(k) != v}
    diff.update({k: None for k in before if k not in after})
    return diff
