"""The IMDS client against the IMDS simulator, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta

import httpx2
import pytest

from aksnth.azure.documents import MAX_DOCUMENT_BYTES
from aksnth.azure.imds import ImdsClient, PollBackoff
from aksnth.config import ImdsSettings
from aksnth.errors import ImdsDocumentError, ImdsUnavailable
from aksnth.model import EventStatus, EventType, ScheduledEventsDocument
from aksnth.observe.httpmetrics import imds_transport
from imds_simulator import ImdsSimulator, SimulatorError, main
from testkit.clock import FakeClock

VM = "aks-spot-12345678-vmss_0"
OTHER_VM = "aks-spot-12345678-vmss_1"


@pytest.fixture
def simulator() -> Iterator[ImdsSimulator]:
    with ImdsSimulator(speed=100, vm_name=VM) as sim:
        yield sim


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def manual_simulator(clock: FakeClock) -> Iterator[ImdsSimulator]:
    with ImdsSimulator(clock=clock, vm_name=VM) as sim:
        yield sim


def settings_for(
    sim: ImdsSimulator, *, timeout: float = 2.0, first_timeout: float | None = None
) -> ImdsSettings:
    """The client's settings; the first request gets ``timeout`` too unless ``first_timeout`` says
    otherwise (the longer first wait has tests of its own)."""
    return ImdsSettings(
        endpoint=sim.scheduled_events_url,
        poll_interval_seconds=0.05,
        request_timeout_seconds=timeout,
        first_request_timeout_seconds=timeout if first_timeout is None else first_timeout,
    )


@pytest.fixture(params=["through the client", "straight to the transport", "through a client passed in"])
async def client(simulator: ImdsSimulator, request: pytest.FixtureRequest) -> AsyncIterator[ImdsClient]:
    """The ways a poll can go: the handler's (an instrumented transport given for the poll, as app.run()
    wires it), a client of its own (both poll on a connection of their own), and a client passed in
    alone (the poll goes through httpx2, as it does for an https:// endpoint)."""
    if request.param == "through the client":
        async with ImdsClient(settings_for(simulator)) as imds:
            yield imds
        return
    if request.param == "through a client passed in":
        async with (
            httpx2.AsyncClient(trust_env=False) as http,
            ImdsClient(settings_for(simulator), client=http) as imds,
        ):
            yield imds
        return
    transport = imds_transport(httpx2.AsyncHTTPTransport(verify=False))
    async with (
        httpx2.AsyncClient(transport=transport, trust_env=False) as http,
        ImdsClient(settings_for(simulator), client=http, poll_transport=transport) as imds,
    ):
        yield imds


@pytest.fixture
async def manual_client(manual_simulator: ImdsSimulator) -> AsyncIterator[ImdsClient]:
    async with ImdsClient(settings_for(manual_simulator)) as imds:
        yield imds


async def wait_for_document(
    imds: ImdsClient, condition: Callable[[ScheduledEventsDocument], bool], *, within: float = 10.0
) -> ScheduledEventsDocument:
    """Poll (bounded) until the document satisfies ``condition``."""
    deadline = time.monotonic() + within
    while True:
        document = await imds.fetch_document()
        if condition(document):
            return document
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last document: {document}")
        await asyncio.sleep(0.05)


# --- protocol ----------------------------------------------------------------------------------


async def test_metadata_header_is_required(simulator: ImdsSimulator) -> None:
    async with httpx2.AsyncClient(trust_env=False) as raw:
        missing = await raw.get(simulator.scheduled_events_url)
        wrong = await raw.get(simulator.scheduled_events_url, headers={"Metadata": "false"})
        forwarded = await raw.get(
            simulator.scheduled_events_url, headers={"Metadata": "true", "X-Forwarded-For": "10.0.0.1"}
        )
        good = await raw.get(simulator.scheduled_events_url, headers={"Metadata": "true"})
    assert missing.status_code == 400
    assert missing.json() == {"error": "Bad request. Required metadata header not specified"}
    assert wrong.status_code == 400
    assert forwarded.status_code == 400
    assert "X-Forwarded-For" in forwarded.json()["error"]
    assert good.status_code == 200
    assert good.json() == {"DocumentIncarnation": 1, "Events": []}


@pytest.mark.parametrize("query", ["", "?api-version=", "?api-version=2021-02-01", "?api-version=latest"])
async def test_api_version_is_required_and_checked(simulator: ImdsSimulator, query: str) -> None:
    async with httpx2.AsyncClient(trust_env=False) as raw:
        answer = await raw.get(
            f"{simulator.url}/metadata/scheduledevents{query}", headers={"Metadata": "true"}
        )
    assert answer.status_code == 400
    assert "api-version is invalid" in answer.json()["error"]
    # As IMDS: the newest versions, newest first (the advisory version serves rebalance recommendations).
    assert answer.json()["newest-versions"] == [simulator.advisory_version, "2020-07-01", "2019-08-01"]


async def test_duplicate_query_parameters_are_rejected(simulator: ImdsSimulator) -> None:
    url = f"{simulator.scheduled_events_url}&api-version=2020-07-01"
    async with httpx2.AsyncClient(trust_env=False) as raw:
        answer = await raw.get(url, headers={"Metadata": "true"})
    assert answer.status_code == 400


@pytest.mark.parametrize(
    ("version", "fields"),
    [
        ("2017-11-01", set()),
        ("2019-01-01", set()),
        ("2019-04-01", {"Description"}),
        ("2019-08-01", {"Description", "EventSource"}),
        ("2020-07-01", {"Description", "EventSource", "DurationInSeconds"}),
    ],
)
async def test_older_api_versions_lack_newer_fields(
    simulator: ImdsSimulator, version: str, fields: set[str]
) -> None:
    simulator.schedule("Freeze", [VM])
    async with httpx2.AsyncClient(trust_env=False) as raw:
        answer = await raw.get(
            f"{simulator.url}/metadata/scheduledevents?api-version={version}", headers={"Metadata": "true"}
        )
    assert answer.status_code == 200
    (event,) = answer.json()["Events"]
    base = {"EventId", "EventStatus", "EventType", "ResourceType", "Resources", "NotBefore"}
    assert set(event) == base | fields


async def test_schedule_publishes_with_the_minimum_notice(
    client: ImdsClient, simulator: ImdsSimulator
) -> None:
    event_id = simulator.schedule("Preempt", [VM], notice_seconds=30)
    published = simulator.publication_time(event_id)
    document = await client.fetch_document()
    (event,) = document.events
    assert event.event_id == event_id
    assert event.event_type is EventType.PREEMPT
    assert event.status is EventStatus.SCHEDULED
    assert event.resources == (VM,)
    assert event.resource_type == "VirtualMachine"
    assert event.event_source == "Platform"
    assert event.concerns(VM)
    assert event.not_before is not None
    # NotBefore has whole seconds, rounded down: never later than the moment the event can start.
    notice = event.not_before.timestamp() - published
    assert 29.0 < notice <= 30.0


@pytest.mark.parametrize(
    ("event_type", "minimum"),
    [("Preempt", 30), ("Terminate", 420), ("Reboot", 900), ("Freeze", 900), ("Redeploy", 600)],
)
async def test_default_notice_is_the_documented_minimum_scaled_by_speed(
    event_type: str, minimum: float
) -> None:
    speed = 60.0
    with ImdsSimulator(speed=speed, terminate_notice_seconds=420) as sim:
        event_id = sim.schedule(event_type, [VM])
        async with ImdsClient(settings_for(sim)) as imds:
            (event,) = (await imds.fetch_document()).events
        assert event.not_before is not None
        notice = event.not_before.timestamp() - sim.publication_time(event_id)
        assert minimum / speed - 1.0 < notice <= minimum / speed


async def test_approval_starts_the_event_and_is_recorded(
    manual_client: ImdsClient, manual_simulator: ImdsSimulator
) -> None:
    event_id = manual_simulator.schedule("Reboot", [VM, OTHER_VM])
    before = await manual_client.fetch_document()
    await manual_client.approve_event(event_id)
    after = await manual_client.fetch_document()

    (event,) = after.events
    assert event.status is EventStatus.STARTED
    assert event.not_before is None and event.not_before_raw == ""
    assert after.incarnation > before.incarnation
    assert manual_simulator.approvals == [event_id]
    post = [r for r in manual_simulator.requests if r.method == "POST"]
    assert len(post) == 1
    assert post[0].headers.get("Metadata") == "true"
    assert json.loads(post[0].body) == {"StartRequests": [{"EventId": event_id}]}


async def test_approving_unknown_or_started_events_is_fine(
    manual_client: ImdsClient, manual_simulator: ImdsSimulator
) -> None:
    event_id = manual_simulator.schedule("Reboot", [VM], started=True)
    incarnation = (await manual_client.fetch_document()).incarnation
    await manual_client.approve_event(event_id)
    await manual_client.approve_event("00000000-0000-0000-0000-000000000000")
    assert (await manual_client.fetch_document()).incarnation == incarnation
    assert manual_simulator.approvals == [event_id, "00000000-0000-0000-0000-000000000000"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"StartRequests": {}}',
        b'{"StartRequests": [{"Id": "x"}]}',
        b'{"Other": []}',
    ],
)
async def test_malformed_start_requests_are_refused(simulator: ImdsSimulator, body: bytes) -> None:
    async with httpx2.AsyncClient(trust_env=False) as raw:
        answer = await raw.post(simulator.scheduled_events_url, headers={"Metadata": "true"}, content=body)
    assert answer.status_code == 400
    assert simulator.approvals == []


