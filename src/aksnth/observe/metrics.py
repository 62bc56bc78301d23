"""Every Prometheus metric of the handler, declared in one place.

Names and labels of the Go original are kept so that existing dashboards keep working; what we add
uses bounded labels only (event type, result, sink, phase): never an EventId, a pod or a URL.
Components import the objects they increment from here. This module knows nothing of what feeds
the metrics: the HTTP transports that count requests are in ``aksnth.observe.httpmetrics``, which
imports from here, never the other way (an import-linter contract holds that).
"""

from __future__ import annotations

import copy
import platform
from collections.abc import Iterator
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.metrics_core import Metric

from aksnth import __version__

NAMESPACE = "aks_node_termination_handler"

# No ``*_created`` series: the Go original has none, and in the text format each would be one more
# series per label set for every scrape to store.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

# The Go client's default buckets (prometheus.DefBuckets), which the original's histograms used;
# Python's defaults add 0.075, 0.75 and 7.5, which would change every bucket series.
GO_DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# --- the original's metrics (names, types, labels and buckets unchanged) ------------------------
SCHEDULED_EVENTS = Counter(
    "scheduled_events",
    "Scheduled Events that concern this node, by event type.",
    ["node", "resource", "type"],
    namespace=NAMESPACE,
)
ERROR_READING_ENDPOINT = Counter(
    "error_reading_endpoint",
    "Failed reads of the Scheduled Events endpoint (network errors, bad statuses, malformed documents).",
    ["node", "resource"],
    namespace=NAMESPACE,
)
APISERVER_REQUESTS = Counter(
    "apiserver_request",
    "Kubernetes API requests by status code.",
    ["cluster", "code"],
    namespace=NAMESPACE,
)
APISERVER_REQUEST_DURATION = Histogram(
    "apiserver_request_duration",
    "Kubernetes API request latency in seconds.",
    ["cluster"],
    namespace=NAMESPACE,
    buckets=GO_DEFAULT_BUCKETS,
)
HTTP_EVENTS_IN_FLIGHT = Gauge(
    "http_events_in_flight_requests",
    "IMDS requests in flight.",
    namespace=NAMESPACE,
)
HTTP_EVENTS_REQUESTS = Counter(
    "http_events_requests",
    "IMDS requests by status code, method and endpoint path.",
    ["code", "method", "endpoint"],
    namespace=NAMESPACE,
)
HTTP_EVENTS_DURATION = Histogram(
    "http_events_request_duration_seconds",
    "IMDS request latency in seconds.",
    ["method"],
    namespace=NAMESPACE,
    buckets=GO_DEFAULT_BUCKETS,
)
HTTP_WEBHOOK_IN_FLIGHT = Gauge(
    "http_webhook_in_flight_requests",
    "Webhook and Telegram requests in flight.",
    namespace=NAMESPACE,
)
HTTP_WEBHOOK_REQUESTS = Counter(
    "http_webhook_requests",
    "Webhook and Telegram requests by status code, method and endpoint (scheme and host only).",
    ["code", "method", "endpoint"],
    namespace=NAMESPACE,
)
HTTP_WEBHOOK_DURATION = Histogram(
    "http_webhook_request_duration_seconds",
    "Webhook and Telegram request latency in seconds.",
    ["method"],
    namespace=NAMESPACE,
    buckets=GO_DEFAULT_BUCKETS,
)

