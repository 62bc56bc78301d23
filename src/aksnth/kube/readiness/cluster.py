"""Reading what the readiness report needs: three lists (nodes, pods of every namespace, and
PodDisruptionBudgets), made at once. Read-only by construction: this module only lists.

A 403 says which right is missing; anything transient is retried a few times.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from lightkube import AsyncClient
from lightkube.models.core_v1 import NodeSelectorRequirement
from lightkube.resources.core_v1 import Node, Pod

from aksnth.errors import KubeForbidden
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


async def read_cluster(client: AsyncClient) -> ClusterState:
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


async def _list_nodes(client: AsyncClient) -> list[NodeInfo]:
    async with api_call("list nodes"):
        return [node_info(node) async for node in client.list(Node)]


async def _list_pods(client: AsyncClient) -> list[tuple[PodInfo, Placement]]:
    async with api_call("list pods"):
        return [(pod_info(pod), placement_of(pod)) async for pod in client.list(Pod, namespace="*")]


def node_info(node: Node) -> NodeInfo:
    meta, spec, status = node.metadata, node.spec, node.status
    conditions = (status.conditions if status is not None else None) or []
    return NodeInfo(
        name=(meta.name if meta else None) or "",
        labels=dict((meta.labels if meta else None) or {}),
        taints=tuple(
            Taint(key=t.key, effect=t.effect, value=t.value or "")
            for t in ((spec.taints if spec else None) or [])
        ),
        unschedulable=bool(spec and spec.unschedulable),
        ready=any(c.type == "Ready" and c.status == "True" for c in conditions),
    )


def placement_of(pod: Pod) -> Placement:
    spec = pod.spec
    if spec is None:
        return Placement()
    affinity = spec.affinity.nodeAffinity if spec.affinity is not None else None
    required = affinity.requiredDuringSchedulingIgnoredDuringExecution if affinity is not None else None
    terms = tuple(
        NodeTerm(expressions=_node_selector(term.matchExpressions), fields=_node_selector(term.matchFields))
        for term in ((required.nodeSelectorTerms if required is not None else None) or [])
    )
    return Placement(
        tolerations=tuple(
            Toleration(
                key=t.key or "", operator=t.operator or "Equal", value=t.value or "", effect=t.effect or ""
            )
            for t in (spec.tolerations or [])
        ),
        node_selector=dict(spec.nodeSelector or {}),
        required_terms=terms,
    )


def _node_selector(requirements: list[NodeSelectorRequirement] | None) -> Selector:
    converted: list[Requirement] = []
    values: tuple[str, ...]
    for requirement in requirements or []:
        try:
            op = Op(requirement.operator)
        except ValueError:
            # The API server refuses unknown operators; should one appear, it matches no node.
            op, values = Op.IN, ()
        else:
            values = tuple(requirement.values or ())
        converted.append(Requirement(requirement.key, op, values))
    return Selector(tuple(converted))