async def test_lifecycle_follows_the_clock(
    manual_client: ImdsClient, manual_simulator: ImdsSimulator, clock: FakeClock
) -> None:
    event_id = manual_simulator.schedule("Redeploy", [VM], notice_seconds=600, duration_seconds=300)
    scheduled = await manual_client.fetch_document()
    assert scheduled.events[0].status is EventStatus.SCHEDULED
    assert scheduled.events[0].not_before is not None
    assert scheduled.events[0].not_before.timestamp() == clock.now + 600

    clock.advance(599)
    assert (await manual_client.fetch_document()).events[0].status is EventStatus.SCHEDULED
    clock.advance(1)  # NotBefore passes: Started, NotBefore ""
    started = await manual_client.fetch_document()
    assert started.events[0].status is EventStatus.STARTED
    assert started.events[0].not_before_raw == ""
    assert started.incarnation == scheduled.incarnation + 1

    clock.advance(299)
    assert len((await manual_client.fetch_document()).events) == 1
    clock.advance(1)  # its duration is over: it leaves the list
    ended = await manual_client.fetch_document()
    assert ended.events == ()
    assert ended.incarnation == started.incarnation + 1
    assert manual_simulator.publication_time(event_id) == clock.now - 900


async def test_not_before_passing_starts_it_in_real_time(
    client: ImdsClient, simulator: ImdsSimulator
) -> None:
    simulator.schedule("Preempt", [VM], notice_seconds=0.3, duration_seconds=60)
    document = await wait_for_document(client, lambda d: d.events[0].status is EventStatus.STARTED)
    assert document.events[0].not_before is None


