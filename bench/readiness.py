"""What the periodic drain-readiness check costs the API server: a handler with `-readiness.interval`
on a node of Running pods, no event, over a window of several intervals; every request of the
handler's user in the window is read back from the API server's audit log.

The promise is one list of the node's pods and one list of the PodDisruptionBudgets per interval, and
nothing else: the figures are the lists per check (a check is one PodDisruptionBudget list), every
other request in the window, and the shortest time between two checks.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

from bench.lab import BenchError, Lab
from bench.process import Implementation
from testkit.audit import between, count_by_kind
from testkit.cluster import create_pods
from testkit.kubelet import FakeKubelet

log = logging.getLogger(__name__)

PODS = 30
POD_LISTS = "list pods"
BUDGET_LISTS = "list poddisruptionbudgets"


async def measure_readiness(
    lab: Lab, implementation: Implementation, *, interval_seconds: float, window_seconds: float
) -> dict[str, Any]:
    node = await lab.new_node()
    namespace = await lab.new_namespace()
    await create_pods(lab.client, namespace, node.name, PODS, name_prefix="ready")
    checked = Implementation(
        name=implementation.name,
        template=f"{implementation.template} -readiness.interval={interval_seconds:g}s",
    )
    async with FakeKubelet(lab.client, node=node.name):
        process = lab.start_handler(checked, node, label="readiness")
        try:
            await lab.wait_first_poll(process)
            window_start = time.time()
            # A fixed window is the measurement itself: the checks come on the handler's own schedule.
            await asyncio.sleep(window_seconds)
            process.check_running()
            window_end = time.time()
        finally:
            await asyncio.to_thread(process.stop)
    requests = between(lab.audit(), window_start, window_end)
    kinds = count_by_kind(requests)
    pod_lists = [r.received_at for r in requests if r.kind == POD_LISTS]
    budget_lists = [r.received_at for r in requests if r.kind == BUDGET_LISTS]
    if len(budget_lists) < 2:
        raise BenchError(
            f"{len(budget_lists)} drain-readiness check(s) in {window_seconds:.0f} s at an interval of "
            f"{interval_seconds:g} s: does the handler have -readiness.interval?"
        )
    gaps = [later - earlier for earlier, later in itertools.pairwise(budget_lists)]
    others = {kind: count for kind, count in kinds.items() if kind not in (POD_LISTS, BUDGET_LISTS)}
    log.info(
        "%s readiness: %d checks in %.0f s, %s, shortest gap %.2f s",
        implementation.name,
        len(budget_lists),
        window_end - window_start,
        kinds,
        min(gaps),
    )
    return {
        "interval_seconds": interval_seconds,
        "window_seconds": window_end - window_start,
        "checks": len(budget_lists),
        "pod_lists_per_interval": most_within(pod_lists, interval_seconds),
        "budget_lists_per_interval": most_within(budget_lists, interval_seconds),
        "other_requests": sum(others.values()),
        "other_requests_by_kind": others,
        "shortest_gap_seconds": min(gaps),
        "log": str(process.log_path),
    }


def most_within(times: list[float], span: float) -> int:
    """The largest number of ``times`` that fall within any half-open span of ``span`` seconds."""
    ordered = sorted(times)
    most = 0
    for index, start in enumerate(ordered):
        most = max(most, sum(1 for t in ordered[index:] if t < start + span))
    return most
