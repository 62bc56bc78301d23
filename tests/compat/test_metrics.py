"""``/metrics`` as a dashboard or alert built for the Go version reads it.

The expected exposition comes from the Go version's source (``pkg/metrics``: names, types, label
names, ``prometheus.DefBuckets``; the method label lower-cased by its round-tripper and by promhttp)
and from client-go (the ``cluster`` label is the API server's ``host:port``, ``code="<error>"`` when no
answer came) and client_golang's text format (bucket bounds written ``1``, not ``1.0``). Scraped over
real HTTP from the handler's own server, on loopback.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest

from aksnth.kube.client import cluster_label
from aksnth.observe import metrics
from aksnth.observe.health import Health
from aksnth.observe.httpmetrics import ApiServerMetrics, imds_transport, webhook_transport
from aksnth.observe.server import MetricsServer
from testkit.receivers import Receiver

PREFIX = "aks_node_termination_handler_"

# pkg/metrics of the Go version: family name (as exposed) -> type and label names.
GO_FAMILIES = {
    "scheduled_events_total": ("counter", ["node", "resource", "type"]),
    "error_reading_endpoint_total": ("counter", ["node", "resource"]),
    "apiserver_request_total": ("counter", ["cluster", "code"]),
    "apiserver_request_duration": ("histogram", ["cluster"]),
    "http_events_in_flight_requests": ("gauge", []),
    "http_events_requests_total": ("counter", ["code", "method", "endpoint"]),
    "http_events_request_duration_seconds": ("histogram", ["method"]),
    "http_webhook_in_flight_requests": ("gauge", []),
    "http_webhook_requests_total": ("counter", ["code", "method", "endpoint"]),
    "http_webhook_request_duration_seconds": ("histogram", ["method"]),
}
# prometheus.DefBuckets as client_golang writes them.
GO_BUCKET_BOUNDS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
async def exposition(receiver: Receiver) -> AsyncIterator[str]:
    """One scrape of the handler's server, after an IMDS-style GET, a webhook POST and an API call."""
    async with httpx2.AsyncClient(transport=imds_transport(), trust_env=False, timeout=5) as imds:
        await imds.get(receiver.url("/metadata/scheduledevents"), params={"api-version": "2020-07-01"})
    async with httpx2.AsyncClient(transport=webhook_transport(), trust_env=False, timeout=5) as hooks:
        await hooks.post(receiver.url("/hook"), content=b"{}")
    with ApiServerMetrics(cluster_label("https://10.0.0.1:443")).measure() as call:
        call.code = 200
    health = Health(poll_interval_seconds=1.0)
    async with (
        MetricsServer("127.0.0.1:0", health, registry=metrics.EXPOSITION) as server,
        httpx2.AsyncClient(trust_env=False, timeout=5) as client,
    ):
        response = await client.get(f"http://127.0.0.1:{server.port}/metrics")
    assert response.status_code == 200
    yield response.text


def samples(text: str, family: str) -> list[tuple[str, dict[str, str]]]:
    """(sample name, labels) of one family, parsed from the text exposition line by line."""
    found = []
    for line in text.splitlines():
        match = re.match(rf"({PREFIX}{family}(?:_bucket|_count|_sum)?)(?:\{{(.*)\}})? ", line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            found.append((match.group(1), labels))
    return found


async def test_every_go_metric_family_is_exposed_with_its_type(exposition: str) -> None:
    declared = dict(re.findall(rf"^# TYPE {PREFIX}(\S+) (\S+)$", exposition, re.MULTILINE))
    for family, (kind, _) in GO_FAMILIES.items():  # "# TYPE <name>_total counter", as Go writes it
        assert declared.get(family) == kind, family


async def test_go_label_names_are_kept(exposition: str) -> None:
    for family, (_, label_names) in GO_FAMILIES.items():
        seen = [sorted(set(labels) - {"le"}) for name, labels in samples(exposition, family)]
        assert all(names == sorted(label_names) for names in seen), (family, seen)


@pytest.mark.parametrize(
    ("family", "labels"),
    [
        ("apiserver_request_duration", {"cluster": "10.0.0.1:443"}),
        ("http_events_request_duration_seconds", {"method": "get"}),
        ("http_webhook_request_duration_seconds", {"method": "post"}),
    ],
)
async def test_histograms_have_go_default_buckets_written_as_go_writes_them(
    exposition: str, family: str, labels: dict[str, str]
) -> None:
    """``le="1"``, not ``le="1.0"``: Prometheus 2.x keeps the label as scraped, so a rule selecting
    the Go version's ``le="1"`` would otherwise miss our series."""
    bounds = [
        found["le"]
        for name, found in samples(exposition, family)
        if name.endswith("_bucket") and all(found.get(k) == v for k, v in labels.items())
    ]
    assert bounds == GO_BUCKET_BOUNDS


async def test_method_labels_are_lower_case_as_in_the_go_version(exposition: str) -> None:
    methods = {
        labels["method"]
        for family in ("http_events_requests_total", "http_webhook_requests_total")
        for _, labels in samples(exposition, family)
    }
    assert methods >= {"get", "post"}
    assert methods == {m.lower() for m in methods}


@pytest.mark.parametrize(
    ("server", "label"),
    [
        ("https://10.0.0.1:443", "10.0.0.1:443"),  # in a pod: KUBERNETES_SERVICE_HOST:PORT
        ("https://[fd00:10::1]:443", "[fd00:10::1]:443"),
        (
            "https://myaks-dns-1a2b3c.hcp.westeurope.azmk8s.io:443",
            "myaks-dns-1a2b3c.hcp.westeurope.azmk8s.io:443",
        ),
        ("https://kube.example", "kube.example"),  # no port in the URL: none in the label
    ],
)
def test_cluster_label_is_the_api_servers_host_and_port_as_client_go_gives_it(
    server: str, label: str
) -> None:
    assert cluster_label(server) == label


async def test_an_api_call_without_an_answer_is_code_error_in_angle_brackets() -> None:
    """client-go's ``<error>``, so an alert on ``code="<error>"`` keeps firing."""
    api = ApiServerMetrics("compat-test:443")
    with pytest.raises(OSError), api.measure():
        raise OSError("connection refused")
    value = metrics.APISERVER_REQUESTS.labels(cluster="compat-test:443", code="<error>")._value.get()
    assert value == 1