async def test_duration_removes_a_started_event_in_real_time(
    client: ImdsClient, simulator: ImdsSimulator
) -> None:
    simulator.schedule("Reboot", [VM], started=True, duration_seconds=0.3)
    first = await client.fetch_document()
    assert first.events[0].status is EventStatus.STARTED
    await wait_for_document(client, lambda d: not d.events)


async def test_cancel_removes_the_event(manual_client: ImdsClient, manual_simulator: ImdsSimulator) -> None:
    keep = manual_simulator.schedule("Freeze", [VM])
    drop = manual_simulator.schedule("Reboot", [VM])
    before = await manual_client.fetch_document()
    manual_simulator.cancel(drop)
    after = await manual_client.fetch_document()
    assert [e.event_id for e in after.events] == [keep]
    assert after.incarnation == before.incarnation + 1
    with pytest.raises(SimulatorError, match="no event"):
        manual_simulator.cancel(drop)


async def test_incarnation_changes_exactly_when_events_change(
    manual_client: ImdsClient, manual_simulator: ImdsSimulator
) -> None:
    seen = [(await manual_client.fetch_document()).incarnation]
    seen.append((await manual_client.fetch_document()).incarnation)  # nothing changed
    event_id = manual_simulator.schedule("Preempt", [VM])
    seen.append((await manual_client.fetch_document()).incarnation)
    await manual_client.approve_event(event_id)
    seen.append((await manual_client.fetch_document()).incarnation)
    manual_simulator.cancel(event_id)
    seen.append((await manual_client.fetch_document()).incarnation)
    assert seen == [1, 1, 2, 3, 4]


