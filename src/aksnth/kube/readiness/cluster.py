"""Reading what the readiness report needs: three lists (nodes, pods of every namespace, and
PodDisruptionBudgets), made at once. Read-only by construction: this module only lists.

A 403 says which right is missing; anything transient is retried a few times.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from aksnth.errors import KubeForbidden
from aksnth.kube.api import NODES, PODS, JsonObject, KubeClient, child, children
from aksnth.kube.budgets import BudgetInfo, list_budgets
from aksnth.kube.client import api_call, with_retries
from aksnth.kube.labelselector import Op, Requirement, Selector
from aksnth.kube.mutations import Taint
from aksnth.kube.pods import PodInfo, pod_info
from aksnth.kube.readiness.placement import ClusterView, NodeInfo, NodeTerm, Placement, Toleration

T = TypeVar("T")

#: What the report needs, for the message of a 403.
RIGHTS: Final = "list on nodes, pods and poddisruptionbudgets.policy"
_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterState:
    view: ClusterView
    budgets: tuple[BudgetInfo, ...]


async def read_cluster(client: KubeClient) -> ClusterState:
    """Every node, every pod and every PodDisruptionBudget, listed concurrently."""
    nodes, pods, budgets = await asyncio.gather(
        _read(lambda: _list_nodes(client), "list nodes"),
        _read(lambda: _list_pods(client), "list pods"),
        _read(lambda: list_budgets(client), "list poddisruptionbudgets"),
    )
    return ClusterState(
        view=ClusterView(
            nodes={node.name: node for node in nodes},
            pods=tuple(info for info, _ in pods),
            placements={info.key: placement for info, placement in pods},
        ),
        budgets=tuple(budgets),
    )


async def _read(fn: Callable[[], Awaitable[T]], what: str) -> T:
    try:
        return await with_retries(fn, attempts=_ATTEMPTS, what=what)
    except KubeForbidden as exc:
        raise KubeForbidden(f"{exc} (the readiness report needs {RIGHTS})", status=exc.status) from exc


async def _list_nodes(client: KubeClient) -> list[NodeInfo]:
    async with api_call("list nodes"):
        listed = await client.list(NODES)
    return [node_info(node) for node in listed.items]


async def _list_pods(client: KubeClient) -> list[tuple[PodInfo, Placement]]:
    async with api_call("list pods"):
        listed = await client.list(PODS)
    return [(pod_info(pod), placement_of(pod)) for pod in listed.items]


def node_info(node: JsonObject) -> NodeInfo:
    meta, spec, status = child(node, "metadata"), child(node, "spec"), child(node, "status")
    return NodeInfo(
        name=meta.get("name") or "",
        labels=dict(meta.get("labels") or {}),
        taints=tuple(
            Taint(key=t.get("key") or "", effect=t.get("effect") or "", value=t.get("value") or "")
            for t in children(spec, "taints")
        ),
        unschedulable=bool(spec.get("unschedulable")),
        ready=any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in children(status, "conditions")
        ),
    )


def placement_of(pod: JsonObject) -> Placement:
    spec = child(pod, "spec")
    if not spec:
        return Placement()
    required = child(
        child(child(spec, "affinity"), "nodeAffinity"), "requiredDuringSchedulingIgnoredDuringExecution"
    )
    terms = tuple(
        NodeTerm(
            expressions=_node_selector(children(term, "matchExpressions")),
            fields=_node_selector(children(term, "matchFields")),
        )
        for term in children(required, "nodeSelectorTerms")
    )
    return Placement(
        tolerations=tuple(
            Toleration(
                key=t.get("key") or "",
                operator=t.get("operator") or "Equal",
                value=t.get("value") or "",
                effect=t.get("effect") or "",
            )
            for t in children(spec, "tolerations")
        ),
        node_selector=dict(spec.get("nodeSelector") or {}),
        required_terms=terms,
    )


def _node_selector(requirements: list[JsonObject]) -> Selector:
    converted: list[Requirement] = []
    values: tuple[str, ...]
    for requirement in requirements:
        try:
            op = Op(requirement.get("operator") or "")
        except ValueError:
            # The API server refuses unknown operators; should one appear, it matches no node.
            op, values = Op.IN, ()
        else:
            values = tuple(requirement.get("values") or ())
        converted.append(Requirement(requirement.get("key") or "", op, values))
    return Selector(tuple(converted))
