"""Fleet: a whole Spot pool preempted at once. N Spot nodes and M regular nodes of a control plane
that schedules and reconciles like a cluster's (`testkit.fleet`), one handler process per Spot
node, one IMDS document with a Preempt for all N VMs (30 s notice). What the handlers do together:
how soon every node is cordoned, every eviction issued and every node empty; how many evictions the
budgets and API Priority and Fairness refused; the API server's load; and the outcomes that must be
zero: replacements on nodes under the event, and the findings of the safety checks per pod and per
event (testkit/src/testkit/safety.py): stops without a budget's refusal or before the pod's last chance,
StartRequests before the listed nodes were empty, pods without their SIGTERM or grace period. The
result carries their figures: stops, the earliest stop after its last chance, approvals after the
last listed node emptied.

The API server audits every user's requests here (Metadata level), so the load figures are the whole
server's, and the handlers' share is told apart by their ServiceAccount.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from bench.lab import HANDLER_USER, BenchError, Lab, wait_for
from bench.process import Implementation, trees_rss_kib
from bench.reaction import PREEMPT_NOTICE_SECONDS
from bench.stats import summary
from testkit.audit import AuditedRequest, audit_policy, between, count_by_kind
from testkit.cluster import AksNode
from testkit.fleet import (
    FleetShape,
    create_fleet_nodes,
    create_workloads,
    fleet_control_plane,
    wait_workloads_ready,
)
from testkit.fleetwatch import FleetWatch, fleet_outcome
from testkit.kubelet import FakeKubelet
from testkit.process import HandlerProcess
from testkit.safety import check_safety, event_record, safety_figures, safety_record, stops

log = logging.getLogger(__name__)

WORKLOAD_NAMESPACE = "apps"
#: A workload pod takes this long to stop after SIGTERM (the kubelet stand-in then finishes it).
POD_STOP_SECONDS = 1.0
_SETUP_TIMEOUT_SECONDS = 600.0
_TRAILING_SECONDS = 1.0  # requests the handlers make right after the nodes are empty
_RSS_SAMPLE_SECONDS = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetCase:
    shape: FleetShape

    @property
    def label(self) -> str:
        s = self.shape
        return f"{s.spot_nodes} Spot nodes x {s.pods_per_node} pods, {s.regular_nodes} regular nodes"


def fleet_lab(work_dir: Path) -> Lab:
    """A lab whose control plane schedules and reconciles, and audits every user's requests."""
    return Lab(work_dir=work_dir, control_plane=fleet_control_plane(audit_policy=audit_policy(None)))


