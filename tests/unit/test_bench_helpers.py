"""The benchmark's pure helpers: command templates, audit log reading, percentiles, the table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from bench.audit import audit_policy, between, count_by_kind, read_audit_log
from bench.process import OUR_TEMPLATE, command_line
from bench.report import Budget, render, rows
from bench.stats import percentile, summary


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


def test_the_installed_size_counts_the_locked_runtime_and_the_project(tmp_path: Path) -> None:
    from bench.footprint import installed_size_mib  # noqa: PLC0415

    size = installed_size_mib()
    assert size is not None and size > 1.0
    assert installed_size_mib(tmp_path / "no.lock") is None