# --- added: what an operator needs to answer "did the last eviction drain in time?" -------------
DRAIN_DURATION = Histogram(
    "drain_duration_seconds",
    "Time from the start of a drain to its end, by event type and result (drained, timed_out, failed).",
    ["type", "result"],
    namespace=NAMESPACE,
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900),
)
EVICTIONS = Counter(
    "evictions",
    "Pod evictions by result (evicted, pdb_blocked_retried, throttled_retried, deleted, skipped, failed).",
    ["result"],
    namespace=NAMESPACE,
)
LAST_RESORT_STOPS = Counter(
    "last_resort_stops",
    "Pods a PodDisruptionBudget still protected at their last chance before the VM goes, deleted with "
    "their shortened grace period (-lastResort), by event type and result (stopped, forbidden, failed).",
    ["type", "result"],
    namespace=NAMESPACE,
)
SURGES = Counter(
    "surges",
    "Rollouts of a Deployment started before evicting its pod (-surgeDeployments), so that a replacement "
    "becomes Ready on another node first, by result (started, cannot_surge, no_time, forbidden, failed).",
    ["result"],
    namespace=NAMESPACE,
)
EVENT_TO_CORDON = Histogram(
    "event_to_cordon_seconds",
    "Time from the first sighting of an event to the node being cordoned (since=sighting). IMDS does "
    "not say when it published an event; the benchmarks measure that from the simulator's side.",
    ["since"],
    namespace=NAMESPACE,
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
)
NOTIFICATIONS = Counter(
    "notifications",
    "Notifications by sink (webhook, telegram), phase (event, drained) and result (sent, failed).",
    ["sink", "phase", "result"],
    namespace=NAMESPACE,
)
DOCUMENT_INCARNATION = Gauge(
    "document_incarnation",
    "DocumentIncarnation of the last Scheduled Events document read.",
    namespace=NAMESPACE,
)
APISERVER_REACHABLE = Gauge(
    "apiserver_reachable",
    "1 when the handler's last request to the Kubernetes API server got its answer (any status), 0 when "
    "it got none (connection refused or reset, timeout, a proxy's 502 or 504); 0 at start-up until the "
    "server first answers.",
    namespace=NAMESPACE,
)
ADVISORY_EVENTS = Gauge(
    "advisory_events",
    "Advisory events (Spot rebalance recommendations) listed for this VM in the last Scheduled Events "
    "documents read: 1 or more while Azure warns of a heightened risk of eviction.",
    namespace=NAMESPACE,
)
LAST_SUCCESSFUL_POLL = Gauge(
    "last_successful_poll_timestamp_seconds",
    "Unix time of the last successful read of the Scheduled Events endpoint.",
    namespace=NAMESPACE,
)

# --- added: the optional periodic drain-readiness check (-readiness.interval) -----------------
READINESS_PODS_AT_RISK = Gauge(
    "readiness_pods_at_risk",
    "Pods of this node at risk if a Spot eviction arrived now, by reason (pdb_blocked, several_pdbs, "
    "grace_cut, no_controller, empty_dir), as of the last drain-readiness check.",
    ["reason"],
    namespace=NAMESPACE,
)
READINESS_DRAINS_WITHIN_NOTICE = Gauge(
    "readiness_drains_within_notice",
    "1 when this node would drain within the notice of the assumed event (type), 0 when a "
    "PodDisruptionBudget would hold a pod, as of the last drain-readiness check.",
    ["type"],
    namespace=NAMESPACE,
)
READINESS_LAST_CHECK = Gauge(
    "readiness_last_check_timestamp_seconds",
    "Unix time of the last completed drain-readiness check (0: none yet).",
    namespace=NAMESPACE,
)
READINESS_CHECKS = Counter(
    "readiness_checks",
    "Drain-readiness checks by result (ok, failed, skipped while an event is handled).",
    ["result"],
    namespace=NAMESPACE,
)
BUILD_INFO = Gauge(
    "build_info",
    "Always 1; labels carry the handler and Python versions.",
    ["version", "python_version"],
    namespace=NAMESPACE,
)
BUILD_INFO.labels(version=__version__, python_version=platform.python_version()).set(1)


def go_bound(text: str) -> str:
    """A bucket bound as the Go client writes it: ``1`` and ``10``, not Python's ``1.0`` and ``10.0``."""
    return text[:-2] if text.endswith(".0") else text


class _GoBucketBounds:
    """The default registry with each histogram's ``le`` label written as the Go original wrote it.

    Prometheus 2.x stores ``le`` as scraped from the text format, so ``le="1.0"`` and ``le="1"`` are
    different series there, and a recording rule or alert that selects ``le="1"`` would lose the Go
    original's data on upgrade (Prometheus 3.x normalises both to ``1.0``). Writing Go's form keeps
    both versions of Prometheus seeing the same series as before.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if family.type != "histogram":
                yield family
                continue
            rewritten = copy.copy(family)
            rewritten.samples = [
                sample._replace(labels={**sample.labels, "le": go_bound(sample.labels["le"])})
                if "le" in sample.labels
                else sample
                for sample in family.samples
            ]
            yield rewritten


#: What ``/metrics`` serves: every metric of the process, with Go's bucket bounds.
EXPOSITION: Final = CollectorRegistry(auto_describe=False)
EXPOSITION.register(_GoBucketBounds(REGISTRY))