async def measure_fleet(
    lab: Lab, implementation: Implementation, case: FleetCase, *, period_seconds: float, seed: int
) -> dict[str, Any]:
    shape = case.shape
    began = time.monotonic()
    # The machine's load (1, 5 and 15 minute averages of runnable processes), for reading the timing
    # figures: every process of the fleet shares this machine's cores.
    load = {"before_setup": os.getloadavg()}
    await lab.client.create(Namespace(metadata=ObjectMeta(name=WORKLOAD_NAMESPACE)))
    spot, _regular = await create_fleet_nodes(lab.client, shape)
    workloads = await create_workloads(lab.client, WORKLOAD_NAMESPACE, shape)
    doomed = {node.name for node in spot}
    handlers: list[HandlerProcess] = []
    async with FakeKubelet(lab.client, node=None, deletion_delay_seconds=POD_STOP_SECONDS):
        await wait_workloads_ready(
            lab.client, WORKLOAD_NAMESPACE, workloads, timeout_seconds=_SETUP_TIMEOUT_SECONDS
        )
        setup_seconds = time.monotonic() - began
        log.info("fleet of %s ready in %.0f s", case.label, setup_seconds)
        try:
            # A DaemonSet's pods start at different moments, so their polls fall at different points of
            # the period: each handler starts once the previous one has polled, a random share of the
            # period later (started all at once, they would come up together and poll in step).
            rng = random.Random(seed)
            for node in spot:
                tag = node.instance_id
                handler = lab.start_handler(implementation, node, label=f"fleet-{tag}", imds_tag=tag)
                handlers.append(handler)
                await lab.wait_tagged_poll(handler, tag)
                await asyncio.sleep(rng.uniform(0, period_seconds))
            phases = _poll_phases(lab, spot, period_seconds)
            async with FleetWatch(lab.client, WORKLOAD_NAMESPACE) as watch:
                event_id = lab.imds.schedule(
                    "Preempt", [node.resource_name for node in spot], notice_seconds=PREEMPT_NOTICE_SECONDS
                )
                event = event_record(lab.imds, event_id)
                load["at_publication"] = os.getloadavg()
                published, deadline = event.published_at, event.deadline

                def settled() -> bool | None:
                    if all(watch.empty_at(n) is not None for n in doomed) or time.time() > deadline + 1:
                        return True
                    for handler in handlers:
                        handler.check_running()
                    return None

                rss_max_mib: dict[str, float] = {}
                sampler = asyncio.create_task(_sample_rss(handlers, rss_max_mib), name="fleet-rss")
                try:
                    await wait_for(
                        settled,
                        what="every Spot node to be empty",
                        timeout_seconds=deadline + 5 - time.time(),
                    )
                finally:
                    sampler.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sampler
                load["at_end"] = os.getloadavg()
                ended = time.time() + _TRAILING_SECONDS
                await wait_for(lambda: True if time.time() >= ended else None, what="the trailing requests")
        finally:
            for handler in handlers:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(handler.stop)
    audited = lab.audit()
    during = between(audited, published, ended)
    ours = [r for r in during if r.user == HANDLER_USER]
    outcome = fleet_outcome(watch, doomed=doomed, published=published, deadline=deadline)
    record = safety_record(
        watch, events=[event], audited=audited, handler_users={HANDLER_USER}, imds_requests=lab.imds.requests
    )
    findings = check_safety(record)
    safety = safety_figures(record, findings)
    approvals = [v for v in safety.approval_after_empty_seconds.values() if v is not None]
    if not outcome.all_cordoned:
        missing = [n for n, v in outcome.cordon_seconds.items() if v is None]
        raise BenchError(f"{len(missing)} Spot node(s) never cordoned, e.g. {missing[0]}")
    node_of = {p.key: p.node for p in watch.pods.values() if p.node in doomed and p.must_go}
    # The API server's answer times while the fleet worked: every request but watches.
    latencies = [v for r in during if (v := r.latency_seconds) is not None]
    handler_latencies = [v for r in ours if (v := r.latency_seconds) is not None]
    evictions = [r for r in ours if r.is_eviction]
    issued = _last_removal_per_node(ours, node_of, published)
    empty = [v for v in outcome.empty_seconds.values() if v is not None]
    log.info(
        "%s fleet %s: cordoned p99 %.3f s, every node empty by %.3f s, %d eviction requests",
        implementation.name,
        case.label,
        summary(list(v for v in outcome.cordon_seconds.values() if v is not None))["p99"],
        max(empty) if len(empty) == len(doomed) else float("nan"),
        len(evictions),
    )
    return {
        "spot_nodes": shape.spot_nodes,
        "regular_nodes": shape.regular_nodes,
        "pods_per_node": shape.pods_per_node,
        "workload_pods_on_spot": len(node_of),
        "setup_seconds": setup_seconds,
        "load_average": load,
        "cpus": os.cpu_count(),
        "poll_phases": phases,
        "cordon_seconds": summary([v for v in outcome.cordon_seconds.values() if v is not None]),
        "issued_seconds": summary(list(issued.values())),
        "empty_seconds": summary(empty),
        "nodes_not_empty": len(doomed) - len(empty),
        "deadline_seconds": outcome.deadline_seconds,
        "eviction_requests": len(evictions),
        "refused_by_budget": sum(1 for r in evictions if r.refused_by_budget),
        "refused_for_load": sum(1 for r in evictions if r.code == 429 and not r.refused_by_budget),
        "eviction_errors": sum(
            1 for r in evictions if r.code is not None and r.code >= 300 and r.code != 429
        ),
        "last_resort_stops": safety.stops,
        "earliest_stop_after_last_chance_seconds": safety.earliest_stop_after_last_chance_seconds,
        # The earliest StartRequests of an event after its last listed node was emptied (negative:
        # before it); None when no handler approved (the default) or a listed node never emptied.
        "approval_after_empty_seconds": min(approvals, default=None)
        if len(approvals) == len(safety.approval_after_empty_seconds)
        else None,
        "handler_api_requests": len(ours),
        # One event here, so per node per event is per node.
        "handler_api_requests_per_node": len(ours) / shape.spot_nodes,
        "apf_rejections": sum(1 for r in during if r.code == 429 and not r.refused_by_budget),
        "handler_apf_rejections": sum(1 for r in ours if r.code == 429 and not r.refused_by_budget),
        "api_latency_seconds": summary(latencies) if latencies else None,
        "handler_api_latency_seconds": summary(handler_latencies) if handler_latencies else None,
        "peak_api_latency_seconds": max(latencies, default=None),
        "handler_rss_mib": summary(list(rss_max_mib.values())) if rss_max_mib else None,
        "handler_rss_max_mib": max(rss_max_mib.values(), default=None),
        "handler_api_requests_by_kind": count_by_kind(ours),
        "api_requests": len(during),
        "peak_requests_per_second": _peak_rate(during),
        "handler_peak_requests_per_second": _peak_rate(ours),
        "replacements_on_doomed": len(outcome.replacements_on_doomed),
        "without_sigterm": safety.pods_without_sigterm,
        "grace_past_end": safety.pods_with_grace_past_end,
        "on_node_at_deadline": len(outcome.on_node_at_deadline),
        "safety_findings": len(findings),
        "safety_findings_by_kind": dict(safety.findings),
        "budgets_below_minimum": len(outcome.budgets_below_minimum),
        "samples": {
            "cordon_seconds": outcome.cordon_seconds,
            "empty_seconds": outcome.empty_seconds,
            "issued_seconds": issued,
            "replacements_on_doomed": list(outcome.replacements_on_doomed),
            "approval_after_empty_seconds": dict(safety.approval_after_empty_seconds),
            # Each stop: when it came after the pod's last chance (negative: before), and the grace
            # period it gave.
            "stops": {
                stop.pod: {
                    "after_last_chance_seconds": -stop.before_last_chance_seconds,
                    "grace_seconds": stop.grace_seconds,
                    "node": stop.node,
                }
                for stop in stops(record)
            },
            "safety_findings": [str(f) for f in findings[:50]],
        },
        "logs": [str(h.log_path) for h in handlers],
    }


