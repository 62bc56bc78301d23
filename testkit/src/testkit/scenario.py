"""What the real-node scenarios share: the handler installed by helm, workloads that record their
SIGTERM, node state as the API shows it, metrics scraped at a pod's address, and the record the
safety checks of DESIGN §7 read (`safety_watch`).

Workload pods run busybox from `localhost/aksnth-workload:test`. On SIGTERM each writes the machine's
uptime (CLOCK_BOOTTIME, the same in every container and in the test process) into a file named after
itself in a hostPath folder that the test reads, then exits 0: `sigterm_times()` turns those into
wall-clock times. A *lingering* workload does not exit on SIGTERM: it writes the time again every
second until the kubelet kills it at the end of its grace period, so `alive_times()` shows how long
it was let run after its SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube import ApiError, AsyncClient, codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import DaemonSet
from lightkube.resources.core_v1 import Event, Namespace, Node, Pod
from lightkube.types import PatchType

from aksnth.kube import keys
from imds_simulator import ImdsSimulator
from testkit.chart import seed_values
from testkit.cluster import eventually
from testkit.fleetwatch import FleetWatch
from testkit.realcluster import WORKLOAD_IMAGE, RealCluster, RealNode, install_command
from testkit.safety import EventRecord, SafetyRecord, event_record, safety_record
from testkit.tasks import stop_task

RELEASE = "aks-node-termination-handler"
RELEASE_NAMESPACE = "kube-system"  # the README's
HANDLER_LABELS = "app.kubernetes.io/name=aks-node-termination-handler"
METRICS_PORT = 17923
SPOT_TOLERATION = {
    "key": "kubernetes.azure.com/scalesetpriority",
    "operator": "Equal",
    "value": "spot",
    "effect": "NoSchedule",
}
# Records SIGTERM (see the module's docstring); `sleep & wait` lets the trap run at once.
_WORKLOAD_SCRIPT = (
    'trap \'read up rest < /proc/uptime; echo "$up" > "/signals/$POD_NAMESPACE.$POD_NAME"; exit 0\' TERM; '
    "while true; do sleep 3600 & wait $!; done"
)
_LINGERING_SCRIPT = (
    'trap \'read up rest < /proc/uptime; echo "$up" > "/signals/$POD_NAMESPACE.$POD_NAME"; '
    'while true; do read up rest < /proc/uptime; echo "$up" > "/signals/alive.$POD_NAMESPACE.$POD_NAME"; '
    "sleep 1; done' TERM; "
    "while true; do sleep 3600 & wait $!; done"
)


def uptime_now() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def uptime_to_wall(uptime: float) -> float:
    """A /proc/uptime reading as wall-clock time (both clocks advance together while we run)."""
    return time.time() - (uptime_now() - uptime)


def sigterm_times(cluster: RealCluster, namespace: str) -> dict[str, float]:
    """Pod name → wall-clock time of the SIGTERM its container got, for the pods of `namespace`."""
    return _signal_times(cluster, f"{namespace}.")


def alive_times(cluster: RealCluster, namespace: str) -> dict[str, float]:
    """Pod name → wall-clock time a lingering workload last said it was alive after its SIGTERM."""
    return _signal_times(cluster, f"alive.{namespace}.")


def _signal_times(cluster: RealCluster, prefix: str) -> dict[str, float]:
    """The files `<prefix><pod>` of the signals folder that are written to, as pod → wall-clock time."""
    found = {}
    for path in signals_dir(cluster).glob(f"{prefix}*"):
        text = path.read_text().strip()
        if text:
            found[path.name.removeprefix(prefix)] = uptime_to_wall(float(text))
    return found


def signals_dir(cluster: RealCluster) -> Path:
    folder = cluster.work_dir / "signals"
    folder.mkdir(exist_ok=True)
    return folder


def signalling_pod_spec(
    cluster: RealCluster, container: Mapping[str, Any], *, grace_seconds: int
) -> dict[str, Any]:
    """A pod that tolerates spot nodes, of one container of WORKLOAD_IMAGE (`container`: its name, args
    and the rest) whose script writes its SIGTERM's uptime to the signals folder: the pod's name and
    namespace in its environment, the folder at /signals."""
    return {
        "terminationGracePeriodSeconds": grace_seconds,
        "tolerations": [SPOT_TOLERATION],
        "containers": [
            {
                **container,
                "image": WORKLOAD_IMAGE,
                "imagePullPolicy": "Never",
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                ],
                "volumeMounts": [{"name": "signals", "mountPath": "/signals"}],
            }
        ],
        "volumes": [
            {"name": "signals", "hostPath": {"path": str(signals_dir(cluster)), "type": "DirectoryOrCreate"}}
        ],
    }


def workload_pod_spec(
    cluster: RealCluster, *, grace_seconds: int = 20, lingering: bool = False, node: str | None = None
) -> dict[str, Any]:
    """`lingering`: the container keeps running after SIGTERM until it is killed. `node`: only there."""
    script = _LINGERING_SCRIPT if lingering else _WORKLOAD_SCRIPT
    spec = signalling_pod_spec(
        cluster, {"name": "work", "args": ["sh", "-c", script]}, grace_seconds=grace_seconds
    )
    if node is not None:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return spec


def workload(kind: str, name: str, namespace: str, pod_spec: Mapping[str, Any], *, replicas: int = 1) -> Any:
    """A Deployment, StatefulSet or DaemonSet of workload pods labelled app=`name`."""
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": dict(pod_spec)},
    }
    if kind != "DaemonSet":
        spec["replicas"] = replicas
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return codecs.from_dict(
        {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def pdb(name: str, namespace: str, *, app: str, min_available: int) -> Any:
    return codecs.from_dict(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}},
        }
    )


async def new_namespace(kube: AsyncClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await kube.create(Namespace(metadata=ObjectMeta(name=name)))
    return name


def is_ready(pod: Pod) -> bool:
    status = pod.status
    if pod.metadata is None or pod.metadata.deletionTimestamp is not None or status is None:
        return False
    if status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])


async def pods(kube: AsyncClient, namespace: str, *, labels: str | None = None) -> list[Pod]:
    selector = dict(label.split("=", 1) for label in labels.split(",")) if labels else None
    return [pod async for pod in kube.list(Pod, namespace=namespace, labels=selector)]


async def wait_pods(
    kube: AsyncClient,
    namespace: str,
    *,
    labels: str | None = None,
    count: int,
    node: str | None = None,
    what: str,
    timeout_seconds: float = 90.0,
) -> list[Pod]:
    """Until exactly `count` pods (matching, on `node` when given) are Ready and none other is left."""

    async def probe() -> list[Pod] | None:
        found = await pods(kube, namespace, labels=labels)
        ready = [p for p in found if is_ready(p) and (node is None or p.spec.nodeName == node)]
        return ready if len(ready) == count and len(found) == count else None

    return await eventually(probe, what=what, timeout_seconds=timeout_seconds)


# -- the handler, as helm installs it --------------------------------------------------------------


@dataclass
class Release:
    """The chart installed with the README's command line and the scenario's values file."""

    cluster: RealCluster
    values: dict[str, Any] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)

    def install(self) -> str:
        args = install_command(RELEASE, RELEASE_NAMESPACE, self.extra)
        if self.values:
            path = self.cluster.work_dir / f"values-{uuid.uuid4().hex[:6]}.yaml"
            path.write_text(yaml.safe_dump(self.values))
            args += ["-f", str(path)]
        return self.cluster.helm(*args)

    def uninstall(self) -> None:
        self.cluster.helm("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait", "--timeout=90s")


async def handler_pods(kube: AsyncClient) -> list[Pod]:
    return await pods(kube, RELEASE_NAMESPACE, labels=HANDLER_LABELS)


async def wait_handlers_ready(
    kube: AsyncClient, nodes: Iterable[str], *, image: str | None = None
) -> dict[str, Pod]:
    """Node name → its handler pod, once each node has exactly one and it is Ready (through the
    kubelet's readiness probe) with `image` (when given)."""
    wanted = set(nodes)

    async def probe() -> dict[str, Pod] | None:
        found = await handler_pods(kube)
        by_node: dict[str, list[Pod]] = {}
        for pod in found:
            by_node.setdefault(pod.spec.nodeName, []).append(pod)
        if set(by_node) != wanted or any(len(v) != 1 for v in by_node.values()):
            return None
        chosen = {node: group[0] for node, group in by_node.items()}
        if not all(is_ready(p) for p in chosen.values()):
            return None
        if image is not None and any(p.spec.containers[0].image != image for p in chosen.values()):
            return None
        return chosen

    return await eventually(probe, what="one Ready handler pod on every node", timeout_seconds=120)


async def daemonset(kube: AsyncClient) -> DaemonSet:
    return await kube.get(DaemonSet, RELEASE, namespace=RELEASE_NAMESPACE)


async def handler_user(kube: AsyncClient) -> str:
    """The API user the installed release's handlers act as, as the audit log names it: the
    ServiceAccount the chart's DaemonSet runs its pods as."""
    spec = (await daemonset(kube)).spec
    pod_spec = spec.template.spec if spec is not None else None
    account = pod_spec.serviceAccountName if pod_spec is not None else None
    assert account, "the chart's DaemonSet names no ServiceAccount"
    return f"system:serviceaccount:{RELEASE_NAMESPACE}:{account}"


# -- the safety checks' record ---------------------------------------------------------------------


@dataclass
class SafetyWatch:
    """What `testkit.safety`'s checks read about one scenario: a watch of its namespace's pods
    and of the nodes (their VMs), the events it published, the API server's audit log (the installed
    handlers' requests on the namespace's pods) and the IMDS simulator's recorded requests."""

    cluster: RealCluster
    namespace: str
    user: str
    watch: FleetWatch
    events: list[EventRecord] = field(default_factory=list)

    def publish(
        self, event_type: str, nodes: Sequence[RealNode], *, notice_seconds: float | None = None
    ) -> EventRecord:
        """Publishes an event for the VMs of `nodes` (the simulator's default notice when None) and
        keeps it as the document states it, for the checks."""
        simulator = self._simulator()
        event_id = simulator.schedule(
            event_type, [n.spec.resource_name for n in nodes], notice_seconds=notice_seconds
        )
        event = event_record(simulator, event_id)
        self.events.append(event)
        return event

    def record(self) -> SafetyRecord:
        """What happened so far; take it once the scenario's last action has been seen."""
        return safety_record(
            self.watch,
            events=self.events,
            audited=self.cluster.audited(),
            handler_users={self.user},
            imds_requests=self._simulator().requests,
            namespace=self.namespace,
        )

    async def wait_empty(self, nodes: Sequence[RealNode], *, timeout_seconds: float = 60.0) -> None:
        """Until the watch has seen every pod that must leave `nodes` gone. The API's own answer can
        come a moment before the watch's event, and the record's times are the watch's: a record
        taken earlier would show a pod still there after an approval that in fact followed it."""

        async def seen_empty() -> bool:
            return all(self.watch.empty_at(n.name) is not None for n in nodes)

        names = ", ".join(n.name for n in nodes)
        await eventually(seen_empty, what=f"the watch seeing {names} empty", timeout_seconds=timeout_seconds)

    def _simulator(self) -> ImdsSimulator:
        assert self.cluster.simulator is not None, "the cluster is not started"
        return self.cluster.simulator


@contextlib.asynccontextmanager
async def safety_watch(cluster: RealCluster, kube: AsyncClient, namespace: str) -> AsyncIterator[SafetyWatch]:
    """A `SafetyWatch` of `namespace` for the block, with the release installed (its ServiceAccount is
    the identity whose requests are checked). Enter it before the scenario publishes its event: a
    pod's deletion or departure not seen by the watch is a finding."""
    user = await handler_user(kube)
    async with FleetWatch(kube, namespace) as watch:
        wanted = {n.name: n.spec.resource_name for n in cluster.nodes}

        async def nodes_known() -> bool:
            # Without its VM's name a node is doomed by no event, and checks (c) and (d) pass over it.
            return all(watch.vm_of_node.get(name) == vm for name, vm in wanted.items())

        await eventually(nodes_known, what="the watch knowing every node's VM", timeout_seconds=30)
        yield SafetyWatch(cluster, namespace, user, watch)


# -- nodes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeMarks:
    unschedulable: bool
    taints: dict[str, str]  # key → value of the handler's own taints
    labels: dict[str, str]  # the handler's labels (the load-balancer exclusion)
    annotations: dict[str, str]  # the handler's annotations (its state record)

    @property
    def any(self) -> bool:
        return self.unschedulable or bool(self.taints or self.labels or self.annotations)


def handler_marks(node: Node) -> NodeMarks:
    meta = node.metadata
    labels = (meta.labels or {}) if meta else {}
    annotations = (meta.annotations or {}) if meta else {}
    return NodeMarks(
        unschedulable=bool(node.spec.unschedulable),
        taints={t.key: t.value or "" for t in node.spec.taints or [] if keys.is_our_taint_key(t.key)},
        labels={
            k: v for k, v in labels.items() if k == keys.EXCLUDE_FROM_LB_LABEL or k.startswith(keys.COMPONENT)
        },
        annotations={k: v for k, v in annotations.items() if k.startswith(keys.COMPONENT)},
    )


async def restore_node(kube: AsyncClient, name: str) -> None:
    """What a new VM under the same name would look like: schedulable, none of the handler's marks."""
    node = await kube.get(Node, name)
    marks = handler_marks(node)
    taints = [
        t.to_dict()
        for t in node.spec.taints or []
        if not keys.is_our_taint_key(t.key) and t.key != keys.TO_BE_DELETED_TAINT
    ]
    patch = {
        "metadata": {
            "labels": dict.fromkeys(marks.labels),
            "annotations": dict.fromkeys(marks.annotations),
        },
        "spec": {"unschedulable": None, "taints": taints},
    }
    await kube.patch(Node, name, patch, patch_type=PatchType.MERGE)


async def set_schedulable(kube: AsyncClient, name: str, *, schedulable: bool) -> None:
    await kube.patch(
        Node, name, {"spec": {"unschedulable": None if schedulable else True}}, patch_type=PatchType.MERGE
    )


# -- reading the handler from outside --------------------------------------------------------------


def scrape(cluster: RealCluster, address: str, path: str = "/metrics") -> str:
    """GET http://address:17923/path from inside the fabric network (as Prometheus would)."""

    def get() -> str:
        with httpx2.Client(trust_env=False, timeout=10.0) as client:
            response = client.get(f"http://{address}:{METRICS_PORT}{path}")
            response.raise_for_status()
            return response.text

    return cluster.in_fabric(get)


class ReadyWatch:
    """Counts, on every change, the Ready pods labelled app=`app` that are not being deleted; keeps
    the lowest count seen: a PodDisruptionBudget held over time when it never fell below its floor."""

    def __init__(self, kube: AsyncClient, namespace: str, app: str) -> None:
        self._kube = kube
        self._namespace = namespace
        self._app = app
        self.lowest: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()

    async def __aenter__(self) -> ReadyWatch:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._synced.wait(), timeout=30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await stop_task(self._task)

    async def _run(self) -> None:
        while True:
            listed = await pods(self._kube, self._namespace, labels=f"app={self._app}")
            state = {p.metadata.name: is_ready(p) for p in listed}
            self._note(state)
            self._synced.set()
            try:
                async for kind, pod in self._kube.watch(
                    Pod, namespace=self._namespace, labels={"app": self._app}
                ):
                    if kind == "DELETED":
                        state.pop(pod.metadata.name, None)
                    else:
                        state[pod.metadata.name] = is_ready(pod)
                    self._note(state)
            except ApiError:
                continue

    def _note(self, state: Mapping[str, bool]) -> None:
        count = sum(state.values())
        self.lowest = count if self.lowest is None else min(self.lowest, count)


async def node_events(kube: AsyncClient, node: str, since: float) -> list[Any]:
    found = []
    async for event in kube.list(
        Event, namespace=keys.NODE_EVENTS_NAMESPACE, fields={"involvedObject.name": node}
    ):
        stamp = event.lastTimestamp or event.eventTime or event.metadata.creationTimestamp
        # lastTimestamp has whole seconds only: compare with `since` rounded down.
        if stamp is None or stamp.timestamp() >= int(since):
            found.append(event)
    return found


@contextlib.asynccontextmanager
async def released(release: Release, kube: AsyncClient) -> AsyncIterator[Release]:
    """The release installed for the block; uninstalled after it, and its pods gone (the garbage
    collector deletes a DaemonSet's pods after the DaemonSet, each within its grace period)."""
    release.install()
    try:
        yield release
    finally:
        release.uninstall()

        async def gone() -> bool:
            return not await handler_pods(kube)

        await eventually(gone, what="the handler pods gone after helm uninstall", timeout_seconds=90)


SLACK_PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"  # the seed's, after the host


def slack_values(webhook_url: str, *extra_args: str) -> dict[str, Any]:
    """The seed README's Slack values file as a user would adapt it: their webhook URL (here a
    receiver in the cluster's network), plus `extra_args` appended to `args`."""
    values = seed_values("slack.yaml")
    values["args"] = [*replace_arg(values["args"], "-webhook.url", webhook_url), *extra_args]
    return values


def replace_arg(args: Sequence[str], flag: str, value: str) -> list[str]:
    """`args` with `-flag=…` replaced by `-flag=value` (added when absent)."""
    out = [a for a in args if not a.startswith(f"{flag}=")]
    return [*out, f"{flag}={value}"]


@dataclass(frozen=True)
class ContainerProcess:
    pid: int  # as the machine sees it
    uid: int
    root_read_only: bool
    executable: str = ""  # what the kernel runs: for an emulated arm64 handler, qemu-aarch64


def handler_processes(cluster: RealCluster, node_index: int) -> list[ContainerProcess]:
    """The handler's processes running on a node, read from /proc: effective uid and whether the
    root filesystem they see is mounted read-only."""
    found = []
    for pid in cluster.nodes[node_index].sandbox.pids():
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            # python, the script; emulated, qemu and the program's path come before them.
            if not any(arg.endswith(b"/aks-node-termination-handler") for arg in argv[:4]):
                continue
            status = Path(f"/proc/{pid}/status").read_text()
            uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[2])
            mounts = Path(f"/proc/{pid}/mounts").read_text().splitlines()
            root = [line.split() for line in mounts if line.split()[1] == "/"][-1]
            found.append(
                ContainerProcess(
                    pid=pid,
                    uid=uid,
                    root_read_only="ro" in root[3].split(","),
                    executable=os.readlink(f"/proc/{pid}/exe"),
                )
            )
    return found