async def test_started_directly_after_a_hardware_failure(
    manual_client: ImdsClient, manual_simulator: ImdsSimulator
) -> None:
    manual_simulator.schedule(
        "Reboot", [VM], started=True, description="Host server is undergoing an emergency repair."
    )
    (event,) = (await manual_client.fetch_document()).events
    assert event.status is EventStatus.STARTED
    assert event.not_before is None
    assert event.description == "Host server is undergoing an emergency repair."


async def test_instance_metadata(client: ImdsClient, simulator: ImdsSimulator) -> None:
    metadata = await client.fetch_instance_metadata()
    assert metadata.name == VM
    assert metadata.vm_scale_set_name == "aks-spot-12345678-vmss"
    assert metadata.computer_name == "aks-spot-12345678-vmss000000"
    assert (metadata.priority, metadata.eviction_policy) == ("Spot", "Delete")
    assert metadata.resource_id.endswith("/virtualMachineScaleSets/aks-spot-12345678-vmss/virtualMachines/0")
    (request,) = [r for r in simulator.requests if r.path == "/metadata/instance/compute"]
    assert request.query == {"api-version": "2021-02-01"}


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [410, 429, 500, 503, 404])
async def test_error_statuses_become_imds_unavailable(
    client: ImdsClient, simulator: ImdsSimulator, status: int
) -> None:
    simulator.inject_fault(status=status, retry_after_seconds=2 if status == 429 else None)
    with pytest.raises(ImdsUnavailable, match=f"HTTP {status}") as caught:
        await client.fetch_document()
    assert caught.value.status == status
    assert caught.value.retry_after_seconds == (2.0 if status == 429 else None)
    assert (await client.fetch_document()).incarnation == 1  # the fault was used up


async def test_approval_failure_is_reported(client: ImdsClient, simulator: ImdsSimulator) -> None:
    simulator.inject_fault(status=500)
    with pytest.raises(ImdsUnavailable) as caught:
        await client.approve_event("some-id")
    assert caught.value.status == 500


async def test_garbage_body_is_a_document_error(client: ImdsClient, simulator: ImdsSimulator) -> None:
    simulator.inject_fault(body="garbage")
    with pytest.raises(ImdsDocumentError, match="not JSON"):
        await client.fetch_document()
    simulator.inject_fault(body=b'{"DocumentIncarnation": "one", "Events": []}')
    with pytest.raises(ImdsDocumentError, match="DocumentIncarnation must be an integer"):
        await client.fetch_document()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("body", ["endless", "huge"])
async def test_endless_or_huge_bodies_are_cut_off(
    client: ImdsClient, simulator: ImdsSimulator, body: str
) -> None:
    simulator.inject_fault(body=body)
    tracemalloc.start()
    try:
        with pytest.raises(ImdsDocumentError, match=str(MAX_DOCUMENT_BYTES)):
            await client.fetch_document()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024
    assert (await client.fetch_document()).incarnation == 1  # the client is still usable


async def test_answer_slower_than_the_request_timeout(simulator: ImdsSimulator) -> None:
    async with ImdsClient(settings_for(simulator, timeout=0.3)) as imds:
        simulator.inject_fault(delay_seconds=5)
        with pytest.raises(ImdsUnavailable, match=r"within 0.3s") as caught:
            await imds.fetch_document()
        assert caught.value.status is None
        simulator.inject_fault(delay_seconds=0.05)  # slow, but in time: a normal answer
        assert (await imds.fetch_document()).incarnation == 1


async def test_until_imds_has_answered_once_a_request_waits_the_first_timeout() -> None:
    """The first call after Scheduled Events is switched on can take up to two minutes: until IMDS has
    answered once, the client waits -request.firstTimeout, then -request.timeout."""
    with ImdsSimulator(vm_name=VM, first_call_delay_seconds=0.8) as sim:
        async with ImdsClient(settings_for(sim, timeout=0.3, first_timeout=3.0)) as imds:
            assert not imds.answered
            assert (await imds.fetch_document()).incarnation == 1
            assert imds.answered
            sim.inject_fault(delay_seconds=0.8)
            with pytest.raises(ImdsUnavailable, match=r"within 0.3s"):
                await imds.fetch_document()