async def _sample_rss(handlers: Sequence[HandlerProcess], largest: dict[str, float]) -> None:
    """Each handler's RSS (its process tree) once a second until cancelled: the largest per handler
    (by its log's path) into ``largest``."""
    while True:
        by_pid = {handler.pid: str(handler.log_path) for handler in handlers}
        for pid, rss_kib in trees_rss_kib(by_pid).items():
            if rss_kib:  # 0: the process is gone (the wait reports a handler that ended)
                key = by_pid[pid]
                largest[key] = max(largest.get(key, 0.0), rss_kib / 1024)
        await asyncio.sleep(_RSS_SAMPLE_SECONDS)


def _poll_phases(lab: Lab, spot: Sequence[AksNode], period_seconds: float) -> list[float]:
    """Where in the period each handler's latest poll fell, sorted: how spread the fleet's polls are."""
    latest: dict[str, float] = {}
    for request in lab.imds.requests:
        tag = request.query.get("handler")
        if tag is not None:
            latest[tag] = request.time
    return sorted(round(latest[n.instance_id] % period_seconds, 3) for n in spot if n.instance_id in latest)


def _is_accepted_pod_delete(request: AuditedRequest) -> bool:
    accepted = request.code is not None and request.code < 300
    return request.verb == "delete" and request.resource == "pods" and not request.subresource and accepted


def _last_removal_per_node(
    requests: Sequence[AuditedRequest], node_of: dict[str, str], published: float
) -> dict[str, float]:
    """Per Spot node, seconds from the publication to the last accepted eviction (or last-resort
    deletion) of one of its pods: when every pod of the node had been told to go."""
    last: dict[str, float] = {}
    for request in requests:
        node = node_of.get(f"{request.namespace}/{request.name}")
        accepted = request.code is not None and request.code < 300
        if node is None or not accepted or not (request.is_eviction or _is_accepted_pod_delete(request)):
            continue
        last[node] = max(last.get(node, 0.0), request.received_at - published)
    return last


def _peak_rate(requests: Sequence[AuditedRequest], window_seconds: float = 1.0) -> float:
    """The most requests that arrived within any `window_seconds`, per second."""
    times = sorted(r.received_at for r in requests)
    peak, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] > window_seconds:
            start += 1
        peak = max(peak, end - start + 1)
    return peak / window_seconds
