"""Drain: a node with N pods takes a Preempt; how fast are the evictions issued, how soon is the node
empty, and how many API requests did it take.

Each case gets a fresh node and namespace, N pods made Running by the kubelet stand-in, and a fresh
handler process. The stand-in finishes each deletion at once (pods that exit at once), or after the
pod's grace period for the grace variant. Eviction times and request counts come from the API
server's audit log (the handler's user only), so they are exact and include retries (429s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from bench.lab import BenchError, Lab, NodeWatch, PodWatch, wait_for
from bench.process import Implementation
from bench.reaction import PREEMPT_NOTICE_SECONDS
from testkit.audit import between, count_by_kind
from testkit.cluster import create_pods
from testkit.kubelet import FakeKubelet

log = logging.getLogger(__name__)

_SETUP_TIMEOUT_SECONDS = 120.0
_DRAIN_TIMEOUT_SECONDS = 60.0
_TRAILING_SECONDS = 1.0  # requests the handler makes right after the node is empty (records, events)


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainCase:
    pods: int
    grace_seconds: int = 0  # 0: pods exit at once; else each pod takes this long to stop

    @property
    def label(self) -> str:
        return f"{self.pods} pods" + (f", {self.grace_seconds} s grace" if self.grace_seconds else "")

    @property
    def key(self) -> str:
        return f"{self.pods}" + (f"-grace{self.grace_seconds}" if self.grace_seconds else "")


async def measure_drain(lab: Lab, implementation: Implementation, case: DrainCase) -> dict[str, Any]:
    node = await lab.new_node()
    namespace = await lab.new_namespace()
    kubelet = FakeKubelet(lab.client, node=node.name, grace_period_scale=1.0 if case.grace_seconds else None)
    async with kubelet:
        await create_pods(
            lab.client,
            namespace,
            node,
            case.pods,
            grace_seconds=case.grace_seconds or 30,
        )
        await wait_for(
            lambda: True if len(kubelet.started) >= case.pods else None,
            what=f"{case.pods} pods Running",
            timeout_seconds=_SETUP_TIMEOUT_SECONDS,
        )
        async with NodeWatch(lab.client, node.name) as node_watch, PodWatch(lab.client, node.name) as pods:
            await wait_for(lambda: True if pods.synced else None, what="the pod watch")
            process = lab.start_handler(implementation, node, label=f"drain-{case.key}")
            event_id = ""
            try:
                started = await lab.wait_first_poll(process)
                await asyncio.sleep(1.0)  # past start-up: its requests are not the drain's
                # Published right after a poll: the handler sees it a whole period later, the worst
                # phase, so the Preempt budget below is the worst case of the poll timing.
                await lab.wait_poll(process, after=time.time())
                event_id = lab.imds.schedule(
                    "Preempt", [node.resource_name], notice_seconds=PREEMPT_NOTICE_SECONDS
                )
                published = lab.imds.publication_time(event_id)
                cordoned = await node_watch.wait_state(True, after=published, timeout_seconds=15.0)
                emptied = await wait_for(
                    lambda: pods.emptied_at,
                    what=f"node {node.name} to be empty ({len(pods.alive)} pods left)",
                    process=process,
                    timeout_seconds=_DRAIN_TIMEOUT_SECONDS,
                )
                await asyncio.sleep(_TRAILING_SECONDS)
            finally:
                await asyncio.to_thread(process.stop)
                if event_id:
                    lab.imds.cancel(event_id)
    ended = time.time()
    audited = lab.audit()
    during = between(audited, published, ended)
    evictions = [r for r in during if r.is_eviction]
    if not evictions:
        raise BenchError(f"no eviction requests from the handler's user in the audit log ({case.label})")
    first, last = evictions[0].received_at, evictions[-1].received_at
    start_up = between(audited, process.started_at, started)
    log.info(
        "%s drain %s: %d evictions issued in %.3f s, node empty %.3f s after cordon",
        implementation.name,
        case.label,
        len(evictions),
        last - first,
        emptied - cordoned,
    )
    return {
        "pods": case.pods,
        "grace_seconds": case.grace_seconds,
        "cordon_seconds": cordoned - published,
        "first_eviction_seconds": first - published,
        "last_eviction_seconds": last - published,
        "issue_seconds": last - first,
        "cordon_to_last_eviction_seconds": last - cordoned,
        "cordon_to_empty_seconds": emptied - cordoned,
        "published_to_empty_seconds": emptied - published,
        "eviction_requests": len(evictions),
        "evictions_refused": sum(1 for r in evictions if r.code is not None and r.code >= 300),
        "api_requests": len(during),
        "api_requests_by_kind": count_by_kind(during),
        "startup_api_requests": len(start_up),
        "preempt_budget_share_left": (PREEMPT_NOTICE_SECONDS - (last - published)) / PREEMPT_NOTICE_SECONDS,
        "log": str(process.log_path),
    }