async def test_nothing_listening_is_imds_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ImdsSettings(
        endpoint=f"http://127.0.0.1:{port}/metadata/scheduledevents?api-version=2020-07-01"
    )
    async with ImdsClient(settings) as imds:
        with pytest.raises(ImdsUnavailable, match="ConnectError") as caught:
            await imds.fetch_document()
    assert caught.value.status is None


async def test_a_client_passed_in_is_used_and_left_open(simulator: ImdsSimulator) -> None:
    seen: list[str] = []

    async def record(request: httpx2.Request) -> None:
        seen.append(request.url.path)

    async with httpx2.AsyncClient(trust_env=False, event_hooks={"request": [record]}) as shared:
        async with ImdsClient(settings_for(simulator), client=shared) as imds:
            await imds.fetch_document()
        assert not shared.is_closed
    assert seen == ["/metadata/scheduledevents"]


async def test_polling_with_backoff_through_20_errors_stays_under_5_requests_per_second(
    client: ImdsClient, simulator: ImdsSimulator
) -> None:
    simulator.inject_fault(status=500, count=20)
    backoff = PollBackoff(0.05, cap_seconds=0.3)
    attempts = []
    while True:
        try:
            await client.fetch_document()
        except ImdsUnavailable as exc:
            delay = backoff.on_error(exc)
            attempts.append(backoff.attempt)
        else:
            backoff.on_success()
            break
        await asyncio.sleep(delay)
    assert attempts == list(range(1, 21))
    assert backoff.attempt == 0

    times = sorted(r.time for r in simulator.requests)
    assert len(times) == 21
    busiest_second = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest_second <= 5
    assert (len(times) - 1) / (times[-1] - times[0]) < 5.0


async def test_optional_rate_limit_answers_429() -> None:
    with ImdsSimulator(rate_limit_per_second=5) as sim:
        async with ImdsClient(settings_for(sim)) as imds:
            results = await asyncio.gather(
                *(imds.fetch_document() for _ in range(12)), return_exceptions=True
            )
    statuses = [r.status if isinstance(r, ImdsUnavailable) else 200 for r in results]
    assert 429 in statuses
    assert statuses.count(200) >= 5


# --- control API and CLI -----------------------------------------------------------------------


async def test_control_api(simulator: ImdsSimulator) -> None:
    async with httpx2.AsyncClient(base_url=simulator.url, trust_env=False) as control:
        created = await control.post(
            "/simulator/events", json={"type": "preempt", "resources": [VM], "notice_seconds": 20}
        )
        assert created.status_code == 201
        event_id = created.json()["EventId"]
        assert created.json()["publication_time"] == simulator.publication_time(event_id)

        bad = await control.post("/simulator/events", json={"type": "Explode", "resources": [VM]})
        assert bad.status_code == 400 and "unknown event type" in bad.json()["error"]

        state = (await control.get("/simulator/state")).json()
        assert state["document"]["Events"][0]["EventId"] == event_id
        assert state["document"]["Events"][0]["EventType"] == "Preempt"

        fault = await control.post("/simulator/faults", json={"status": 503, "count": 2})
        assert fault.status_code == 201
        assert (await control.get("/simulator/state")).json()["faults"][0]["count"] == 2
        assert (await control.delete("/simulator/faults")).status_code == 200

        await control.get("/metadata/scheduledevents?api-version=2020-07-01", headers={"Metadata": "true"})
        recorded = (await control.get("/simulator/requests")).json()
        assert [r["path"] for r in recorded] == ["/metadata/scheduledevents"]
        assert recorded[0]["status"] == 200

        assert (await control.delete(f"/simulator/events/{event_id}")).status_code == 200
        assert (await control.delete(f"/simulator/events/{event_id}")).status_code == 404
        reset = (await control.post("/simulator/reset")).json()
        assert reset["document"]["Events"] == [] and reset["request_count"] == 0
        assert (await control.get("/simulator/nothing")).status_code == 404


