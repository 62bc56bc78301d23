"""The response to one Scheduled Event of this VM: protect, notify, drain, approve, or prepare the node
for an advisory, and the give-back or the end once the event is over.

The handler (:mod:`aksnth.handler`) polls and decides; for each action of the plan that acts on the
node it starts one of :meth:`Responder.respond`, :meth:`Responder.prepare` or :meth:`Responder.conclude`
as the event's own task. Each is safe to run twice: it reads the record on the Node first and resumes
from the phase recorded there (:mod:`aksnth.lifecycle`), so a transient failure, or a restarted
handler, takes it up where it stopped. The notifications of an event are sent from here, at most once
per phase, also when the Kubernetes API server does not answer (:meth:`Responder.notify_early`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import datetime
from typing import Any, Protocol

from aksnth import policy
from aksnth.azure.imds import ImdsClient
from aksnth.azure.resource_name import resource_name_from_provider_id
from aksnth.config import Settings, TaintEffect
from aksnth.durations import format_duration
from aksnth.errors import (
    AksnthError,
    EvictionBlocked,
    ImdsError,
    ImdsUnavailable,
    KubeError,
    KubeForbidden,
    KubeUnavailable,
    WriteConflict,
)
from aksnth.kube import drain as kube_drain
from aksnth.kube import events as kube_events
from aksnth.kube import group as kube_group
from aksnth.kube import keys
from aksnth.kube import node as kube_node
from aksnth.kube import peers as kube_peers
from aksnth.kube.api import KubeClient
from aksnth.kube.drainplan import DrainResult
from aksnth.kube.record import EventRecord, NodeRecord
from aksnth.kube.surge import Surger
from aksnth.lifecycle import Phase
from aksnth.model import EventStatus, InstanceMetadata, NodeSnapshot, ScheduledEvent
from aksnth.notify.dispatcher import Notifier
from aksnth.notify.payload import build_template_data
from aksnth.observe import metrics
from aksnth.observe.logging import log_context
from aksnth.retry import Backoff, no_retry_after, retry

log = logging.getLogger(__name__)

# A read of the Node that has not answered after this long counts as the API server not answering:
# the events waiting for it are notified then (the read goes on). Longer than a slow answer of a busy
# server, short against a Spot VM's 30 s of notice.
API_PATIENCE_SECONDS = 2.0
# Instance metadata is only decoration for notifications: never wait long for it.
INSTANCE_METADATA_TIMEOUT_SECONDS = 2.0
# A response or a give-back that failed on a transient error is tried again (it resumes from the
# record on the node) after the waits of RETRY_BACKOFF: a response until the event's deadline, a
# give-back for up to GIVE_BACK_RETRY_WINDOW_SECONDS. An API server restart or a burst of throttling
# must not leave a node unprotected, or cordoned for good.
RETRY_BACKOFF = Backoff(steps=(1.0, 2.0, 5.0, 10.0, 30.0))
GIVE_BACK_RETRY_WINDOW_SECONDS = 600.0
TRANSIENT_ERRORS = (KubeUnavailable, KubeForbidden, WriteConflict, EvictionBlocked, ImdsUnavailable)


class EventHost(Protocol):
    """What a response asks of the handler that started it: what it saw of the events, the node's
    condition, and the Kubernetes API server's state as the handler's reads of the Node find it."""

    exit_requested: asyncio.Event

    @property
    def resource_name(self) -> str: ...
    def first_seen(self, event_id: str) -> datetime: ...
    def last_status(self, event_id: str) -> EventStatus | None: ...
    def in_document(self, event_id: str) -> bool: ...
    def set_phase(
        self, event_id: str, phase: Phase, drain_result: str = "", *, resumed: bool = False
    ) -> None: ...
    def unlist(self, event_id: str) -> None: ...
    def in_background(self, work: Coroutine[Any, Any, None], name: str = ...) -> None: ...
    async def read_node(self) -> NodeSnapshot | None: ...


class Responder:
    """Carries out the actions of a plan that act on the node, one event at a time per task."""

    def __init__(
        self,
        host: EventHost,
        *,
        settings: Settings,
        kube: KubeClient,
        imds: ImdsClient,
        recorder: kube_events.EventRecorder,
        notifier: Notifier | None,
        wall_clock: Callable[[], datetime],
    ) -> None:
        self._settings, self._response = settings, settings.response
        self._imds, self._kube, self._notifier, self._recorder = imds, kube, notifier, recorder
        self._now = wall_clock
        self._node_name = settings.kube.node_name
        self._host = host
        # Notifications submitted by this process, by (EventId, phase): a retried response never
        # sends one twice, even before the record on the node says so.
        self.notified: set[tuple[str, str]] = set()
        self.instance: InstanceMetadata | None = None  # IMDS's view of the VM, for notifications
        # Each event's surger (with -surgeDeployments): a drain resumed after a transient failure
        # keeps the surges already started, so a Deployment is surged once per event, and an eviction
        # held for a replacement is held again.
        self._surgers: dict[str, Surger] = {}

    def forget(self, event_ids: Iterable[str]) -> None:
        """Drops what is kept of events that are over and gone from the document (IMDS never lists an
        EventId again), so that months of events do not pile up."""
        gone = set(event_ids)
        self.notified.difference_update([entry for entry in self.notified if entry[0] in gone])
        for event_id in gone:
            self._surgers.pop(event_id, None)

    def _surger(self, event: ScheduledEvent) -> Surger | None:
        if not self._response.surge_deployments:
            return None
        if event.event_id not in self._surgers:
            self._surgers[event.event_id] = Surger(
                self._kube,
                recorder=self._recorder,
                because=f"Azure {event.event_type.value} {event.event_id}",
            )
        return self._surgers[event.event_id]

    # --- executing a response ---------------------------------------------------------------------
    async def respond(self, action: policy.Respond) -> None:
        event = action.event
        with log_context(event_id=event.event_id, event_type=event.event_type.value, action="respond"):
            attempt = 0
            while True:
                try:
                    await self._respond_steps(action)
                    return
                except asyncio.CancelledError:
                    log.info("response to %s %s stopped", event.event_type.value, event.event_id)
                    raise
                except TRANSIENT_ERRORS as exc:
                    attempt += 1
                    left = (action.event_deadline - self._now()).total_seconds()
                    if left <= 0:
                        log.error(
                            "response to %s %s failed (attempt %d) and the event is due: %s",
                            event.event_type.value,
                            event.event_id,
                            attempt,
                            exc,
                        )
                        return
                    if isinstance(exc, KubeUnavailable):
                        # The API server is away: what needs none is done now (the notification),
                        # the response resumes as soon as it answers, not after a fixed wait.
                        log.warning(
                            "response to %s %s failed (attempt %d), resuming when the Kubernetes API "
                            "server answers: %s",
                            event.event_type.value,
                            event.event_id,
                            attempt,
                            exc,
                        )
                        self.notify_early(event)
                        await self._until_api_answers(left)
                        continue
                    delay = min(RETRY_BACKOFF.delay(attempt), left)
                    log.warning(
                        "response to %s %s failed (attempt %d), resuming in %.0fs: %s",
                        event.event_type.value,
                        event.event_id,
                        attempt,
                        delay,
                        exc,
                    )
                    await asyncio.sleep(delay)
                except AksnthError as exc:
                    log.error("response to %s %s failed: %s", event.event_type.value, event.event_id, exc)
                    return
                except Exception:
                    log.exception(
                        "response to %s %s failed unexpectedly", event.event_type.value, event.event_id
                    )
                    return

    async def _respond_steps(self, action: policy.Respond) -> None:
        event = action.event
        dry = self._response.dry_run
        seen_at = self._host.first_seen(event.event_id)
        log.info(
            "%s; the drain reports by %s, the event is due at %s%s",
            action.reason,
            action.drain_deadline.isoformat(timespec="seconds"),
            action.event_deadline.isoformat(timespec="seconds"),
            " [dry run: the node is not changed]" if dry else "",
        )
        current = await self._read_node_for(event)
        before = NodeRecord.from_annotations(current.annotations).events.get(event.event_id)
        resumed = before is not None
        if before is not None:
            self._host.set_phase(
                event.event_id, before.phase, before.drain.result if before.drain else "", resumed=True
            )

        # 1. Tell people first; delivery runs on its own task and never delays what follows. What the
        # notification needs (the node's pods, the VM's metadata) is read while the EventSeen Event is
        # written: the cordon waits for each of them, so none of them waits for another.
        first_steps: list[Coroutine[Any, Any, None]] = []
        if self._notifier is not None and not self._was_notified(event.event_id, "event", before):
            first_steps.append(self._notify_event(event, current))
        if not resumed:
            first_steps.append(
                self._recorder.record_node(
                    type="Warning", reason=kube_events.REASON_EVENT_SEEN, message=describe_event(event)
                )
            )
        await asyncio.gather(*first_steps)
        # Recorded on the node with the cordon (one write), or on its own when the cordon is done.
        record_event_notified = (event.event_id, "event") in self.notified and (
            before is None or "event" not in before.notified
        )

        # 2. Stop new traffic and new pods: LB exclusion label, cordon, taint (NoExecute waits).
        if before is None or before.phase.rank < Phase.PROTECTED.rank:
            await kube_node.protect_node(
                self._kube,
                self._node_name,
                event=event,
                taint=self._response.taint_node,
                effect=self._response.taint_effect,
                exclude_from_lb=self._response.exclude_from_load_balancers,
                dry_run=dry,
                now=seen_at,
                notified=("event",) if record_event_notified else (),
                to_be_deleted=self._response.taint_to_be_deleted,
            )
            record_event_notified = False
            self._host.set_phase(event.event_id, Phase.PROTECTED)
            metrics.EVENT_TO_CORDON.labels(since="sighting").observe(
                max((self._now() - seen_at).total_seconds(), 0.0)
            )
            log.info("node %s cordoned%s", self._node_name, " (dry run)" if dry else "")
            await self._recorder.record_node(
                type="Normal",
                reason=kube_events.REASON_CORDONED,
                message=f"Cordoned for Azure {event.event_type.value} {event.event_id}"
                + (" (dry run: not really)" if dry else ""),
            )
        if record_event_notified:
            await kube_node.update_record(
                self._kube, self._node_name, lambda r: r.with_notified(event.event_id, "event"), dry_run=dry
            )

        # 3. Drain within the time that is left, once the other nodes under the event are cordoned.
        if before is None or before.phase.rank < Phase.DRAINED.rank:
            if action.peers and not dry:
                await self._wait_for_peers(action, pool=current.labels.get(keys.AGENT_POOL_LABEL, ""))
            await self._drain(action)

        # 4. Let Azure go ahead early once this node and every other node under the event are empty.
        needless = self._approval_needless(event)
        if self._response.approve_events and not dry and needless:
            log.info("not approving event %s: %s", event.event_id, needless)
        elif self._response.approve_events and not dry and (before is None or not before.approved):
            record = NodeRecord.from_annotations(
                (await kube_node.read_node(self._kube, self._node_name)).annotations
            ).events.get(event.event_id)
            if record is None or record.drain is None or record.drain.result != "drained":
                await self._withhold_approval(event, "the drain of this node did not complete")
            elif await self._group_drained(action) and await self._load_balancer_let_go(action, record):
                await self._imds.approve_event(event.event_id)
                await kube_node.update_record(
                    self._kube, self._node_name, lambda r: r.with_approved(event.event_id), dry_run=dry
                )
                self._host.set_phase(event.event_id, Phase.APPROVED)
                await self._recorder.record_node(
                    type="Normal",
                    reason=kube_events.REASON_APPROVED,
                    message=f"Approved {event.event_id} through StartRequests: Azure may proceed now",
                )
                log.info("approved event %s: Azure may start it now", event.event_id)

        if self._response.exit_after_node_drain:
            log.info("-exitAfterNodeDrain: exiting now that the drain is over")
            self._host.exit_requested.set()

    async def _load_balancer_let_go(self, action: policy.Respond, record: EventRecord) -> bool:
        """Whether to approve now, after waiting for the load balancer. Our ToBeDeletedByClusterAutoscaler
        taint makes kube-proxy fail its /healthz at once, but Azure's load balancer takes the node out only
        after its probe has failed enough times: until then it still sends new connections here, and an
        approval would let the VM go under them. So the approval waits -approveEvents.loadBalancerWait
        after the taint went on (its value is that moment, in Unix seconds), never past the event's start;
        False when the event no longer needs an approval after the wait."""
        wait = self._response.approve_load_balancer_wait_seconds
        ours = [ref.value for ref in record.taints if ref.key == keys.TO_BE_DELETED_TAINT]
        since = float(ours[0]) if ours and ours[0].isdigit() else None
        if wait <= 0 or since is None:
            return True
        event = action.event
        until = min(since + wait, action.event_deadline.timestamp())
        left = until - self._now().timestamp()
        if left > 0:
            log.info(
                "approval of %s waits %.1fs more: the load balancer takes the node out %s after the %s taint",
                event.event_id,
                left,
                format_duration(wait),
                keys.TO_BE_DELETED_TAINT,
            )
            await asyncio.sleep(left)
        needless = self._approval_needless(event)
        if needless:
            log.info("not approving event %s: %s", event.event_id, needless)
        return not needless

    def _approval_needless(self, event: ScheduledEvent) -> str:
        """Why StartRequests would change nothing for ``event`` now ("" when it would let Azure start
        it early): an advisory ("acknowledging them has no effect"), an event that has started (seen
        Started, or started at NotBefore while the drain ran), one that left the document."""
        if event.advisory:
            return "it is advisory; StartRequests has no effect on it"
        status = self._host.last_status(event.event_id) or event.status
        if EventStatus.STARTED in (status, event.status):
            return "it has started already; Azure no longer waits for an approval"
        if not self._host.in_document(event.event_id):
            return "it is no longer in the Scheduled Events document"
        return ""

    # --- an advisory's preparation -----------------------------------------------------------------
    async def prepare(self, action: policy.Prepare) -> None:
        event = action.event
        with log_context(event_id=event.event_id, event_type=event.event_type.value, action="prepare"):

            def unavailable() -> None:
                self.notify_early(event)

            await self._retry_in_window(
                lambda: self._prepare_steps(action),
                what=f"preparing for {event.event_id}",
                on_unavailable=unavailable,
            )

    async def _prepare_steps(self, action: policy.Prepare) -> None:
        """Notify, taint PreferNoSchedule (new pods prefer other nodes), record it and say so; nothing is
        cordoned, evicted or approved."""
        event = action.event
        dry = self._response.dry_run
        seen_at = self._host.first_seen(event.event_id)
        log.info("%s%s", action.reason, " [dry run: the node is not changed]" if dry else "")
        current = await self._read_node_for(event)
        before = NodeRecord.from_annotations(current.annotations).events.get(event.event_id)
        if self._notifier is not None and not self._was_notified(event.event_id, "event", before):
            await self._notify_event(event, current)
        sent = (event.event_id, "event") in self.notified and (
            before is None or "event" not in before.notified
        )
        await kube_node.prepare_node(
            self._kube,
            self._node_name,
            event=event,
            dry_run=dry,
            now=seen_at,
            notified=("event",) if sent else (),
        )
        self._host.set_phase(event.event_id, Phase.PREPARED)
        if before is None:
            key = keys.taint_key(event.event_type)
            await self._recorder.record_node(
                type="Normal",
                reason=kube_events.REASON_PREPARED,
                message=f"Azure {event.event_type.value} {event.event_id}: tainted {key}={event.event_id}:"
                "PreferNoSchedule so that new pods prefer other nodes; nothing is drained"
                + (" (dry run: not really)" if dry else ""),
            )

    async def _read_node_for(self, event: ScheduledEvent) -> NodeSnapshot:
        """The node, read to start or resume a response. Should the API server not answer within
        API_PATIENCE_SECONDS, the event is notified at once with what is known without it; the read
        goes on (and fails as it will, see ``_respond``)."""
        read = asyncio.ensure_future(kube_node.read_node(self._kube, self._node_name))
        try:
            done, _ = await asyncio.wait({read}, timeout=API_PATIENCE_SECONDS)
            if not done:
                self.notify_early(event)
            return await read
        finally:
            read.cancel()  # only when cancelled ourselves: the read is over otherwise

    async def _until_api_answers(self, seconds: float) -> None:
        """Read the Node every poll period until the API server answers, for at most ``seconds``."""
        give_up_at = asyncio.get_running_loop().time() + seconds
        period = self._settings.imds.poll_interval_seconds
        while (left := give_up_at - asyncio.get_running_loop().time()) > 0:
            await asyncio.sleep(min(period, left))
            if await self._host.read_node() is not None:
                return

    async def _group_drained(self, action: policy.Respond) -> bool:
        """Whether every other node of this cluster the event lists is drained (or cannot be), waiting
        for them until the event's deadline: an approval releases the event for all of them."""
        event = action.event
        others = kube_group.other_resources(event.resources, mine=self._host.resource_name)
        if not others:
            return True
        log.info(
            "event %s lists %d other VM(s): approving once each of their nodes is drained",
            event.event_id,
            len(others),
        )
        watch = kube_group.GroupWatch(event_id=event.event_id, resources=others, resource_of=_resource_of)
        left = (action.event_deadline - self._now()).total_seconds()
        state = await kube_group.wait_group_drained(
            self._kube, watch, until=asyncio.get_running_loop().time() + max(left, 0.0)
        )
        if state.foreign:
            await self._withhold_approval(
                event,
                "it lists VMs that are not nodes of this cluster, which an approval would release too "
                f"({state.describe()})",
            )
            return False
        if not state.complete:
            await self._withhold_approval(
                event, f"other nodes under it were still draining at its deadline ({state.describe()})"
            )
            return False
        log.info("every other node under event %s is done: %s", event.event_id, state.describe())
        return True

    async def _withhold_approval(self, event: ScheduledEvent, why: str) -> None:
        log.warning("not approving event %s: %s; Azure starts it at NotBefore", event.event_id, why)
        await self._recorder.record_node(
            type="Warning",
            reason=kube_events.REASON_APPROVAL_WITHHELD,
            message=f"Not approving {event.event_id}: {why}",
        )

    async def _wait_for_peers(self, action: policy.Respond, *, pool: str) -> None:
        """Until the other nodes under the document's events are cordoned (bounded): pods evicted
        before then could be rescheduled onto them and would have to go again."""
        left = (action.drain_deadline - self._now()).total_seconds()
        wait = policy.peer_wait_seconds(
            poll_interval_seconds=self._settings.imds.poll_interval_seconds, time_left_seconds=left
        )
        if wait <= 0:
            return
        result = await kube_peers.wait_peers_cordoned(
            self._kube,
            action.peers,
            resource_of=_resource_of,
            until=asyncio.get_running_loop().time() + wait,
            labels={keys.AGENT_POOL_LABEL: pool} if pool else None,
        )
        if not result.waited_for:
            return  # none of those VMs is a node of this pool, or all were cordoned already
        if result.complete:
            log.info(
                "the %d other node(s) under the event not yet cordoned are now (waited %.2fs); evicting",
                len(result.waited_for),
                result.seconds,
            )
        else:
            log.warning(
                "%d of %d other node(s) under the event are still schedulable after %.1fs (%s); evicting "
                "anyway: evicted pods may be rescheduled onto them",
                len(result.schedulable),
                len(result.waited_for),
                result.seconds,
                ", ".join(result.schedulable[:5]) + (", …" if len(result.schedulable) > 5 else ""),
            )

    async def _drain(self, action: policy.Respond) -> None:
        """Evict the node's pods until the VM's end; report at -nodeGracePeriodSeconds if not over."""
        event = action.event
        dry = self._response.dry_run
        now = self._now()
        loop_now = asyncio.get_running_loop().time()
        # A resumed response (after a transient failure) still gets the minimum drain time.
        floor = policy.MIN_DRAIN.total_seconds()
        until_end = max((action.event_deadline - now).total_seconds(), floor)
        until_report = min(max((action.drain_deadline - now).total_seconds(), floor), until_end)
        await self._recorder.record_node(
            type="Normal",
            reason=kube_events.REASON_DRAIN_STARTED,
            message=f"Draining for Azure {event.event_type.value} {event.event_id} within {until_end:.0f}s"
            + (f", reporting after {until_report:.0f}s" if until_report < until_end else ""),
        )
        reported: list[DrainResult] = []

        async def report(interim: DrainResult) -> None:
            reported.append(interim)
            await self._report_drain(event, interim, going_on=True)

        result = await kube_drain.drain_node(
            self._kube,
            self._node_name,
            deadline=loop_now + until_end,
            report_at=loop_now + until_report,
            on_report=report,
            grace_period_seconds=self._response.pod_grace_period_seconds,
            disable_eviction=self._response.disable_eviction,
            dry_run=dry,
            last_resort=action.last_resort,
            recorder=self._recorder,
            event_type=event.event_type,
            surger=self._surger(event),
        )
        if not reported:
            await self._report_drain(event, result)
        else:
            # The report went out at -nodeGracePeriodSeconds; this is how the evictions that went on ended.
            level = logging.INFO if result.succeeded else logging.WARNING
            log.log(level, "drain over after its report: %s", result.summary())
            await self._recorder.record_node(
                type="Normal" if result.succeeded else "Warning",
                reason=kube_events.REASON_DRAIN_FINISHED
                if result.succeeded
                else kube_events.REASON_DRAIN_FAILED,
                message=f"after its report: {result.summary()}",
            )
        # NoExecute only after the drain, so that PodDisruptionBudgets were honoured.
        if self._response.taint_node and self._response.taint_effect is TaintEffect.NO_EXECUTE:
            await kube_node.apply_after_drain_taint(self._kube, self._node_name, event=event, dry_run=dry)
            await self._recorder.record_node(
                type="Normal",
                reason=kube_events.REASON_TAINTED_NO_EXECUTE,
                message=f"Tainted NoExecute after the drain for {event.event_id}",
            )
        notified = ("drained",) if (event.event_id, "drained") in self.notified else ()

        def record_drain(record: NodeRecord) -> NodeRecord:
            record = record.with_drain_result(event.event_id, result)
            for phase in notified:
                record = record.with_notified(event.event_id, phase)
            return record

        await kube_node.update_record(self._kube, self._node_name, record_drain, dry_run=dry)
        self._host.set_phase(event.event_id, Phase.DRAINED, result.result.value)

    async def _report_drain(
        self, event: ScheduledEvent, result: DrainResult, *, going_on: bool = False
    ) -> None:
        """What the drain reports, once: a log line, a DrainFinished or DrainFailed Event, and the
        "drained" notification. The notification is submitted before the result is recorded on the
        node, and recorded with it (one write): a handler killed after that write neither repeats it
        nor forgets it."""
        level = logging.INFO if result.succeeded else logging.WARNING
        log.log(
            level, "drain %s: %s", "report (the evictions go on)" if going_on else "over", result.summary()
        )
        await self._recorder.record_node(
            type="Normal" if result.succeeded else "Warning",
            reason=kube_events.REASON_DRAIN_FINISHED if result.succeeded else kube_events.REASON_DRAIN_FAILED,
            message=result.summary(),
        )
        if (
            self._notifier is not None
            and self._settings.notify.notify_on_drain_finished
            and (event.event_id, "drained") not in self.notified
        ):
            node = await self._snapshot_for_notification()
            self._notify("drained", event, node, drain_result=result.as_template_data())

    async def conclude(self, action: policy.GiveBack | policy.Finish) -> None:
        with log_context(event_id=action.event_id, event_type=action.event_type.value, action="conclude"):
            if await self._retry_in_window(
                lambda: self._conclude_once(action), what=f"concluding event {action.event_id}"
            ):
                self._host.unlist(action.event_id)

    async def _retry_in_window(
        self,
        work: Callable[[], Awaitable[None]],
        *,
        what: str,
        on_unavailable: Callable[[], None] | None = None,
    ) -> bool:
        """Run ``work`` again after a transient error (it resumes from the record on the node), after
        the waits of RETRY_BACKOFF, for up to GIVE_BACK_RETRY_WINDOW_SECONDS; True once it succeeded.
        ``on_unavailable`` hears of each attempt the API server did not answer."""

        async def attempt() -> None:
            try:
                await work()
            except KubeUnavailable:
                if on_unavailable is not None:
                    on_unavailable()
                raise

        try:
            await retry(
                attempt,
                backoff=RETRY_BACKOFF,
                retry_on=TRANSIENT_ERRORS,
                what=what,
                deadline=asyncio.get_running_loop().time() + GIVE_BACK_RETRY_WINDOW_SECONDS,
                retry_after=no_retry_after,  # each request already honoured it
                logger=log,
                retry_level=logging.WARNING,
                give_up_level=logging.ERROR,
            )
        except AksnthError as exc:
            if not isinstance(exc, TRANSIENT_ERRORS):
                log.error("%s failed: %s", what, exc)
            return False
        return True

    async def _conclude_once(self, action: policy.GiveBack | policy.Finish) -> None:
        dry = self._response.dry_run
        if isinstance(action, policy.Finish):
            log.info("event %s is over: %s", action.event_id, action.reason)
            await kube_node.update_record(
                self._kube, self._node_name, lambda r: r.with_finished(action.event_id), dry_run=dry
            )
            return
        log.info("giving the node back: %s", action.reason)
        undone = await kube_node.give_back(self._kube, self._node_name, event_id=action.event_id, dry_run=dry)
        log.info("node given back: %s", undone)
        await self._recorder.record_node(
            type="Normal", reason=kube_events.REASON_GIVEN_BACK, message=f"{action.reason}: {undone}"
        )

    # --- notifications ----------------------------------------------------------------------------
    def _was_notified(self, event_id: str, phase: str, recorded: EventRecord | None) -> bool:
        """Sent by this process, or by an earlier one according to the record on the node."""
        return (event_id, phase) in self.notified or (recorded is not None and phase in recorded.notified)

    def notify_early(self, event: ScheduledEvent) -> None:
        """Notify an event whose response waits for the API server now, with what is known without it
        (the event, the node's name, IMDS's view of the VM); never twice (see ``_notified``)."""
        if self._notifier is None or (event.event_id, "event") in self.notified:
            return
        self.notified.add((event.event_id, "event"))  # claimed now: the response must not send it too

        async def send() -> None:
            await self._fetch_instance_metadata()
            with log_context(event_id=event.event_id, event_type=event.event_type.value):
                log.info(
                    "notifying %s %s before the Kubernetes API server answers",
                    event.event_type.value,
                    event.event_id,
                )
                self._notify("event", event, None)

        self._host.in_background(send(), name="notify-early")

    async def _notify_event(self, event: ScheduledEvent, node: NodeSnapshot) -> None:
        """The first notification: the node as read before anything changed, with its pods."""
        with_pods, _ = await asyncio.gather(self._with_pods(node), self._fetch_instance_metadata())
        self._notify("event", event, with_pods)

    async def _with_pods(self, node: NodeSnapshot) -> NodeSnapshot:
        try:
            return await kube_node.with_pod_names(self._kube, node)
        except KubeError as exc:
            log.warning("cannot list the node's pods for the notification: %s", exc)
            return node

    async def _snapshot_for_notification(self) -> NodeSnapshot:
        try:
            return await kube_node.read_node_with_pods(self._kube, self._node_name)
        except KubeError as exc:
            log.warning("cannot read node details for the notification: %s", exc)
            return NodeSnapshot(name=self._node_name)

    async def _fetch_instance_metadata(self) -> None:
        if self.instance is not None:
            return
        try:
            async with asyncio.timeout(INSTANCE_METADATA_TIMEOUT_SECONDS):
                self.instance = await self._imds.fetch_instance_metadata()
        except (ImdsError, TimeoutError) as exc:
            log.info("instance metadata unavailable for notifications: %s", exc)
            self.instance = InstanceMetadata()

    def _notify(
        self,
        phase: str,
        event: ScheduledEvent,
        node: NodeSnapshot | None,
        drain_result: dict[str, Any] | None = None,
    ) -> None:
        if self._notifier is None:
            return
        data = build_template_data(
            event=event,
            node=node or NodeSnapshot(name=self._node_name),
            phase=phase,
            drain_result=drain_result,
            instance=self.instance,
        )
        self._notifier.submit(phase, data)
        self.notified.add((event.event_id, phase))


def _resource_of(provider_id: str) -> str | None:
    """A node's Azure resource name, or None when its providerID names no Azure VM (yet)."""
    try:
        return resource_name_from_provider_id(provider_id)
    except ValueError:
        return None


def describe_event(event: ScheduledEvent) -> str:
    if event.advisory:
        when = "advisory"
    elif event.status is EventStatus.STARTED:
        when = "started"
    else:
        when = f"scheduled not before {event.not_before_raw or 'unknown'}"
    source = event.event_source or "unknown source"
    # DurationInSeconds: -1 unknown (said by nothing), 0 no interruption, else its length.
    if event.duration_seconds == 0:
        source += ", no interruption expected"
    elif event.duration_seconds > 0:
        source += f", about {event.duration_seconds}s of interruption expected"
    kind = event.event_type_raw or event.event_type.value
    return f"Azure {kind} {event.event_id} {when} ({source}): {event.description}".rstrip(": ")
