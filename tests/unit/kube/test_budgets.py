"""What the Eviction API would answer for a node's pods, from their PodDisruptionBudgets, without asking."""

from __future__ import annotations

from aksnth.kube.budgets import Answer, BudgetInfo, budget_info, eviction_answers
from aksnth.kube.labelselector import parse_selector
from aksnth.kube.pods import PodInfo


def pod(name: str, *, app: str = "web", ready: bool = True, phase: str = "Running", **kw) -> PodInfo:
    return PodInfo(namespace="shop", name=name, labels={"app": app}, ready=ready, phase=phase, **kw)


def budget(name: str = "web", *, allowed: int, selector: str = "app=web", **kw) -> BudgetInfo:
    kw.setdefault("current_healthy", 3)
    kw.setdefault("desired_healthy", 3 - allowed)
    return BudgetInfo(
        namespace="shop", name=name, selector=parse_selector(selector), disruptions_allowed=allowed, **kw
    )


def answers(pods, budgets) -> dict[str, Answer]:
    return {key: answer.answer for key, answer in eviction_answers(pods, budgets).items()}


def test_each_allowed_eviction_uses_up_one_disruption_in_the_drain_order() -> None:
    result = eviction_answers([pod("a"), pod("b"), pod("c")], [budget(allowed=1)])
    assert [result[k].answer for k in ("shop/a", "shop/b", "shop/c")] == [
        Answer.ALLOWED,
        Answer.BLOCKED,
        Answer.BLOCKED,
    ]
    assert (
        result["shop/b"].detail
        == "PodDisruptionBudget shop/web allows 1 disruption and 3 of its pods are on this node"
    )
    assert result["shop/b"].budgets == ("shop/web",)


def test_a_budget_that_allows_no_disruption_blocks_every_healthy_pod_it_selects() -> None:
    result = eviction_answers([pod("a"), pod("other", app="db")], [budget(allowed=0)])
    assert result["shop/a"].answer is Answer.BLOCKED
    assert (
        result["shop/a"].detail == "PodDisruptionBudget shop/web allows no disruption (3 healthy, 3 wanted)"
    )
    assert result["shop/other"].answer is Answer.ALLOWED


def test_pending_finished_and_terminating_pods_ignore_budgets() -> None:
    pods = [pod("p", phase="Pending"), pod("s", phase="Succeeded"), pod("d", deleting=True)]
    assert set(answers(pods, [budget(allowed=0)]).values()) == {Answer.ALLOWED}


def test_an_unready_pod_goes_when_the_budget_is_healthy_or_always_allows_unhealthy_pods() -> None:
    unready = pod("u", ready=False)
    assert answers([unready], [budget(allowed=0)]) == {"shop/u": Answer.ALLOWED}  # 3 healthy >= 3 wanted
    short = budget(allowed=0, current_healthy=2, desired_healthy=3)
    assert answers([unready], [short]) == {"shop/u": Answer.BLOCKED}
    tolerant = budget(allowed=0, current_healthy=2, desired_healthy=3, always_allow_unhealthy=True)
    assert answers([unready], [tolerant]) == {"shop/u": Answer.ALLOWED}


def test_a_pod_in_two_budgets_cannot_be_evicted() -> None:
    result = eviction_answers(
        [pod("a")], [budget("one", allowed=5), budget("two", allowed=5, selector="app")]
    )
    assert result["shop/a"].answer is Answer.SEVERAL_BUDGETS
    assert result["shop/a"].budgets == ("shop/one", "shop/two")


def test_a_budget_not_yet_processed_refuses_every_eviction() -> None:
    result = eviction_answers([pod("a")], [budget(allowed=3, observed=False)])
    assert result["shop/a"].answer is Answer.BLOCKED
    assert "not yet processed" in result["shop/a"].detail


def test_budgets_select_only_pods_of_their_namespace() -> None:
    other = PodInfo(namespace="else", name="a", labels={"app": "web"}, ready=True, phase="Running")
    assert answers([other], [budget(allowed=0)]) == {"else/a": Answer.ALLOWED}


def test_budget_info_reads_the_api_object() -> None:
    pdb = {
        "metadata": {"name": "web", "namespace": "shop", "generation": 2},
        "spec": {
            "minAvailable": 2,
            "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
        "status": {
            "disruptionsAllowed": 1,
            "currentHealthy": 3,
            "desiredHealthy": 2,
            "expectedPods": 3,
            "observedGeneration": 1,
        },
    }
    info = budget_info(pdb)
    assert (info.key, info.disruptions_allowed, info.current_healthy, info.desired_healthy) == (
        "shop/web",
        1,
        3,
        2,
    )
    assert info.always_allow_unhealthy and not info.observed  # generation 2 not processed yet
    assert info.selects(pod("a")) and not info.selects(pod("b", app="db"))
    no_selector = budget_info({"metadata": {"name": "x", "namespace": "shop"}, "spec": {}})
    assert not no_selector.selects(pod("a"))  # a budget without a selector selects nothing
