"""`make demo`: the handler draining a simulated Spot node, without an Azure subscription.

    python -m demo [--event Preempt|Terminate|Reboot|Freeze|Redeploy] [--pods N] [--speed X] [--keep]
    python -m demo --real [--event ...] [--speed X] [--keep]     (real kubelets and containers)

A local control plane (etcd, kube-apiserver, the disruption controller), an AKS-like Spot node with a
realistic mix of pods, the IMDS simulator, a loopback webhook receiver standing in for Slack, and the
handler as a separate process with the flags the chart would give it. Then one Scheduled Event, and a
timeline of what really happens. Everything is stopped and removed on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx2
import yaml
from lightkube import AsyncClient, KubeConfig

from demo.observers import ALL_PODS_UP_TO, NodeObserver, PodObserver, RecordsObserver
from demo.scene import MIN_PODS, ReplicaSetStandIn, Scene, build_scene, wait_budget_ready
from demo.timeline import Step, Timeline, format_summary
from imds_simulator import MIN_NOTICE_SECONDS, STARTED_SECONDS, ImdsSimulator
from testkit.chart import SEED_VALUES_DIR, chart_cluster_rules
from testkit.cluster import service_account_kubeconfig
from testkit.controlplane import ControlPlane
from testkit.kubelet import FakeKubelet
from testkit.process import HandlerExited, HandlerProcess
from testkit.receivers import Receiver
from testkit.tasks import stop_task

EVENT_TYPES = ("Preempt", "Terminate", "Reboot", "Freeze", "Redeploy")
GIVES_BACK = frozenset({"Reboot", "Freeze", "Redeploy"})  # the VM survives: the node is given back
HANDLER_NAMESPACE = "kube-system"
HANDLER_ACCOUNT = "aks-node-termination-handler"
SLACK_VALUES = SEED_VALUES_DIR / "slack.yaml"  # the seed README's "Send Slack notification" values
SLACK_ORIGIN = "https://hooks.slack.com"
FILES_MOUNT = "/files/"  # where the chart mounts configMap.data
TERMINATE_NOTICE_SECONDS = 300.0  # the simulator's default for a scale set's terminate notification
DEMO_NOTICE_SECONDS = 30.0  # the default speed gives every event a Preempt's notice
POD_STOP_SECONDS = 1.0  # how long each pod takes to shut down once evicted (the kubelet stand-in)
_MARGIN_SECONDS = 30.0
_READY_TIMEOUT_SECONDS = 60.0
_TICK_SECONDS = 0.1
_CLIENT_TIMEOUT = httpx2.Timeout(10.0)
_HANDLER = Path(sys.executable).parent / "aks-node-termination-handler"


def default_speed(event_type: str) -> float:
    """The speed at which the event comes with 30 s of notice (a Preempt's; a Terminate's is 5 min,
    a Reboot's 15 min): the whole demo then takes well under a minute."""
    notice = TERMINATE_NOTICE_SECONDS if event_type == "Terminate" else MIN_NOTICE_SECONDS[event_type]
    return notice / DEMO_NOTICE_SECONDS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make demo DEMO_ARGS=...",
        description="Show aks-node-termination-handler draining a simulated Azure Spot node: a local "
        "control plane, the IMDS simulator, a webhook receiver standing in for Slack, and the handler as "
        "a separate process. Needs no Azure subscription.",
    )
    parser.add_argument(
        "--event",
        choices=EVENT_TYPES,
        default="Preempt",
        type=lambda text: next((t for t in EVENT_TYPES if t.lower() == text.lower()), text),
        help="the Scheduled Event to simulate (default %(default)s; Freeze adds -drainOnFreezeEvent)",
    )
    parser.add_argument(
        "--pods",
        type=int,
        default=12,
        help=f"pods on the Spot node, at least {MIN_PODS} (default %(default)s)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        help="the simulator's speed factor: notices and durations are divided by it (default: 30 s of "
        "notice for every type, i.e. 1 for Preempt, 10 for Terminate, 20 for Redeploy, 30 for Reboot "
        "and Freeze)",
    )
    parser.add_argument(
        "--real",
        action="store_true",
        help="on real nodes: two kubelets with containerd, the handler installed by helm from the image "
        "built from docker/Dockerfile, containers that get SIGTERM (needs root and `make test-images`; "
        "about a minute longer)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave everything running after the summary, until Ctrl-C",
    )
    args = parser.parse_args(argv)
    if args.pods < MIN_PODS:
        parser.error(
            f"--pods: at least {MIN_PODS} (five fixed pods and a ReplicaSet of two), got {args.pods}"
        )
    if args.speed is None:
        args.speed = default_speed(args.event)
    if args.speed <= 0:
        parser.error(f"--speed must be positive, got {args.speed:g}")
    return args


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def expected_steps(event_type: str) -> list[Step]:
    steps = [
        Step.PUBLISHED,
        Step.SEEN,
        Step.NOTIFIED,
        Step.CORDONED,
        Step.DRAINED,
        Step.APPROVED,
        Step.STARTED,
    ]
    if event_type in GIVES_BACK:
        steps += [Step.ENDED, Step.GIVEN_BACK]
    return steps


