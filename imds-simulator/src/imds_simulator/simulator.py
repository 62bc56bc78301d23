"""A simulator of the Azure Instance Metadata Service (Scheduled Events and compute metadata).

A real HTTP server (stdlib ``ThreadingHTTPServer`` in a background thread; no dependency) that
speaks the documented protocol, for tests, the demo and the benchmarks:

* ``GET /metadata/scheduledevents?api-version=V``: the document; 400 with an Azure-like JSON error
  without ``Metadata: true``, with ``X-Forwarded-For``, with a missing/unsupported api-version or a
  duplicated query parameter. Fields the requested api-version lacks are omitted.
* ``POST /metadata/scheduledevents?api-version=V`` with ``{"StartRequests": [{"EventId": ...}]}``:
  approval; 200 for any well-formed body (also unknown or already started ids), 400 otherwise.
* ``GET /metadata/instance/compute?api-version=V``: a realistic compute document for the VM.

Event lifecycle, as documented: an event appears ``Scheduled`` with ``NotBefore`` at least the
type's minimum notice ahead (Preempt 30 s, Terminate 5-15 min as configured, Reboot and Freeze
15 min, Redeploy 10 min); it becomes ``Started`` (``NotBefore`` then "") when approved or when
``NotBefore`` passes, and disappears after its duration. ``DocumentIncarnation`` is bumped on every
change of ``Events``. Default timings are divided by ``speed``, so tests take seconds.

Advisory events (``SpotRebalanceRecommendation``, EventStatus ``Advisory``) are served only at the
advisory api-version (newer than 2020-07-01), never start, and ignore approvals. Scheduled Events is
switched on by the first request for events, which is answered after ``first_call_delay_seconds``;
it switches itself off after ``switch_off_after_seconds`` without a request (24 h ÷ speed).

A small JSON control API lives under ``/simulator/`` (see ``README.md`` beside this package) and the
``main()`` CLI serves the simulator or drives a running one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)

SCHEDULED_EVENTS_PATH = "/metadata/scheduledevents"
COMPUTE_PATH = "/metadata/instance/compute"
CONTROL_PREFIX = "/simulator/"
LATEST_SCHEDULED_EVENTS_VERSION = "2020-07-01"
# Documented Scheduled Events versions from the one that added Preempt; what each newer one added.
SCHEDULED_EVENTS_VERSIONS = ("2017-11-01", "2019-01-01", "2019-04-01", "2019-08-01", "2020-07-01")
# Microsoft's "Spot eviction risk notifications" page says the rebalance recommendations come from "the
# same endpoint [as] preempt notifications, but it uses a different version", and the copy of the page
# this project quotes names no version. The simulator serves them at a stand-in version, obviously not
# Azure's (``advisory_version`` changes it); the handler does not depend on the value: it asks IMDS for
# its newest versions.
DEFAULT_ADVISORY_VERSION = "2099-01-01"
_DESCRIPTION_SINCE = "2019-04-01"
_EVENT_SOURCE_SINCE = "2019-08-01"
_DURATION_SINCE = "2020-07-01"
# Documented instance metadata versions (priority/evictionPolicy since 2020-12-01).
INSTANCE_VERSIONS = (
    "2017-03-01", "2017-04-02", "2017-08-01", "2017-10-01", "2017-12-01", "2018-02-01", "2018-04-02",
    "2018-10-01", "2019-02-01", "2019-03-11", "2019-04-30", "2019-06-01", "2019-06-04", "2019-08-01",
    "2019-08-15", "2019-11-01", "2020-06-01", "2020-07-15", "2020-09-01", "2020-10-01", "2020-12-01",
    "2021-01-01", "2021-02-01", "2021-03-01", "2021-05-01", "2021-08-01", "2021-10-01", "2021-11-01",
    "2021-11-15", "2021-12-13", "2023-07-01", "2023-11-15", "2024-03-15", "2024-07-17", "2025-04-07",
)  # fmt: skip
_PRIORITY_SINCE = "2020-12-01"

ADVISORY_TYPES = ("SpotRebalanceRecommendation",)
EVENT_TYPES = ("Freeze", "Reboot", "Redeploy", "Preempt", "Terminate", *ADVISORY_TYPES)
# Minimum notice (NotBefore - publication), seconds, before speed scaling; Terminate is configurable.
MIN_NOTICE_SECONDS = {"Freeze": 900.0, "Reboot": 900.0, "Redeploy": 600.0, "Preempt": 30.0}
TERMINATE_NOTICE_RANGE = (300.0, 900.0)
# How long an event stays Started before it leaves the list, seconds, before speed scaling.
# Microsoft's typical flow: about 10 minutes from Started to removal. A freeze is over in seconds;
# a preempted or terminated VM is deleted, so its event does not linger long. (Simulator choices.)
STARTED_SECONDS = {"Freeze": 60.0, "Reboot": 600.0, "Redeploy": 600.0, "Preempt": 120.0, "Terminate": 120.0}
# How long an advisory stays listed when nothing follows it (simulator choice; the page says nothing).
ADVISORY_SECONDS = 600.0
# DurationInSeconds (expected impact) by default: -1 (unknown) but for a freeze (Microsoft's sample: 5).
IMPACT_SECONDS = {"Freeze": 5}
# "Scheduled Events is disabled for your service if it doesn't make a request to the endpoint for 24
# hours" (before speed scaling).
SWITCH_OFF_AFTER_SECONDS = 24 * 3600.0
# Descriptions as Microsoft lists them, by type and source; Spot evictions come with none.
DEFAULT_DESCRIPTIONS = {
    (
        "Freeze",
        "Platform",
    ): "Virtual machine is being paused because of a memory-preserving Live Migration operation.",
    ("Reboot", "Platform"): "Host server is undergoing maintenance.",
    ("Reboot", "User"): "Virtual machine is going to be restarted as requested by authorized user.",
    ("Redeploy", "Platform"): "Host server is undergoing maintenance.",
}
FAULT_BODIES = ("garbage", "endless", "huge", "reset", "slow")
HUGE_BODY_BYTES = 4 * 1024 * 1024
ENDLESS_BODY_LIMIT_BYTES = 1024 * 1024 * 1024  # an "endless" body still ends, after 1 GiB
# A "slow" body: the current document, one byte per this many seconds (a 200 byte answer takes 20 s).
SLOW_BODY_SECONDS_PER_BYTE = 0.1
DEFAULT_VM_NAME = "aks-spot-12345678-vmss_0"

_ERR_HEADER = "Bad request. Required metadata header not specified"
_ERR_VERSION = (
    "Bad request. api-version is invalid or was not specified in the request. "
    "For more information refer to aka.ms/azureimds"
)
_ERR_FORWARDED = "Bad request. Requests with the X-Forwarded-For header are not allowed"
_ERR_DUPLICATE = "Bad request. Duplicate query parameters are not allowed"


class SimulatorError(Exception):
    """A control request to the simulator is invalid (bad event type, unknown event, bad fault)."""


@dataclass(slots=True, kw_only=True)
class RecordedRequest:
    """One request to ``/metadata/...`` as the simulator received it (control requests are not kept)."""

    time: float  # wall clock, from the simulator's clock
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int = 0  # the status answered (0 when the client went away first)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", errors="replace"),
            "status": self.status,
        }


@dataclass(slots=True, kw_only=True)
class Fault:
    """An injected misbehaviour for the next ``count`` requests whose path contains ``path``."""

    status: int | None = None
    delay_seconds: float = 0.0
    body: str | bytes | None = None  # "garbage" | "endless" | "huge" | "reset" | "slow" | raw bytes
    count: int | None = 1  # None: until cleared
    path: str = "scheduledevents"
    retry_after_seconds: float | None = None
    method: str | None = None  # only requests with this method (GET, POST); None: any

    def to_json(self) -> dict[str, Any]:
        body: Any = self.body
        if isinstance(body, bytes):
            body = {"raw": body.decode("utf-8", errors="replace")}
        return {
            "status": self.status,
            "delay_seconds": self.delay_seconds,
            "body": body,
            "count": self.count,
            "path": self.path,
            "retry_after_seconds": self.retry_after_seconds,
            "method": self.method,
        }


@dataclass(slots=True, kw_only=True)
class _Event:
    event_id: str
    event_type: str
    resources: list[str]
    source: str
    description: str
    impact_seconds: int
    published_at: float
    not_before: float  # when it starts unless approved earlier
    started_seconds: float  # how long it stays Started (an advisory: how long it stays listed)
    started_at: float | None = None
    advisory: bool = False  # never starts, never approved, listed from publication until it ends

    @property
    def ends_at(self) -> float | None:
        """When it leaves the list (None while Scheduled: it starts first)."""
        if self.advisory:
            return self.published_at + self.started_seconds
        return None if self.started_at is None else self.started_at + self.started_seconds

    @property
    def status(self) -> str:
        if self.advisory:
            return "Advisory"
        return "Scheduled" if self.started_at is None else "Started"

    def to_document(self, api_version: str) -> dict[str, Any]:
        started = self.started_at is not None
        entry: dict[str, Any] = {
            "EventId": self.event_id,
            "EventStatus": self.status,
            "EventType": self.event_type,
            "ResourceType": "VirtualMachine",
            "Resources": list(self.resources),
            "NotBefore": ""
            if started or self.advisory
            # RFC 1123 in GMT, whole seconds, as IMDS writes NotBefore.
            else format_datetime(datetime.fromtimestamp(int(self.not_before), tz=UTC), usegmt=True),
        }
        if api_version >= _DESCRIPTION_SINCE:
            entry["Description"] = self.description
        if api_version >= _EVENT_SOURCE_SINCE:
            entry["EventSource"] = self.source
        if api_version >= _DURATION_SINCE:
            entry["DurationInSeconds"] = self.impact_seconds
        return entry


@dataclass(slots=True)
class _State:
    incarnation: int = 1
    events: list[_Event] = field(default_factory=list)
    publication: dict[str, float] = field(default_factory=dict)
    approvals: list[str] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    recent: list[float] = field(default_factory=list)  # request times within the last second


@dataclass(slots=True)
class _Enablement:
    """Whether Scheduled Events is on for the VM: the first request for events switches it on (and
    waits ``first_call_delay_seconds`` for its answer), 24 h (÷ speed) without one switch it off."""

    on: bool = False
    ready_at: float | None = None  # monotonic time at which the switch-on completes (while it runs)
    last_request: float | None = None  # the simulator's clock, of the last request for events
    switch_ons: int = 0


class ImdsSimulator:
    """The IMDS simulator. ``start()`` it (or use ``with``), point a client at ``.scheduled_events_url``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        terminate_notice_seconds: float = 300,
        clock: Callable[[], float] = time.time,
        vm_name: str = DEFAULT_VM_NAME,
        location: str = "westeurope",
        zone: str = "1",
        vm_size: str = "Standard_D4s_v5",
        rate_limit_per_second: int | None = None,
        first_call_delay_seconds: float = 0.0,
        switch_off_after_seconds: float | None = None,
        advisory_version: str = DEFAULT_ADVISORY_VERSION,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        if first_call_delay_seconds < 0:
            raise ValueError(f"first_call_delay_seconds must not be negative, got {first_call_delay_seconds}")
        if switch_off_after_seconds is not None and switch_off_after_seconds <= 0:
            raise ValueError(f"switch_off_after_seconds must be positive, got {switch_off_after_seconds}")
        if not _VERSION.fullmatch(advisory_version) or advisory_version <= LATEST_SCHEDULED_EVENTS_VERSION:
            raise ValueError(
                "advisory_version must be a version (YYYY-MM-DD) newer than "
                f"{LATEST_SCHEDULED_EVENTS_VERSION}, got {advisory_version!r}"
            )
        low, high = TERMINATE_NOTICE_RANGE
        if not low <= terminate_notice_seconds <= high:
            raise ValueError(
                f"terminate_notice_seconds must be within {low:g}-{high:g} (Azure allows 5 to 15 minutes), "
                f"got {terminate_notice_seconds:g}"
            )
        self.host = host
        self.port = port
        self.speed = speed
        self.terminate_notice_seconds = float(terminate_notice_seconds)
        self.clock = clock
        self.vm_name = vm_name
        self.location = location
        self.zone = zone
        self.vm_size = vm_size
        self.rate_limit_per_second = rate_limit_per_second
        self.first_call_delay_seconds = float(first_call_delay_seconds)
        self.switch_off_after_seconds = (
            SWITCH_OFF_AFTER_SECONDS / speed
            if switch_off_after_seconds is None
            else float(switch_off_after_seconds)
        )
        self.advisory_version = advisory_version
        self._lock = threading.RLock()
        self._state = _State()
        self._enablement = _Enablement()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="imds-simulator",
            daemon=True,
        )
        self._thread.start()
        log.info("IMDS simulator listening on %s (speed %g)", self.url, self.speed)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # ends delays and endless bodies in handler threads
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def scheduled_events_url(self) -> str:
        return f"{self.url}{SCHEDULED_EVENTS_PATH}?api-version={LATEST_SCHEDULED_EVENTS_VERSION}"

    @property
    def compute_url(self) -> str:
        return f"{self.url}{COMPUTE_PATH}?api-version=2021-02-01"

    # --- events --------------------------------------------------------------------------------

    def schedule(
        self,
        event_type: str,
        resources: list[str],
        *,
        notice_seconds: float | None = None,
        duration_seconds: float | None = None,
        source: str = "Platform",
        description: str | None = None,
        started: bool = False,
        impact_seconds: int | None = None,
    ) -> str:
        """Publish an event now; returns its EventId (an upper-case GUID, as Azure writes them).

        ``notice_seconds`` (NotBefore - now) and ``duration_seconds`` (how long it stays Started)
        are real seconds; their defaults are the type's documented minimum notice and the typical
        Started time, divided by ``speed``. ``started=True`` publishes it directly as Started (a
        hardware failure). ``impact_seconds`` is the document's ``DurationInSeconds`` (-1 unknown, 0 no
        interruption). An advisory (``SpotRebalanceRecommendation``) has no NotBefore and never starts:
        ``duration_seconds`` is how long it stays listed.
        """
        canonical = _canonical_type(event_type)
        advisory = canonical in ADVISORY_TYPES
        if advisory and (started or notice_seconds is not None):
            raise SimulatorError(f"{canonical} is advisory: it has no NotBefore and never starts")
        if impact_seconds is not None and (
            isinstance(impact_seconds, bool) or not isinstance(impact_seconds, int)
        ):
            raise SimulatorError(
                f"impact_seconds (DurationInSeconds) must be an integer, got {impact_seconds!r}"
            )
        if impact_seconds is not None and impact_seconds < -1:
            raise SimulatorError(
                f"impact_seconds must be -1 (unknown), 0 (no impact) or more, got {impact_seconds}"
            )
        if (
            isinstance(resources, str)
            or not resources
            or not all(isinstance(r, str) and r for r in resources)
        ):
            raise SimulatorError("resources must be a non-empty list of VM names")
        if notice_seconds is None:
            notice_seconds = 0.0 if advisory else self.min_notice_seconds(canonical) / self.speed
        if duration_seconds is None:
            duration_seconds = (ADVISORY_SECONDS if advisory else STARTED_SECONDS[canonical]) / self.speed
        if notice_seconds < 0 or duration_seconds < 0:
            raise SimulatorError("notice_seconds and duration_seconds must not be negative")
        with self._lock:
            now = self.clock()
            self._advance(now)
            event = _Event(
                event_id=str(uuid.uuid4()).upper(),
                event_type=canonical,
                resources=list(resources),
                source=source,
                description=DEFAULT_DESCRIPTIONS.get((canonical, source), "")
                if description is None
                else description,
                impact_seconds=IMPACT_SECONDS.get(canonical, -1)
                if impact_seconds is None
                else impact_seconds,
                published_at=now,
                not_before=now + notice_seconds,
                started_seconds=duration_seconds,
                started_at=now if started else None,
                advisory=advisory,
            )
            self._state.events.append(event)
            self._state.publication[event.event_id] = now
            self._state.incarnation += 1
        log.info(
            "simulator: %s %s for %s (notice %.3gs)", canonical, event.event_id, resources, notice_seconds
        )
        return event.event_id

    def min_notice_seconds(self, event_type: str) -> float:
        """The documented minimum notice of a type, in seconds, before speed scaling."""
        canonical = _canonical_type(event_type)
        if canonical == "Terminate":
            return self.terminate_notice_seconds
        if canonical in ADVISORY_TYPES:
            raise SimulatorError(f"{canonical} is advisory: it has no notice")
        return MIN_NOTICE_SECONDS[canonical]

    def cancel(self, event_id: str) -> None:
        """Azure cancelled the event: it leaves the list. ``SimulatorError`` if there is no such event."""
        with self._lock:
            self._advance(self.clock())
            for event in self._state.events:
                if event.event_id.lower() == event_id.lower():
                    self._state.events.remove(event)
                    self._state.incarnation += 1
                    return
        raise SimulatorError(f"no event {event_id!r} in the document")

    def approve(self, event_ids: Iterable[str]) -> None:
        """What a valid POST StartRequests does: record the ids, start the Scheduled ones among them
        (an advisory: "acknowledging them has no effect")."""
        with self._lock:
            now = self.clock()
            self._advance(now)
            for event_id in event_ids:
                self._state.approvals.append(event_id)
                for event in self._state.events:
                    if (
                        event.event_id.lower() == event_id.lower()
                        and event.started_at is None
                        and not event.advisory
                    ):
                        event.started_at = now
                        self._state.incarnation += 1

    def document(self, api_version: str = LATEST_SCHEDULED_EVENTS_VERSION) -> dict[str, Any]:
        """The current Scheduled Events document, as served at ``api_version`` (advisories only at the
        advisory version)."""
        with self._lock:
            self._advance(self.clock())
            advisories = api_version >= self.advisory_version
            return {
                "DocumentIncarnation": self._state.incarnation,
                "Events": [
                    e.to_document(api_version) for e in self._state.events if advisories or not e.advisory
                ],
            }

    @property
    def scheduled_events_versions(self) -> tuple[str, ...]:
        """Every api-version served for Scheduled Events, oldest first."""
        return (*SCHEDULED_EVENTS_VERSIONS, self.advisory_version)

    @property
    def advisory_url(self) -> str:
        """The Scheduled Events URL at the advisory api-version."""
        return f"{self.url}{SCHEDULED_EVENTS_PATH}?api-version={self.advisory_version}"

    # --- switching on and off ----------------------------------------------------------------------

    def switch_off(self, *, first_call_delay_seconds: float | None = None) -> None:
        """Scheduled Events is off, as after 24 h without a request: the next request for events
        switches it on and waits ``first_call_delay_seconds`` (given here, or as configured)."""
        if first_call_delay_seconds is not None:
            if isinstance(first_call_delay_seconds, bool) or first_call_delay_seconds < 0:
                raise SimulatorError(
                    "first_call_delay_seconds must be a number, not negative, "
                    f"got {first_call_delay_seconds!r}"
                )
            self.first_call_delay_seconds = float(first_call_delay_seconds)
        with self._lock:
            self._enablement.on = False
            self._enablement.ready_at = None
        log.info("simulator: Scheduled Events switched off")

    def _switch_on_wait(self) -> float:
        """Called by each request for events: the seconds it must wait for its answer (0 once on)."""
        with self._lock:
            state = self._enablement
            now = self.clock()
            last = state.last_request
            if state.on and last is not None and now - last >= self.switch_off_after_seconds:
                state.on = False
                log.info("simulator: Scheduled Events switched itself off (no request for a while)")
            state.last_request = now
            if state.on:
                return 0.0
            moment = time.monotonic()
            if state.ready_at is None:
                state.ready_at = moment + self.first_call_delay_seconds
                state.switch_ons += 1
                log.info(
                    "simulator: Scheduled Events switching on; answered in %.3gs",
                    self.first_call_delay_seconds,
                )
            left = state.ready_at - moment
            if left <= 0:
                state.on = True
                state.ready_at = None
                return 0.0
            return left

    def _switched_on(self) -> None:
        with self._lock:
            state = self._enablement
            if state.ready_at is not None and time.monotonic() >= state.ready_at:
                state.on = True
                state.ready_at = None

    def publication_time(self, event_id: str) -> float:
        """Wall-clock time (the simulator's clock) at which the event first appeared in the document."""
        with self._lock:
            for known, published in self._state.publication.items():
                if known.lower() == event_id.lower():
                    return published
        raise SimulatorError(f"no event {event_id!r} was ever published")

    @property
    def approvals(self) -> list[str]:
        with self._lock:
            return list(self._state.approvals)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    # --- faults --------------------------------------------------------------------------------

    def inject_fault(
        self,
        *,
        status: int | None = None,
        delay_seconds: float = 0,
        body: str | bytes | None = None,
        count: int | None = 1,
        path: str = "scheduledevents",
        retry_after_seconds: float | None = None,
        method: str | None = None,
    ) -> Fault:
        """Misbehave for the next ``count`` requests (None: until cleared) whose path contains ``path``
        (and whose method is ``method``, when given).

        ``status`` answers that status (with an Azure-like JSON error unless ``body`` is given);
        ``delay_seconds`` waits before answering; ``body`` is "garbage" (not JSON), "endless" (a 200
        body that never ends), "huge" (a valid JSON document of 4 MiB), "reset" (the connection is
        reset without an answer), "slow" (the current document, trickled one byte per
        ``SLOW_BODY_SECONDS_PER_BYTE``) or raw bytes (sent as is).
        Faults are used in the order they were injected.
        """
        if status is not None and not 100 <= status <= 599:
            raise SimulatorError(f"status must be an HTTP status code, got {status}")
        if isinstance(body, str) and body not in FAULT_BODIES:
            raise SimulatorError(f"body must be one of {', '.join(FAULT_BODIES)} or bytes, got {body!r}")
        if count is not None and count < 1:
            raise SimulatorError(f"count must be at least 1 (or None for 'until cleared'), got {count}")
        if delay_seconds < 0:
            raise SimulatorError("delay_seconds must not be negative")
        if method is not None and (not isinstance(method, str) or not method.isalpha()):
            raise SimulatorError(f"method must be an HTTP method such as GET or POST, got {method!r}")
        fault = Fault(
            status=status,
            delay_seconds=float(delay_seconds),
            body=body,
            count=count,
            path=path,
            retry_after_seconds=retry_after_seconds,
            method=None if method is None else method.upper(),
        )
        with self._lock:
            self._state.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    def reset(self) -> None:
        """Forget events, approvals, requests and faults; the incarnation is bumped, not reset."""
        with self._lock:
            incarnation = self._state.incarnation + 1
            self._state = _State(incarnation=incarnation)

    def state(self) -> dict[str, Any]:
        """Everything the control API's ``GET /simulator/state`` shows."""
        with self._lock:
            now = self.clock()
            self._advance(now)
            enablement = self._enablement
            return {
                "now": now,
                "speed": self.speed,
                "vm_name": self.vm_name,
                "scheduled_events": {
                    "on": enablement.on,
                    "switching_on": enablement.ready_at is not None,
                    "switch_ons": enablement.switch_ons,
                    "first_call_delay_seconds": self.first_call_delay_seconds,
                    "switch_off_after_seconds": self.switch_off_after_seconds,
                    "advisory_version": self.advisory_version,
                },
                "document": {
                    "DocumentIncarnation": self._state.incarnation,
                    "Events": [e.to_document(self.advisory_version) for e in self._state.events],
                },
                "events": [
                    {
                        "EventId": e.event_id,
                        "published_at": e.published_at,
                        "not_before": e.not_before,
                        "started_at": e.started_at,
                        "ends_at": e.ends_at,
                    }
                    for e in self._state.events
                ],
                "approvals": list(self._state.approvals),
                "faults": [f.to_json() for f in self._state.faults],
                "request_count": len(self._state.requests),
            }

    # --- internals (called with the lock held) -------------------------------------------------

    def _advance(self, now: float) -> None:
        """Apply the transitions due by ``now``: Scheduled → Started at NotBefore, then removal."""
        for event in list(self._state.events):
            if event.advisory:
                if now >= event.published_at + event.started_seconds:
                    self._state.events.remove(event)
                    self._state.incarnation += 1
                continue
            if event.started_at is None and now >= event.not_before:
                event.started_at = event.not_before
                self._state.incarnation += 1
            if event.started_at is not None and now >= event.started_at + event.started_seconds:
                self._state.events.remove(event)
                self._state.incarnation += 1

    def _take_fault(self, path: str, method: str) -> Fault | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.path in path and fault.method in (None, method):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self._state.faults.remove(fault)
                    return fault
        return None

    def _record(self, request: RecordedRequest) -> bool:
        """Keep the request; False when it is over the rate limit (if one is set)."""
        with self._lock:
            self._state.requests.append(request)
            if self.rate_limit_per_second is None:
                return True
            recent = [t for t in self._state.recent if request.time - t < 1.0]
            recent.append(request.time)
            self._state.recent = recent
            return len(recent) <= self.rate_limit_per_second

    def _compute_document(self, api_version: str) -> dict[str, Any]:
        scale_set, _, instance = self.vm_name.rpartition("_")
        subscription = "00000000-0000-0000-0000-000000000000"
        group = f"MC_rg-aks_aks_{self.location}"
        if scale_set and instance.isdigit():
            resource_id = (
                f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/"
                f"virtualMachineScaleSets/{scale_set}/virtualMachines/{instance}"
            )
            computer_name = f"{scale_set}{_base36(int(instance)).zfill(6)}"
        else:
            scale_set = ""
            resource_id = (
                f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/"
                f"virtualMachines/{self.vm_name}"
            )
            computer_name = self.vm_name
        compute: dict[str, Any] = {
            "azEnvironment": "AzurePublicCloud",
            "location": self.location,
            "name": self.vm_name,
            "offer": "",
            "osProfile": {"adminUsername": "azureuser", "computerName": computer_name},
            "osType": "Linux",
            "placementGroupId": "",
            "platformFaultDomain": "0",
            "platformUpdateDomain": "0",
            "provider": "Microsoft.Compute",
            "publisher": "",
            "resourceGroupName": group,
            "resourceId": resource_id,
            "sku": "",
            "subscriptionId": subscription,
            "tags": "aks-managed-poolName:spot",
            "tagsList": [{"name": "aks-managed-poolName", "value": "spot"}],
            "version": "",
            "vmId": str(uuid.uuid5(uuid.NAMESPACE_URL, resource_id)),
            "vmScaleSetName": scale_set,
            "vmSize": self.vm_size,
            "zone": self.zone,
        }
        if api_version >= _PRIORITY_SINCE:
            compute["priority"] = "Spot"
            compute["evictionPolicy"] = "Delete"
        return compute


