"""Drain planning: which pods go, in which order, with which grace period; how the result reads."""

from __future__ import annotations

import pytest

from aksnth.kube.drainplan import (
    MAX_OVERLOAD_PAUSE_SECONDS,
    DrainOutcome,
    DrainResult,
    PodClass,
    PodIssue,
    budget_retry_delay,
    classify,
    effective_grace_period,
    last_resort_at,
    last_resort_grace,
    overload_pause,
    plan_drain,
    regular_phase_end,
)
from aksnth.kube.pods import PodInfo
from aksnth.kube.record import NodeRecord


def pod(name: str, namespace: str = "apps", **kw) -> PodInfo:
    return PodInfo(namespace=namespace, name=name, uid=f"uid-{name}", phase=kw.pop("phase", "Running"), **kw)


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (pod("web", controller_kind="ReplicaSet"), PodClass.REGULAR),
        (pod("bare"), PodClass.REGULAR),
        (pod("cache", empty_dir_volumes=("scratch",)), PodClass.REGULAR),  # emptyDir data is lost; it goes
        (pod("agent", controller_kind="DaemonSet"), PodClass.DAEMONSET),
        (pod("static", annotations={"kubernetes.io/config.mirror": "abc"}), PodClass.MIRROR),
        (pod("job", phase="Succeeded"), PodClass.FINISHED),
        (pod("crashed", phase="Failed"), PodClass.FINISHED),
        (pod("dns", namespace="kube-system", controller_kind="ReplicaSet"), PodClass.CRITICAL),
        (pod("ingress", priority_class="system-cluster-critical"), PodClass.CRITICAL),
        (pod("csi", priority_class="system-node-critical"), PodClass.CRITICAL),
        (pod("proxy", namespace="kube-system", controller_kind="DaemonSet"), PodClass.DAEMONSET),
        (
            pod("etcd", namespace="kube-system", annotations={"kubernetes.io/config.mirror": "x"}),
            PodClass.MIRROR,
        ),
        (pod("batch", priority_class="high"), PodClass.REGULAR),
    ],
)
def test_classify(info, expected):
    assert classify(info) is expected


def test_plan_puts_regular_pods_first_critical_last_and_skips_the_rest():
    pods = [
        pod("z-web"),
        pod("dns", namespace="kube-system"),
        pod("a-web"),
        pod("agent", controller_kind="DaemonSet"),
        pod("ingress", priority_class="system-cluster-critical"),
        pod("done", phase="Succeeded"),
    ]
    plan = plan_drain(pods)
    assert [p.key for p in plan.regular] == ["apps/a-web", "apps/z-web"]
    assert [p.key for p in plan.critical] == ["apps/ingress", "kube-system/dns"]
    assert [(p.name, c) for p, c in plan.skipped] == [
        ("agent", PodClass.DAEMONSET),
        ("done", PodClass.FINISHED),
    ]
    assert [p.key for p in plan.to_remove] == ["apps/a-web", "apps/z-web", "apps/ingress", "kube-system/dns"]


def test_plan_of_an_empty_node_is_empty():
    plan = plan_drain([])
    assert plan.to_remove == () and plan.skipped == ()


@pytest.mark.parametrize(
    ("pod_seconds", "configured", "time_left", "expected"),
    [
        (30, -1, 120.0, None),  # the pod's own fits: send nothing
        (30, -1, 20.0, 19),  # cut to end a second before the deadline
        (30, -1, 20.9, 19),
        (30, 10, 120.0, 10),  # configured and fits
        (30, 60, 30.0, 29),  # configured but cut
        (30, -1, 0.5, 1),  # never below 1 s: 0 would force-delete
        (30, 0, 100.0, 0),  # unless 0 is what was asked for
        (0, -1, 10.0, None),
    ],
)
def test_effective_grace_period(pod_seconds, configured, time_left, expected):
    assert (
        effective_grace_period(pod_seconds=pod_seconds, configured=configured, time_left=time_left)
        == expected
    )


@pytest.mark.parametrize(
    ("pod_seconds", "configured", "window", "expected"),
    [
        (5, -1, 29.0, 5),  # the pod's own fits in a third of a Preempt's window
        (30, -1, 29.0, 9),  # cut to a third of the window: the evictions keep two thirds
        (30, -1, 120.0, 30),
        (30, 10, 120.0, 10),  # configured wins over the pod's own
        (30, -1, 2.0, 1),  # a tiny window still leaves 1 s for SIGTERM
        (30, 0, 29.0, 0),  # 0 only when 0 was configured
        (0, -1, 29.0, 0),
    ],
)
def test_last_resort_grace_is_the_pods_own_cut_to_a_third_of_the_window(
    pod_seconds, configured, window, expected
):
    assert (
        last_resort_grace(pod_seconds=pod_seconds, configured=configured, window_seconds=window) == expected
    )


