"""The zero-downtime scenario's own arithmetic (`testkit.traffic`, `testkit.nodeloss`): how a failed
request is explained, how gaps are measured and when the Service had no Ready endpoint."""

from __future__ import annotations

import pytest

from testkit.nodeloss import EndpointHistory
from testkit.traffic import Attempt, TrafficReport, reply_sources

_DNATED = (
    "tcp      6 117 SYN_SENT src=10.200.0.3 dst=10.0.0.113 sport=40312 dport=80 [UNREPLIED] "
    "src=10.244.2.7 dst=10.200.0.3 sport=8080 dport=40312 mark=0 use=1\n"
)
_NOT_DNATED = (
    "tcp      6 119 SYN_SENT src=10.200.0.3 dst=10.0.0.113 sport=40313 dport=80 [UNREPLIED] "
    "src=10.0.0.113 dst=10.200.0.3 sport=80 dport=40313 mark=0 use=1\n"
)


def test_a_failed_connection_is_traced_to_the_endpoint_kube_proxy_chose() -> None:
    """Each entry gives its state and the reply direction's source: the pod the DNAT chose, or the
    ClusterIP itself when no rule translated the connection; an empty listing names nothing."""
    assert reply_sources(_DNATED) == ["SYN_SENT 10.244.2.7:8080"]
    assert reply_sources(_DNATED + _NOT_DNATED) == ["SYN_SENT 10.244.2.7:8080", "SYN_SENT 10.0.0.113:80"]
    assert reply_sources("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.\n") == []


def test_the_longest_gap_counts_the_window_edges_and_ignores_failures() -> None:
    """Gaps run between successful answers, from the window's start to the first and from the last
    to its end; a failed request does not end a gap."""
    attempts = (
        Attempt(10.0, 10.1, True, "web-a"),
        Attempt(10.2, 11.2, False, "timeout"),
        Attempt(11.3, 11.4, True, "web-b"),
    )
    report = TrafficReport(attempts, since=9.0, until=12.0)
    assert report.longest_gap_seconds == pytest.approx(1.3)
    assert [a.detail for a in report.failed] == ["timeout"]
    assert "1 failed of 3 requests" in report.summary()


def test_windows_without_a_ready_endpoint_are_found_between_the_watchs_changes() -> None:
    """Each interval in which the EndpointSlices named no Ready address, clipped to the window; the
    state before the window counts, and an empty state that lasts to the end closes at the end."""
    history = EndpointHistory()
    history.changes = [
        (1.0, frozenset({"10.244.1.5"})),
        (5.0, frozenset()),
        (6.0, frozenset({"10.244.2.7"})),
        (9.0, frozenset()),
    ]
    assert history.without_ready(2.0, 10.0) == ((5.0, 6.0), (9.0, 10.0))
    assert history.without_ready(5.5, 7.0) == ((5.5, 6.0),)
    assert history.without_ready(6.5, 8.5) == ()
    assert history.without_ready(0.0, 3.0) == ((0.0, 1.0),)
