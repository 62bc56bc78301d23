"""Footprint as users see it: the handler's container on a real node, installed by helm from the image
built from docker/Dockerfile, measured from its cgroup the way the kubelet's cAdvisor (and so
`kubectl top pod`) measures it: the memory working set (usage minus inactive file pages) and the CPU
time of the cgroup over an idle window. Also the image's size, and how long a node takes from the
image's arrival (containerd unpacking it) to the handler's first IMDS poll and to its Ready.

Needs what the real-node tests need (root, `make test-images`); elsewhere it says what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig

from bench.imagesize import compressed_size_mib, uncompressed_size_mib
from testkit.realcluster import HANDLER_IMAGE, RealCluster, image_dir, missing_prerequisites
from testkit.scenario import Release, handler_processes, wait_handlers_ready

log = logging.getLogger(__name__)

_WARM_UP_SECONDS = 5.0
_SAMPLE_SECONDS = 1.0
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_MIB = 1024 * 1024


class NodeFootprintUnavailable(RuntimeError):
    """This machine cannot run a real node; the message says what is missing."""


def cgroup_path(pid: int, controller: str) -> Path:
    """The cgroup (v1) folder of `pid` for `controller` (e.g. memory, cpuacct)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return _CGROUP_ROOT / controllers / path.lstrip("/")
    raise NodeFootprintUnavailable(f"process {pid} has no {controller} cgroup (cgroup v1 expected)")


def working_set_bytes(memory_cgroup: Path) -> int:
    """cAdvisor's working set: usage minus the inactive file cache, never below zero."""
    usage = int((memory_cgroup / "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in (memory_cgroup / "memory.stat").read_text().splitlines())
    return max(0, usage - int(stat.get("total_inactive_file", 0)))


def cpu_seconds(cpuacct_cgroup: Path) -> float:
    return int((cpuacct_cgroup / "cpuacct.usage").read_text()) / 1e9


async def measure_node_footprint(*, idle_seconds: float) -> dict[str, Any]:
    missing = missing_prerequisites()
    if missing:
        raise NodeFootprintUnavailable("a real node needs " + "; ".join(missing))
    cluster = RealCluster(node_count=1)
    await asyncio.to_thread(cluster.start)
    try:
        # From the image's arrival on the node to a protected, Ready node: the node's containerd
        # forgets the handler image the cluster's start imported, then takes it again (what a pull
        # does after the download: unpack the layers), and the chart is installed at once.
        node = cluster.nodes[0]
        archive = image_dir() / "aksnth.tar"
        await asyncio.to_thread(
            node.sandbox.run, ["ctr", "-n", "k8s.io", "images", "rm", "--sync", HANDLER_IMAGE], timeout=60
        )
        began = time.time()
        await asyncio.to_thread(node.import_image, archive, platform="linux/amd64")
        imported = time.time()
        kube = AsyncClient(KubeConfig.from_file(cluster.kubeconfig_path), timeout=httpx2.Timeout(15.0))
        try:
            await asyncio.to_thread(Release(cluster).install)
            await wait_handlers_ready(kube, [node.name], image=HANDLER_IMAGE)
            ready = time.time()
        finally:
            await kube.close()
        polls = [
            r.time
            for r in (cluster.simulator.requests if cluster.simulator else [])
            if r.time >= imported and r.path.startswith("/metadata/scheduledevents")
        ]
        arrival = {
            "node_image_import_seconds": imported - began,
            "node_import_to_first_poll_seconds": (min(polls) - began) if polls else None,
            "node_import_to_ready_seconds": ready - began,
            "image_compressed_mib": compressed_size_mib(archive),
            "image_layers_mib": uncompressed_size_mib(archive),
        }
        log.info("real node: image arrival to first poll and to Ready: %s", arrival)
        await asyncio.sleep(_WARM_UP_SECONDS)
        [process] = handler_processes(cluster, 0)
        memory, cpuacct = cgroup_path(process.pid, "memory"), cgroup_path(process.pid, "cpuacct")
        began, cpu_before = time.monotonic(), cpu_seconds(cpuacct)
        working_sets = [working_set_bytes(memory) / _MIB]
        while time.monotonic() - began < idle_seconds:
            await asyncio.sleep(_SAMPLE_SECONDS)
            cluster.check_running()
            working_sets.append(working_set_bytes(memory) / _MIB)
        window = time.monotonic() - began
        cpu_percent = 100.0 * (cpu_seconds(cpuacct) - cpu_before) / window
    finally:
        await asyncio.to_thread(cluster.stop)
    log.info(
        "real node: working set %.1f MiB (max %.1f), CPU %.2f %% of a core over %.0f s",
        working_sets[-1],
        max(working_sets),
        cpu_percent,
        window,
    )
    return {
        "node_working_set_mib": working_sets[-1],
        "node_working_set_max_mib": max(working_sets),
        "node_cpu_percent": cpu_percent,
        "node_idle_seconds": window,
        **arrival,
    }
