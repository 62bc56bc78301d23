"""The drain-readiness verdict of one node, from its pods and the budgets, with the drain's own plan."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aksnth.kube.budgets import BudgetInfo
from aksnth.kube.drainplan import PodClass
from aksnth.kube.labelselector import parse_selector
from aksnth.kube.pods import PodInfo
from aksnth.kube.readiness.assess import NODE_REASONS, Outcome, Reason, Scenario, assess_node
from aksnth.model import EventType

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PREEMPT = Scenario()


def pod(name: str, *, namespace: str = "shop", grace: int = 30, owner: str = "ReplicaSet", **kw) -> PodInfo:
    kw.setdefault("labels", {"app": name})
    return PodInfo(
        namespace=namespace,
        name=name,
        phase="Running",
        ready=True,
        grace_period_seconds=grace,
        controller_kind=owner,
        controller_name=f"{name}-rs" if owner else "",
        controller_uid=f"uid-{name}" if owner else "",
        **kw,
    )


def pdb(app: str, *, allowed: int) -> BudgetInfo:
    return BudgetInfo(
        namespace="shop",
        name=app,
        selector=parse_selector(f"app={app}"),
        disruptions_allowed=allowed,
        current_healthy=2,
        desired_healthy=2 - allowed,
    )


def one(pods, budgets=(), scenario=PREEMPT):
    return assess_node("node-a", pods, list(budgets), scenario=scenario, now=NOW)


def test_a_plain_replica_drains_within_the_notice_with_the_margin_taken_from_its_grace() -> None:
    result = one([pod("web")])
    (web,) = result.pods
    assert (web.outcome, web.evicted_after_seconds, web.grace_period_seconds) == (Outcome.EVICTED, 0.0, 29)
    assert web.detail == "evicted at once, grace period 29s of its 30s"
    assert web.risks == ()
    assert result.drains_within_notice and result.verdict == "drains within the notice"
    assert result.drain_seconds == 30


@pytest.mark.parametrize(
    ("info", "reason", "message"),
    [
        (pod("slow", grace=60), Reason.GRACE_CUT, "grace period cut from 60s to 29s"),
        (pod("bare", owner=""), Reason.NO_CONTROLLER, "no controller: nothing recreates it"),
        (
            pod("cache", empty_dir_volumes=("scratch", "tmp")),
            Reason.EMPTY_DIR,
            "emptyDir data lost: scratch, tmp",
        ),
    ],
)
def test_each_risk_that_still_drains(info: PodInfo, reason: Reason, message: str) -> None:
    result = one([info])
    (only,) = result.pods
    assert only.outcome is Outcome.EVICTED
    assert [(r.reason, r.message) for r in only.risks] == [(reason, message)]
    assert result.drains_within_notice
    assert result.verdict == "drains within the notice; 1 pod at risk"
    assert result.pods_at_risk_by_reason()[reason] == 1


def test_a_budget_that_allows_no_disruption_keeps_the_node_from_draining() -> None:
    result = one([pod("db", labels={"app": "db"}), pod("web")], [pdb("db", allowed=0)])
    db = next(p for p in result.pods if p.pod.name == "db")
    assert db.outcome is Outcome.BLOCKED and db.evicted_after_seconds is None
    assert db.detail == "blocked: PodDisruptionBudget shop/db allows no disruption (2 healthy, 2 wanted)"
    assert db.reasons == (Reason.PDB_BLOCKED,)
    assert not result.drains_within_notice
    assert result.verdict == "would not drain within the notice: 1 pod blocked by a PodDisruptionBudget"


def test_a_pod_in_two_budgets_is_refused() -> None:
    budgets = [
        pdb("web", allowed=1),
        BudgetInfo(namespace="shop", name="all", selector=parse_selector(""), disruptions_allowed=5),
    ]
    result = one([pod("web")], budgets)
    assert result.pods[0].outcome is Outcome.REFUSED
    assert (
        result.verdict
        == "would not drain within the notice: 1 pod in several PodDisruptionBudgets (eviction refused)"
    )


def test_a_pod_left_behind_by_a_preempt_dies_with_the_vm_and_loses_its_data() -> None:
    """A blocked pod without controller and with emptyDir is lost all the same when the VM goes away,
    but not when it survives the event (a Reboot)."""
    blocked = pod("db", owner="", labels={"app": "db"}, empty_dir_volumes=("data",))
    preempt = one([blocked], [pdb("db", allowed=0)])
    assert set(preempt.pods[0].reasons) == {Reason.PDB_BLOCKED, Reason.NO_CONTROLLER, Reason.EMPTY_DIR}
    reboot = one([blocked], [pdb("db", allowed=0)], Scenario(event_type=EventType.REBOOT, notice_seconds=900))
    assert reboot.pods[0].reasons == (Reason.PDB_BLOCKED,)


def test_critical_pods_go_when_the_regular_ones_are_gone_and_get_what_is_left() -> None:
    result = one([pod("web", grace=10), pod("dns", namespace="kube-system", grace=30)])
    web, dns = result.pods
    assert (web.pod_class, dns.pod_class) == (PodClass.REGULAR, PodClass.CRITICAL)
    assert dns.evicted_after_seconds == 10  # the regular pod's whole grace period, at worst
    assert dns.grace_period_seconds == 19
    assert dns.risks[0].message == "grace period cut from 30s to 19s"
    assert dns.detail == "evicted after 10s (critical pods go last), grace period cut from 30s to 19s"


def test_critical_pods_go_after_two_thirds_of_the_time_when_a_regular_pod_is_blocked() -> None:
    result = one(
        [pod("db", labels={"app": "db"}), pod("dns", namespace="kube-system", grace=5)],
        [pdb("db", allowed=0)],
    )
    dns = next(p for p in result.pods if p.pod.name == "dns")
    assert dns.evicted_after_seconds == 20 and dns.grace_period_seconds is None and not dns.risks


def test_disable_eviction_deletes_and_bypasses_budgets() -> None:
    result = one([pod("db", labels={"app": "db"})], [pdb("db", allowed=0)], Scenario(disable_eviction=True))
    assert result.pods[0].outcome is Outcome.DELETED and result.drains_within_notice


def test_daemonset_mirror_and_finished_pods_are_left_alone_without_risk() -> None:
    agent = pod("agent", owner="DaemonSet", empty_dir_volumes=("x",))
    static = pod("etcd", annotations={"kubernetes.io/config.mirror": "m"}, owner="")
    done = PodInfo(namespace="shop", name="job", phase="Succeeded")
    result = one([agent, static, done])
    assert [(p.outcome, p.detail, p.risks) for p in result.pods] == [
        (Outcome.LEFT, "left alone (DaemonSet pod)", ()),
        (Outcome.LEFT, "left alone (mirror pod of a static pod)", ()),
        (Outcome.LEFT, "left alone (finished)", ()),
    ]


def test_the_drain_time_is_the_handlers_deadline() -> None:
    """The event's deadline, whatever -nodeGracePeriodSeconds: the report time, 120 s, ends nothing."""
    reboot = Scenario(event_type=EventType.REBOOT, notice_seconds=900)
    assert reboot.drain_seconds(NOW) == 900 and reboot.report_seconds(NOW) == 120
    assert Scenario(notice_seconds=20).drain_seconds(NOW) == 20
    assert Scenario(notice_seconds=1).drain_seconds(NOW) == 5  # the handler's minimum drain time


def test_pod_grace_period_seconds_is_used_like_the_handler_uses_it() -> None:
    result = one([pod("web", grace=300)], scenario=Scenario(pod_grace_period_seconds=10))
    assert result.pods[0].grace_period_seconds == 10
    assert result.pods[0].detail == "evicted at once, grace period 10s (-podGracePeriodSeconds)"


def test_pods_at_risk_are_counted_by_reason() -> None:
    result = one([pod("a", grace=90, owner=""), pod("b", owner="")])
    counts = result.pods_at_risk_by_reason()
    assert list(counts) == list(NODE_REASONS)
    assert counts == {
        Reason.PDB_BLOCKED: 0,
        Reason.SEVERAL_PDBS: 0,
        Reason.GRACE_CUT: 1,
        Reason.NO_CONTROLLER: 2,
        Reason.EMPTY_DIR: 0,
    }
    assert result.verdict == "drains within the notice; 2 pods at risk"
