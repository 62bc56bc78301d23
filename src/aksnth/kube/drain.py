"""The drain: evict the node's pods within the time that is left, and say what could not go.

Regular workloads go first, critical ones (system priority classes, kube-system) after the regular
ones are gone or have had their share of the time. Evictions go through policy/v1 Eviction, so
PodDisruptionBudgets are honoured: a 429 is retried (after the server's Retry-After, about 1 s by
default) until the deadline. Grace periods are cut to fit. ``disable_eviction`` deletes instead
(bypassing PDBs). Pods are then awaited until they are gone (polling the node's pods with a field
selector), never past the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from lightkube import AsyncClient
from lightkube.models.meta_v1 import DeleteOptions, ObjectMeta, Preconditions
from lightkube.resources.core_v1 import Pod

from aksnth.errors import EvictionBlocked, KubeError, KubeForbidden, KubeUnavailable
from aksnth.kube.client import DEFAULT_CALL_TIMEOUT_SECONDS, api_call, backoff_seconds, with_retries
from aksnth.kube.drainplan import (
    DrainOutcome,
    DrainPlan,
    DrainResult,
    PodIssue,
    effective_grace_period,
    plan_drain,
    regular_phase_end,
)
from aksnth.kube.events import REASON_POD_EVICTED, EventRecorder, ObjectRef
from aksnth.kube.keys import COMPONENT
from aksnth.kube.pods import PodInfo, list_pods_on_node
from aksnth.model import EventType
from aksnth.observe.metrics import DRAIN_DURATION, EVICTIONS

__all__ = ["DrainOutcome", "DrainResult", "PodIssue", "PodProgress", "drain_node"]

log = logging.getLogger(__name__)

#: Evictions (or deletions) in flight at once: 250 pods must not mean 250 connections.
MAX_CONCURRENT_EVICTIONS: Final = 32
#: Wait after a 429 when the server does not say (kubectl drain waits 5 s; we have less time).
DEFAULT_RETRY_AFTER_SECONDS: Final = 1.0
#: Longest wait after a 429, whatever the server says: the deadline is usually close.
MAX_RETRY_AFTER_SECONDS: Final = 5.0
#: Polling the node's pods while waiting for evicted pods to be gone: first and longest interval.
POLL_FIRST_SECONDS: Final = 0.2
POLL_MAX_SECONDS: Final = 1.0
#: After the drain, Events about evicted pods get at most this long to be written.
EVENTS_FLUSH_SECONDS: Final = 5.0


class _State(enum.Enum):
    PENDING = "pending"  # not asked yet (or only transient errors so far)
    BLOCKED = "blocked"  # refused with 429, retrying
    REQUESTED = "requested"  # eviction/deletion accepted: terminating
    GONE = "gone"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class PodProgress:
    """Passed to ``on_progress``: one pod changed state (evicted, deleted, blocked, failed, gone)."""

    namespace: str
    name: str
    uid: str
    outcome: str
    detail: str = ""

    @property
    def pod(self) -> str:
        return f"{self.namespace}/{self.name}"


ProgressCallback = Callable[[PodProgress], Awaitable[None] | None]


class _Drain:
    """One drain's mutable bookkeeping; lives only inside :func:`drain_node`."""

    def __init__(
        self,
        client: AsyncClient,
        node_name: str,
        *,
        deadline: float,
        grace_period_seconds: int,
        disable_eviction: bool,
        on_progress: ProgressCallback | None,
        recorder: EventRecorder | None,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.deadline = deadline
        self.grace_period_seconds = grace_period_seconds
        self.disable_eviction = disable_eviction
        self.on_progress = on_progress
        self.recorder = recorder
        self.loop = asyncio.get_running_loop()
        self.limit = asyncio.Semaphore(MAX_CONCURRENT_EVICTIONS)
        self.state: dict[str, _State] = {}
        self.reason: dict[str, str] = {}
        self.removed: list[str] = []  # accepted evictions/deletions, in order
        self.failed: list[PodIssue] = []
        self.pdb_retries = 0
        self.events: asyncio.Queue[PodProgress] = asyncio.Queue()
        # Regular pods whose first eviction request has not been answered yet (see write_events).
        self.unanswered: set[str] = set()
        self.first_requests_answered = asyncio.Event()

    def time_left(self) -> float:
        return self.deadline - self.loop.time()

    # --- one pod ------------------------------------------------------------------------------------
    async def remove(self, pod: PodInfo) -> None:
        """Evict (or delete) ``pod`` until accepted, gone, failed, or out of time."""
        attempt = 0
        while self.state[pod.key] in (_State.PENDING, _State.BLOCKED):
            time_left = self.time_left()
            if time_left <= 0:
                return
            attempt += 1
            grace = effective_grace_period(
                pod_seconds=pod.grace_period_seconds,
                configured=self.grace_period_seconds,
                time_left=time_left,
            )
            try:
                async with self.limit:
                    await self._request(
                        pod, grace, timeout_seconds=min(DEFAULT_CALL_TIMEOUT_SECONDS, time_left)
                    )
            except EvictionBlocked as exc:
                self.pdb_retries += 1
                EVICTIONS.labels(result="pdb_blocked_retried").inc()
                why = (
                    f"blocked by PodDisruptionBudget {exc.budget}"
                    if exc.budget
                    else f"eviction refused: {exc}"
                )
                if self.state[pod.key] is not _State.BLOCKED:
                    log.info("eviction of %s refused, retrying until the deadline: %s", pod.key, why)
                    await self._progress(pod, "blocked", why)
                self._set(pod, _State.BLOCKED, why)
                wait = min(exc.retry_after_seconds or DEFAULT_RETRY_AFTER_SECONDS, MAX_RETRY_AFTER_SECONDS)
                await asyncio.sleep(max(min(wait, self.time_left()), 0))
            except (KubeUnavailable, KubeForbidden) as exc:
                # A 403 is retried too: a restarted API server answers before its RBAC cache is
                # filled, and a permanent one costs nothing but the time the pod could not use anyway.
                if isinstance(exc, KubeForbidden) and self.reason.get(pod.key) != str(exc):
                    log.warning("evicting %s is forbidden (retrying until the deadline): %s", pod.key, exc)
                self.reason[pod.key] = str(exc)
                log.info("evicting %s failed (attempt %d, retrying): %s", pod.key, attempt, exc)
                await asyncio.sleep(max(min(backoff_seconds(attempt), self.time_left()), 0))
            except KubeError as exc:
                if exc.status == 404:
                    self._set(pod, _State.GONE, "")
                    await self._progress(pod, "gone")
                elif exc.status == 409 and "precondition" in str(exc).lower():
                    # The UID precondition failed: the pod we listed is gone; a namesake replaced it.
                    self._set(pod, _State.GONE, "")
                    await self._progress(pod, "gone")
                else:
                    self._set(pod, _State.FAILED, str(exc))
                    self.failed.append(PodIssue(pod=pod.key, reason=str(exc)))
                    EVICTIONS.labels(result="failed").inc()
                    log.warning("could not evict %s: %s", pod.key, exc)
                    await self._progress(pod, "failed", str(exc))
            else:
                outcome = "deleted" if self.disable_eviction else "evicted"
                self._set(pod, _State.REQUESTED, "still terminating")
                self.removed.append(pod.key)
                EVICTIONS.labels(result=outcome).inc()
                log.info(
                    "%s %s (grace period %s)", outcome, pod.key, "pod's own" if grace is None else f"{grace}s"
                )
                await self._progress(pod, outcome)

    async def _request(self, pod: PodInfo, grace: int | None, *, timeout_seconds: float) -> None:
        if self.disable_eviction:
            async with api_call(f"delete pod {pod.key}", timeout_seconds=timeout_seconds):
                await self.client.delete(Pod, pod.name, namespace=pod.namespace, grace_period=grace)
            return
        eviction = Pod.Eviction(
            metadata=ObjectMeta(name=pod.name, namespace=pod.namespace),
            # The UID precondition: never evict a namesake that replaced the pod we listed.
            deleteOptions=DeleteOptions(
                gracePeriodSeconds=grace, preconditions=Preconditions(uid=pod.uid) if pod.uid else None
            ),
        )
        async with api_call(f"evict pod {pod.key}", timeout_seconds=timeout_seconds):
            await self.client.create(eviction, pod.name, namespace=pod.namespace)

    def _set(self, pod: PodInfo, state: _State, reason: str) -> None:
        self.state[pod.key] = state
        self.reason[pod.key] = reason
        if state is not _State.PENDING and pod.key in self.unanswered:
            self.unanswered.discard(pod.key)
            if not self.unanswered:
                self.first_requests_answered.set()

    async def _progress(self, pod: PodInfo, outcome: str, detail: str = "") -> None:
        progress = PodProgress(
            namespace=pod.namespace, name=pod.name, uid=pod.uid, outcome=outcome, detail=detail
        )
        if self.recorder is not None and outcome in ("evicted", "deleted"):
            self.events.put_nowait(progress)
        if self.on_progress is None:
            return
        try:
            returned = self.on_progress(progress)
            if inspect.isawaitable(returned):
                async with asyncio.timeout(EVENTS_FLUSH_SECONDS):
                    await returned
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("drain progress callback failed for %s", pod.key)

    # --- waiting ------------------------------------------------------------------------------------
    def settled(self, pods: tuple[PodInfo, ...]) -> bool:
        return all(self.state[p.key] in (_State.GONE, _State.FAILED) for p in pods)

    async def wait_settled(self, pods: tuple[PodInfo, ...], *, until: float) -> bool:
        """Until every pod in ``pods`` is gone (or failed), polling the node's pods; False at ``until``."""
        interval = POLL_FIRST_SECONDS
        while True:
            if any(self.state[p.key] is not _State.PENDING for p in pods):
                await self._refresh(pods)
            if self.settled(pods):
                return True
            now = self.loop.time()
            if now >= until:
                return False
            await asyncio.sleep(min(interval, until - now))
            interval = min(interval * 1.5, POLL_MAX_SECONDS)

    async def _refresh(self, pods: tuple[PodInfo, ...]) -> None:
        """Mark pods that are no longer on the node as gone (by uid: a namesake is another pod)."""
        try:
            present = {p.uid or p.key for p in await list_pods_on_node(self.client, self.node_name)}
        except KubeError as exc:
            log.info("listing pods on node %s failed (will retry): %s", self.node_name, exc)
            return
        for pod in pods:
            if self.state[pod.key] is not _State.FAILED and (pod.uid or pod.key) not in present:
                if self.state[pod.key] is not _State.GONE:
                    await self._progress(pod, "gone")
                self._set(pod, _State.GONE, "")

    # --- Events about evicted pods, written in the background -----------------------------------
    async def write_events(self, *, not_after: float) -> None:
        assert self.recorder is not None
        # Every first eviction request is answered before any Event is written: Events compete with
        # evictions for the client and the CPU, and it is the eviction that protects the workload.
        if self.unanswered:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(not_after):
                    await self.first_requests_answered.wait()
        while True:
            progress = await self.events.get()
            verb = "Deleted" if progress.outcome == "deleted" else "Evicted"
            await self.recorder.record(
                ObjectRef.pod(progress.namespace, progress.name, progress.uid),
                type="Normal",
                reason=REASON_POD_EVICTED,
                message=f"{verb} by {COMPONENT} draining node {self.node_name}",
            )
            self.events.task_done()

    # --- the result ---------------------------------------------------------------------------------
    def result(
        self, plan: DrainPlan, *, duration: float, dry_run: bool = False, error: str = ""
    ) -> DrainResult:
        remaining = tuple(
            PodIssue(pod=p.key, reason=self._remaining_reason(p))
            for p in plan.to_remove
            if self.state.get(p.key, _State.PENDING) is not _State.GONE
        )
        if dry_run:
            outcome = DrainOutcome.DRY_RUN
            remaining = ()
        elif error or self.failed:
            outcome = DrainOutcome.FAILED
        elif remaining:
            outcome = DrainOutcome.TIMED_OUT
        else:
            outcome = DrainOutcome.DRAINED
        removed = tuple(self.removed)
        return DrainResult(
            result=outcome,
            planned=tuple(p.key for p in plan.to_remove),
            evicted=() if self.disable_eviction else removed,
            deleted=removed if self.disable_eviction else (),
            skipped=tuple(PodIssue(pod=p.key, reason=c.value) for p, c in plan.skipped),
            failed=tuple(self.failed),
            remaining=remaining,
            pdb_blocked_retries=self.pdb_retries,
            duration_seconds=duration,
            error=error,
        )

    def _remaining_reason(self, pod: PodInfo) -> str:
        state = self.state.get(pod.key, _State.PENDING)
        reason = self.reason.get(pod.key, "")
        if state is _State.REQUESTED:
            return "still terminating"
        if state is _State.PENDING:
            return reason or "not evicted: out of time"
        return reason


async def drain_node(
    client: AsyncClient,
    node_name: str,
    *,
    deadline: float,
    grace_period_seconds: int = -1,
    disable_eviction: bool = False,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
    recorder: EventRecorder | None = None,
    event_type: EventType = EventType.UNKNOWN,
) -> DrainResult:
    """Drain ``node_name`` by ``deadline`` (``loop.time()`` based) and report what is left.

    ``grace_period_seconds`` -1 keeps each pod's own (always cut to fit the time left).
    ``on_progress`` (sync or async, must be quick) hears about every pod's change of state;
    ``recorder`` gets a ``PodEvicted`` Event per evicted pod, written in the background.
    Counts ``evictions_total{result}`` and ``drain_duration_seconds{type,result}``.
    Never raises a ``KubeError``: a failure is a result with ``result="failed"``.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    drain = _Drain(
        client,
        node_name,
        deadline=deadline,
        grace_period_seconds=grace_period_seconds,
        disable_eviction=disable_eviction,
        on_progress=on_progress,
        recorder=recorder,
    )
    try:
        pods = await with_retries(
            lambda: list_pods_on_node(client, node_name),
            attempts=10,
            deadline=deadline,
            what=f"list pods on node {node_name}",
        )
    except KubeError as exc:
        result = drain.result(DrainPlan(), duration=loop.time() - started, error=f"cannot list pods: {exc}")
        return _finish(result, event_type)
    plan = plan_drain(pods)
    for pod in plan.to_remove:
        drain.state[pod.key] = _State.PENDING
    EVICTIONS.labels(result="skipped").inc(len(plan.skipped))
    for pod, why in plan.skipped:
        log.debug("drain skips %s (%s)", pod.key, why.value)

    if dry_run:
        result = drain.result(plan, duration=loop.time() - started, dry_run=True)
        log.info("[dry run] drain of node %s: %s", node_name, result.summary(max_pods=50))
        return _finish(result, event_type)

    log.info(
        "draining node %s: %d regular pod(s), then %d critical, %d skipped, %.1fs left",
        node_name,
        len(plan.regular),
        len(plan.critical),
        len(plan.skipped),
        deadline - started,
    )
    tasks: list[asyncio.Task[None]] = []
    regular_until = regular_phase_end(started, deadline, has_critical=bool(plan.critical))
    drain.unanswered = {p.key for p in plan.regular}
    writer = (
        asyncio.create_task(drain.write_events(not_after=regular_until), name="drain-events")
        if recorder is not None
        else None
    )
    try:
        tasks += [asyncio.create_task(drain.remove(p), name=f"evict-{p.key}") for p in plan.regular]
        if not await drain.wait_settled(plan.regular, until=regular_until) and plan.critical:
            log.info("regular pods still on node %s; evicting critical pods now", node_name)
        tasks += [asyncio.create_task(drain.remove(p), name=f"evict-{p.key}") for p in plan.critical]
        await drain.wait_settled(plan.to_remove, until=deadline)
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for pod, outcome in zip(plan.to_remove, outcomes, strict=False):
            if isinstance(outcome, Exception):
                log.error("evicting %s failed unexpectedly", pod.key, exc_info=outcome)
                drain.failed.append(PodIssue(pod=pod.key, reason=f"unexpected error: {outcome!r}"))
                drain._set(pod, _State.FAILED, f"unexpected error: {outcome!r}")
        if writer is not None and not writer.done():
            await _flush_events(drain, writer)
    result = drain.result(plan, duration=loop.time() - started)
    log.info("drain of node %s %s", node_name, result.summary(max_pods=20))
    return _finish(result, event_type)


async def _flush_events(drain: _Drain, writer: asyncio.Task[None]) -> None:
    """Give queued PodEvicted Events a moment to be written; never delay a cancellation."""
    current = asyncio.current_task()
    try:
        if current is None or not current.cancelling():
            async with asyncio.timeout(EVENTS_FLUSH_SECONDS):
                await drain.events.join()
    except TimeoutError:
        log.info("%d PodEvicted Event(s) not written in time", drain.events.qsize())
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


def _finish(result: DrainResult, event_type: EventType) -> DrainResult:
    DRAIN_DURATION.labels(type=event_type.value, result=result.result.value).observe(result.duration_seconds)
    return result
