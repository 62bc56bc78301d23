"""The container images side by side: the linux/amd64 image run natively and the linux/arm64 image run
under emulation (qemu-user-static), the same way, for comparison.

    python -m bench.emulated [--idle-seconds 20] [--runs 3] [--json FILE]

Both images are `hack/build-test-image`'s, built from docker/Dockerfile. Each runs in podman as the
chart runs it (user 65532, read-only root filesystem, in-cluster configuration), against the bench's
control plane and IMDS simulator (`bench.lab.Lab`), at the default period, on a node with no event:

- *image size*: uncompressed, as podman stores it; and compressed, each layer of the image's docker
  archive gzipped (level 6), as a registry stores it;
- *container start → first IMDS poll*: from `podman run` to the simulator's record of the first poll
  (podman's and runc's own start included); *process start → first IMDS poll*: from the start of the
  container's main process (/proc/PID/stat) to the same poll;
- *RSS*: VmRSS of the container's processes (for the emulated image: qemu-aarch64 with the arm64
  Python it runs, translated code included), last sample and largest over the idle window after 5 s
  of warm-up; *working set*: the container's memory cgroup, as the kubelet's cAdvisor counts it.

Each image runs `--runs` times, alternately; the table gives the median of each figure.

Emulated figures are for comparison only: they are no measure of a real arm64 VM. Needs root, the
images (`make test-images`) and binfmt_misc (registered for the run when missing, and undone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.imagesize import compressed_size_mib
from bench.lab import HANDLER_NAMESPACE, BenchError, Lab, wait_for
from bench.node import cgroup_path, working_set_bytes
from bench.process import tree_rss_kib
from testkit.container import (
    HandlerContainer,
    image_facts,
    running_container,
    service_account_volume,
)
from testkit.emulation import EmulationUnavailable, arm64_emulation
from testkit.realcluster import (
    ARM64_HANDLER_IMAGE,
    HANDLER_IMAGE,
    arm64_image_missing,
    image_dir,
)

log = logging.getLogger("bench.emulated")

_MIB = 1024 * 1024
_WARM_UP_SECONDS = 5.0
_SAMPLE_SECONDS = 1.0
_START_TIMEOUT_SECONDS = 120.0
# (column, image, platform, archive in the image folder)
IMAGES = (
    ("amd64, native", HANDLER_IMAGE, "linux/amd64", "aksnth.tar"),
    ("arm64, emulated", ARM64_HANDLER_IMAGE, "linux/arm64", "aksnth-arm64.tar"),
)


def process_start_wall(pid: int) -> float:
    """When `pid` started, as wall-clock time (10 ms resolution): its start in clock ticks since boot
    (/proc/PID/stat), placed against the time since boot now (/proc/uptime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    started_after_boot = int(stat[stat.rindex(")") + 2 :].split()[19]) / os.sysconf("SC_CLK_TCK")  # field 22
    now, uptime = time.time(), float(Path("/proc/uptime").read_text().split()[0])
    return now - (uptime - started_after_boot)


async def measure_image(
    lab: Lab, *, image: str, platform: str, idle_seconds: float, folder: Path
) -> dict[str, Any]:
    images = image_dir()
    node = await lab.new_node()
    volume = service_account_volume(
        folder / f"serviceaccount-{node.name}", kubeconfig=lab.handler_kubeconfig, namespace=HANDLER_NAMESPACE
    )
    with running_container(
        image_dir=images,
        image=image,
        platform=platform,
        args=[f"-endpoint={lab.imds.scheduled_events_url}", "-web.address=127.0.0.1:0"],
        env={
            "MY_NODE_NAME": node.name,
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(lab.control_plane.port),
        },
        folder=folder,
        service_account=volume,
    ) as container:
        first_poll = await _first_poll(lab, container)
        pid = await container.wait_main_pid(_START_TIMEOUT_SECONDS)
        started = process_start_wall(pid)
        await asyncio.sleep(_WARM_UP_SECONDS)
        memory = cgroup_path(pid, "memory")
        rss, working_sets = [tree_rss_kib(pid) / 1024], [working_set_bytes(memory) / _MIB]
        began = time.monotonic()
        while time.monotonic() - began < idle_seconds:
            await asyncio.sleep(_SAMPLE_SECONDS)
            container.check_running()
            rss.append(tree_rss_kib(pid) / 1024)
            working_sets.append(working_set_bytes(memory) / _MIB)
        exe = os.readlink(f"/proc/{pid}/exe")
    return {
        "container_start_to_first_poll_seconds": first_poll - container.started_at,
        "process_start_to_first_poll_seconds": first_poll - started,
        "rss_mib": rss[-1],
        "rss_max_mib": max(rss),
        "working_set_mib": working_sets[-1],
        "working_set_max_mib": max(working_sets),
        "executable": exe,
        "rss_samples_mib": rss,
    }


async def _first_poll(lab: Lab, container: HandlerContainer) -> float:
    def polled() -> float | None:
        container.check_running()
        for request in lab.imds.requests:
            if request.time >= container.started_at and "scheduledevents" in request.path:
                return request.time
        return None

    return await wait_for(
        polled, what=f"the first IMDS poll of {container.name}", timeout_seconds=_START_TIMEOUT_SECONDS
    )


async def run(idle_seconds: float, runs: int) -> dict[str, dict[str, Any]]:
    """Per image: the median of each figure over `runs` containers (started alternately, so that
    what else the machine does falls on both images alike), and the samples of every run."""
    images = image_dir()
    measured: dict[str, list[dict[str, Any]]] = {column: [] for column, *_ in IMAGES}
    with tempfile.TemporaryDirectory(prefix="aksnth-bench-emulated-") as work, arm64_emulation():
        async with Lab(work_dir=Path(work)) as lab:
            for index in range(runs):
                for column, image, platform, _ in IMAGES:
                    log.info("run %d/%d: %s (%s)", index + 1, runs, column, image)
                    measured[column].append(
                        await measure_image(
                            lab,
                            image=image,
                            platform=platform,
                            idle_seconds=idle_seconds,
                            folder=Path(work) / f"{column[:5]}-{index}",
                        )
                    )
    results: dict[str, dict[str, Any]] = {}
    for column, image, _, archive in IMAGES:
        facts = image_facts(images, image)
        figures: dict[str, Any] = {
            key: statistics.median(run[key] for run in measured[column])
            for key in measured[column][0]
            if isinstance(measured[column][0][key], float)
        }
        figures["executable"] = measured[column][0]["executable"]
        figures["runs"] = measured[column]
        figures["architecture"] = facts["Architecture"]
        figures["image_mib"] = int(facts["Size"]) / _MIB
        figures["image_compressed_mib"] = await asyncio.to_thread(compressed_size_mib, images / archive)
        results[column] = figures
    return results


ROWS = (
    ("image size, uncompressed (podman)", "image_mib", "MiB"),
    ("image size, layers gzipped", "image_compressed_mib", "MiB"),
    ("container start → first IMDS poll", "container_start_to_first_poll_seconds", "s"),
    ("process start → first IMDS poll", "process_start_to_first_poll_seconds", "s"),
    ("RSS, steady (VmRSS of the container's processes)", "rss_mib", "MiB"),
    ("RSS, max", "rss_max_mib", "MiB"),
    ("working set, steady (memory cgroup)", "working_set_mib", "MiB"),
)


def render(results: dict[str, dict[str, Any]]) -> str:
    columns = list(results)
    lines = [f"| figure | {' | '.join(columns)} |", "|---|" + "---|" * len(columns)]
    for label, key, unit in ROWS:
        cells = [f"{results[c][key]:.{3 if unit == 's' else 1}f} {unit}" for c in columns]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines.append(
        f"| the container's main program | {' | '.join(results[c]['executable'] for c in columns)} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulated", description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="RSS window (default 20)")
    parser.add_argument("--runs", type=int, default=3, help="containers per image; medians (default 3)")
    parser.add_argument("--json", type=Path, help="write every figure and the samples here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    missing = ["root"] if os.geteuid() != 0 else []
    if problem := arm64_image_missing():
        missing.append(problem)
    if missing:
        print(f"bench.emulated needs {'; '.join(missing)}", file=sys.stderr)
        return 1
    try:
        results = asyncio.run(run(args.idle_seconds, max(1, args.runs)))
    except (EmulationUnavailable, BenchError) as exc:
        print(f"bench.emulated: {exc}", file=sys.stderr)
        return 1
    print(render(results))
    print(
        "\nThe arm64 column runs under emulation (qemu-user-static): figures for comparison only, "
        "not those of a real arm64 VM."
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
