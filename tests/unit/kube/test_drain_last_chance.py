"""The drain's two moments against a fake API server whose budget refuses a pod's eviction: the report
(-nodeGracePeriodSeconds) comes first and changes nothing, the evictions go on, and the last-resort
stop waits for the pod's last chance before the VM's end (the deadline), never for the report."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from aksnth.errors import EvictionBlocked
from aksnth.kube.api import JsonObject, ObjectList
from aksnth.kube.drain import drain_node
from aksnth.kube.drainplan import DrainOutcome, DrainResult, last_resort_at
from aksnth.model import EventType

POD_GRACE_SECONDS = 2
REPORT_SECONDS = 0.5
DEADLINE_SECONDS = 7.0


class BudgetApi:
    """One pod under a PodDisruptionBudget that refuses its eviction until ``allow_at`` (loop time;
    None: never). Records every eviction request and every deletion (with its time and grace)."""

    def __init__(self, *, allow_at: float | None) -> None:
        self.pods = {"db-0": _pod("db-0")}
        self.allow_at = allow_at
        self.evictions: list[tuple[float, str]] = []  # (loop time, "refused" or "accepted")
        self.deletions: list[tuple[float, int | None]] = []  # (loop time, gracePeriodSeconds)
        self.marks: list[tuple[float, str]] = []  # (loop time, the DisruptionTarget reason) on pods/status

    async def create(self, path: str, eviction: JsonObject) -> None:
        now = asyncio.get_running_loop().time()
        await asyncio.sleep(0)
        if self.allow_at is None or now < self.allow_at:
            self.evictions.append((now, "refused"))
            raise EvictionBlocked(
                "Cannot evict pod as it would violate the pod's disruption budget.", budget="db"
            )
        self.evictions.append((now, "accepted"))
        self.pods.pop(eviction["metadata"]["name"], None)

    async def delete(self, path: str, *, params: dict[str, Any]) -> None:
        self.deletions.append((asyncio.get_running_loop().time(), params.get("gracePeriodSeconds")))
        self.pods.pop(path.rsplit("/", 1)[-1], None)

    async def patch(self, path: str, body: JsonObject, **_: Any) -> None:
        assert path.endswith("/status"), path
        [condition] = body["status"]["conditions"]
        self.marks.append((asyncio.get_running_loop().time(), condition["reason"]))

    async def list(self, path: str, **_: Any) -> ObjectList:
        return ObjectList(list(self.pods.values()))


def _pod(name: str) -> JsonObject:
    return {
        "metadata": {"name": name, "namespace": "apps", "uid": f"uid-{name}"},
        "spec": {
            "nodeName": "n",
            "terminationGracePeriodSeconds": POD_GRACE_SECONDS,
            "containers": [{"name": "app", "image": "x"}],
        },
        "status": {"phase": "Running"},
    }


async def drain(api: BudgetApi, reports: list[tuple[float, DrainResult]]) -> tuple[float, DrainResult]:
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def on_report(result: DrainResult) -> None:
        reports.append((loop.time(), result))

    result = await drain_node(
        api,  # type: ignore[arg-type]
        "n",
        deadline=start + DEADLINE_SECONDS,
        report_at=start + REPORT_SECONDS,
        on_report=on_report,
        last_resort=True,
        event_type=EventType.TERMINATE,
    )
    return start, result


async def test_a_budget_that_never_allows_is_stopped_at_the_last_chance_before_the_deadline_not_the_report():
    """The report at 0.5 s says timed_out and names the pod as still asked; no deletion comes before
    the pod's last chance, computed from the deadline (7 s) and its 2 s grace period; the pod is
    marked DisruptionTarget before it."""
    api = BudgetApi(allow_at=None)
    reports: list[tuple[float, DrainResult]] = []

    start, result = await drain(api, reports)

    ((reported_at, interim),) = reports
    assert reported_at - start == pytest.approx(REPORT_SECONDS, abs=0.5)
    assert interim.result is DrainOutcome.TIMED_OUT
    (remaining,) = interim.remaining
    assert "blocked by PodDisruptionBudget db" in remaining.reason
    assert "asked again until its last chance" in remaining.reason
    assert interim.stopped == ()
    ((deleted_at, grace),) = api.deletions
    assert grace == POD_GRACE_SECONDS
    assert deleted_at >= last_resort_at(start + DEADLINE_SECONDS, POD_GRACE_SECONDS)
    assert deleted_at + grace <= start + DEADLINE_SECONDS
    assert result.result is DrainOutcome.DRAINED and [s.pod for s in result.stopped] == ["apps/db-0"]
    # Marked as disrupted by the Azure event before the stop, as an eviction would have marked it.
    ((marked_at, reason),) = api.marks
    assert marked_at <= deleted_at and reason == "AzureScheduledEventTerminate"


async def test_a_budget_that_recovers_after_the_report_lets_the_pod_leave_by_eviction_without_a_stop():
    """The budget allows the disruption 2 s in, after the report: the next eviction is accepted, no
    pod is deleted, and the final result is drained."""
    loop = asyncio.get_running_loop()
    api = BudgetApi(allow_at=loop.time() + 2.0)
    reports: list[tuple[float, DrainResult]] = []

    _, result = await drain(api, reports)

    ((_, interim),) = reports
    assert interim.result is DrainOutcome.TIMED_OUT
    assert api.deletions == []
    assert api.evictions[-1][1] == "accepted"
    assert result.result is DrainOutcome.DRAINED and result.stopped == ()
    assert result.evicted == ("apps/db-0",)


async def test_a_refused_eviction_is_asked_again_at_a_bounded_pace_until_the_last_chance():
    """Until the stop, one budget is asked at most about twice a second (0.25-2 s jittered steps):
    cheap for the API server, yet a recovered budget is noticed within two seconds."""
    api = BudgetApi(allow_at=None)

    start, _ = await drain(api, [])

    refusals = [at for at, answer in api.evictions if answer == "refused"]
    last_chance = last_resort_at(start + DEADLINE_SECONDS, POD_GRACE_SECONDS)
    assert len(refusals) >= 3  # it kept asking after the report
    assert len(refusals) <= 2 * (last_chance - start) + 2
    gaps = [b - a for a, b in itertools.pairwise(refusals)]
    assert max(gaps) <= 2.0 + 0.5  # never longer than the longest step (and a busy loop's slack)


async def test_a_drain_over_before_its_report_time_does_not_call_the_report():
    """The budget allows at once: the drain ends before the report time and the caller reports."""
    api = BudgetApi(allow_at=0.0)
    reports: list[tuple[float, DrainResult]] = []

    _, result = await drain(api, reports)

    assert reports == [] and result.result is DrainOutcome.DRAINED
