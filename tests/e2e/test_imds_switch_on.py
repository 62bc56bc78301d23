"""The handler process against IMDS behaviours at start-up that Microsoft documents: the slow first call
after Scheduled Events is switched on, and the refusal of an api-version it does not serve."""

from __future__ import annotations

import time

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node

from imds_simulator import SCHEDULED_EVENTS_PATH, ImdsSimulator
from testkit.cluster import AksNode, eventually
from testkit.process import HandlerProcess
from tests.e2e.conftest import Launcher

pytestmark = pytest.mark.controlplane

# Longer than the liveness window (30 s), so that a handler whose loop stopped beating while it waits
# would be seen failing /healthz; shorter than Azure's "up to two minutes", to keep the test short.
FIRST_CALL_SECONDS = 33.0


async def probe(handler: HandlerProcess, path: str) -> tuple[int, str]:
    answer = handler.get(path)
    return answer.status_code, answer.json()["reason"]


@pytest.mark.timeout(120)
async def test_a_first_call_answered_after_half_a_minute_is_waited_for_once_live_and_not_ready(
    kube: AsyncClient, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    """ "Scheduled Events is enabled for your service the first time you make a request for events. You
    should expect a delayed response in your first call of up to two minutes." With -request.timeout=1s
    the handler sends that one request and waits (no retry storm: one request until it is answered), is
    not ready and says why, stays live past the 30 s liveness window, logs the wait once at info and
    nothing at warning or error; then it is ready, and a Preempt published meanwhile is handled."""
    simulator.switch_off(first_call_delay_seconds=FIRST_CALL_SECONDS)
    began = time.time()
    handler = await launch(node.name, "-request.timeout=1s")
    event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=FIRST_CALL_SECONDS + 20)

    async def waiting_long() -> tuple[int, str] | None:
        answer = await probe(handler, "/readyz")
        return answer if "for the first Scheduled Events answer" in answer[1] else None

    status, reason = await eventually(waiting_long, what="readyz naming the slow first answer")
    assert status == 503 and "within 2 minutes" in reason

    async def past_the_liveness_window() -> bool:
        return time.time() - began > 31.0 and simulator.state()["scheduled_events"]["switching_on"]

    await eventually(past_the_liveness_window, what="31 s of waiting", timeout_seconds=40)
    assert await probe(handler, "/healthz") == (200, "main loop running")
    assert (await probe(handler, "/readyz"))[0] == 503

    async def ready() -> bool:
        return (await probe(handler, "/readyz"))[0] == 200

    await eventually(ready, what="readyz once IMDS answered", timeout_seconds=30)

    async def cordoned() -> bool:
        return bool((await kube.get(Node, node.name)).spec.unschedulable)

    await eventually(cordoned, what=f"the node cordoned for {event_id}")
    polls = [r for r in simulator.requests if r.path == SCHEDULED_EVENTS_PATH and r.method == "GET"]
    answered_at = began + FIRST_CALL_SECONDS
    assert len([r for r in polls if r.time < answered_at - 1]) == 1
    records = handler.log_records()
    assert [r["level"] for r in records if "first request for Scheduled Events" in r["msg"]] == ["info"]
    assert [r["msg"] for r in records if r["level"] in ("warning", "error")] == []
    assert simulator.state()["scheduled_events"]["switch_ons"] == 1


async def test_a_refused_api_version_is_an_error_naming_the_newest_versions_and_the_handler_goes_on(
    node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    """The Instance Metadata Service article: without a valid version "you get an error with a list of
    the newest supported versions". The log's error and /readyz name them, so the fix is one read away;
    the process keeps polling (a 400 is retried with backoff) and exits only on SIGTERM."""
    wrong = simulator.scheduled_events_url.replace("2020-07-01", "2019-13-01")
    handler = await launch(node.name, f"-endpoint={wrong}")
    newest = f"{simulator.advisory_version}, 2020-07-01, 2019-08-01"

    async def refused() -> dict[str, str] | None:
        return next((r for r in handler.log_records() if "is refused" in r["msg"]), None)

    record = await eventually(refused, what="the refusal in the log")
    assert record["level"] == "error"
    assert f"api-version 2019-13-01 is refused; IMDS names its newest versions: {newest}" in record["msg"]
    status, reason = await probe(handler, "/readyz")
    assert status == 503 and newest in reason
    assert handler.returncode is None
