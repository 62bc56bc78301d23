"""Requests through a Service while a node goes: what users of a Spot pool count.

A small web service runs as a Deployment behind a ClusterIP Service, in the workload image (busybox's
`httpd`). It follows the practice of a production service on Kubernetes:
- a readiness probe (`GET /` every second): a replica takes traffic only once it answers;
- a short preStop delay (`lifecycle.preStop.sleep`, 3 s): when its pod starts to terminate, the
  endpoint controller takes it out of the Service and every kube-proxy drops it from its rules
  while the server still answers, so that no connection is sent to a server that has stopped;
- graceful shutdown on SIGTERM: the server stops accepting connections and the requests in flight
  finish (each is a child process of `httpd`, left to end) before the container exits.

A client (`TrafficClient`) sends requests continuously from a node's own network namespace to the
Service's ClusterIP: each goes through that node's real kube-proxy (iptables) to one of the
endpoints, a new TCP connection per request with a 1 s timeout, as a client that does not keep
connections alive sees the Service. `TrafficReport` counts the failed requests and the longest gap
between two successful answers.

The VM's loss (`vm_gone`) is what Azure does at the end of the event: node 0's link is cut, so its
pods stop answering, its kubelet stops reporting, and the control plane finds out as it would.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lightkube import codecs

from testkit.netns import NetnsThread
from testkit.realcluster import RealCluster, RealNode
from testkit.scenario import signalling_pod_spec

WEB_PORT = 8080
SERVICE_PORT = 80
PRESTOP_SECONDS = 3
GRACE_SECONDS = 15
REQUEST_TIMEOUT_SECONDS = 1.0
# About 40 requests a second: a gap of one request is 25 ms, far below any failure's length.
REQUEST_PACE_SECONDS = 0.025
EXPLAINED_FAILURES = 5

# busybox httpd serves the pod's name. On SIGTERM (after the preStop delay) it is told to stop
# accepting; its children, each serving one request, finish on their own; the container then exits.
# The SIGTERM's uptime goes into the signals folder, as the other workloads' do.
_WEB_SCRIPT = (
    'mkdir -p /tmp/www && echo "$POD_NAME" > /tmp/www/index.html; '
    "httpd -f -p 8080 -h /tmp/www & server=$!; "
    'trap \'read up rest < /proc/uptime; echo "$up" > "/signals/$POD_NAMESPACE.$POD_NAME"; '
    "kill -TERM $server; wait $server; sleep 1; exit 0' TERM; "
    "while true; do wait $server; done"
)


def web_pod_spec(cluster: RealCluster, *, spread: bool) -> dict[str, Any]:
    """The web server's pod. `spread`: replicas prefer nodes that have none yet (one per node)."""
    web = {
        "name": "web",
        "args": ["sh", "-c", _WEB_SCRIPT],
        "ports": [{"containerPort": WEB_PORT, "name": "http"}],
        # Asked every second; three failures in a row take the pod out (Kubernetes' default threshold),
        # so that one probe slowed down by a loaded node does not take a serving replica out of the
        # Service, nor count as "no replica Ready" for the surge.
        "readinessProbe": {
            "httpGet": {"path": "/", "port": WEB_PORT},
            "periodSeconds": 1,
            "failureThreshold": 3,
            "timeoutSeconds": 1,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
    }
    spec = signalling_pod_spec(cluster, web, grace_seconds=GRACE_SECONDS)
    if spread:
        spec["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {"app": "web"}},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        }
    return spec


def web_service(namespace: str, *, app: str = "web") -> Any:
    return codecs.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": app, "namespace": namespace},
            "spec": {
                "type": "ClusterIP",
                "selector": {"app": app},
                "ports": [{"port": SERVICE_PORT, "targetPort": WEB_PORT, "protocol": "TCP"}],
            },
        }
    )


@dataclass(frozen=True, slots=True)
class Attempt:
    started: float  # wall clock
    ended: float
    ok: bool
    detail: str  # the pod that answered, or what went wrong