def handler_argv(
    *, event_type: str, kubeconfig: Path, node: str, imds: ImdsSimulator, receiver: Receiver, files: Path
) -> list[str]:
    """The chart's args for the seed README's Slack example, plus what the demo turns on, plus what a
    pod gets from its environment and the in-cluster config (the node, the API server, IMDS)."""
    values = yaml.safe_load(SLACK_VALUES.read_text())
    files.mkdir(parents=True, exist_ok=True)
    for name, content in values["configMap"]["data"].items():
        (files / name).write_text(content)
    chart_args = [
        arg.replace(SLACK_ORIGIN, receiver.origin).replace(FILES_MOUNT, f"{files}/") for arg in values["args"]
    ]
    demo_args = ["-taint.node", "-approveEvents", "-log.pretty"]
    if event_type == "Freeze":
        demo_args.append("-drainOnFreezeEvent")
    environment = [
        f"-node={node}",  # the chart sets MY_NODE_NAME from spec.nodeName
        f"-kubeconfig={kubeconfig}",  # in a pod: the in-cluster ServiceAccount
        f"-endpoint={imds.scheduled_events_url}",  # in Azure: 169.254.169.254
        "-web.address=127.0.0.1:0",  # the chart: :17923; here the kernel picks a port (nobody scrapes it)
    ]
    program = [str(_HANDLER)] if _HANDLER.exists() else [sys.executable, "-m", "aksnth"]
    return [*program, *chart_args, *demo_args, *environment]


async def bounded_wait(
    condition: Callable[[], bool],
    *,
    what: str | Callable[[], str],
    timeout_seconds: float,
    check: Callable[[], None],
) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        check()
        if time.monotonic() > deadline:
            waited_for = what() if callable(what) else what
            raise TimeoutError(f"timed out after {timeout_seconds:.0f} s waiting for {waited_for}")
        await asyncio.sleep(_TICK_SECONDS)


@asynccontextmanager
async def printing(timeline: Timeline) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            timeline.flush()
            await asyncio.sleep(_TICK_SECONDS)

    task = asyncio.create_task(loop(), name="timeline-printer")
    try:
        yield
    finally:
        await stop_task(task)
        timeline.flush(everything=True)


