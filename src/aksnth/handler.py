"""The poll loop and the decisions: the only owner of mutable state.

It polls IMDS every ``-period``, hands each new document to the pure ``policy.decide`` and starts what
the plan asks for: the response to an event (protect, notify, drain, approve; ``aksnth.response``) runs
as its own task per EventId so that polling goes on and several events can be handled at once; a
give-back cancels the response of the same event first. What was done is recorded on the Node
(``kube.node``), so a restarted handler resumes instead of starting over, and never repeats a step that
already happened. The phases an event goes through are those of ``aksnth.lifecycle``.

Polling never waits for the Kubernetes API. A background task reads the Node (the resource name from
its providerID, the record of what was done) until the API server answers; meanwhile the events of
this VM are seen, counted, logged and notified with what is known without the API server, and their
response starts once the record has been read.

Advisory events (Spot rebalance recommendations) are served by a newer api-version than -endpoint's:
another background task reads that version every ADVISORY_POLL_PERIODS poll periods and adds its
advisories to the documents of -endpoint, which stay the source of everything else (see
docs/azure-fidelity.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aksnth import policy
from aksnth.azure.imds import ImdsClient, PollBackoff
from aksnth.azure.resource_name import (
    InstanceMetadataNameError,
    ProviderIdError,
    resource_name_from_instance_metadata,
    resource_name_from_provider_id,
)
from aksnth.config import ADVISORY_VERSION_AUTO, ADVISORY_VERSION_OFF, Settings
from aksnth.errors import ImdsDocumentError, ImdsError, ImdsUnavailable, KubeError, KubeUnavailable
from aksnth.kube import events as kube_events
from aksnth.kube import node as kube_node
from aksnth.kube.api import KubeClient
from aksnth.kube.conditions import ConditionWriter, ListedEvent
from aksnth.kube.keys import SCHEDULED_EVENT_CONDITION
from aksnth.kube.record import NodeRecord
from aksnth.lifecycle import KnownEvent, Phase, done_phase
from aksnth.model import EventStatus, NodeSnapshot, ScheduledEvent, ScheduledEventsDocument
from aksnth.notify.dispatcher import Notifier
from aksnth.observe import metrics
from aksnth.observe.health import Health
from aksnth.observe.logging import bind, log_context
from aksnth.response import API_PATIENCE_SECONDS, INSTANCE_METADATA_TIMEOUT_SECONDS, Responder, describe_event
from aksnth.retry import Backoff

log = logging.getLogger(__name__)

# While the node has no providerID yet (a fresh node), retry reading it with this backoff.
PROVIDER_ID_BACKOFF = Backoff(steps=(1.0, 2.0, 5.0, 10.0, 30.0))
# While the API server does not answer and no event waits for it, the Node is read again after these
# waits; while an event waits, every poll period, so that its response starts within one period of
# the API server's return.
API_RETRY_BACKOFF = Backoff(steps=(1.0, 2.0, 5.0, 10.0))
# Advisory events are read every this many poll periods (5 s at the default -period), at the api-version
# that serves them: one more IMDS request beside the poll. An advisory warns early; a few seconds do not
# matter to it as they do to a Preempt.
ADVISORY_POLL_PERIODS = 5
# Below this -period the poll and the advisory reads together would come close to IMDS's 5 requests per
# second (1.2 requests per period): advisories are not read.
ADVISORY_MIN_PERIOD_SECONDS = 0.25
# While the first request for events is unanswered, the poll loop reports its heartbeat this often.
FIRST_ANSWER_BEAT_SECONDS = 1.0


class Handler:
    def __init__(
        self,
        *,
        settings: Settings,
        imds: ImdsClient,
        kube: KubeClient,
        notifier: Notifier | None,
        health: Health,
        recorder: kube_events.EventRecorder,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        conditions: ConditionWriter | None = None,
    ) -> None:
        self._settings = settings
        self._response = settings.response
        self._imds = imds
        self._kube = kube
        self._health = health
        self._recorder = recorder
        self._now = wall_clock
        self._node_name = settings.kube.node_name
        self.resource_name = settings.response.resource_name
        # Where the resource name came from (-resource.name, the providerID, IMDS), for the log.
        self._name_source = "-resource.name" if self.resource_name else ""
        # The record on the node has been read; decisions are made once it is, and the resource name
        # known (before, an earlier run may have handled an event: nothing is started, only announced).
        self._restored = False
        self._deciding = False  # restored, and the resource name known
        self._document: ScheduledEventsDocument | None = None  # the last one read
        # Events whose response waits for the record on the node (the API server), by EventId.
        self._waiting: dict[str, ScheduledEvent] = {}
        self._urgent = asyncio.Event()  # an event waits: ask the API server every poll period
        self._api_answers: bool | None = None  # as the handler's own reads of the Node found it
        # Kubernetes Events of sightings before the API server answered, recorded once it does.
        self._deferred: list[tuple[str, str]] = []
        self._boot_id = ""
        self._known: dict[str, KnownEvent] = {}
        self._first_seen: dict[str, datetime] = {}
        self._ignored: set[str] = set()
        # EventIds this process has counted in scheduled_events_total and reported with the Go
        # original's Warning Event: every event of this VM, once, whether it is acted on or not.
        self._sighted: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Events recorded in the background (they never delay polling or a response).
        self._courtesy: set[asyncio.Task[None]] = set()
        # (DocumentIncarnation, advisory revision) of the last document decided on: a decision is made
        # when either changes.
        self._last_revision: tuple[int, int] | None = None
        # Advisory events read at the advisory api-version (not in -endpoint's documents), and a count
        # of the changes of that set.
        self._advisories: tuple[ScheduledEvent, ...] = ()
        self._advisory_revision = 0
        self._polled_once = asyncio.Event()  # a document was read: the advisory reader may start
        self.exit_requested = asyncio.Event()
        # The events the node's AzureScheduledEvent condition lists: pending in the document, or
        # handled and not concluded yet. Written in the background; see aksnth.kube.conditions.
        self._listed: dict[str, ListedEvent] = {}
        self._conditions = conditions or ConditionWriter(
            kube, self._node_name, dry_run=settings.response.dry_run, wall_clock=wall_clock
        )
        # The response to each event, run as the event's own task (see _spawn).
        self._responder = Responder(
            self,
            settings=settings,
            kube=kube,
            imds=imds,
            recorder=recorder,
            notifier=notifier,
            wall_clock=wall_clock,
        )

    # --- start-up: Kubernetes access, established in the background ------------------------------
    async def _establish_access(self) -> None:
        """Read the Node until the API server answers; meanwhile the poll loop goes on.

        The Node gives the resource name (its providerID, unless -resource.name gave one) and the
        record of what was already done. While it cannot be read, the name is taken from IMDS's
        compute metadata, so events can be seen and notified; their response starts here, at once,
        when the record has been read (see ``_waiting``).
        """
        failures = 0
        unnamed = 0  # reads of a Node without a providerID (a fresh node)
        while True:
            node = await self.read_node()
            if node is None:
                failures += 1
                if not self.resource_name:
                    await self._resource_name_from_imds()
                delay = API_RETRY_BACKOFF.delay(failures)
            else:
                failures = 0
                if not self._restored:
                    self._restore(node)
                if not self._resource_name_from_node(node, attempt=unnamed + 1):
                    unnamed += 1
                delay = PROVIDER_ID_BACKOFF.delay(max(unnamed, 1))
            if self._restored and self.resource_name:
                self._start_deciding()
                return
            if self._waiting:
                delay = min(delay, self._settings.imds.poll_interval_seconds)
            # An event that starts to wait cuts the wait short (see _await_api).
            self._urgent.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._urgent.wait()

    async def read_node(self) -> NodeSnapshot | None:
        """One read of the Node (None when it fails), which also tells whether the API server answers.
        A read that has not answered after API_PATIENCE_SECONDS counts as "not answering" already: the
        events waiting for it are notified then, and the read goes on."""
        read = asyncio.ensure_future(kube_node.read_node_once(self._kube, self._node_name))
        try:
            done, _ = await asyncio.wait({read}, timeout=API_PATIENCE_SECONDS)
            if not done:
                self._api_down(
                    f"does not answer (reading node {self._node_name} for {API_PATIENCE_SECONDS:g}s)"
                )
            node = await read
        except KubeError as exc:
            state = "is unreachable" if isinstance(exc, KubeUnavailable) else "refuses to read the node"
            self._api_down(f"{state}: {exc}")
            return None
        finally:
            read.cancel()  # only when cancelled ourselves: the read is over otherwise
        self._api_up()
        return node

    def _api_down(self, problem: str) -> None:
        """The handler's read of its Node failed: say so once, and notify what waits for it."""
        if self._api_answers is not False:
            log.warning(
                "the Kubernetes API server %s; Scheduled Events are still read every %gs and events "
                "notified at once, their response starts when it answers",
                problem,
                self._settings.imds.poll_interval_seconds,
            )
        self._api_answers = False
        self._health.api_server(answers=False, problem=problem)
        for event in self._waiting.values():
            self._responder.notify_early(event)

    def _api_up(self) -> None:
        if self._api_answers is False:
            log.info("the Kubernetes API server answers again")
        self._api_answers = True
        self._health.api_server(answers=True)

    async def _resource_name_from_imds(self) -> None:
        """The fallback while the Node cannot be read: this VM's name in IMDS compute metadata."""
        try:
            async with asyncio.timeout(INSTANCE_METADATA_TIMEOUT_SECONDS):
                instance = await self._imds.fetch_instance_metadata()
            name = resource_name_from_instance_metadata(instance)
        except (ImdsError, TimeoutError, InstanceMetadataNameError) as exc:
            log.warning("cannot name this VM from IMDS compute metadata either (tried again later): %s", exc)
            return
        self._responder.instance = instance  # also what notifications show of the VM
        self._use_resource_name(name, "IMDS compute metadata, as the node cannot be read")

    def _resource_name_from_node(self, node: NodeSnapshot, *, attempt: int) -> bool:
        """Take the name from the Node's providerID (it wins over IMDS's); False while none is known."""
        if self._name_source == "-resource.name":
            return True
        try:
            name = resource_name_from_provider_id(node.provider_id)
        except ProviderIdError as exc:
            if self.resource_name:
                log.info(
                    "keeping Azure resource name %s (%s): %s", self.resource_name, self._name_source, exc
                )
                return True
            delay = PROVIDER_ID_BACKOFF.delay(attempt)
            log.warning(
                "cannot derive the Azure resource name of node %s (attempt %d): %s; retrying in %.0fs",
                self._node_name,
                attempt,
                exc,
                delay,
            )
            return False
        if self.resource_name and self.resource_name.lower() != name.lower():
            log.warning(
                "the node's providerID names Azure resource %s, not %s (from %s): %s is used from now on",
                name,
                self.resource_name,
                self._name_source,
                name,
            )
        self._use_resource_name(name, "the node's providerID")
        return True

    def _use_resource_name(self, name: str, source: str) -> None:
        if name == self.resource_name and source == self._name_source:
            return
        self.resource_name = name
        self._name_source = source
        log.info("node %s is Azure resource %s (from %s)", self._node_name, name, source)
        # Every later record of this task, and of the event tasks it starts, names the resource; the
        # poll loop binds it in its own task.
        bind(resource=name)
        self._health.resource_known(name)

    def _restore(self, node: NodeSnapshot) -> None:
        """Resume from the record on the Node: what we already did survives a restart of the pod. It is
        merged with what this process saw before it could read it (sightings, notifications)."""
        self._boot_id = node.boot_id
        record = NodeRecord.from_annotations(node.annotations)
        for entry in record.events.values():
            if not entry.active:
                self._listed.pop(entry.event_id, None)  # concluded by an earlier run
                continue
            restored = ListedEvent(
                event_id=entry.event_id,
                event_type=entry.event_type.value,
                first_seen=entry.first_seen,
                phase=entry.phase,
                drain_result=entry.drain.result if entry.drain is not None else "",
            )
            seen = self._listed.get(entry.event_id)
            if seen is not None:  # listed from the document already: keep its status and NotBefore
                restored = replace(
                    seen,
                    first_seen=entry.first_seen,
                    phase=restored.phase,
                    drain_result=restored.drain_result,
                )
            self._listed[entry.event_id] = restored
        self._conditions.node_shows_condition(SCHEDULED_EVENT_CONDITION in node.condition_types)
        for entry in record.events.values():
            unfinished = entry.phase.rank < done_phase(approve_events=self._response.approve_events).rank
            self._known[entry.event_id] = KnownEvent(
                event_id=entry.event_id,
                event_type=entry.event_type,
                last_status=entry.last_status,
                responded=True,
                finished=entry.finished,
                boot_id=record.boot_id,
                resume=unfinished and not entry.finished,
            )
            self._first_seen[entry.event_id] = entry.first_seen
            # Sent by an earlier run: not sent again, also when this run's response has to wait.
            self._responder.notified.update((entry.event_id, phase) for phase in entry.notified)
        self._restored = True
        active = [e for e in record.events.values() if e.active]
        if active:
            log.info(
                "resuming: %d event(s) recorded on the node are not concluded (%s)",
                len(active),
                ", ".join(f"{e.event_type.value} {e.event_id} at {e.phase.value}" for e in active),
            )

    def _start_deciding(self) -> None:
        """The record is read and the resource name known: decide on the last document now (not at the
        next poll), record what waited for the API server, and show the node's condition."""
        self._deciding = True
        self.in_background(
            self._recorder.record_node(
                type="Info",
                reason=kube_events.REASON_GO_READ_EVENTS,
                message=kube_events.MESSAGE_GO_READ_EVENTS,
            )
        )
        for reason, message in self._deferred:
            self.in_background(self._recorder.record_node(type="Warning", reason=reason, message=message))
        self._deferred.clear()
        if self._waiting:
            log.info(
                "the record on the node is read: starting the response to %d event(s) that waited for it",
                len(self._waiting),
            )
        self._waiting.clear()
        if self._document is not None:
            self._last_revision = None  # decide on it as on a first document
            self.on_document(self._document)
        else:
            self._show_condition()

    # --- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Poll until cancelled (or, with -exitAfterNodeDrain, until a drain finished). Polling starts
        at once; Kubernetes access is established beside it."""
        if self.resource_name:
            bind(resource=self.resource_name)
            self._health.resource_known(self.resource_name)
        async with asyncio.TaskGroup() as group:
            access = group.create_task(self._establish_access(), name="establish-kube-access")
            advisories = group.create_task(self._read_advisories(), name="read-advisories")
            await self._poll()
            access.cancel()
            advisories.cancel()

    async def _poll(self) -> None:
        backoff = PollBackoff(self._settings.imds.poll_interval_seconds)
        bound = self.resource_name
        while not self.exit_requested.is_set():
            self._health.beat()
            try:
                document = await self._fetch_document()
            except ImdsError as exc:
                metrics.ERROR_READING_ENDPOINT.labels(node=self._node_name, resource=self.resource_name).inc()
                self._health.polled(False, error=str(exc))
                delay = backoff.on_error(exc)
                refused = isinstance(exc, ImdsUnavailable) and exc.status == 400
                level = logging.ERROR if isinstance(exc, ImdsDocumentError) or refused else logging.WARNING
                log.log(level, "reading Scheduled Events failed (attempt %d): %s", backoff.attempt, exc)
            else:
                if backoff.attempt:
                    log.info(
                        "reading Scheduled Events works again after %d failed attempt(s)", backoff.attempt
                    )
                self._health.polled(True)
                metrics.LAST_SUCCESSFUL_POLL.set(time.time())
                metrics.DOCUMENT_INCARNATION.set(document.incarnation)
                delay = backoff.on_success()
                if self.resource_name != bound:  # known (or changed) since the last poll
                    bound = self.resource_name
                    bind(resource=bound)
                self._polled_once.set()
                self.on_document(document)
            # A timeout scope, not wait_for: wait_for wraps the wait in a task of its own each time,
            # twice the CPU of this idle wait (90 against 44 µs), once a second on every node.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.exit_requested.wait()

    async def _fetch_document(self) -> ScheduledEventsDocument:
        """The next document. Until IMDS has answered once, the request may take up to
        -request.firstTimeout (the first call after Scheduled Events is switched on takes up to two
        minutes): the loop's heartbeat goes on meanwhile, so liveness holds, and the wait is said once
        in the log and in /readyz, not as an error."""
        if self._imds.answered:
            return await self._imds.fetch_document()
        loop = asyncio.get_running_loop()
        fetch = asyncio.ensure_future(self._imds.fetch_document())
        started, monotonic_start = loop.time(), self._health.now()
        settings = self._settings.imds
        slow = False
        try:
            while True:
                done, _ = await asyncio.wait({fetch}, timeout=FIRST_ANSWER_BEAT_SECONDS)
                if done:
                    if slow:
                        log.info(
                            "Scheduled Events answered the first request after %.1fs", loop.time() - started
                        )
                    return fetch.result()
                self._health.beat()
                if not slow and loop.time() - started >= settings.request_timeout_seconds:
                    slow = True
                    self._health.first_answer_slow(monotonic_start)
                    log.info(
                        "the first request for Scheduled Events is unanswered after %.0fs: Azure answers "
                        "the first request after it switches Scheduled Events on for a VM within 2 minutes; "
                        "waiting up to %.0fs (-request.firstTimeout), not ready meanwhile",
                        loop.time() - started,
                        max(settings.first_request_timeout_seconds, settings.request_timeout_seconds),
                    )
        finally:
            self._health.first_answer_slow(None)
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, ImdsError):
                    await fetch

    # --- advisory events (Spot rebalance recommendations) -------------------------------------------
    async def _read_advisories(self) -> None:
        """Read the advisory events of the api-version that serves them, every ADVISORY_POLL_PERIODS
        poll periods, beside -endpoint's documents (which stay the source of every other event)."""
        settings = self._settings.imds
        interval = ADVISORY_POLL_PERIODS * settings.poll_interval_seconds
        if settings.advisory_api_version == ADVISORY_VERSION_OFF:
            return
        if settings.poll_interval_seconds < ADVISORY_MIN_PERIOD_SECONDS:
            log.info(
                "advisory events are not read: with -period=%gs the poll alone comes close to IMDS's "
                "limit of 5 requests per second",
                settings.poll_interval_seconds,
            )
            return
        await self._polled_once.wait()
        version = settings.advisory_api_version
        while True:
            if version == ADVISORY_VERSION_AUTO:
                found = await self._advisory_version()
                if found is None:
                    return
                version = found or ADVISORY_VERSION_AUTO  # IMDS did not say: asked again next time
            if version != ADVISORY_VERSION_AUTO:
                try:
                    document = await self._imds.fetch_advisory_document(version)
                except ImdsError as exc:
                    if isinstance(exc, ImdsUnavailable) and exc.status == 400:
                        # Expected where Azure serves no advisories at that version: said once, not a fault.
                        log.info(
                            "IMDS refuses api-version %s: advisory events are not read (%s)", version, exc
                        )
                        self._take_advisories(())
                        return
                    log.debug("reading advisory events failed (tried again in %gs): %s", interval, exc)
                else:
                    main = {e.event_id for e in self._document.events} if self._document else set()
                    self._take_advisories(
                        tuple(e for e in document.events if e.advisory and e.event_id not in main)
                    )
            await asyncio.sleep(interval)

    async def _advisory_version(self) -> str | None:
        """The api-version to read advisories at: the newest IMDS names, when it is newer than
        -endpoint's; ``None`` when there is none (never asked again); "" when IMDS did not say."""
        settings = self._settings.imds
        mine = settings.endpoint_api_version
        try:
            versions = await self._imds.newest_versions()
        except ImdsError as exc:
            log.debug("asking IMDS for its newest api-versions failed (asked again later): %s", exc)
            return ""
        newest = versions[0] if versions else ""
        if newest and newest > mine:
            log.info(
                "advisory events (Spot rebalance recommendations) are read at api-version %s every %gs; "
                "everything else at %s (-endpoint)",
                newest,
                ADVISORY_POLL_PERIODS * settings.poll_interval_seconds,
                mine,
            )
            return newest
        log.info(
            "advisory events are read only if -endpoint's documents carry them: IMDS names no api-version "
            "newer than %s (%s)",
            mine,
            ", ".join(versions) or "no versions named",
        )
        return None

    def _take_advisories(self, advisories: tuple[ScheduledEvent, ...]) -> None:
        """The advisories now listed; a change is decided on at once (not at the next poll)."""
        if advisories == self._advisories:
            return
        self._advisories = advisories
        self._advisory_revision += 1
        if self._document is not None:
            self.on_document(self._document)

    def _with_advisories(self, document: ScheduledEventsDocument) -> ScheduledEventsDocument:
        present = {e.event_id for e in document.events}
        extra = tuple(e for e in self._advisories if e.event_id not in present)
        if not extra:
            return document
        return replace(document, events=(*document.events, *extra))

    def on_document(self, document: ScheduledEventsDocument) -> None:
        """Decide on a document of -endpoint (with the advisories read beside it) and start what it asks
        for; never blocks the poll loop."""
        self._document = document
        revision = (document.incarnation, self._advisory_revision)
        document = self._with_advisories(document)
        if not self.resource_name:
            return  # nothing can be told apart yet: decided on once the name is known
        first = self._last_revision is None
        changed = revision != self._last_revision
        now = self._now()
        metrics.ADVISORY_EVENTS.set(
            sum(1 for e in document.events if e.advisory and e.concerns(self.resource_name))
        )
        for event in document.events:
            if not event.concerns(self.resource_name):
                continue
            self._first_seen.setdefault(event.event_id, now)
            if event.event_id not in self._sighted:
                self._sighted.add(event.event_id)
                self._report_sighting(event)
            known = self._known.get(event.event_id)
            if known is not None and known.last_status is not event.status:
                self._known[event.event_id] = replace(known, last_status=event.status)
            self._list_event(event)
        if not self._deciding:
            self._await_api(document, now)
            return
        self._last_revision = revision
        if not (changed or first):
            self._show_condition()
            return
        with log_context(incarnation=document.incarnation):
            for action in self._decide(document, now):
                self._execute(action)
        present = {event.event_id for event in document.events}
        self._forget_ended(present)
        self._unlist_ended(present)
        self._show_condition()

    def _decide(self, document: ScheduledEventsDocument, now: datetime) -> tuple[policy.Action, ...]:
        """The pure decision on ``document`` with everything this handler knows."""
        return policy.decide(
            document,
            resource_name=self.resource_name,
            known=self._known,
            settings=self._response,
            now=now,
            boot_id=self._boot_id,
            first_seen=self._first_seen,
        )

    def _forget_ended(self, present: set[str]) -> None:
        """Drop what we remember of events that are over and gone from the document, so that months
        of events do not pile up in memory. IMDS never lists an EventId again once it has left."""
        ended = [i for i, known in self._known.items() if known.finished and i not in present]
        for event_id in ended:
            del self._known[event_id]
        self._responder.forget(ended)
        for event_id in [i for i in self._first_seen if i not in present and i not in self._known]:
            del self._first_seen[event_id]
        self._ignored &= present
        self._sighted &= present

    def _await_api(self, document: ScheduledEventsDocument, now: datetime) -> None:
        """Before the record on the node is read nothing is started: an earlier run may have handled an
        event already. What would be responded to is logged, waits, and is notified as soon as the
        API server is found not to answer; its response starts when the record is read."""
        plan = self._decide(document, now)
        waiting = {a.event.event_id: a.event for a in plan if isinstance(a, policy.Respond)}
        # A warning when the API server is known to be away; at start-up it usually answers a moment
        # after the first poll, and this is only the order things happen in.
        level = logging.WARNING if self._api_answers is False else logging.INFO
        for event in (waiting[i] for i in waiting.keys() - self._waiting.keys()):
            with log_context(event_id=event.event_id, event_type=event.event_type.value):
                log.log(
                    level,
                    "%s: its response starts once the record on the node is read",
                    describe_event(event),
                )
        self._waiting = waiting
        if waiting:
            self._urgent.set()  # the access task now asks every poll period
        if self._api_answers is False:
            for event in waiting.values():
                self._responder.notify_early(event)

    def _report_sighting(self, event: ScheduledEvent) -> None:
        """What the Go original did for every event of this VM, acted on or not: count it in
        scheduled_events_total and record a Warning Event whose reason is the event type (once the API
        server answers, if it did not yet)."""
        event_type = event.event_type_raw or event.event_type.value
        metrics.SCHEDULED_EVENTS.labels(
            node=self._node_name, resource=self.resource_name, type=event_type
        ).inc()
        if not self._deciding:
            self._deferred.append((event_type, kube_events.MESSAGE_GO_EVENT_RECEIVED))
            return
        self.in_background(
            self._recorder.record_node(
                type="Warning", reason=event_type, message=kube_events.MESSAGE_GO_EVENT_RECEIVED
            )
        )

    def in_background(self, work: Coroutine[Any, Any, None], name: str = "record-event") -> None:
        task = asyncio.create_task(work, name=name)
        self._courtesy.add(task)
        task.add_done_callback(self._courtesy.discard)

    def _execute(self, action: policy.Action) -> None:
        match action:
            case policy.Ignore(event=event, reason=reason):
                self.set_phase(event.event_id, Phase.IGNORED)
                if event.event_id not in self._ignored:
                    self._ignored.add(event.event_id)
                    with log_context(event_id=event.event_id, event_type=event.event_type.value):
                        log.info("ignoring %s event %s: %s", event.event_type_raw, event.event_id, reason)
            case policy.Prepare(event=event):
                self._remember_responded(event)
                self._spawn(event.event_id, self._responder.prepare(action))
            case policy.Respond(event=event):
                self._remember_responded(event)
                self._spawn(event.event_id, self._responder.respond(action))
            case policy.GiveBack() | policy.Finish():
                memory = self._known[action.event_id]
                self._known[action.event_id] = replace(memory, finished=True, resume=False)
                self._spawn(action.event_id, self._responder.conclude(action))

    def _remember_responded(self, event: ScheduledEvent) -> None:
        """A response (or an advisory's preparation) starts: remembered with the node's boot as it was
        when the event was first handled, so that a reboot is told apart."""
        previous = self._known.get(event.event_id)
        self._known[event.event_id] = KnownEvent(
            event_id=event.event_id,
            event_type=event.event_type,
            last_status=event.status,
            responded=True,
            boot_id=previous.boot_id if previous else self._boot_id,
        )

    def _spawn(self, event_id: str, work: Coroutine[Any, Any, None]) -> None:
        previous = self._tasks.get(event_id)
        task = asyncio.create_task(_after(previous, work), name=f"event-{event_id}")
        self._tasks[event_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(event_id) is done:
                del self._tasks[event_id]

        task.add_done_callback(forget)

    # --- what a response asks of the handler (response.EventHost) -------------------------------
    def first_seen(self, event_id: str) -> datetime:
        """When this handler (or the record of an earlier one) first saw the event; now if never."""
        return self._first_seen.get(event_id, self._now())

    def last_status(self, event_id: str) -> EventStatus | None:
        known = self._known.get(event_id)
        return known.last_status if known is not None else None

    def in_document(self, event_id: str) -> bool:
        """Whether the last document lists the event (True before any document was read)."""
        return self._document is None or event_id in self._document.by_id()

    def handling_event(self) -> bool:
        """True while a response or a give-back runs or waits for the API server, or an event we
        responded to is not concluded."""
        return (
            bool(self._tasks)
            or bool(self._waiting)
            or any(k.responded and not k.finished for k in self._known.values())
        )

    async def wait_idle(self) -> None:
        """Wait for every event task started so far (tests and -exitAfterNodeDrain use it)."""
        while self._tasks or self._courtesy:
            await asyncio.gather(*self._tasks.values(), *self._courtesy, return_exceptions=True)
        await self._conditions.flush()

    async def stop(self) -> None:
        """Cancel event tasks (on shutdown). Never undo anything: the node is probably going away."""
        tasks = [*self._tasks.values(), *self._courtesy]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # What the condition says stays on the node: a successor resumes and rewrites it.
        await self._conditions.close()

    # --- the AzureScheduledEvent condition --------------------------------------------------------
    def _list_event(self, event: ScheduledEvent) -> None:
        """List an event of this VM in the condition, with its latest status (concluded ones stay off)."""
        known = self._known.get(event.event_id)
        if known is not None and known.finished:
            return
        listed = self._listed.get(event.event_id)
        seen = ListedEvent(
            event_id=event.event_id,
            event_type=event.event_type_raw or event.event_type.value,
            first_seen=self._first_seen.get(event.event_id, self._now()),
            status=event.status.value,
            # Started events come without NotBefore: the one they were scheduled for stays shown.
            not_before=event.not_before or (listed.not_before if listed else None),
        )
        if listed is not None:
            seen = replace(seen, phase=listed.phase, drain_result=listed.drain_result)
        self._listed[event.event_id] = seen

    def set_phase(
        self, event_id: str, phase: Phase, drain_result: str = "", *, resumed: bool = False
    ) -> None:
        """The event's phase as the condition shows it (see ``ListedEvent.advanced``)."""
        listed = self._listed.get(event_id)
        if listed is not None:
            self._listed[event_id] = listed.advanced(phase, drain_result=drain_result, resumed=resumed)
            self._show_condition()

    def unlist(self, event_id: str) -> None:
        if self._listed.pop(event_id, None) is not None:
            self._show_condition()

    def _unlist_ended(self, present: set[str]) -> None:
        """Events that left the document and that no response holds any more leave the condition."""
        for event_id in [i for i in self._listed if i not in present and not self._holds(i)]:
            del self._listed[event_id]

    def _holds(self, event_id: str) -> bool:
        known = self._known.get(event_id)
        return event_id in self._tasks or (known is not None and known.responded and not known.finished)

    def _show_condition(self) -> None:
        if self._deciding:  # before, the node may show a condition of an earlier run: merged first
            self._conditions.show(self._listed.values())


async def _after(previous: asyncio.Task[None] | None, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` once the previous task of the same event has been cancelled and has ended."""
    if previous is not None and not previous.done():
        previous.cancel()
        with contextlib.suppress(BaseException):
            await previous
    await work
