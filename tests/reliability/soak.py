"""Soak: the handler process polling for a long time, with an event every minute, while its resident
memory (RSS) and open file descriptors are sampled every 10 s. Not part of ``make test``::

    make soak                        # one hour
    make soak SOAK_ARGS="--minutes 5"

Each minute a few pods are put on the node and a Reboot is published (notice 20 s, Started for 5 s):
the handler cordons, drains, and gives the node back when the event ends. Everything runs on loopback:
the test control plane, the IMDS simulator, a fake kubelet. Prints one line per sample and, at the end,
the growth of RSS and descriptors after the first minute (the warm-up) and how many events went through.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Node

from aksnth.kube.record import NodeRecord
from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.chart import chart_cluster_rules
from testkit.cluster import create_aks_node, create_pods, service_account_kubeconfig
from testkit.controlplane import ControlPlane
from testkit.kubelet import FakeKubelet
from testkit.process import HandlerProcess, handler_argv, handler_flags

SAMPLE_SECONDS = 10.0
PODS_PER_EVENT = 5


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def soak(minutes: float, period: str) -> int:
    with ControlPlane() as plane, ImdsSimulator() as simulator, tempfile.TemporaryDirectory() as work:
        kube = AsyncClient(KubeConfig.from_file(plane.kubeconfig_path), timeout=10)
        namespace = "soak"
        await kube.create(Namespace(metadata=ObjectMeta(name=namespace)))
        node = await create_aks_node(kube)
        kubeconfig = await service_account_kubeconfig(
            kube, plane, namespace=namespace, name="aksnth", cluster_rules=chart_cluster_rules()
        )
        handler = await HandlerProcess(
            handler_argv(
                handler_flags(
                    kubeconfig=kubeconfig,
                    node=node.name,
                    simulator=simulator,
                    period=period,
                    extra=["-taint.node"],
                )
            ),
            log_path=Path(work) / "handler.log",
        ).start_serving()
        samples: list[tuple[float, int, int]] = []
        published: list[str] = []
        started = time.monotonic()
        end = started + minutes * 60
        next_event = started + 5
        print(f"soak: {minutes:g} min, handler pid {handler.pid}, period {period}, an event every minute")
        print(f"{'t (s)':>7} {'RSS (KiB)':>10} {'fds':>5} {'events':>7} {'given back':>11}")
        try:
            async with FakeKubelet(kube, node=node.name):
                await handler.wait_ready()
                next_sample = time.monotonic()
                while time.monotonic() < end:
                    now = time.monotonic()
                    if now >= next_event:
                        await create_pods(kube, namespace, node.name, PODS_PER_EVENT)
                        event_id = simulator.schedule(
                            "Reboot", [node.resource_name], notice_seconds=20, duration_seconds=5
                        )
                        published.append(event_id)
                        next_event += 60
                    if now >= next_sample:
                        if not handler.running:
                            print(f"the handler exited with {handler.returncode}", file=sys.stderr)
                            return 1
                        record = NodeRecord.from_annotations(
                            (await kube.get(Node, node.name)).metadata.annotations
                        )
                        given_back = sum(1 for e in record.events.values() if e.phase is Phase.GIVEN_BACK)
                        sample = (now - started, rss_kib(handler.pid), open_fds(handler.pid))
                        samples.append(sample)
                        print(row(sample, len(published), given_back), flush=True)
                        next_sample += SAMPLE_SECONDS
                    await asyncio.sleep(0.5)
        finally:
            handler.stop()
            await kube.close()
        return report(samples, published, handler.log_text())


def row(sample: tuple[float, int, int], events: int, given_back: int) -> str:
    seconds, rss, fds = sample
    return f"{seconds:7.0f} {rss:10d} {fds:5d} {events:7d} {given_back:11d}"


def report(samples: list[tuple[float, int, int]], published: list[str], log: str) -> int:
    warm = [s for s in samples if s[0] >= 60] or samples
    first, last = warm[0], warm[-1]
    hours = max((last[0] - first[0]) / 3600, 1e-9)
    print()
    print(f"events published: {len(published)}; drains logged: {log.count('drain of node')}")
    print(
        f"RSS after warm-up: {first[1]} KiB -> {last[1]} KiB (max {max(s[1] for s in samples)} KiB), "
        f"growth {last[1] - first[1]:+d} KiB ({(last[1] - first[1]) / hours:+.0f} KiB/h)"
    )
    print(
        f"open descriptors after warm-up: {first[2]} -> {last[2]} (max {max(s[2] for s in samples)}), "
        f"growth {last[2] - first[2]:+d}"
    )
    errors = log.count('"level": "error"')
    print(f"errors logged: {errors}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long to run (default 60)")
    parser.add_argument("--period", default="1s", help="the handler's -period (default 1s, the default)")
    args = parser.parse_args(argv)
    return asyncio.run(soak(args.minutes, args.period))


if __name__ == "__main__":
    raise SystemExit(main())