@dataclass(frozen=True, slots=True)
class TrafficReport:
    """What the client saw between `since` and `until` (wall clock)."""

    attempts: tuple[Attempt, ...]
    since: float
    until: float

    @property
    def requests(self) -> int:
        return len(self.attempts)

    @property
    def failed(self) -> tuple[Attempt, ...]:
        return tuple(a for a in self.attempts if not a.ok)

    @property
    def longest_gap_seconds(self) -> float:
        """The longest time without a successful answer: between two of them, or from the window's
        start to the first, or from the last to its end."""
        moments = [self.since, *(a.ended for a in self.attempts if a.ok), self.until]
        return max(later - earlier for earlier, later in itertools.pairwise(moments))

    def summary(self) -> str:
        failed = self.failed
        text = (
            f"{len(failed)} failed of {self.requests} requests, longest gap {self.longest_gap_seconds:.2f} s"
        )
        if failed:
            first, last = failed[0], failed[-1]
            kinds = sorted({a.detail for a in failed})
            text += (
                f" (failures from +{first.started - self.since:.1f} s to +{last.started - self.since:.1f} s: "
                f"{'; '.join(kinds[:6])})"
            )
        return text


class NamespaceLoop:
    """Runs `step` over and over, `pace_seconds` apart, in a thread inside `node`'s network namespace
    (the sockets it makes are the node's), until stopped."""

    def __init__(self, node: RealNode, name: str, step: Callable[[], None], *, pace_seconds: float) -> None:
        self._step = step
        self._pace = pace_seconds
        self._stopping = threading.Event()
        self._netns = NetnsThread(node.sandbox.netns_path, f"{name}-{node.name}")
        # The namespace's worker runs the loop; a plain thread waits for it to end.
        self._runner = threading.Thread(target=self._netns.call, args=(self._loop,), daemon=True)
        self._runner.start()

    def stop(self) -> None:
        self._stopping.set()
        self._runner.join(timeout=5.0)
        self._netns.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._step()
            self._stopping.wait(self._pace)


class TrafficClient:
    """Requests to `host`:`port` from `node`'s network namespace, one after another, until stopped."""

    def __init__(self, node: RealNode, host: str, port: int = SERVICE_PORT) -> None:
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self.attempts: list[Attempt] = []
        self._failures_in_a_row = 0
        self._loop = NamespaceLoop(node, "client", self._send, pace_seconds=REQUEST_PACE_SECONDS)

    def stop(self) -> None:
        self._loop.stop()

    def report(self, *, since: float, until: float | None = None) -> TrafficReport:
        end = time.time() if until is None else until
        with self._lock:
            chosen = tuple(a for a in self.attempts if since <= a.started <= end)
        return TrafficReport(chosen, since, end)

    def answering_since(self, seconds: float) -> bool:
        """Whether every request of the last `seconds` succeeded (and there were some)."""
        now = time.time()
        with self._lock:
            recent = [a for a in self.attempts if a.started >= now - seconds]
            earlier_ok = any(a.ok for a in self.attempts if a.started < now - seconds)
        return earlier_ok and bool(recent) and all(a.ok for a in recent)

    def _send(self) -> None:
        started = time.time()
        # Only the first failures of a run of them are explained: a VM's loss under the Go version
        # fails thousands in a row.
        ok, detail = _request(self._host, self._port, explain=self._failures_in_a_row < EXPLAINED_FAILURES)
        self._failures_in_a_row = 0 if ok else self._failures_in_a_row + 1
        with self._lock:
            self.attempts.append(Attempt(started, time.time(), ok, detail))


