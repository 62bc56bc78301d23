"""`make demo DEMO_ARGS=--real`: the same story on real nodes.

A control plane, two real kubelets with containerd (each in namespaces of its own), the handler
installed by `helm` from the chart with the image built from docker/Dockerfile, real containers that
receive SIGTERM, and the IMDS simulator at 169.254.169.254 inside the cluster's network. Node 0 gets
the event; its Deployment and StatefulSet pods are evicted and come back on node 1. Needs root and
what `make test-images` installs and builds (the demo says what is missing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Namespace, Pod

from demo.observers import NodeObserver, RecordsObserver
from demo.timeline import Step, Timeline, format_summary
from testkit.realcluster import RealCluster, missing_prerequisites
from testkit.scenario import (
    SLACK_PATH,
    Release,
    new_namespace,
    pdb,
    pods,
    set_schedulable,
    sigterm_times,
    slack_values,
    wait_handlers_ready,
    wait_pods,
    workload,
    workload_pod_spec,
)
from testkit.tasks import stop_task

WEB_REPLICAS = 4
_CLIENT_TIMEOUT = httpx2.Timeout(15.0)
_MARGIN_SECONDS = 60.0
_TICK_SECONDS = 0.1


@dataclass
class RealPodObserver:
    """The demo's workload pods: evictions, the SIGTERM each container recorded, the replacements
    that become Ready on the other node, and the moment the Spot node holds nothing a drain moves."""

    kube: AsyncClient
    cluster: RealCluster
    namespace: str
    spot: str
    timeline: Timeline
    moved: frozenset[str]  # the pods a drain moves (not the DaemonSet's)
    _stopping: set[str] = field(default_factory=set)
    _signalled: set[str] = field(default_factory=set)
    _ready_elsewhere: set[str] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RealPodObserver:
        self._task = asyncio.create_task(self._run(), name="real-pods")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await stop_task(self._task)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(ApiError, httpx2.HTTPError):
                self._changed(await pods(self.kube, self.namespace))
            await asyncio.sleep(_TICK_SECONDS)

    def _changed(self, listed: list[Pod]) -> None:
        now = time.time()
        for pod in listed:
            name = pod.metadata.name
            if pod.metadata.deletionTimestamp is not None and name not in self._stopping:
                self._stopping.add(name)
                grace = pod.metadata.deletionGracePeriodSeconds
                self.timeline.add(
                    now, "pod stopping", f"{name} on {pod.spec.nodeName} (grace period {grace} s)"
                )
            ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
            replacement = name not in self.moved and not name.startswith("agent-")
            if pod.spec.nodeName != self.spot and ready and replacement and name not in self._ready_elsewhere:
                self._ready_elsewhere.add(name)
                self.timeline.add(now, "replacement", f"{name} Ready on {pod.spec.nodeName}")
        for name, at in sigterm_times(self.cluster, self.namespace).items():
            if name not in self._signalled:
                self._signalled.add(name)
                self.timeline.add(at, "SIGTERM", f"container of {name} got SIGTERM and exits")
        left = {p.metadata.name for p in listed if p.spec.nodeName == self.spot} & self.moved
        if not left and Step.DRAINED not in self.timeline.milestones:
            self.timeline.milestone(Step.DRAINED, "only the DaemonSet's pod is left on the Spot node", at=now)


class RealDemo:
    def __init__(self, args: argparse.Namespace, say: Callable[..., None]) -> None:
        self.args = args
        self.say = say
        self.cluster: RealCluster | None = None
        self.timeline = Timeline(write=say)

    async def run(self, steps: list[Step]) -> int:
        say, args = self.say, self.args
        missing = missing_prerequisites()
        if missing:
            say("the real demo needs " + "; ".join(missing))
            say("`make test-images` (as root, on Debian) installs and builds all of it.")
            return 1
        say(f"aks-node-termination-handler demo on real nodes: a simulated Azure {args.event} event")
        say()
        self.cluster = cluster = RealCluster(simulator_speed=args.speed)
        began = time.monotonic()
        await asyncio.to_thread(cluster.start)
        spot, other = cluster.nodes
        lines = [
            f"cluster ready in {cluster.startup_seconds:.1f} s: control plane, kube-scheduler, controllers,",
            f"  node {spot.name} ({spot.spec.ip}, Azure resource {spot.spec.resource_name}): the Spot VM",
            f"  node {other.name} ({other.spec.ip}): where replacements go",
            "  each a kubelet + containerd + kube-proxy in namespaces of its own; IMDS at 169.254.169.254",
            f"  kubeconfig: {cluster.kubeconfig_path} (admin); files: {cluster.work_dir}",
        ]
        for line in lines:
            say(line)
        async with AsyncExitStack() as stack:
            kube = AsyncClient(KubeConfig.from_file(cluster.kubeconfig_path), timeout=_CLIENT_TIMEOUT)
            stack.push_async_callback(kube.close)
            receiver = stack.enter_context(cluster.receiver())
            extra = ["-taint.node", "-approveEvents"]
            if args.event == "Freeze":
                extra.append("-drainOnFreezeEvent")
            values = slack_values(receiver.url(SLACK_PATH), *extra)
            release = Release(cluster, values=values)
            await asyncio.to_thread(release.install)
            handlers = await wait_handlers_ready(kube, [n.name for n in cluster.nodes])
            say(
                "handler installed by helm (README command line + the seed's Slack values + "
                + " ".join(extra)
                + "):"
            )
            for node, pod in sorted(handlers.items()):
                say(f"  {pod.metadata.name} Ready on {node}, pod IP {pod.status.podIP}")

            namespace = await new_namespace(kube, "shop")
            stack.push_async_callback(kube.delete, Namespace, namespace)
            moved = await self._workloads(kube, namespace)
            say(f"workloads in namespace {namespace}, all on the Spot node:")
            floor = WEB_REPLICAS - 1
            say(f"  Deployment web ({WEB_REPLICAS} replicas) behind PodDisruptionBudget minAvailable {floor}")
            say("  StatefulSet db (1 replica), DaemonSet agent (one pod per node)")
            say("  each container records the SIGTERM it gets")
            say(f"set-up took {time.monotonic() - began:.1f} s")
            say()

            timeline = self.timeline
            simulator = cluster.simulator
            assert simulator is not None
            for context in (
                NodeObserver(kube, spot.name, timeline),
                RecordsObserver(simulator, receiver, timeline),
                RealPodObserver(kube, cluster, namespace, spot.name, timeline, moved),
            ):
                await stack.enter_async_context(context)
            event_id = simulator.schedule(args.event, [spot.spec.resource_name])
            state = {e["EventId"]: e for e in simulator.state()["events"]}[event_id]
            budget = state["not_before"] - state["published_at"] + _MARGIN_SECONDS + 300 / args.speed
            deadline = time.monotonic() + budget
            while timeline.missing(steps):
                timeline.flush()
                cluster.check_running()
                if time.monotonic() > deadline:
                    timeline.flush(everything=True)
                    say()
                    missing_steps = ", ".join(s.value for s in timeline.missing(steps))
                    say(f"the demo did not complete: no {missing_steps}")
                    return 1
                await asyncio.sleep(_TICK_SECONDS)
            await asyncio.sleep(1.0)
            timeline.flush(everything=True)
            say()
            say(f"summary ({args.event} on a real node, simulator speed {args.speed:g}):")
            for line in format_summary(timeline.milestones, steps, origin=timeline.origin or time.time()):
                say(line)
            if args.keep:
                say()
                say("everything keeps running (--keep); Ctrl-C stops and removes it.")
                while True:
                    cluster.check_running()
                    await asyncio.sleep(1.0)
            await asyncio.to_thread(release.uninstall)
            return 0

    async def _workloads(self, kube: AsyncClient, namespace: str) -> frozenset[str]:
        assert self.cluster is not None
        spot, other = self.cluster.nodes
        spec = workload_pod_spec(self.cluster)
        await set_schedulable(kube, other.name, schedulable=False)
        try:
            await kube.create(workload("Deployment", "web", namespace, spec, replicas=WEB_REPLICAS))
            await kube.create(pdb("web", namespace, app="web", min_available=WEB_REPLICAS - 1))
            await kube.create(workload("StatefulSet", "db", namespace, spec))
            await kube.create(workload("DaemonSet", "agent", namespace, spec))
            web = await wait_pods(
                kube, namespace, labels="app=web", count=WEB_REPLICAS, node=spot.name, what="web"
            )
            db = await wait_pods(kube, namespace, labels="app=db", count=1, node=spot.name, what="db")
            await wait_pods(kube, namespace, labels="app=agent", count=2, what="agent")
        finally:
            await set_schedulable(kube, other.name, schedulable=True)
        return frozenset(p.metadata.name for p in [*web, *db])

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


__all__ = ["RealDemo"]
