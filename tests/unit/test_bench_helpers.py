"""The benchmark's pure helpers: command templates, audit log reading, percentiles, the table."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from bench.fleet import _peak_rate
from bench.imagesize import binary_image_compressed_mib
from bench.process import OUR_TEMPLATE, _on_cpu_nanoseconds, command_line, tree_rss_kib, trees_rss_kib
from bench.readiness import most_within
from bench.report import Budget, render, rows
from bench.stats import percentile, summary

from testkit.audit import AuditedRequest, audit_policy, between, count_by_kind, read_audit_log
from testkit.fleetwatch import FleetWatch, PodTrack, Violation, fleet_outcome


def test_command_line_fills_placeholders_inside_words_and_keeps_other_braces() -> None:
    argv = command_line(
        "/opt/h -endpoint={imds_url} --node '{node}' -template='{\"a\": 1}' {kubeconfig}",
        {"imds_url": "http://127.0.0.1:1/x?y=1", "node": "n 1", "kubeconfig": "/k"},
    )
    assert argv == [
        "/opt/h",
        "-endpoint=http://127.0.0.1:1/x?y=1",
        "--node",
        "n 1",
        '-template={"a": 1}',
        "/k",
    ]


def test_command_line_refuses_unknown_values_and_empty_templates() -> None:
    with pytest.raises(ValueError, match="not placeholders"):
        command_line("x", {"imds": "u"})
    with pytest.raises(ValueError, match="empty"):
        command_line("  ", {})


def test_our_template_uses_every_placeholder_it_needs() -> None:
    for name in ("imds_url", "kubeconfig", "node", "resource", "webhook_url", "web_address"):
        assert "{" + name + "}" in OUR_TEMPLATE


def _event(audit_id: str, stage: str, at: str, *, subresource: str = "", code: int | None = 201) -> str:
    event: dict[str, object] = {
        "auditID": audit_id,
        "stage": stage,
        "verb": "create",
        "user": {"username": "system:serviceaccount:ns:h"},
        "objectRef": {"resource": "pods", "subresource": subresource, "name": "p"},
        "requestReceivedTimestamp": at,
    }
    if code is not None:
        event["responseStatus"] = {"code": code}
    return json.dumps(event)


def test_read_audit_log_keeps_one_record_per_request_and_skips_a_torn_last_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text(
        "\n".join(
            [
                _event(
                    "b", "ResponseComplete", "2026-01-01T00:00:01.500000Z", subresource="eviction", code=429
                ),
                _event("a", "ResponseStarted", "2026-01-01T00:00:01.000000Z", code=None),
                _event("a", "ResponseComplete", "2026-01-01T00:00:01.000000Z", code=200),
                '{"auditID": "c", "stage": "Resp',
            ]
        )
    )
    records = read_audit_log(log)
    assert [r.audit_id for r in records] == ["a", "b"]
    assert records[0].code == 200
    assert records[1].is_eviction and records[1].code == 429
    assert records[1].received_at - records[0].received_at == pytest.approx(0.5)
    assert [r.audit_id for r in between(records, records[1].received_at, math.inf)] == ["b"]
    assert count_by_kind(records) == {"create pods": 1, "create pods/eviction": 1}


def test_audit_policy_logs_only_the_given_user() -> None:
    policy = audit_policy("u")
    assert policy["rules"] == [{"level": "Metadata", "users": ["u"]}, {"level": "None"}]


def test_percentiles_interpolate_between_ranks() -> None:
    samples = [float(x) for x in range(1, 11)]
    assert percentile(samples, 0.5) == pytest.approx(5.5)
    assert percentile(samples, 0.9) == pytest.approx(9.1)
    assert summary(samples)["max"] == 10.0
    assert math.isnan(percentile([], 0.5))


def test_table_marks_budgets_and_prints_the_ratio_of_two_columns() -> None:
    table = rows(events=2, cases=[("110", "110 pods")], preempt_case="110")
    results = {
        "a": {"reaction": {"cordon_seconds": {"p99": 1.0}}},
        "b": {"reaction": {"cordon_seconds": {"p99": 1.5}}},
    }
    text = render(table, results, ["a", "b"])
    line = next(line for line in text.splitlines() if "cordoned p99" in line)
    assert "1.000 s ok" in line and "1.500 s MISS" in line and "1.50x" in line
    assert Budget(limit=90.0, at_most=False).met(95.0)


def test_most_within_counts_the_busiest_half_open_span() -> None:
    """Checks 10.2 s apart never put two lists in one 10 s interval; a retry 1 s later does."""
    assert most_within([0.0, 10.2, 20.4, 30.6], 10.0) == 1
    assert most_within([0.0, 10.0], 10.0) == 1  # the span is half-open
    assert most_within([0.0, 1.0, 10.2], 10.0) == 2
    assert most_within([], 10.0) == 0


def test_readiness_rows_hold_the_lists_per_interval_to_one() -> None:
    table = rows(events=1, cases=[], preempt_case=None, readiness_interval=10.0)
    results = {
        "ours": {
            "readiness": {
                "checks": 6,
                "pod_lists_per_interval": 1,
                "budget_lists_per_interval": 2,
                "other_requests": 0,
                "shortest_gap_seconds": 10.01,
            }
        }
    }
    lines = render(table, results, ["ours"]).splitlines()

    def cell(figure: str) -> str:
        return next(line for line in lines if figure in line)

    assert "1 ok" in cell("lists of the node's pods per interval")
    assert "2 MISS" in cell("lists of PodDisruptionBudgets per interval")
    assert "0 ok" in cell("other API requests in the window")
    assert "10.010 s ok" in cell("shortest time between two checks")


def test_audit_policy_without_a_user_logs_everyones_requests() -> None:
    assert audit_policy(None)["rules"] == [{"level": "Metadata"}]


def test_a_budgets_refusal_is_told_from_api_priority_and_fairness_by_its_message() -> None:
    budget = AuditedRequest(
        audit_id="1",
        user="u",
        verb="create",
        resource="pods",
        subresource="eviction",
        name="p",
        namespace="apps",
        received_at=0.0,
        code=429,
        message="Cannot evict pod as it would violate the pod's disruption budget.",
    )
    load = replace(budget, message="Too many requests, please try again later.")
    assert budget.refused_by_budget and not load.refused_by_budget


def test_the_peak_rate_is_the_most_requests_within_one_second() -> None:
    base = AuditedRequest(
        audit_id="",
        user="",
        verb="get",
        resource="nodes",
        subresource="",
        name="",
        namespace="",
        received_at=0.0,
        code=200,
    )
    times = [0.0, 0.1, 0.2, 1.5, 1.6, 1.7, 1.8, 2.4, 5.0]
    assert _peak_rate([replace(base, received_at=t) for t in times]) == 5.0  # 1.5 … 2.4
    assert _peak_rate([]) == 0.0


def _track(
    key: str, node: str, *, bound: float, deletion: float | None, gone: float | None, ds: bool = False
):
    return PodTrack(
        key=key,
        app=key.split("/")[1].split("-", maxsplit=1)[0],
        daemonset=ds,
        node=node,
        bound_at=bound,
        deletion_at=deletion,
        gone_at=gone,
    )


def test_the_fleet_outcome_names_replacements_pods_left_at_the_deadline_and_budgets_below_minimum() -> None:
    watch = FleetWatch(kube=None, namespace="apps")  # type: ignore[arg-type]  # filled by hand, never started
    published, deadline = 100.0, 130.0
    watch.cordoned_at = {"spot-0": 100.8, "spot-1": 101.1}
    watch.pods = {
        "1": _track("apps/web-a", "spot-0", bound=50.0, deletion=102.0, gone=103.0),
        "2": _track(
            "apps/db-0", "spot-0", bound=50.0, deletion=121.0, gone=122.0
        ),  # stopped as a last resort
        "3": _track("apps/agent-x", "spot-0", bound=50.0, deletion=None, gone=None, ds=True),  # stays
        "4": _track("apps/web-b", "spot-1", bound=50.0, deletion=None, gone=None),  # never asked to go
        "5": _track("apps/web-c", "spot-1", bound=100.5, deletion=101.0, gone=102.0),  # a replacement
        "6": _track("apps/web-d", "regular-0", bound=101.0, deletion=None, gone=None),  # where it belongs
    }
    watch.violations = [
        Violation(at=90.0, budget="db-pdb", current_healthy=1, desired_healthy=2),  # before the event
        Violation(at=110.0, budget="web-pdb", current_healthy=3, desired_healthy=4),
        Violation(at=121.5, budget="db-pdb", current_healthy=1, desired_healthy=2),  # after its stop
    ]
    outcome = fleet_outcome(watch, doomed={"spot-0", "spot-1"}, published=published, deadline=deadline)
    assert outcome.cordon_seconds == pytest.approx({"spot-0": 0.8, "spot-1": 1.1})
    assert outcome.empty_seconds == {"spot-0": pytest.approx(22.0), "spot-1": None}
    assert outcome.all_cordoned and not outcome.all_empty_before_deadline
    assert outcome.replacements_on_doomed == ("apps/web-c",)
    assert outcome.on_node_at_deadline == ("apps/web-b",)
    assert [v.budget for v in outcome.budgets_below_minimum] == ["web-pdb", "db-pdb"]  # after the publication


def test_the_installed_size_counts_the_locked_runtime_and_the_project(tmp_path: Path) -> None:
    from bench.footprint import installed_size_mib  # noqa: PLC0415

    size = installed_size_mib()
    assert size is not None and size > 1.0
    assert installed_size_mib(tmp_path / "no.lock") is None


def test_on_cpu_time_comes_from_schedstat_in_nanoseconds_and_grows_with_work() -> None:
    before = _on_cpu_nanoseconds(os.getpid())
    assert before is not None and before > 0
    spent = time.thread_time()
    while time.thread_time() - spent < 0.05:  # 50 ms on a CPU, however busy the machine is
        pass
    time.sleep(0.001)  # schedstat is brought up to date when the thread leaves the CPU
    after = _on_cpu_nanoseconds(os.getpid())
    assert after is not None and after - before >= 40_000_000


def test_a_requests_latency_runs_from_its_arrival_to_its_completion_and_watches_have_none(
    tmp_path: Path,
) -> None:
    """The fleet's API server latency: ``stageTimestamp`` of the ResponseComplete record minus the
    arrival; none for a watch (it lasts as long as its client wants) or a request not yet complete."""
    done = json.loads(_event("a", "ResponseComplete", "2026-01-01T00:00:01.000000Z", code=200))
    done["stageTimestamp"] = "2026-01-01T00:00:01.250000Z"
    started = json.loads(_event("b", "ResponseStarted", "2026-01-01T00:00:02.000000Z", code=None))
    started["stageTimestamp"] = "2026-01-01T00:00:02.001000Z"
    watch = dict(done, auditID="c", verb="watch")
    log = tmp_path / "audit.log"
    log.write_text("\n".join(json.dumps(e) for e in (done, started, watch)))
    by_id = {r.audit_id: r for r in read_audit_log(log)}
    assert by_id["a"].latency_seconds == pytest.approx(0.25)
    assert by_id["b"].latency_seconds is None
    assert by_id["c"].latency_seconds is None


def test_one_look_at_proc_gives_the_rss_of_every_handler_tree() -> None:
    """The fleet samples a hundred handlers a second: each tree's RSS, as one handler's would be."""
    mine = os.getpid()
    assert trees_rss_kib([mine])[mine] == pytest.approx(tree_rss_kib(mine), rel=0.05)
    assert trees_rss_kib([2**22 + 1]) == {2**22 + 1: 0}  # gone (beyond pid_max): nothing


def test_a_static_binary_alone_on_scratch_is_one_gzipped_layer(tmp_path: Path) -> None:
    """The Go version's smallest image: its binary in a one-file layer, gzipped at level 6."""
    binary = tmp_path / "handler"
    binary.write_bytes(os.urandom(256 * 1024) + bytes(4 * 1024 * 1024))  # 0.25 MiB noise, 4 MiB zeros
    mib = binary_image_compressed_mib(binary, path_in_image="/handler")
    assert 0.25 < mib < 0.3  # the noise does not shrink, the zeros nearly vanish
