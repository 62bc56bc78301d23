"""PodDisruptionBudgets: listed once (all namespaces), seen through a plain view, and what the Eviction
API would answer for a node's pods right now, decided without asking it.

The rules are the API server's (``pkg/registry/core/pod/storage/eviction.go``): a pod that is
Pending, finished or already terminating is evicted whatever its budget says; a pod selected by more
than one budget cannot be evicted at all (the API answers 500); a pod that is not Ready does not use
up the budget when the budget tolerates it (``unhealthyPodEvictionPolicy: AlwaysAllow``, or the
default ``IfHealthyBudget`` while the budget has all the healthy pods it wants); every other eviction
takes one of ``status.disruptionsAllowed``, and once none is left the answer is 429. A budget whose
current generation the disruption controller has not processed yet refuses every eviction.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aksnth.kube.api import PODDISRUPTIONBUDGETS, JsonObject, KubeClient, child
from aksnth.kube.client import api_call
from aksnth.kube.labelselector import Selector, from_object
from aksnth.kube.pods import FINISHED_PHASES, PodInfo

log = logging.getLogger(__name__)

ALWAYS_ALLOW = "AlwaysAllow"


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetInfo:
    namespace: str
    name: str
    selector: Selector | None  # None selects nothing (no selector, or one the API server cannot use)
    disruptions_allowed: int = 0
    current_healthy: int = 0
    desired_healthy: int = 0
    observed: bool = True  # the disruption controller has processed the budget's current generation
    always_allow_unhealthy: bool = False  # unhealthyPodEvictionPolicy: AlwaysAllow

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, pod: PodInfo) -> bool:
        return (
            self.selector is not None
            and pod.namespace == self.namespace
            and self.selector.matches(pod.labels)
        )


def budget_info(pdb: JsonObject) -> BudgetInfo:
    """The view of a PodDisruptionBudget object as the API server sends it."""
    meta, spec, status = child(pdb, "metadata"), child(pdb, "spec"), child(pdb, "status")
    namespace = meta.get("namespace") or ""
    name = meta.get("name") or ""
    selector: Selector | None = None
    if isinstance(spec.get("selector"), dict):
        try:
            selector = from_object(child(spec, "selector"))
        except ValueError as exc:
            log.warning("PodDisruptionBudget %s/%s selects nothing: %s", namespace, name, exc)
    generation = meta.get("generation") or 0
    observed_generation = status.get("observedGeneration")
    return BudgetInfo(
        namespace=namespace,
        name=name,
        selector=selector,
        disruptions_allowed=status.get("disruptionsAllowed") or 0,
        current_healthy=status.get("currentHealthy") or 0,
        desired_healthy=status.get("desiredHealthy") or 0,
        observed=observed_generation is not None and observed_generation >= generation,
        always_allow_unhealthy=spec.get("unhealthyPodEvictionPolicy") == ALWAYS_ALLOW,
    )


async def list_budgets(client: KubeClient) -> list[BudgetInfo]:
    """Every PodDisruptionBudget of the cluster (one list call, paginated by the server)."""
    async with api_call("list poddisruptionbudgets"):
        listed = await client.list(PODDISRUPTIONBUDGETS)
    return [budget_info(pdb) for pdb in listed.items]


# --- what the Eviction API would answer ----------------------------------------------------------------


class Answer(enum.StrEnum):
    ALLOWED = "allowed"
    BLOCKED = "blocked"  # 429: the budget allows no (further) disruption now
    SEVERAL_BUDGETS = "several_budgets"  # 500: the Eviction API does not support a pod in two budgets


@dataclass(frozen=True, slots=True, kw_only=True)
class EvictionAnswer:
    answer: Answer
    budgets: tuple[str, ...] = ()  # namespace/name of the budgets that decide
    detail: str = ""  # why, for people

    @property
    def allowed(self) -> bool:
        return self.answer is Answer.ALLOWED


def eviction_answers(pods: Iterable[PodInfo], budgets: Sequence[BudgetInfo]) -> dict[str, EvictionAnswer]:
    """The Eviction API's answer for each of ``pods`` if they were evicted now, one after the other in
    the given order (the drain's order), by pod key. An eviction it allows uses up one disruption of
    the budget for the pods after it; the budget's status is not refreshed in between (replacements
    that become Ready elsewhere would give the drain's retries more room, which this cannot know).
    """
    ordered = list(pods)
    selecting = {pod.key: [budget for budget in budgets if budget.selects(pod)] for pod in ordered}
    guarded: dict[str, int] = {}  # budget key -> its pods among ``pods``
    for pod in ordered:
        for budget in selecting[pod.key]:
            guarded[budget.key] = guarded.get(budget.key, 0) + 1
    left = {budget.key: budget.disruptions_allowed for budget in budgets}
    answers: dict[str, EvictionAnswer] = {}
    for pod in ordered:
        chosen = selecting[pod.key]
        names = tuple(budget.key for budget in chosen)
        if pod.phase in FINISHED_PHASES or pod.phase == "Pending" or pod.deleting:
            answers[pod.key] = EvictionAnswer(
                answer=Answer.ALLOWED, budgets=names, detail="budgets do not apply"
            )
        elif not chosen:
            answers[pod.key] = EvictionAnswer(answer=Answer.ALLOWED)
        elif len(chosen) > 1:
            answers[pod.key] = EvictionAnswer(
                answer=Answer.SEVERAL_BUDGETS,
                budgets=names,
                detail=f"selected by {len(names)} PodDisruptionBudgets ({', '.join(names)}): "
                "the Eviction API refuses such a pod",
            )
        else:
            answers[pod.key] = _one_budget(pod, chosen[0], left, guarded=guarded[chosen[0].key])
    return answers


def _one_budget(pod: PodInfo, budget: BudgetInfo, left: dict[str, int], *, guarded: int) -> EvictionAnswer:
    names = (budget.key,)
    if not budget.observed:
        return EvictionAnswer(
            answer=Answer.BLOCKED,
            budgets=names,
            detail=f"PodDisruptionBudget {budget.key} is not yet processed by the disruption controller",
        )
    healthy_budget = budget.desired_healthy > 0 and budget.current_healthy >= budget.desired_healthy
    if not pod.ready and (budget.always_allow_unhealthy or healthy_budget):
        return EvictionAnswer(
            answer=Answer.ALLOWED, budgets=names, detail="not Ready: does not use up the budget"
        )
    if left[budget.key] > 0:
        left[budget.key] -= 1
        return EvictionAnswer(answer=Answer.ALLOWED, budgets=names)
    allowed = budget.disruptions_allowed
    if allowed <= 0:
        why = (
            f"PodDisruptionBudget {budget.key} allows no disruption "
            f"({budget.current_healthy} healthy, {budget.desired_healthy} wanted)"
        )
    else:
        why = (
            f"PodDisruptionBudget {budget.key} allows {allowed} disruption{'s' if allowed != 1 else ''} "
            f"and {guarded} of its pods are on this node"
        )
    return EvictionAnswer(answer=Answer.BLOCKED, budgets=names, detail=why)