class Demo:
    """Everything the demo starts, so that every exit path stops all of it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work_dir = Path(tempfile.mkdtemp(prefix="aksnth-demo-"))
        self.control_plane = ControlPlane()
        self.imds = ImdsSimulator(speed=args.speed)
        self.receiver = Receiver()
        self.receiver_started = False  # stopping a receiver that never served would wait forever
        self.handler: HandlerProcess | None = None
        self.timeline = Timeline(write=say)

    async def run(self) -> int:
        args = self.args
        say(f"aks-node-termination-handler demo: a simulated Azure {args.event} event on a Spot node")
        say()
        began = time.monotonic()
        # Started from the event loop's thread: the components' parent-death signal follows it.
        self.control_plane.start()
        say(
            f"control plane (etcd, kube-apiserver, disruption controller) ready in "
            f"{self.control_plane.startup_seconds:.1f} s at {self.control_plane.server_url}"
        )
        say(f"  its logs:   {self.control_plane.log_dir}")
        say(f"  kubeconfig: {self.control_plane.kubeconfig_path} (admin)")
        async with AsyncExitStack() as stack:
            kube = AsyncClient(
                KubeConfig.from_file(self.control_plane.kubeconfig_path), timeout=_CLIENT_TIMEOUT
            )
            stack.push_async_callback(kube.close)
            rules = await asyncio.to_thread(chart_cluster_rules)
            handler_kubeconfig = await service_account_kubeconfig(
                kube,
                self.control_plane,
                namespace=HANDLER_NAMESPACE,
                name=HANDLER_ACCOUNT,
                cluster_rules=rules,
            )
            scene = await build_scene(kube, total_pods=args.pods, rng=random.Random())
            kubelet = await stack.enter_async_context(
                FakeKubelet(kube, node=scene.spot.name, deletion_delay_seconds=POD_STOP_SECONDS)
            )
            await stack.enter_async_context(FakeKubelet(kube, node=scene.healthy.name))
            await bounded_wait(
                lambda: len(set(kubelet.started)) >= len(scene.pods),
                what="the pods to be Running",
                timeout_seconds=_READY_TIMEOUT_SECONDS,
                check=self.control_plane.check_running,
            )
            await wait_budget_ready(kube, scene)
            self._show_scene(scene)

            self.imds.vm_name = scene.spot.resource_name
            self.imds.start()
            self.receiver.__enter__()
            self.receiver_started = True
            argv = handler_argv(
                event_type=args.event,
                kubeconfig=handler_kubeconfig,
                node=scene.spot.name,
                imds=self.imds,
                receiver=self.receiver,
                files=self.work_dir / "files",
            )
            self.handler = HandlerProcess(argv, log_path=self.work_dir / "handler.log")
            self.handler.start()
            say()
            say(f"IMDS simulator:   {self.imds.url} (speed {args.speed:g})")
            say(f"webhook receiver: {self.receiver.origin} (stands in for Slack)")
            say(f"handler (pid {self.handler.pid}), as the chart's ServiceAccount:")
            say("  " + " \\\n    ".join(argv))
            say(f"  its log: {self.handler.log_path}")
            handler = self.handler
            await bounded_wait(
                lambda: any("scheduledevents" in r.path for r in self.imds.requests),
                what="the handler's first IMDS poll",
                timeout_seconds=_READY_TIMEOUT_SECONDS,
                check=handler.check_running,
            )
            say(f"the handler polls IMDS; set-up took {time.monotonic() - began:.1f} s")
            say()

            timeline = self.timeline

            def replaced(old: str, new: str) -> None:
                if len(scene.evictable) <= ALL_PODS_UP_TO:
                    timeline.add(time.time(), "replacement", f"{new} on {scene.healthy.name} replaces {old}")

            replicas = ReplicaSetStandIn(kube, scene.spot.name, scene.healthy.name, on_replacement=replaced)
            nodes = NodeObserver(kube, scene.spot.name, timeline)
            pods = PodObserver(kube, scene, timeline)
            for context in (replicas, nodes, pods, RecordsObserver(self.imds, self.receiver, timeline)):
                await stack.enter_async_context(context)
            await bounded_wait(
                lambda: nodes.synced.is_set() and pods.synced.is_set(),
                what="the watches",
                timeout_seconds=_READY_TIMEOUT_SECONDS,
                check=handler.check_running,
            )
            return await self._play(scene, stack)

    async def _play(self, scene: Scene, stack: AsyncExitStack) -> int:
        args, timeline, handler = self.args, self.timeline, self.handler
        assert handler is not None
        steps = expected_steps(args.event)
        event_id = self.imds.schedule(args.event, [scene.spot.resource_name])
        state = {e["EventId"]: e for e in self.imds.state()["events"]}[event_id]
        budget = state["not_before"] - state["published_at"] + _MARGIN_SECONDS
        if args.event in GIVES_BACK:
            budget += STARTED_SECONDS[args.event] / args.speed
        await stack.enter_async_context(printing(timeline))
        try:
            await bounded_wait(
                lambda: not timeline.missing(steps),
                what=lambda: ", ".join(s.value for s in timeline.missing(steps)),
                timeout_seconds=budget,
                check=handler.check_running,
            )
        except (TimeoutError, HandlerExited) as exc:
            await asyncio.sleep(timeline.settle_seconds)
            timeline.flush(everything=True)
            say()
            say(f"the demo did not complete: {exc}")
            say(f"the handler's last log lines ({handler.log_path}):")
            say(handler.tail(20))
            return 1
        await asyncio.sleep(timeline.settle_seconds)
        timeline.flush(everything=True)
        origin = timeline.origin or time.time()
        say()
        say(f"summary ({args.event}, {args.pods} pods, simulator speed {args.speed:g}):")
        for line in format_summary(timeline.milestones, steps, origin=origin):
            say(line)
        if args.event not in GIVES_BACK:
            drained = timeline.milestones[Step.DRAINED]
            say(
                f"  Azure now removes the VM. The node was empty {drained - origin:.1f} s after publication, "
                f"{state['not_before'] - drained:.1f} s before NotBefore."
            )
        if args.keep:
            say()
            say("everything keeps running (--keep); Ctrl-C stops and removes it. Try:")
            say(f"  KUBECONFIG={self.control_plane.kubeconfig_path} kubectl get nodes,pods -A -o wide")
            say(
                f"  {sys.executable} -m imds_simulator schedule --type Reboot --notice 30s "
                f"--duration 15s --resource {scene.spot.resource_name} --url {self.imds.url}"
            )
            say(f"  tail -f {handler.log_path}")
            while True:
                handler.check_running()
                await asyncio.sleep(1.0)
        return 0

    def _show_scene(self, scene: Scene) -> None:
        say()
        spot = scene.spot
        say(f"Spot node {spot.name} (Azure resource {spot.resource_name}), {len(scene.pods)} pods:")
        roles: dict[str, list[str]] = {}
        for plan in scene.pods:
            roles.setdefault(plan.role, []).append(plan.key)
        for role, keys in roles.items():
            shown = ", ".join(keys) if len(keys) <= 4 else f"{', '.join(keys[:3])}, … ({len(keys)} pods)"
            say(f"  {role}: {shown}")
        say(
            f"  PodDisruptionBudget shop/{scene.pdb_name}: minAvailable {scene.web_replicas - 1} of "
            f"{scene.web_replicas} web pods: never more than one down, each eviction waits for a replacement"
        )
        say(f"healthy node {scene.healthy.name}: replacements of evicted ReplicaSet pods go there")
        say(f"each pod takes {POD_STOP_SECONDS:g} s to stop once evicted (the kubelet stand-in)")

    async def stop(self) -> None:
        if self.handler is not None:
            await asyncio.to_thread(self.handler.stop)
            self.handler = None
        self.stop_now()

    def stop_now(self) -> None:
        """Synchronous and idempotent: also the last resort after a second Ctrl-C."""
        if self.handler is not None:
            self.handler.kill()
            self.handler = None
        if self.receiver_started:
            self.receiver_started = False
            with contextlib.suppress(Exception):
                self.receiver.stop()
        self.imds.stop()
        self.control_plane.stop()
        shutil.rmtree(self.work_dir, ignore_errors=True)


async def _main(demo: Demo) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await demo.run()
    finally:
        await asyncio.shield(demo.stop())


def _main_real(args: argparse.Namespace) -> int:
    from demo.real import RealDemo  # noqa: PLC0415 (only this mode needs the real cluster's code)

    demo = RealDemo(args, say)
    try:
        return asyncio.run(demo.run(expected_steps(args.event)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say()
        say("interrupted: everything the demo started is stopped and removed")
        return 130
    except Exception as exc:  # a component that died: say so without a traceback
        say()
        say(f"the demo failed: {type(exc).__name__}: {exc}")
        return 1
    finally:
        demo.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Ctrl-C must stop the demo even when it was started with SIGINT ignored (a background job of a
    # script): asyncio.run only turns SIGINT into a cancellation when the default handler is in place.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.real:
        return _main_real(args)
    demo = Demo(args)
    try:
        return asyncio.run(_main(demo))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say()
        say("interrupted: everything the demo started is stopped and removed")
        return 130
    except Exception as exc:  # a missing binary, a component that died: say so without a traceback
        say()
        say(f"the demo failed: {type(exc).__name__}: {exc}")
        return 1
    finally:
        demo.stop_now()
