"""Bad IMDS input: whatever the Scheduled Events endpoint answers, the parser either returns a valid
document or raises ``ImdsDocumentError`` with a short message, within a bounded amount of memory; and
the running handler counts and logs each bad answer, keeps polling and still handles a real event.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from datetime import UTC
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import Node

from aksnth.azure.documents import MAX_DOCUMENT_BYTES, parse_document
from aksnth.errors import ImdsDocumentError
from aksnth.model import ScheduledEventsDocument
from imds_simulator import ImdsSimulator
from testkit.cluster import AksNode
from testkit.controlplane import ControlPlane
from testkit.process import HandlerProcess, handler_argv, handler_flags
from tests.reliability import strategies
from tests.reliability.tally import count

# An error message quotes at most a short excerpt of the answer.
MAX_MESSAGE_CHARS = 1000
# Parsing may cost a multiple of the body (a list of empty objects is the worst: ~25x), plus a constant.
MEMORY_FACTOR = 32
MEMORY_CONSTANT_BYTES = 256 * 1024
ERRORS_METRIC = "aks_node_termination_handler_error_reading_endpoint_total"


def parse_measured(body: bytes | str) -> tuple[ScheduledEventsDocument | None, str, int]:
    """(document or None, error message, peak bytes allocated while parsing)."""
    tracemalloc.start()
    try:
        try:
            return parse_document(body), "", tracemalloc.get_traced_memory()[1]
        except ImdsDocumentError as exc:
            return None, str(exc), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def check_parse(body: bytes | str) -> ScheduledEventsDocument | None:
    """The properties every answer must satisfy; returns the document when it was accepted."""
    document, message, peak = parse_measured(body)
    size = len(body)
    assert peak <= MEMORY_FACTOR * min(size, MAX_DOCUMENT_BYTES) + MEMORY_CONSTANT_BYTES, (size, peak)
    if document is None:
        assert message.strip(), "an empty error message"
        assert len(message) <= MAX_MESSAGE_CHARS, message[:200]
        return None
    assert isinstance(document.incarnation, int)
    for event in document.events:
        assert event.event_id and event.event_id == event.event_id.strip()
        assert all(isinstance(r, str) for r in event.resources)
        assert event.not_before is None or event.not_before.tzinfo is UTC
        assert isinstance(event.duration_seconds, int)
    return document


# --- the parser alone -----------------------------------------------------------------------------


@settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(body=strategies.bodies)
def test_any_answer_parses_or_is_refused_with_a_short_message_in_bounded_memory(body: bytes) -> None:
    accepted = check_parse(body) is not None
    count("IMDS answers generated for the parser")
    count("  accepted as documents" if accepted else "  refused with ImdsDocumentError")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=strategies.documents)
def test_any_near_valid_document_given_as_text_behaves_like_its_bytes(document: dict) -> None:
    text = json.dumps(document)
    from_text, from_bytes = check_parse(text), check_parse(text.encode())
    assert from_text == from_bytes
    count("IMDS documents generated as text and bytes")


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("10 MB of bytes", b"x" * 10_000_000),
        ("10 MB of text", "x" * 10_000_000),
        (
            "the largest list of empty objects",
            b'{"DocumentIncarnation":1,"Events":[' + b"{}," * (MAX_DOCUMENT_BYTES // 3 - 20) + b"{}]}",
        ),
        (
            "the largest list of empty lists",
            b'{"DocumentIncarnation":1,"Events":[],"x":[' + b"[]," * (MAX_DOCUMENT_BYTES // 3 - 20) + b"[]]}",
        ),
        ("deep nesting", b'{"DocumentIncarnation":1,"Events":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("UTF-16 without BOM", '{"DocumentIncarnation":1,"Events":[]}'.encode("utf-16-le")),
        ("a lone surrogate", b'{"DocumentIncarnation":1,"Events":[{"EventId":"\\ud800"}]}'),
        ("NaN", b'{"DocumentIncarnation":NaN,"Events":[]}'),
    ],
)
def test_hostile_answers_are_cheap_to_refuse_or_accept(name: str, body: bytes | str) -> None:
    check_parse(body)
    count("hand-written hostile IMDS answers")


# --- the running handler -----------------------------------------------------------------------------


def _wait_polled(simulator: ImdsSimulator, requests_before: int, *, timeout_seconds: float = 15.0) -> None:
    """Until the injected answer was served and one more poll followed (the handler lived through it)."""
    deadline = time.monotonic() + timeout_seconds
    while len(simulator.requests) < requests_before + 2:
        if time.monotonic() > deadline:
            raise AssertionError(f"the handler stopped polling after request {requests_before}")
        time.sleep(0.02)


@pytest.mark.controlplane
@pytest.mark.timeout(180)
async def test_the_running_handler_counts_and_logs_each_bad_answer_and_keeps_working(
    control_plane: ControlPlane,
    node: AksNode,
    simulator: ImdsSimulator,
    handler_kubeconfig: Path,
    tmp_path: Path,
) -> None:
    handler = await HandlerProcess(
        handler_argv(handler_flags(kubeconfig=handler_kubeconfig, node=node.name, simulator=simulator)),
        log_path=tmp_path / "handler.log",
    ).start_serving()
    served = {"refused": 0, "accepted": 0}
    try:
        await handler.wait_ready()

        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(body=strategies.bodies)
        def serve(body: bytes) -> None:
            refused = parse_measured(body)[0] is None
            errors_before = handler.metric(ERRORS_METRIC)
            requests_before = len(simulator.requests)
            simulator.inject_fault(body=body, method="GET")
            _wait_polled(simulator, requests_before)
            assert handler.metric(ERRORS_METRIC) == errors_before + refused
            served["refused" if refused else "accepted"] += 1

        serve()
        # A 10 MB answer, and one that never ends: both cut off by the client, counted like the rest.
        for body in (b"{" + b" " * 10_000_000 + b"}", "endless"):
            errors_before = handler.metric(ERRORS_METRIC)
            requests_before = len(simulator.requests)
            simulator.inject_fault(body=body, method="GET")
            _wait_polled(simulator, requests_before)
            assert handler.metric(ERRORS_METRIC) == errors_before + 1
            served["refused"] += 1

        assert handler.running
        # Each refused answer is logged as an error, once.
        logged = handler.log_text().count("reading Scheduled Events failed")
        assert logged == served["refused"] == handler.metric(ERRORS_METRIC)

        # Polling goes on: a real Preempt is still handled.
        simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
        with Client(KubeConfig.from_file(control_plane.kubeconfig_path), timeout=10) as admin:
            deadline = time.monotonic() + 20
            while not admin.get(Node, node.name).spec.unschedulable:
                assert time.monotonic() < deadline, "the Preempt after the bad answers was not handled"
                await asyncio.sleep(0.05)
    finally:
        handler.stop()
    count("IMDS answers served to the running handler", sum(served.values()))
    count("  refused, counted in error_reading_endpoint_total and logged", served["refused"])
    count("  accepted and decided on", served["accepted"])
