"""The AzureScheduledEvent Node condition: its content, its patch, and the writer that keeps it current."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aksnth.errors import KubeForbidden, KubeUnavailable
from aksnth.kube.conditions import (
    WRITE_ATTEMPTS,
    ConditionWriter,
    ListedEvent,
    condition_patch,
    scheduled_event_condition,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def listed(event_id: str, event_type: str = "Preempt", *, seen: int = 0, **kw: Any) -> ListedEvent:
    return ListedEvent(
        event_id=event_id, event_type=event_type, first_seen=T0 + timedelta(seconds=seen), **kw
    )


def test_one_event_reads_as_type_id_notbefore_status_and_phase() -> None:
    event = listed("A1", status="Scheduled", not_before=T0 + timedelta(seconds=30), phase="protected")
    assert scheduled_event_condition([event], now=T0 + timedelta(seconds=2)) == {
        "type": "AzureScheduledEvent",
        "status": "True",
        "reason": "Preempt",
        "message": "Preempt EventId=A1 NotBefore=2026-11-25T12:00:30Z Status=Scheduled Phase=protected",
        "lastHeartbeatTime": "2026-11-25T12:00:02Z",
        "lastTransitionTime": "2026-11-25T12:00:00Z",
    }


def test_several_events_are_listed_in_the_order_they_were_seen_and_the_first_gives_the_reason() -> None:
    events = [
        listed("B2", "Freeze", seen=5, phase="ignored"),
        listed("A1", "Reboot", seen=1, status="Started", phase="drained", drain_result="timed_out"),
    ]
    condition = scheduled_event_condition(events, now=T0)
    assert condition is not None
    assert condition["reason"] == "Reboot"
    assert condition["message"] == (
        "Reboot EventId=A1 NotBefore=none Status=Started Phase=drained Drain=timed_out; "
        "Freeze EventId=B2 NotBefore=none Phase=ignored"
    )
    assert condition["lastTransitionTime"] == "2026-11-25T12:00:01Z"


def test_no_event_means_no_condition_and_a_patch_that_removes_it() -> None:
    assert scheduled_event_condition([], now=T0) is None
    assert condition_patch(None) == {
        "status": {"conditions": [{"type": "AzureScheduledEvent", "$patch": "delete"}]}
    }
    condition = scheduled_event_condition([listed("A1")], now=T0)
    assert condition_patch(condition) == {"status": {"conditions": [condition]}}


def test_a_long_message_is_shortened_and_an_odd_type_still_makes_a_valid_reason() -> None:
    many = [listed(f"EVENT-{i:04d}-" + "x" * 40, seen=i) for i in range(30)]
    condition = scheduled_event_condition(many, now=T0)
    assert condition is not None and len(condition["message"]) == 1024 and condition["message"].endswith("…")
    odd = scheduled_event_condition([listed("A", "Live-Migrate")], now=T0)
    assert odd is not None and odd["reason"] == "LiveMigrate"


def test_phases_only_move_forward() -> None:
    event = listed("A1")
    assert event.advanced("protected").advanced("drained", drain_result="drained").phase == "drained"
    drained = event.advanced("protected").advanced("drained")
    assert drained.advanced("protected").phase == "drained"
    assert event.advanced("given_back") == event  # not a phase the condition shows


class FakeNodes:
    """Stands for the API server's nodes/status: each patch waits until the test lets it through."""

    def __init__(self, *, error: Exception | None = None) -> None:
        self.patches: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.error = error

    async def patch(self, path: str, obj: dict[str, Any], *, content_type: str) -> None:
        assert path == "/api/v1/nodes/node-1/status" and content_type.startswith("application/strategic")
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        self.patches.append(obj)


def messages(nodes: FakeNodes) -> list[str | None]:
    return [
        p["status"]["conditions"][0].get("message") if "$patch" not in p["status"]["conditions"][0] else None
        for p in nodes.patches
    ]


async def test_changes_during_a_write_are_coalesced_into_one_write_of_the_latest_state() -> None:
    nodes = FakeNodes()
    writer = ConditionWriter(nodes, "node-1", wall_clock=lambda: T0)  # type: ignore[arg-type]
    writer.show([listed("A1", phase="seen")])
    await asyncio.sleep(0)  # the first write is on its way
    writer.show([listed("A1", phase="protected")])
    writer.show([listed("A1", phase="drained")])
    nodes.gate.set()
    await writer.flush()
    assert messages(nodes) == [
        "Preempt EventId=A1 NotBefore=none Phase=seen",
        "Preempt EventId=A1 NotBefore=none Phase=drained",
    ]
    writer.show([listed("A1", phase="drained")])  # nothing changed: no write
    writer.show([])
    await writer.flush()
    assert messages(nodes)[2:] == [None]  # removed


async def test_nothing_is_written_when_nothing_is_listed_unless_the_node_shows_an_old_condition() -> None:
    nodes = FakeNodes()
    nodes.gate.set()
    writer = ConditionWriter(nodes, "node-1")  # type: ignore[arg-type]
    writer.show([])
    await writer.flush()
    assert nodes.patches == []  # an idle handler makes no request
    writer.node_shows_condition(True)  # left by an earlier run that was killed
    writer.show([])
    await writer.flush()
    assert messages(nodes) == [None]


async def test_dry_run_writes_nothing() -> None:
    nodes = FakeNodes()
    writer = ConditionWriter(nodes, "node-1", dry_run=True)  # type: ignore[arg-type]
    writer.show([listed("A1")])
    await writer.flush()
    assert nodes.patches == []


async def test_a_missing_right_is_said_once_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    nodes = FakeNodes(error=KubeForbidden("patch nodes/status node-1: forbidden", status=403))
    nodes.gate.set()
    writer = ConditionWriter(nodes, "node-1")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="aksnth.kube.conditions"):
        writer.show([listed("A1")])
        await writer.flush()
        writer.show([listed("A1", phase="protected")])
        await writer.flush()
    (record,) = caplog.records
    assert "needs patch on nodes/status" in record.getMessage()


class FlakyNodes(FakeNodes):
    """Answers like an API server that is restarting for the first ``failures`` patches."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.gate.set()
        self.failures = failures

    async def patch(self, path: str, obj: dict[str, Any], *, content_type: str) -> None:
        if self.failures:
            self.failures -= 1
            raise KubeUnavailable("patch nodes/status node-1: ConnectError")
        await super().patch(path, obj, content_type=content_type)


async def test_a_write_that_meets_an_api_server_restart_is_written_once_it_is_back() -> None:
    nodes = FlakyNodes(failures=WRITE_ATTEMPTS + 2)  # more than one round of quick retries
    writer = ConditionWriter(nodes, "node-1", retry_waits_seconds=(0.0,))  # type: ignore[arg-type]
    writer.show([listed("A1", phase="drained")])
    await writer.flush()
    assert messages(nodes) == ["Preempt EventId=A1 NotBefore=none Phase=drained"]


async def test_closing_abandons_a_write_that_does_not_finish() -> None:
    nodes = FakeNodes()  # its gate never opens: the write hangs
    writer = ConditionWriter(nodes, "node-1")  # type: ignore[arg-type]
    writer.show([listed("A1")])
    await asyncio.sleep(0)
    await writer.close(timeout_seconds=0.01)
    assert nodes.patches == []
