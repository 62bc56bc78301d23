"""The bench's world, shared by every measurement: the real control plane (with an audit log of the
handler's requests), an admin client, the IMDS simulator, a loopback webhook receiver, the handler's
identity (the chart's ServiceAccount and ClusterRole), and the helpers that watch and reset a node.

Times are wall-clock seconds (time.time()) everywhere, the clock the simulator stamps publications
with and the API server stamps its audit log with: the same machine, so they compare directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Node, Pod
from lightkube.types import PatchType

from aksnth.kube.keys import EXCLUDE_FROM_LB_LABEL, STATE_ANNOTATION, is_our_taint_key
from bench.process import Implementation, command_line
from imds_simulator import ImdsSimulator
from testkit.audit import AuditedRequest, audit_policy, read_audit_log
from testkit.chart import chart_cluster_rules
from testkit.cluster import AksNode, create_aks_node, service_account_kubeconfig
from testkit.controlplane import ControlPlane
from testkit.process import HandlerProcess
from testkit.receivers import Receiver
from testkit.tasks import stop_task

log = logging.getLogger(__name__)

HANDLER_NAMESPACE = "aksnth-bench"
HANDLER_ACCOUNT = "aks-node-termination-handler"
HANDLER_USER = f"system:serviceaccount:{HANDLER_NAMESPACE}:{HANDLER_ACCOUNT}"
VMSS = "aks-spot-12345678-vmss"
_CALL_TIMEOUT_SECONDS = 10.0
_POLL_SECONDS = 0.01
_READY_TIMEOUT_SECONDS = 30.0
T = TypeVar("T")


class BenchError(RuntimeError):
    """A measurement could not be made (the handler did not react, a wait ran out)."""


class Lab:
    def __init__(self, *, work_dir: Path, control_plane: ControlPlane | None = None) -> None:
        """`control_plane`: started with the lab; by default etcd and kube-apiserver alone, auditing
        the handler's requests."""
        self.work_dir = work_dir
        self.control_plane = control_plane or ControlPlane(
            controller_manager=False, audit_policy=audit_policy(HANDLER_USER)
        )
        self.imds = ImdsSimulator()
        self.webhook = Receiver()
        self.kube: AsyncClient | None = None
        self.handler_kubeconfig = Path()
        self._instances = itertools.count(1)
        # The webhook receiver stamps requests with the monotonic clock; this turns them into wall time.
        self._wall_minus_monotonic = time.time() - time.monotonic()

    async def __aenter__(self) -> Lab:
        # Started from the event loop's thread: the components' parent-death signal follows this thread.
        self.control_plane.start()
        self.imds.start()
        self.webhook.__enter__()
        self.kube = AsyncClient(
            KubeConfig.from_file(self.control_plane.kubeconfig_path), timeout=httpx2.Timeout(10.0)
        )
        await self.client.create(Namespace(metadata=ObjectMeta(name=HANDLER_NAMESPACE)))
        # The chart's rules with the readiness check on (list on PodDisruptionBudgets), which only the
        # readiness section uses.
        rules = await asyncio.to_thread(chart_cluster_rules, set_values=["readinessCheck.interval=10s"])
        self.handler_kubeconfig = await service_account_kubeconfig(
            self.client,
            self.control_plane,
            namespace=HANDLER_NAMESPACE,
            name=HANDLER_ACCOUNT,
            cluster_rules=rules,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.kube is not None:
            # The client's connections die with the API server; no need to await their closing.
            self.kube = None
        with contextlib.suppress(Exception):
            self.webhook.stop()
        self.imds.stop()
        self.control_plane.stop()

    @property
    def client(self) -> AsyncClient:
        if self.kube is None:
            raise BenchError("the lab is not started")
        return self.kube

    # -- the objects a measurement needs ----------------------------------------------------------

    async def new_node(self) -> AksNode:
        """A fresh AKS Spot node with its own Azure resource name (instance id), so no measurement
        sees another's events or leftovers."""
        return await create_aks_node(self.client, vmss=VMSS, instance_id=str(next(self._instances)))

    async def new_namespace(self) -> str:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        await self.client.create(Namespace(metadata=ObjectMeta(name=name)))
        return name

    def start_handler(
        self, implementation: Implementation, node: AksNode, *, label: str, imds_tag: str = ""
    ) -> HandlerProcess:
        """`imds_tag` adds `&handler=<tag>` to the handler's IMDS URL, so that the simulator's record
        tells its polls from those of other handlers (see `wait_tagged_poll`)."""
        url = self.imds.scheduled_events_url + (f"&handler={imds_tag}" if imds_tag else "")
        values = {
            "imds_url": url,
            "kubeconfig": str(self.handler_kubeconfig),
            "node": node.name,
            "resource": node.resource_name,
            "webhook_url": self.webhook.url(f"/hook/{implementation.name}"),
            # Port 0: the kernel picks a free one as the handler binds it, so no other process can take
            # it in between; nothing here talks to the handler's server.
            "web_address": "127.0.0.1:0",
        }
        log_path = self.work_dir / f"{implementation.name}-{label}.log"
        process = HandlerProcess(command_line(implementation.template, values), log_path=log_path)
        process.start()
        return process

    async def wait_first_poll(self, process: HandlerProcess) -> float:
        """Waits until the handler has asked IMDS for Scheduled Events once; the wall time it did."""
        return await self.wait_poll(process, after=process.started_at, what="the handler's first IMDS poll")

    async def wait_poll(self, process: HandlerProcess, *, after: float, what: str = "an IMDS poll") -> float:
        """The wall time of the first Scheduled Events poll that arrived after `after`."""

        def polled() -> float | None:
            for request in reversed(self.imds.requests):
                if request.time <= after:
                    break
                if "scheduledevents" in request.path and request.method == "GET":
                    return request.time
            return None

        return await wait_for(polled, process=process, what=what)

    async def wait_tagged_poll(self, process: HandlerProcess, tag: str) -> float:
        """The wall time of the first poll of the handler started with `imds_tag=tag`."""

        def polled() -> float | None:
            for request in self.imds.requests:
                if request.time > process.started_at and request.query.get("handler") == tag:
                    return request.time
            return None

        return await wait_for(polled, process=process, what=f"the first IMDS poll of handler {tag}")

    # -- reading what happened ----------------------------------------------------------------------

    def audit(self) -> list[AuditedRequest]:
        path = self.control_plane.audit_log_path
        if path is None or not path.exists():
            return []
        return read_audit_log(path)

    def imds_request_times(self) -> list[float]:
        return [r.time for r in self.imds.requests if r.path.startswith("/metadata")]

    def webhook_times(self, implementation: Implementation) -> list[float]:
        path = f"/hook/{implementation.name}"
        return [r.received_at + self._wall_minus_monotonic for r in self.webhook.requests if r.path == path]

    # -- undoing what a handler did -----------------------------------------------------------------

    async def reset_node(self, node: AksNode) -> None:
        """Uncordon, drop our taints, label and annotation: the node as it was created. A merge patch
        replaces the taint list as a whole, which is what we want here."""
        async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
            current = await self.client.get(Node, node.name)
        present = current.spec.taints if current.spec is not None else None
        taints = [t.to_dict() for t in present or [] if not is_our_taint_key(t.key)]
        patch: dict[str, Any] = {
            "metadata": {"annotations": {STATE_ANNOTATION: None}, "labels": {EXCLUDE_FROM_LB_LABEL: None}},
            "spec": {"unschedulable": None, "taints": taints},
        }
        async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
            await self.client.patch(Node, node.name, patch, patch_type=PatchType.MERGE)


async def wait_for(
    probe: Callable[[], T | None],
    *,
    what: str,
    process: HandlerProcess | None = None,
    timeout_seconds: float = _READY_TIMEOUT_SECONDS,
) -> T:
    """Bounded poll of an in-memory condition (the times it returns were stamped when things happened,
    not when this poll noticed). Fails early when the handler process died."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = probe()
        if result is not None:
            return result
        if process is not None:
            process.check_running()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_seconds:.0f} s waiting for {what}")
        await asyncio.sleep(_POLL_SECONDS)


@dataclass(slots=True)
class NodeWatch:
    """Watches one Node and keeps every change of `spec.unschedulable` with the time it arrived."""

    client: AsyncClient
    node: str
    transitions: list[tuple[float, bool]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> NodeWatch:
        self._task = asyncio.create_task(self._watch(), name=f"watch-node-{self.node}")
        await wait_for(lambda: True if self.transitions else None, what=f"the watch of node {self.node}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await stop_task(self._task)

    @property
    def unschedulable(self) -> bool:
        return bool(self.transitions) and self.transitions[-1][1]

    async def wait_state(self, unschedulable: bool, *, after: float, timeout_seconds: float) -> float:
        """The first wall time at or after `after` at which the node was in that state: `after` itself
        if it already was, else the arrival of the change."""

        def seen() -> float | None:
            before = [state for at, state in self.transitions if at < after]
            if before and before[-1] is unschedulable:
                return after
            for at, state in self.transitions:
                if at >= after and state is unschedulable:
                    return at
            return None

        what = f"node {self.node} to become {'un' if unschedulable else ''}schedulable"
        return await wait_for(seen, what=what, timeout_seconds=timeout_seconds)

    async def _watch(self) -> None:
        while True:
            try:
                async for _, node in self.client.watch(Node, fields={"metadata.name": self.node}):
                    state = bool(node.spec and node.spec.unschedulable)
                    if not self.transitions or self.transitions[-1][1] is not state:
                        self.transitions.append((time.time(), state))
            except (ApiError, httpx2.HTTPError) as exc:
                log.debug("node watch interrupted (%s); watching again", exc)
            await asyncio.sleep(0.05)


@dataclass(slots=True)
class PodWatch:
    """Watches the pods bound to one node and notes when the last one is gone."""

    client: AsyncClient
    node: str
    alive: set[str] = field(default_factory=set)
    synced: bool = False
    emptied_at: float | None = None
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodWatch:
        self._task = asyncio.create_task(self._watch(), name=f"watch-pods-{self.node}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await stop_task(self._task)

    async def _watch(self) -> None:
        # Listing first gives the starting set; the watch from that resourceVersion sees every change.
        async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
            listed = self.client.list(Pod, namespace="*", fields={"spec.nodeName": self.node})
            self.alive = {f"{p.metadata.namespace}/{p.metadata.name}" async for p in listed if p.metadata}
        version = listed.resourceVersion
        self.synced = True
        async for kind, pod in self.client.watch(
            Pod, namespace="*", fields={"spec.nodeName": self.node}, resource_version=version
        ):
            if pod.metadata is None:
                continue
            key = f"{pod.metadata.namespace}/{pod.metadata.name}"
            if kind == "DELETED":
                self.alive.discard(key)
                if not self.alive and self.emptied_at is None:
                    self.emptied_at = time.time()
            else:
                self.alive.add(key)
