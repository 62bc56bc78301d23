"""IMDS faults through the simulator: error statuses, timeouts, reset connections, slow, endless and
garbage bodies. For each, an event is published while the fault lasts; the handler backs off as
documented (exponentially, 410 quickly, Retry-After honoured), never exceeds the IMDS limit of
5 requests/s (measured from the simulator's own record of the requests), recovers, and still protects
the node before the event's NotBefore. The cases run side by side, one handler and simulator each."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node

from imds_simulator import ImdsSimulator
from testkit.cluster import create_aks_node, eventually
from testkit.handler import running_handler
from tests.reliability.tally import count, note

pytestmark = pytest.mark.controlplane

PERIOD_SECONDS = 0.5
REQUEST_TIMEOUT_SECONDS = 1.0
FAULTY_REQUESTS = 4  # consecutive failures: waits of about 0.5, 1, 2 and 4 s
PREEMPT_NOTICE_SECONDS = 30.0
IMDS_LIMIT_PER_SECOND = 5
JITTER = 0.2  # PollBackoff's default: a wait is cut by at most this fraction, never below the period


@dataclass(frozen=True)
class Case:
    name: str
    fault: dict[str, Any]
    quick_retries: bool = False  # 410 Gone: retried at the period for up to 70 s, no exponential growth
    min_wait_seconds: float = 0.0  # a Retry-After that must be honoured
    # A reset on the kept connection is sent again at once on a new one (IMDS may have closed the
    # connection while it was idle): the first two faulty requests are one attempt.
    retried_at_once: bool = False


CASES = [
    Case("HTTP 400", {"status": 400}),
    Case("HTTP 404", {"status": 404}),
    Case("HTTP 410", {"status": 410}, quick_retries=True),
    Case("HTTP 429 with Retry-After 2s", {"status": 429, "retry_after_seconds": 2}, min_wait_seconds=2.0),
    Case("HTTP 500", {"status": 500}),
    Case("HTTP 503", {"status": 503}),
    Case("timeout (answer after 2 s)", {"delay_seconds": 2 * REQUEST_TIMEOUT_SECONDS}),
    Case("connection reset", {"body": "reset"}, retried_at_once=True),
    Case("slow body (1 byte per 100 ms)", {"body": "slow"}),
    Case("endless body", {"body": "endless"}),
    Case("garbage body", {"body": "garbage"}),
]


def most_requests_in_one_second(times: list[float]) -> int:
    ordered = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def run_case(case: Case, kube: AsyncClient, kubeconfig: Path) -> dict[str, float]:
    node = await create_aks_node(kube)
    with ImdsSimulator() as simulator:
        async with running_handler(
            kubeconfig=kubeconfig,
            node=node.name,
            simulator=simulator,
            # The poll's backoff is measured: advisory reads (every fifth period, at another api-version)
            # would take some of the injected faults and add their requests to the record.
            extra=[
                f"-period={PERIOD_SECONDS}s",
                f"-request.timeout={REQUEST_TIMEOUT_SECONDS}s",
                "-advisory.apiVersion=off",
            ],
        ):
            await eventually(lambda: _polled(simulator, 2), what=f"{case.name}: first polls")
            first_faulty = len(simulator.requests)
            simulator.inject_fault(**case.fault, count=FAULTY_REQUESTS, method="GET")
            event_id = simulator.schedule(
                "Preempt", [node.resource_name], notice_seconds=PREEMPT_NOTICE_SECONDS
            )
            not_before = simulator.publication_time(event_id) + PREEMPT_NOTICE_SECONDS

            async def cordoned() -> bool:
                return bool((await kube.get(Node, node.name)).spec.unschedulable)

            await eventually(
                cordoned, what=f"{case.name}: the node cordoned", timeout_seconds=PREEMPT_NOTICE_SECONDS
            )
            protected_at = time.time()
            await eventually(
                lambda: _polled(simulator, first_faulty + FAULTY_REQUESTS + 3), what="recovered polls"
            )
        requests = simulator.requests

    times = [r.time for r in requests if r.method == "GET" and "scheduledevents" in r.path]
    faulty = times[first_faulty : first_faulty + FAULTY_REQUESTS + 1]  # the faulty ones and the next
    waits = [later - earlier for earlier, later in itertools.pairwise(faulty)]
    if case.retried_at_once:
        assert waits[0] < PERIOD_SECONDS, f"{case.name}: not retried at once: {waits}"
        waits = waits[1:]
    # Backoff as documented (lower bounds only: the process may always be slower, never faster).
    for attempt, wait in enumerate(waits, start=1):
        if case.quick_retries:
            floor = PERIOD_SECONDS
        else:
            floor = max(PERIOD_SECONDS, PERIOD_SECONDS * 2 ** (attempt - 1) * (1 - JITTER))
        floor = max(floor, case.min_wait_seconds)
        assert wait >= floor - 0.02, f"{case.name}: wait {attempt} was {wait:.2f}s, less than {floor:.2f}s"
    if case.quick_retries:
        # No exponential growth for 410: the fourth wait is far below the 0.5·2³·0.8 = 3.2 s it would be.
        assert waits[-1] < PERIOD_SECONDS * 2**3 * (1 - JITTER), f"{case.name}: 410 was backed off: {waits}"
    assert most_requests_in_one_second(times) < IMDS_LIMIT_PER_SECOND, f"{case.name}: too many requests"
    assert protected_at < not_before, f"{case.name}: the node was protected after NotBefore"
    assert [r.status for r in requests[first_faulty : first_faulty + FAULTY_REQUESTS]] == [
        case.fault.get("status", 0 if case.fault.get("body") == "reset" else 200)
    ] * FAULTY_REQUESTS
    return {
        "left": not_before - protected_at,
        "rate": most_requests_in_one_second(times),
        "waits": sum(waits),
    }


async def _polled(simulator: ImdsSimulator, count: int) -> bool:
    return len(simulator.requests) >= count


@pytest.mark.timeout(120)
async def test_every_imds_fault_is_backed_off_survived_and_the_event_still_handled_in_time(
    kube: AsyncClient, handler_kubeconfig: Path
) -> None:
    results = await asyncio.gather(*(run_case(case, kube, handler_kubeconfig) for case in CASES))
    for case, result in zip(CASES, results, strict=True):
        note(
            f"IMDS {case.name} x{FAULTY_REQUESTS}: at most {result['rate']:.0f} requests/s, "
            f"node protected {result['left']:.0f}s before NotBefore"
        )
    count("IMDS fault kinds survived by a running handler", len(CASES))
    count("  faulty answers served", len(CASES) * FAULTY_REQUESTS)
