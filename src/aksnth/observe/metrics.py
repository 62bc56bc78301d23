"""Every Prometheus metric of the handler, declared in one place.

Names and labels of the Go original are kept so that existing dashboards keep working; what we add
uses bounded labels only (event type, result, sink, phase): never an EventId, a pod or a URL.
Components import the objects they increment from here. This module knows nothing of what feeds
the metrics: the HTTP transports that count requests are in ``aksnth.observe.httpmetrics``, which
imports from here, never the other way (an import-linter contract holds that).
"""

from __future__ import annotations

import platform

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from aksnth import __version__

NAMESPACE = "aks_node_termination_handler"

# No ``*_created`` series: the Go original has none, and in the text format each would be one more
# series per label set for every scrape to store.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

# --- the original's metrics (names, types and labels unchanged) ---------------------------------
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
    "Pod evictions by result (evicted, pdb_blocked_retried, deleted, skipped, failed).",
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
LAST_SUCCESSFUL_POLL = Gauge(
    "last_successful_poll_timestamp_seconds",
    "Unix time of the last successful read of the Scheduled Events endpoint.",
    namespace=NAMESPACE,
)
BUILD_INFO = Gauge(
    "build_info",
    "Always 1; labels carry the handler and Python versions.",
    ["version", "python_version"],
    namespace=NAMESPACE,
)
BUILD_INFO.labels(version=__version__, python_version=platform.python_version()).set(1)