async def test_cli_drives_a_running_simulator(
    simulator: ImdsSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ["--url", simulator.url]
    assert (
        await asyncio.to_thread(
            main, ["schedule", "--type", "Terminate", "--resource", VM, "--notice", "5m", *url]
        )
        == 0
    )
    event_id = capsys.readouterr().out.strip()
    (event,) = simulator.document()["Events"]
    assert event["EventId"] == event_id and event["EventType"] == "Terminate"
    not_before = simulator.publication_time(event_id) + timedelta(minutes=5).total_seconds()
    assert event["NotBefore"]  # RFC 1123, checked by the client tests; here: CLI notice reached the server
    assert simulator.state()["events"][0]["not_before"] == pytest.approx(not_before)

    assert await asyncio.to_thread(main, ["fault", "--status", "500", "--count", "3", *url]) == 0
    assert simulator.state()["faults"][0]["count"] == 3
    assert await asyncio.to_thread(main, ["clear-faults", *url]) == 0
    assert await asyncio.to_thread(main, ["cancel", event_id, *url]) == 0
    assert simulator.document()["Events"] == []
    assert await asyncio.to_thread(main, ["cancel", event_id, *url]) == 1
    assert "no event" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["requests", *url]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert await asyncio.to_thread(main, ["schedule", "--type", "Nope", "--resource", VM, *url]) == 2


async def test_the_first_poll_goes_out_at_once_and_its_answer_is_the_first_document(
    manual_simulator: ImdsSimulator,
) -> None:
    settings = ImdsSettings(endpoint=manual_simulator.scheduled_events_url, poll_interval_seconds=60.0)
    async with ImdsClient(settings) as imds:
        imds.start_first_poll()
        await imds.first_poll_head_start(10.0)  # returns as soon as it is answered
        assert len(manual_simulator.requests) == 1
        document = await imds.fetch_document()
        assert len(manual_simulator.requests) == 1  # the answer of the first poll, not a new GET
        assert document.incarnation >= 1
        await imds.fetch_document()
        assert len(manual_simulator.requests) == 2


async def test_a_first_answer_older_than_one_poll_interval_is_not_used(
    manual_simulator: ImdsSimulator,
) -> None:
    settings = ImdsSettings(endpoint=manual_simulator.scheduled_events_url, poll_interval_seconds=1e-9)
    async with ImdsClient(settings) as imds:
        imds.start_first_poll()
        await imds.first_poll_head_start(10.0)
        await imds.fetch_document()
        assert len(manual_simulator.requests) == 2  # polled again: the first answer was too old


async def test_closing_the_client_ends_a_first_poll_still_waiting(manual_simulator: ImdsSimulator) -> None:
    settings = ImdsSettings(endpoint=manual_simulator.scheduled_events_url)
    imds = ImdsClient(settings)
    imds.start_first_poll()
    await imds.aclose()  # before the loop ever ran the request: cancelled, no warning left behind


async def test_an_unchanged_answer_is_not_parsed_again(client: ImdsClient, simulator: ImdsSimulator) -> None:
    """The same bytes give the same (immutable) document; a change, or a broken answer in between,
    is read afresh."""
    first = await client.fetch_document()
    assert await client.fetch_document() is first
    simulator.inject_fault(body="garbage")
    with pytest.raises(ImdsDocumentError):
        await client.fetch_document()
    assert await client.fetch_document() is first  # the broken answer replaced nothing
    simulator.schedule("Preempt", ["vmss_0"])
    changed = await client.fetch_document()
    assert changed is not first and changed.incarnation > first.incarnation
    assert [e.event_type.value for e in changed.events] == ["Preempt"]


# --- Azure fidelity modes (docs/azure-fidelity.md) ---------------------------------------------------


async def get_events(url: str) -> list[dict[str, object]]:
    async with httpx2.AsyncClient(trust_env=False) as raw:
        answer = await raw.get(url, headers={"Metadata": "true"})
    assert answer.status_code == 200, answer.text
    events: list[dict[str, object]] = answer.json()["Events"]
    return events


async def test_an_advisory_is_served_only_at_the_advisory_version_never_starts_and_ends(
    manual_simulator: ImdsSimulator, clock: FakeClock
) -> None:
    """ "This endpoint uses the same endpoint for preempt notifications, but it uses a different
    version": a SpotRebalanceRecommendation is Advisory, without NotBefore, absent from 2020-07-01
    documents; approving it changes nothing; it leaves the list after its duration."""
    event_id = manual_simulator.schedule("SpotRebalanceRecommendation", [VM], duration_seconds=60)
    assert await get_events(manual_simulator.scheduled_events_url) == []
    (advisory,) = await get_events(manual_simulator.advisory_url)
    assert advisory["EventId"] == event_id
    assert advisory["EventType"] == "SpotRebalanceRecommendation"
    assert advisory["EventStatus"] == "Advisory" and advisory["NotBefore"] == ""
    async with httpx2.AsyncClient(trust_env=False) as raw:
        approval = await raw.post(
            manual_simulator.advisory_url,
            headers={"Metadata": "true"},
            json={"StartRequests": [{"EventId": event_id}]},
        )
    assert approval.status_code == 200
    clock.advance(59)
    (still,) = await get_events(manual_simulator.advisory_url)
    assert still["EventStatus"] == "Advisory"
    clock.advance(1)
    assert await get_events(manual_simulator.advisory_url) == []


async def test_the_client_reads_advisories_at_the_version_imds_names_as_its_newest(
    simulator: ImdsSimulator,
) -> None:
    simulator.schedule("SpotRebalanceRecommendation", [VM])
    async with ImdsClient(settings_for(simulator)) as imds:
        versions = await imds.newest_versions()
        assert versions[0] == simulator.advisory_version
        (advisory,) = (await imds.fetch_advisory_document(versions[0])).events
        assert (await imds.fetch_document()).events == ()
    assert advisory.event_type is EventType.SPOT_REBALANCE_RECOMMENDATION
    assert advisory.status is EventStatus.ADVISORY and advisory.advisory


@pytest.mark.parametrize(
    "arguments",
    [
        {"started": True},
        {"notice_seconds": 30},
        {"impact_seconds": -2},
        {"impact_seconds": 1.5},
    ],
)
def test_impossible_advisories_and_impacts_are_refused(simulator: ImdsSimulator, arguments: dict) -> None:
    kind = "SpotRebalanceRecommendation" if "impact_seconds" not in arguments else "Reboot"
    with pytest.raises(SimulatorError):
        simulator.schedule(kind, [VM], **arguments)


@pytest.mark.parametrize("impact", [-1, 0, 9])
async def test_duration_in_seconds_minus_one_and_zero_are_served_as_given(
    simulator: ImdsSimulator, impact: int
) -> None:
    """DurationInSeconds: "-1: the default value used if the impact duration is either unknown or not
    applicable", "0: the event won't interrupt the VM"."""
    simulator.schedule("Reboot", [VM], impact_seconds=impact)
    (event,) = await get_events(simulator.scheduled_events_url)
    assert event["DurationInSeconds"] == impact


async def test_the_first_request_for_events_waits_the_switch_on_delay_and_the_next_ones_do_not() -> None:
    """ "Expect a delayed response in your first call of up to two minutes": requests that arrive while
    Scheduled Events switches on are all answered when it is on; then at once. The instance metadata
    endpoint is not delayed."""
    # A delay long beside what a loaded machine adds to a loopback request, so that "at once" and "after
    # the delay" cannot be mistaken for each other.
    delay = 4.0
    with ImdsSimulator(vm_name=VM, first_call_delay_seconds=delay) as sim:
        async with httpx2.AsyncClient(trust_env=False) as raw:
            began = time.monotonic()
            compute = await raw.get(sim.compute_url, headers={"Metadata": "true"})
            assert compute.status_code == 200 and time.monotonic() - began < delay / 2
            first, second = await asyncio.gather(
                raw.get(sim.scheduled_events_url, headers={"Metadata": "true"}),
                raw.get(sim.scheduled_events_url, headers={"Metadata": "true"}),
            )
            waited = time.monotonic() - began
            began = time.monotonic()
            third = await raw.get(sim.scheduled_events_url, headers={"Metadata": "true"})
            fast = time.monotonic() - began
        state = sim.state()["scheduled_events"]
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 200]
    assert delay <= waited < 2 * delay
    assert fast < delay / 2
    assert state["on"] is True and state["switch_ons"] == 1


