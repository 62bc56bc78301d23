"""Footprint while nothing happens: RSS and CPU of the handler's process tree over an idle window at its
default period, and how many IMDS and Kubernetes API requests it makes per minute meanwhile.

The window starts a few seconds after the first IMDS poll, so start-up (imports, first reads of the
node) is not counted as idle; start-up is reported on its own (time to first poll, its API requests).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import re
import statistics
import time
from pathlib import Path
from typing import Any

from bench.lab import Lab
from bench.process import Implementation, Sample, sample
from testkit.audit import between, count_by_kind

log = logging.getLogger(__name__)

_ROOT = Path(__file__).resolve().parents[1]
_MIB = 1024 * 1024
_WARM_UP_SECONDS = 5.0
_SAMPLE_SECONDS = 1.0


async def measure_footprint(
    lab: Lab, implementation: Implementation, *, idle_seconds: float
) -> dict[str, Any]:
    node = await lab.new_node()
    process = lab.start_handler(implementation, node, label="footprint")
    try:
        first_poll = await lab.wait_first_poll(process)
        await asyncio.sleep(_WARM_UP_SECONDS)
        process.check_running()
        window_start = time.time()
        samples: list[Sample] = [sample(process.pid)]
        while samples[-1].at - samples[0].at < idle_seconds:
            await asyncio.sleep(_SAMPLE_SECONDS)
            process.check_running()
            samples.append(sample(process.pid))
        window_end = time.time()
    finally:
        await asyncio.to_thread(process.stop)
    window = samples[-1].at - samples[0].at
    per_minute = 60.0 / (window_end - window_start)
    imds = [t for t in lab.imds_request_times() if window_start <= t <= window_end]
    audited = lab.audit()
    api = between(audited, window_start, window_end)
    start_up = between(audited, process.started_at, window_start)
    rss_mib = [s.rss_kib / 1024 for s in samples]
    cpu_percent = 100.0 * (samples[-1].cpu_seconds - samples[0].cpu_seconds) / window
    log.info(
        "%s footprint: RSS %.1f MiB (max %.1f), CPU %.2f %% of a core, %d IMDS and %d API requests in %.0f s",
        implementation.name,
        rss_mib[-1],
        max(rss_mib),
        cpu_percent,
        len(imds),
        len(api),
        window,
    )
    return {
        "idle_seconds": window,
        "startup_seconds": first_poll - process.started_at,
        "rss_mib": rss_mib[-1],
        "rss_max_mib": max(rss_mib),
        "rss_samples_mib": rss_mib,
        "cpu_percent": cpu_percent,
        "imds_requests_per_minute": len(imds) * per_minute,
        "api_requests_per_minute": len(api) * per_minute,
        "api_requests_idle_by_kind": count_by_kind(api),
        "startup_api_requests": len(start_up),
        "startup_api_requests_by_kind": count_by_kind(start_up),
        "log": str(process.log_path),
    }


async def measure_starts(lab: Lab, implementation: Implementation, *, starts: int) -> dict[str, Any]:
    """Start → first IMDS poll, ``starts`` times: the handler started on a fresh node, stopped as soon
    as its first poll arrived. One start is at the mercy of whatever else the machine does in that
    tenth of a second; the median of several is the figure."""
    samples: list[float] = []
    for index in range(starts):
        node = await lab.new_node()
        process = lab.start_handler(implementation, node, label=f"start-{index}")
        try:
            samples.append(await lab.wait_first_poll(process) - process.started_at)
        finally:
            await process.stop()
    log.info("%s start → first poll over %d starts: %s s", implementation.name, starts, samples)
    return {
        "startup_median_seconds": statistics.median(samples),
        "startup_min_seconds": min(samples),
        "startup_samples_seconds": samples,
    }


def installed_size_mib(lock: Path = _ROOT / "requirements.lock") -> float | None:
    """What the image adds to its Python base, as far as this environment can tell without the image:
    the installed files (byte code included) of every distribution ``requirements.lock`` pins, plus
    the project's own package. None when there is no lock."""
    if not lock.is_file():
        return None
    names = set(re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", lock.read_text(), flags=re.MULTILINE))
    total = 0
    for name in names:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # pinned for another platform or Python (its marker does not apply here)
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
    total += sum(path.stat().st_size for path in (_ROOT / "src" / "aksnth").rglob("*") if path.is_file())
    return total / _MIB
