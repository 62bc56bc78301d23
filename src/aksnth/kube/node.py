"""Node mutations with optimistic concurrency, and reading the node.

Each mutation reads the Node, hands a plain view of it to a pure function of
``aksnth.kube.mutations`` (which returns the changed view and says whether anything changed), and
writes the difference as a JSON merge patch that carries the resourceVersion it read. A concurrent
writer turns the write into a 409; we then re-read and try again. With ``dry_run`` we log what
would change and write nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Final

from aksnth.config import TaintEffect
from aksnth.errors import NodeNotFound
from aksnth.kube import mutations
from aksnth.kube.api import MERGE_PATCH, JsonObject, KubeClient, child, children, node_path
from aksnth.kube.client import api_call, with_retries
from aksnth.kube.mutations import (
    Change,
    GiveBackResult,
    NodeState,
    Taint,
    merge_patch,
    prepare,
    protect,
    set_record,
    taint_after_drain,
)
from aksnth.kube.pods import PodInfo, list_pods_on_node
from aksnth.kube.record import NodeRecord
from aksnth.model import NodeSnapshot, ScheduledEvent

__all__ = [
    "GiveBackResult",
    "NodeRecord",
    "NodeSnapshot",
    "apply_after_drain_taint",
    "give_back",
    "prepare_node",
    "protect_node",
    "read_node",
    "read_node_once",
    "read_node_with_pods",
    "update_record",
    "with_pod_names",
]

log = logging.getLogger(__name__)

#: Read-modify-write attempts before a conflict (or an unreachable API server) is given up on.
WRITE_ATTEMPTS: Final = 6


def node_state(node: JsonObject) -> NodeState:
    """The view of a Node object as the API server sends it (missing fields read as their defaults)."""
    meta, spec, status = child(node, "metadata"), child(node, "spec"), child(node, "status")
    taints = tuple(
        Taint(
            key=t.get("key") or "",
            effect=t.get("effect") or "",
            value=t.get("value") or "",
            time_added=t.get("timeAdded") or None,
        )
        for t in children(spec, "taints")
    )
    return NodeState(
        name=meta.get("name") or "",
        resource_version=meta.get("resourceVersion") or "",
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        unschedulable=bool(spec.get("unschedulable")),
        taints=taints,
        boot_id=child(status, "nodeInfo").get("bootID") or "",
        provider_id=spec.get("providerID") or "",
        condition_types=tuple(c.get("type") or "" for c in children(status, "conditions")),
    )


async def read_node_state(client: KubeClient, name: str) -> NodeState:
    async with api_call(f"get node {name}", not_found=NodeNotFound):
        node = await client.get(node_path(name))
    return node_state(node)


async def read_node(client: KubeClient, name: str) -> NodeSnapshot:
    """The node as the handler and the notifications see it (labels, annotations, bootID…)."""
    state = await with_retries(lambda: read_node_state(client, name), what=f"read node {name}")
    return _snapshot(state)


async def read_node_once(client: KubeClient, name: str) -> NodeSnapshot:
    """:func:`read_node` in one request, without retries (nor their log lines): whether the API
    server answers now. The caller reports a failure."""
    return _snapshot(await read_node_state(client, name))


def template_pod_names(pods: Iterable[PodInfo]) -> tuple[str, ...]:
    """``.NodePods`` as the Go original filled it: every pod on the node but DaemonSet pods (finished
    and mirror pods included), names only, in the order the API lists them: by storage key,
    ``<namespace>/<name>`` (sorted here, so a list served from the API server's cache agrees)."""
    kept = [pod for pod in pods if pod.first_owner_kind != "DaemonSet"]
    return tuple(pod.name for pod in sorted(kept, key=lambda pod: f"{pod.namespace}/{pod.name}"))


async def read_node_with_pods(client: KubeClient, name: str) -> NodeSnapshot:
    """:func:`read_node` plus the names of the pods on the node (for ``.NodePods`` in templates)."""
    return await with_pod_names(client, await read_node(client, name))


async def with_pod_names(client: KubeClient, node: NodeSnapshot) -> NodeSnapshot:
    """``node`` (as read earlier) with the names of the pods on it now (``.NodePods``)."""
    pods = await with_retries(
        lambda: list_pods_on_node(client, node.name), what=f"list pods on node {node.name}"
    )
    return replace(node, pod_names=template_pod_names(pods))


def _snapshot(state: NodeState) -> NodeSnapshot:
    return NodeSnapshot(
        name=state.name,
        provider_id=state.provider_id,
        labels=dict(state.labels),
        annotations=dict(state.annotations),
        unschedulable=state.unschedulable,
        boot_id=state.boot_id,
        condition_types=state.condition_types,
    )


async def _mutate(
    client: KubeClient, name: str, plan: Callable[[NodeState], Change], *, dry_run: bool, what: str
) -> Change:
    """Read → ``plan`` → write with the resourceVersion read; a 409 re-reads and plans again."""

    async def attempt() -> Change:
        change = plan(await read_node_state(client, name))
        if not change.changed:
            log.debug("%s node %s: nothing to change", what, name)
            return change
        if dry_run:
            log.info("[dry run] %s node %s would change: %s", what, name, ", ".join(change.changes))
            return change
        async with api_call(f"{what} node {name}", not_found=NodeNotFound):
            await client.patch(
                node_path(name), merge_patch(change.before, change.after), content_type=MERGE_PATCH
            )
        log.info("%s node %s: %s", what, name, ", ".join(change.changes))
        return change

    return await with_retries(attempt, attempts=WRITE_ATTEMPTS, what=f"{what} node {name}")


async def protect_node(
    client: KubeClient,
    name: str,
    *,
    event: ScheduledEvent,
    taint: bool,
    effect: TaintEffect,
    exclude_from_lb: bool,
    dry_run: bool,
    now: datetime | None = None,
    notified: tuple[str, ...] = (),
    to_be_deleted: bool = False,
) -> NodeRecord:
    """In one write: the exclude-from-load-balancers label, the cordon, (unless the effect is
    NoExecute, see :func:`apply_after_drain_taint`) the taint ``aks-node-termination-handler/<type>=<id>``,
    and with ``to_be_deleted`` the cluster autoscaler's taint on events that remove the VM.

    Idempotent; records what we changed (and what was already so) in the state annotation, with the
    ``notified`` phases (notifications already sent for this event).
    """
    moment = now or datetime.now(UTC)
    change = await _mutate(
        client,
        name,
        lambda state: protect(
            state,
            event=event,
            taint=taint,
            effect=effect,
            exclude_from_lb=exclude_from_lb,
            now=moment,
            notified=notified,
            to_be_deleted=to_be_deleted,
            changed_at=datetime.now(UTC),
        ),
        dry_run=dry_run,
        what="protect",
    )
    return change.record


async def prepare_node(
    client: KubeClient,
    name: str,
    *,
    event: ScheduledEvent,
    dry_run: bool,
    now: datetime | None = None,
    notified: tuple[str, ...] = (),
) -> NodeRecord:
    """An advisory's preparation in one write: the PreferNoSchedule taint and the record (see
    :func:`aksnth.kube.mutations.prepare`). Idempotent."""
    moment = now or datetime.now(UTC)
    change = await _mutate(
        client,
        name,
        lambda state: prepare(state, event=event, now=moment, notified=notified),
        dry_run=dry_run,
        what="prepare",
    )
    return change.record


async def apply_after_drain_taint(
    client: KubeClient,
    name: str,
    *,
    event: ScheduledEvent,
    effect: TaintEffect = TaintEffect.NO_EXECUTE,
    dry_run: bool,
    now: datetime | None = None,
) -> NodeRecord:
    """The event's taint with ``effect`` (NoExecute), once the drain has honoured the PDBs. Idempotent."""
    moment = now or datetime.now(UTC)
    change = await _mutate(
        client,
        name,
        lambda state: taint_after_drain(state, event=event, effect=effect, now=moment),
        dry_run=dry_run,
        what="taint",
    )
    return change.record


async def update_record(
    client: KubeClient, name: str, mutate: Callable[[NodeRecord], NodeRecord], *, dry_run: bool
) -> NodeRecord:
    """Change only the state record (``mutate`` is pure; it may run more than once on a conflict)."""
    change = await _mutate(
        client, name, lambda state: set_record(state, mutate(state.record)), dry_run=dry_run, what="record"
    )
    return change.record


async def give_back(client: KubeClient, name: str, *, event_id: str, dry_run: bool) -> GiveBackResult:
    """Undo our changes for ``event_id``: its taint; and when no other event of ours still holds the
    node, the cordon (only if we cordoned) and the label (only if we added it). Records given_back.
    """
    results: list[GiveBackResult] = []

    def plan(state: NodeState) -> Change:
        change, result = mutations.give_back(state, event_id=event_id)
        results.append(result)
        return change

    await _mutate(client, name, plan, dry_run=dry_run, what="give back")
    result = results[-1]
    return replace(result, dry_run=True) if dry_run else result