def _canonical_type(event_type: str) -> str:
    for known in EVENT_TYPES:
        if known.lower() == event_type.strip().lower():
            return known
    raise SimulatorError(f"unknown event type {event_type!r}; expected one of {', '.join(EVENT_TYPES)}")


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


# --- HTTP --------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the stdlib's 5 makes concurrent clients wait for a SYN retry (1 s)

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sim: ImdsSimulator):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sim = sim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive connections so they end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as IMDS; every answer carries a length or closes
    server: _Server
    server_version = "IMDS-simulator"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Headers and body are written separately: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer, which would distort the benchmarks.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("simulator: %s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    # --- routing -------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        sim = self.server.sim
        split = urlsplit(self.path)
        body = self._read_body()
        try:
            if split.path.startswith(CONTROL_PREFIX):
                self._control(sim, split.path, body)
            elif split.path.startswith("/metadata"):
                self._metadata(sim, split.path, split.query, body)
            else:
                self._send_json(404, {"error": "Not found"})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > 0:
            return self.rfile.read(min(int(length), 1024 * 1024))
        return b""

    def _metadata(self, sim: ImdsSimulator, path: str, query_text: str, body: bytes) -> None:
        pairs = parse_qsl(query_text, keep_blank_values=True)
        query = dict(pairs)
        recorded = RecordedRequest(
            time=sim.clock(),
            method=self.command,
            path=path,
            query=query,
            headers={k: v for k, v in self.headers.items()},
            body=body,
        )
        within_limit = sim._record(recorded)

        def answer(status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
            recorded.status = status
            self._send_json(status, payload, extra)

        if not within_limit:
            answer(429, {"error": "Too many requests"}, {"Retry-After": "1"})
            return
        fault = sim._take_fault(path, self.command)
        if fault is not None and fault.delay_seconds > 0 and sim._stopping.wait(fault.delay_seconds):
            self.close_connection = True
            return
        if fault is not None and (fault.status is not None or fault.body is not None):
            recorded.status = 0 if fault.body == "reset" else fault.status or 200
            self._send_fault(fault)
            return

        if self.headers.get("Metadata", "").strip().lower() != "true":
            answer(400, {"error": _ERR_HEADER})
            return
        if "X-Forwarded-For" in self.headers:
            answer(400, {"error": _ERR_FORWARDED})
            return
        if len(query) != len(pairs):
            answer(400, {"error": _ERR_DUPLICATE})
            return
        api_version = query.get("api-version", "")
        rstripped = path.rstrip("/")
        if rstripped == SCHEDULED_EVENTS_PATH:
            versions = sim.scheduled_events_versions
            if api_version not in versions:
                answer(400, {"error": _ERR_VERSION, "newest-versions": sorted(versions, reverse=True)[:3]})
                return
            # The first request for events switches Scheduled Events on, and its answer takes a while.
            wait = sim._switch_on_wait()
            if wait > 0:
                if sim._stopping.wait(wait):
                    self.close_connection = True
                    return
                sim._switched_on()
            if self.command == "GET":
                answer(200, sim.document(api_version))
            elif self.command == "POST":
                ids = _start_request_ids(body)
                if ids is None:
                    answer(400, {"error": "Bad request. The StartRequests payload is malformed"})
                else:
                    sim.approve(ids)
                    answer(200, None)
            else:
                answer(405, {"error": "Method not allowed"})
        elif rstripped == COMPUTE_PATH:
            if api_version not in INSTANCE_VERSIONS:
                answer(400, {"error": _ERR_VERSION, "newest-versions": list(reversed(INSTANCE_VERSIONS))[:3]})
            elif self.command != "GET":
                answer(405, {"error": "Method not allowed"})
            else:
                answer(200, sim._compute_document(api_version))
        else:
            answer(404, {"error": "Not found"})

    def _control(self, sim: ImdsSimulator, path: str, body: bytes) -> None:
        route = path[len(CONTROL_PREFIX) :].rstrip("/")
        method = self.command
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            self._send_json(400, {"error": "the body is not JSON"})
            return
        try:
            if route == "events" and method == "POST":
                event_id = sim.schedule(**_schedule_arguments(payload))
                self._send_json(
                    201, {"EventId": event_id, "publication_time": sim.publication_time(event_id)}
                )
            elif route.startswith("events/") and method == "DELETE":
                sim.cancel(route[len("events/") :])
                self._send_json(200, {"cancelled": route[len("events/") :]})
            elif route == "faults" and method == "POST":
                fault = sim.inject_fault(**_fault_arguments(payload))
                self._send_json(201, fault.to_json())
            elif route == "faults" and method == "DELETE":
                sim.clear_faults()
                self._send_json(200, {"faults": []})
            elif route == "requests" and method == "GET":
                self._send_json(200, [r.to_json() for r in sim.requests])
            elif route == "reset" and method == "POST":
                sim.reset()
                self._send_json(200, sim.state())
            elif route == "state" and method == "GET":
                self._send_json(200, sim.state())
            elif route == "document" and method == "GET":
                self._send_json(200, sim.document())
            elif route == "switch-off" and method == "POST":
                sim.switch_off(**_switch_off_arguments(payload))
                self._send_json(200, sim.state()["scheduled_events"])
            else:
                self._send_json(404, {"error": f"no control route {method} {path}"})
        except SimulatorError as exc:
            status = 404 if str(exc).startswith("no event") else 400
            self._send_json(status, {"error": str(exc)})

    # --- writing -------------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self._send_bytes(status, data, "application/json; charset=utf-8", extra)

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_fault(self, fault: Fault) -> None:
        status = fault.status or 200
        extra = {} if fault.retry_after_seconds is None else {"Retry-After": f"{fault.retry_after_seconds:g}"}
        if fault.body is None:
            reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
            self._send_json(status, {"error": f"{reason} (injected fault)"}, extra)
        elif fault.body == "garbage":
            garbage = b"<html><head><title>502 Bad Gateway</title></head>{"
            self._send_bytes(status, garbage, "text/html", extra)
        elif fault.body == "huge":
            filler = "x" * HUGE_BODY_BYTES
            data = json.dumps({"DocumentIncarnation": 1, "Events": [], "Padding": filler}).encode()
            self._send_bytes(status, data, "application/json", extra)
        elif fault.body == "endless":
            self._send_endless(status, extra)
        elif fault.body == "reset":
            self._send_reset()
        elif fault.body == "slow":
            document = json.dumps(self.server.sim.document()).encode()
            self._send_slow(status, document, extra)
        else:
            assert isinstance(fault.body, bytes)
            self._send_bytes(status, fault.body, "application/json", extra)

    def _send_reset(self) -> None:
        """Close the connection with a TCP RST instead of an answer (SO_LINGER with a zero timeout)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # Close the descriptor now: the socket object's later shutdown() would send a FIN first.
            os.close(self.connection.detach())

    def _send_slow(self, status: int, data: bytes, extra: dict[str, str]) -> None:
        """A correct answer whose body arrives one byte at a time (until the client gives up)."""
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        stopping = self.server.sim._stopping
        for index in range(len(data)):
            if stopping.wait(SLOW_BODY_SECONDS_PER_BYTE):
                return
            try:
                self.wfile.write(data[index : index + 1])
                self.wfile.flush()
            except OSError:
                return

    def _send_endless(self, status: int, extra: dict[str, str]) -> None:
        """A body without a length that only ends when the client goes away (or after 1 GiB)."""
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        chunk = b'{"DocumentIncarnation": 1, "Events": [' + b" " * 65536
        sent = 0
        stopping = self.server.sim._stopping
        while sent < ENDLESS_BODY_LIMIT_BYTES and not stopping.is_set():
            try:
                self.wfile.write(chunk)
            except OSError:
                return
            sent += len(chunk)
            chunk = b" " * 65536


def _start_request_ids(body: bytes) -> list[str] | None:
    """The EventIds of a well-formed StartRequests body; None when it is malformed."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    requests = payload.get("StartRequests")
    if not isinstance(requests, list):
        return None
    ids: list[str] = []
    for item in requests:
        if not isinstance(item, dict) or not isinstance(item.get("EventId"), str) or not item["EventId"]:
            return None
        ids.append(item["EventId"])
    return ids


def _schedule_arguments(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise SimulatorError("the body must be a JSON object")
    allowed = {
        "type", "resources", "notice_seconds", "duration_seconds", "source", "description", "started",
        "impact_seconds",
    }  # fmt: skip
    unknown = set(payload) - allowed
    if unknown:
        raise SimulatorError(f"unknown fields {sorted(unknown)}; allowed: {sorted(allowed)}")
    if not isinstance(payload.get("type"), str):
        raise SimulatorError("'type' (the event type) is required")
    resources = payload.get("resources")
    if not isinstance(resources, list):
        raise SimulatorError("'resources' (a list of VM names) is required")
    arguments = {k: v for k, v in payload.items() if k not in ("type", "resources")}
    return {"event_type": payload["type"], "resources": resources, **arguments}


def _switch_off_arguments(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise SimulatorError("the body must be a JSON object")
    unknown = set(payload) - {"first_call_delay_seconds"}
    if unknown:
        raise SimulatorError(f"unknown fields {sorted(unknown)}; allowed: ['first_call_delay_seconds']")
    delay = payload.get("first_call_delay_seconds")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float)):
        raise SimulatorError("'first_call_delay_seconds' must be a number of seconds")
    return {"first_call_delay_seconds": delay}


def _fault_arguments(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise SimulatorError("the body must be a JSON object")
    allowed = {
        "status", "delay_seconds", "body", "raw_body", "count", "path", "retry_after_seconds", "method",
    }  # fmt: skip
    unknown = set(payload) - allowed
    if unknown:
        raise SimulatorError(f"unknown fields {sorted(unknown)}; allowed: {sorted(allowed)}")
    arguments = dict(payload)
    raw = arguments.pop("raw_body", None)
    if raw is not None:
        if not isinstance(raw, str):
            raise SimulatorError("'raw_body' must be a string")
        arguments["body"] = raw.encode()
    return arguments


# --- CLI ---------------------------------------------------------------------------------------

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PLAIN_SECONDS = re.compile(_NUMBER)
# Go's time.ParseDuration: a sign, then one or more "<number><unit>" (the simulator depends on nothing,
# so it reads durations itself; tests/unit/test_durations.py holds it to the handler's parser).
_MICRO = 1e-6
_UNIT_SECONDS = {"ns": 1e-9, "us": _MICRO, "\u00b5s": _MICRO, "\u03bcs": _MICRO, "ms": 1e-3}
_UNIT_SECONDS |= {"s": 1.0, "m": 60.0, "h": 3600.0}
_COMPONENT = re.compile(f"({_NUMBER})({'|'.join(sorted(_UNIT_SECONDS, key=len, reverse=True))})")
_GO_DURATION = re.compile(f"[+-]?(?:{_COMPONENT.pattern})+")
_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_duration(text: str) -> float:
    """Seconds from a Go duration (``30s``, ``1m30s``, ``500ms``) as the handler's flags take it, or
    from a plain number of seconds (``30``), a convenience of the simulator's own command line."""
    stripped = text.strip()
    if _PLAIN_SECONDS.fullmatch(stripped):
        return float(stripped)
    if not _GO_DURATION.fullmatch(stripped):
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: examples: 30 (seconds), 500ms, 30s, 1m30s, 1h"
        )
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _COMPONENT.findall(stripped))
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: out of range")
    return -seconds if stripped.startswith("-") else seconds


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"invalid address {text!r}; expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imds-simulator",
        description="Simulate the Azure Instance Metadata Service (Scheduled Events) on a local address.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the simulator until interrupted")
    serve.add_argument(
        "--address", type=_address, default=("127.0.0.1", 8080), help="HOST:PORT (default 127.0.0.1:8080)"
    )
    serve.add_argument(
        "--speed", type=float, default=1.0, help="divide default notices and durations by this"
    )
    serve.add_argument(
        "--vm-name", default=DEFAULT_VM_NAME, help=f"VM name for compute metadata (default {DEFAULT_VM_NAME})"
    )
    serve.add_argument(
        "--terminate-notice", type=parse_duration, default=300.0, help="Terminate notice, 5m-15m (default 5m)"
    )
    serve.add_argument(
        "--rate-limit", type=int, default=None, help="answer 429 above this many requests/s (off by default)"
    )
    serve.add_argument(
        "--first-call-delay",
        type=parse_duration,
        default=0.0,
        help="the first request for events (it switches Scheduled Events on) is answered after this "
        "(Azure: up to 2m)",
    )
    serve.add_argument(
        "--switch-off-after",
        type=parse_duration,
        default=None,
        help="Scheduled Events switches itself off after this long without a request (default 24h / speed)",
    )
    serve.add_argument(
        "--advisory-version",
        default=DEFAULT_ADVISORY_VERSION,
        help=f"the api-version that serves advisory events (default {DEFAULT_ADVISORY_VERSION}, a stand-in)",
    )

    def client_command(name: str, help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "--url", default="http://127.0.0.1:8080", help="the simulator (default http://127.0.0.1:8080)"
        )
        return command

    schedule = client_command("schedule", "publish an event; prints its EventId")
    schedule.add_argument("--type", required=True, choices=EVENT_TYPES, help="event type")
    schedule.add_argument("--resource", action="append", required=True, help="affected VM name (repeatable)")
    schedule.add_argument(
        "--notice", type=parse_duration, help="NotBefore - now (default: the type's minimum / speed)"
    )
    schedule.add_argument(
        "--duration", type=parse_duration, help="how long it stays Started (default by type / speed)"
    )
    schedule.add_argument("--source", default="Platform", choices=("Platform", "User"))
    schedule.add_argument("--description", default=None)
    schedule.add_argument(
        "--impact", type=int, default=None, help="DurationInSeconds in the document (-1 unknown, 0 no impact)"
    )
    schedule.add_argument(
        "--started", action="store_true", help="publish directly as Started (hardware failure)"
    )

    cancel = client_command("cancel", "cancel an event (it leaves the document)")
    cancel.add_argument("event_id", metavar="ID")

    fault = client_command("fault", "misbehave for the next requests")
    fault.add_argument("--status", type=int, default=None, help="answer this HTTP status")
    fault.add_argument(
        "--count", type=int, default=1, help="for this many requests (default 1; 0: until cleared)"
    )
    fault.add_argument("--delay", type=parse_duration, default=0.0, help="wait this long before answering")
    fault.add_argument(
        "--body", choices=FAULT_BODIES, default=None, help="garbage, endless, huge, reset or slow body"
    )
    fault.add_argument("--path", default="scheduledevents", help="only requests whose path contains this")
    fault.add_argument("--retry-after", type=parse_duration, default=None, help="send this Retry-After")
    fault.add_argument("--method", default=None, help="only requests with this method (GET, POST)")

    switch_off = client_command("switch-off", "switch Scheduled Events off, as after 24 h without a request")
    switch_off.add_argument(
        "--first-call-delay", type=parse_duration, default=None, help="how long the next first request waits"
    )

    client_command("clear-faults", "remove every injected fault")
    client_command("requests", "print the recorded IMDS requests (JSON)")
    client_command("state", "print the simulator's state (JSON)")
    client_command("reset", "forget events, approvals, requests and faults")
    return parser