@pytest.mark.parametrize("grace", [0, 1, 5, 9, 30])
def test_the_last_chance_leaves_the_whole_grace_period_before_the_deadline(grace):
    deadline = 1000.0
    at = last_resort_at(deadline, grace)
    # A stop sent then still fits, with its margin, even cut the way the drain cuts grace periods.
    assert at + grace + 1 < deadline
    assert effective_grace_period(pod_seconds=grace, configured=grace, time_left=deadline - at) == grace


def test_budget_retries_grow_from_half_a_second_to_two_and_keep_a_random_half():
    earliest = [budget_retry_delay(n, retry_after=None, draw=0.0) for n in range(1, 8)]
    latest = [budget_retry_delay(n, retry_after=None, draw=0.999999) for n in range(1, 8)]
    assert earliest == [0.25, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert latest == pytest.approx([0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0])


def test_budget_retries_never_come_before_the_servers_retry_after():
    assert budget_retry_delay(1, retry_after=10.0, draw=0.0) == 10.0
    assert budget_retry_delay(1, retry_after=10.0, draw=0.5) == 12.5
    assert budget_retry_delay(6, retry_after=0.5, draw=0.0) == 1.0  # the backoff is longer


def test_an_overload_pause_is_the_retry_after_plus_up_to_half_of_it():
    assert overload_pause(retry_after=None, draw=0.0) == 1.0
    assert overload_pause(retry_after=2.0, draw=0.0) == 2.0
    assert overload_pause(retry_after=2.0, draw=0.999999) == pytest.approx(3.0)


def test_an_overload_pause_honours_a_retry_after_only_up_to_its_bound():
    """Something in front of the API server may ask for minutes: every eviction would wait that long."""
    assert overload_pause(retry_after=3600.0, draw=0.0) == MAX_OVERLOAD_PAUSE_SECONDS
    assert overload_pause(retry_after=0.0, draw=0.0) == 1.0  # 0 is "not said"


def test_regular_pods_get_two_thirds_of_the_time_when_critical_pods_wait():
    assert regular_phase_end(100.0, 130.0, has_critical=True) == pytest.approx(120.0)
    assert regular_phase_end(100.0, 130.0, has_critical=False) == 130.0
    assert regular_phase_end(100.0, 90.0, has_critical=True) == 90.0


def test_summary_names_what_remains_and_why():
    result = DrainResult(
        result=DrainOutcome.TIMED_OUT,
        planned=("a/p1", "a/p2"),
        evicted=("a/p1", "a/p2"),
        skipped=(PodIssue(pod="a/ds", reason="daemonset"),),
        remaining=(PodIssue(pod="a/p2", reason="blocked by PodDisruptionBudget pdb-a"),),
        duration_seconds=29.96,
    )
    assert result.summary() == (
        "timed_out: evicted 2 pod(s) in 30.0s, skipped 1; "
        "1 remaining: a/p2 (blocked by PodDisruptionBudget pdb-a)"
    )
    assert not result.succeeded
    data = result.as_template_data()
    assert data["Result"] == "timed_out"
    assert data["Remaining"] == ["a/p2 (blocked by PodDisruptionBudget pdb-a)"]


def test_summary_counts_last_resort_stops_apart_from_evictions():
    result = DrainResult(
        result=DrainOutcome.DRAINED,
        evicted=("apps/a", "apps/b"),
        deleted=("apps/db-0",),
        stopped=(PodIssue(pod="apps/db-0", reason="PodDisruptionBudget db still refused its eviction"),),
        duration_seconds=20.0,
    )
    assert result.summary() == (
        "drained: evicted 2 pod(s) in 20.0s, skipped 0; stopped 1 as a last resort: apps/db-0"
    )


def test_summary_of_a_dry_run_lists_what_would_be_evicted():
    result = DrainResult(result=DrainOutcome.DRY_RUN, planned=("a/p1",), skipped=())
    assert result.summary() == "dry run: would evict 1 pod(s) (a/p1), skip 0"
    assert result.succeeded


def test_summary_shortens_long_lists():
    remaining = tuple(PodIssue(pod=f"a/p{i}", reason="still terminating") for i in range(8))
    text = DrainResult(result=DrainOutcome.TIMED_OUT, remaining=remaining).summary(max_pods=2)
    assert text.endswith("a/p0 (still terminating), a/p1 (still terminating), … (+6)")


def test_outcome_compares_equal_to_its_text():
    assert DrainOutcome.DRAINED == "drained"


def test_the_record_keeps_a_summary_of_the_result():
    result = DrainResult(result=DrainOutcome.DRAINED, evicted=("a/b",), duration_seconds=1.5)
    record = NodeRecord.parse(
        '{"events":[{"id":"E","type":"Preempt","firstSeen":"2024-05-01T12:00:00Z","phase":"protected"}]}'
    )
    drain = record.with_drain_result("E", result).events["E"].drain
    assert drain is not None and (drain.result, drain.evicted, drain.duration_seconds) == ("drained", 1, 1.5)