def _request(host: str, port: int, *, explain: bool = True) -> tuple[bool, str]:
    """One GET on a new connection. A failure's detail names its cause and, with `explain`, the
    endpoint kube-proxy sent the connection to (from the namespace's conntrack table, by the
    connection's own source port): a failure then says which replica, or which stale rule, lost it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(REQUEST_TIMEOUT_SECONDS)
    connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_SECONDS)
    local_port = 0
    try:
        sock.bind(("", 0))
        local_port = sock.getsockname()[1]
        sock.connect((host, port))
        connection.sock = sock
        connection.request("GET", "/", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read().decode(errors="replace").strip()
        if response.status != 200:
            return False, _explained(f"HTTP {response.status}", local_port, explain)
        return True, body
    except TimeoutError:
        return False, _explained("timeout", local_port, explain)
    except OSError as exc:
        # The errno's words too: a plain OSError (no route to host, address not available, …) says
        # nothing of its cause by its type alone.
        words = f"{type(exc).__name__}: {exc.strerror}" if exc.strerror else type(exc).__name__
        return False, _explained(words, local_port, explain)
    except http.client.HTTPException as exc:
        return False, _explained(type(exc).__name__, local_port, explain)
    finally:
        connection.close()
        sock.close()


def _explained(failure: str, local_port: int, explain: bool) -> str:
    if not explain or not local_port:
        return failure
    try:
        listed = _run(["conntrack", "-L", "-p", "tcp", "--orig-port-src", str(local_port)])
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{failure} (endpoint unknown: {exc})"
    # Where the namespace's conntrack table (which the `conntrack` this thread runs sees) sent the
    # connection: the endpoint kube-proxy's DNAT chose, with the entry's state. An older entry of
    # the same source port is listed too: a new connection can belong to it.
    entries = reply_sources(listed)
    if not entries:
        return f"{failure} (no conntrack entry)"
    address = entries[0].rsplit(" ", 1)[-1].rpartition(":")[0]
    return f"{failure} (to {' | '.join(entries)}{_neighbour(address)})"


def reply_sources(conntrack_listing: str) -> list[str]:
    """Each entry of a `conntrack -L` listing as its state and its reply direction's source: where
    the connection really went. "tcp 6 117 SYN_SENT src=10.200.0.3 dst=10.0.0.9 sport=5 dport=80
    [UNREPLIED] src=10.244.2.7 dst=10.200.0.3 sport=8080 dport=5 …" is "SYN_SENT 10.244.2.7:8080", a
    pod; the ClusterIP itself when no DNAT rule translated the connection."""
    found = []
    for line in conntrack_listing.splitlines():
        fields = line.split()
        sources = [f.removeprefix("src=") for f in fields if f.startswith("src=")]
        ports = [f.removeprefix("sport=") for f in fields if f.startswith("sport=")]
        if len(sources) == 2 and len(ports) == 2 and len(fields) > 3:
            found.append(f"{fields[3]} {sources[1]}:{ports[1]}")
    return found


def _neighbour(address: str) -> str:
    """The namespace's neighbour entry for `address` (its link-layer address and state: STALE,
    FAILED, …), when it has one: a connection lost to an address whose entry is stale or failed was
    lost below TCP."""
    if not address:
        return ""
    try:
        entry = _run(["ip", "neigh", "show", address]).strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f", neighbour {entry}" if entry else ""


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False).stdout


@contextlib.contextmanager
def traffic(node: RealNode, host: str) -> Iterator[TrafficClient]:
    client = TrafficClient(node, host)
    try:
        yield client
    finally:
        client.stop()


@contextlib.contextmanager
def vm_gone(cluster: RealCluster, node: RealNode) -> Iterator[None]:
    """The VM is gone for the block: the node's link is down (its pods unreachable, its kubelet
    silent). After the block the link is back, as for a new VM under the same name."""
    veth = f"veth{node.spec.index}"
    cluster.fabric.run(["ip", "link", "set", veth, "down"])
    try:
        yield
    finally:
        cluster.fabric.run(["ip", "link", "set", veth, "up"])


class HealthzWatch:
    """The node's kube-proxy `/healthz` status (127.0.0.1:10256, where the harness binds it), asked
    every 20 ms from the node's own network namespace, as a load balancer's probe of the node reaches
    it: (wall clock, status) samples, 0 for no answer."""

    def __init__(self, node: RealNode) -> None:
        self._node = node
        self.samples: list[tuple[float, int]] = []
        self._loop: NamespaceLoop | None = None

    def __enter__(self) -> HealthzWatch:
        self._loop = NamespaceLoop(self._node, "healthz", self._probe, pace_seconds=0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.stop()

    def first(self, status: int, *, after: float) -> float | None:
        return next((t for t, s in list(self.samples) if t >= after and s == status), None)

    def latest(self) -> int | None:
        return self.samples[-1][1] if self.samples else None

    def _probe(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", 10256, timeout=1.0)
        try:
            connection.request("GET", "/healthz")
            status = connection.getresponse().status
        except (OSError, http.client.HTTPException):
            status = 0
        finally:
            connection.close()
        self.samples.append((time.time(), status))