def _out(text: str, *, flush: bool = False) -> None:
    sys.stdout.write(text + "\n")
    if flush:
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """``imds-simulator ...``: serve the simulator, or drive a running one."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if args.command == "serve":
        return _serve(args)
    try:
        return _client(args)
    except SimulatorError as exc:
        _out(f"error: {exc}")
        return 1


def _serve(args: argparse.Namespace) -> int:
    host, port = args.address
    try:
        simulator = ImdsSimulator(
            host=host,
            port=port,
            speed=args.speed,
            terminate_notice_seconds=args.terminate_notice,
            vm_name=args.vm_name,
            rate_limit_per_second=args.rate_limit,
            first_call_delay_seconds=args.first_call_delay,
            switch_off_after_seconds=args.switch_off_after,
            advisory_version=args.advisory_version,
        )
        simulator.start()
    except (ValueError, OSError) as exc:
        _out(f"error: {exc}")
        return 2
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    _out(f"IMDS simulator on {simulator.url} (speed {args.speed:g}, VM {args.vm_name})", flush=True)
    _out(f"Scheduled Events: {simulator.scheduled_events_url}", flush=True)
    _out(f"Scheduled Events with advisories: {simulator.advisory_url}", flush=True)
    try:
        done.wait()
    finally:
        simulator.stop()
    return 0


def _client(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    if args.command == "schedule":
        payload: dict[str, Any] = {"type": args.type, "resources": args.resource, "source": args.source}
        optional = {
            "notice_seconds": args.notice,
            "duration_seconds": args.duration,
            "description": args.description,
            "impact_seconds": args.impact,
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        if args.started:
            payload["started"] = True
        answer = _call("POST", f"{base}/simulator/events", payload)
        _out(answer["EventId"])
    elif args.command == "cancel":
        _call("DELETE", f"{base}/simulator/events/{args.event_id}")
        _out(f"cancelled {args.event_id}")
    elif args.command == "fault":
        fault = {
            "status": args.status,
            "count": None if args.count == 0 else args.count,
            "delay_seconds": args.delay,
            "body": args.body,
            "path": args.path,
            "retry_after_seconds": args.retry_after,
            "method": args.method,
        }
        _out(json.dumps(_call("POST", f"{base}/simulator/faults", fault)))
    elif args.command == "switch-off":
        body = {} if args.first_call_delay is None else {"first_call_delay_seconds": args.first_call_delay}
        _call("POST", f"{base}/simulator/switch-off", body)
        _out("Scheduled Events switched off")
    elif args.command == "clear-faults":
        _call("DELETE", f"{base}/simulator/faults")
        _out("faults cleared")
    elif args.command == "requests":
        _out(json.dumps(_call("GET", f"{base}/simulator/requests"), indent=2))
    elif args.command == "state":
        _out(json.dumps(_call("GET", f"{base}/simulator/state"), indent=2))
    elif args.command == "reset":
        _call("POST", f"{base}/simulator/reset")
        _out("reset")
    return 0


def _call(method: str, url: str, payload: Any = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    # No proxy: the simulator is local, and environment proxies must not intercept it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error", detail)
        raise SimulatorError(f"{method} {url}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SimulatorError(f"{method} {url}: {exc}") from exc
    return json.loads(body) if body.strip() else None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