async def test_scheduled_events_switches_itself_off_after_a_day_without_a_request(clock: FakeClock) -> None:
    """ "Scheduled Events is disabled for your service if it doesn't make a request to the endpoint for 24
    hours": the next request is a first call again."""
    with ImdsSimulator(vm_name=VM, clock=clock, first_call_delay_seconds=0.3) as sim:
        assert sim.switch_off_after_seconds == 24 * 3600
        await get_events(sim.scheduled_events_url)
        clock.advance(24 * 3600 - 1)
        await get_events(sim.scheduled_events_url)
        # Within the day: no switch-on again (counted, not timed: a loaded machine can be slow anyway).
        assert sim.state()["scheduled_events"]["switch_ons"] == 1
        clock.advance(24 * 3600)
        began = time.monotonic()
        await get_events(sim.scheduled_events_url)
        assert time.monotonic() - began >= 0.3
        assert sim.state()["scheduled_events"]["switch_ons"] == 2


async def test_switch_off_from_the_control_api_and_the_cli(
    simulator: ImdsSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    async with httpx2.AsyncClient(base_url=simulator.url, trust_env=False) as control:
        answer = await control.post("/simulator/switch-off", json={"first_call_delay_seconds": 0.4})
        assert answer.status_code == 200 and answer.json()["on"] is False
        assert answer.json()["first_call_delay_seconds"] == 0.4
        bad = await control.post("/simulator/switch-off", json={"delay": 1})
        assert bad.status_code == 400 and "unknown fields" in bad.json()["error"]
    began = time.monotonic()
    await get_events(simulator.scheduled_events_url)
    assert time.monotonic() - began >= 0.4
    url = ["--url", simulator.url]
    assert await asyncio.to_thread(main, ["switch-off", "--first-call-delay", "300ms", *url]) == 0
    assert "switched off" in capsys.readouterr().out
    assert simulator.state()["scheduled_events"]["on"] is False
    assert simulator.first_call_delay_seconds == pytest.approx(0.3)


async def test_the_cli_publishes_an_advisory_and_a_started_event(
    simulator: ImdsSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ["--url", simulator.url]
    command = ["schedule", "--type", "SpotRebalanceRecommendation", "--resource", VM, *url]
    assert await asyncio.to_thread(main, command) == 0
    advisory_id = capsys.readouterr().out.strip()
    command = ["schedule", "--type", "Reboot", "--resource", VM, "--started", "--impact", "0", *url]
    assert await asyncio.to_thread(main, command) == 0
    started_id = capsys.readouterr().out.strip()
    events = {e["EventId"]: e for e in await get_events(simulator.advisory_url)}
    assert events[advisory_id]["EventStatus"] == "Advisory"
    assert events[started_id]["EventStatus"] == "Started" and events[started_id]["NotBefore"] == ""
    assert events[started_id]["DurationInSeconds"] == 0


async def test_a_refused_api_version_is_an_error_naming_the_newest_versions(simulator: ImdsSimulator) -> None:
    """The client's error says which versions IMDS offers (the 120-character excerpt cut them off)."""
    settings = ImdsSettings(
        endpoint=f"{simulator.url}/metadata/scheduledevents?api-version=2019-13-01", request_timeout_seconds=2
    )
    async with ImdsClient(settings) as imds:
        with pytest.raises(ImdsUnavailable) as caught:
            await imds.fetch_document()
    assert caught.value.status == 400
    assert (
        f"api-version 2019-13-01 is refused; IMDS names its newest versions: {simulator.advisory_version}, "
        "2020-07-01, 2019-08-01" in str(caught.value)
    )


async def test_an_event_listing_vms_outside_the_cluster_is_served_to_every_vm_it_lists(
    simulator: ImdsSimulator,
) -> None:
    """ "Scheduled Events for all virtual machines in an entire Availability Set or a Placement Group
    [...] are delivered to all other VMs in the same group": one document lists every VM the event
    names, whatever asks."""
    simulator.schedule("Freeze", [VM, OTHER_VM, "standalone-vm"])
    (event,) = await get_events(simulator.scheduled_events_url)
    assert event["Resources"] == [VM, OTHER_VM, "standalone-vm"]
