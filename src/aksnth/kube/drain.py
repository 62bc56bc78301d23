"""The drain: evict the node's pods within the time that is left, and say what could not go.

Two moments bound it. The ``deadline`` is the VM's end (the event's NotBefore, or its stated notice):
grace periods are cut to end before it, and a pod a PodDisruptionBudget refuses is asked again until
it. The ``report_at`` moment (``-nodeGracePeriodSeconds``) is when the drain says how it went if it
has not finished by then; it never ends the evictions and never brings a stop forward.

Regular workloads go first, critical ones (system priority classes, kube-system) after the regular
ones are gone or have had their share of the time until the report. Evictions go through policy/v1
Eviction, so PodDisruptionBudgets are honoured: a refused eviction is asked again, paced by
``aksnth.kube.pacing`` (one question per budget at a time, jittered waits, never sooner than the
server's Retry-After; a pause for everyone when the server sheds load). With ``last_resort``, a pod a
budget still protects at its last chance (the deadline minus its shortened grace period and a margin,
``drainplan.last_resort_at``) is deleted with that grace period: it stops gracefully before the VM is
gone. ``disable_eviction`` deletes instead (bypassing PDBs). Pods are then awaited until they are
gone (polling the node's pods with a field selector), never past the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aksnth.errors import EvictionBlocked, KubeError, KubeForbidden, KubeUnavailable
from aksnth.kube.api import KubeClient, namespaced_path
from aksnth.kube.client import DEFAULT_CALL_TIMEOUT_SECONDS, api_call, backoff_seconds, with_retries
from aksnth.kube.disruption import mark_disruption_target
from aksnth.kube.drainplan import (
    GRACE_MARGIN_SECONDS,
    DrainOutcome,
    DrainPlan,
    DrainResult,
    PodIssue,
    effective_grace_period,
    last_resort_at,
    last_resort_grace,
    plan_drain,
    regular_phase_end,
)
from aksnth.kube.events import REASON_LAST_RESORT_STOP, REASON_POD_EVICTED, EventRecorder, ObjectRef
from aksnth.kube.keys import COMPONENT
from aksnth.kube.pacing import BudgetTurns, Throttle
from aksnth.kube.pods import PodInfo, delete_pod, list_pods_on_node
from aksnth.kube.surge import Surger
from aksnth.model import EventType
from aksnth.observe.metrics import DRAIN_DURATION, EVICTIONS, LAST_RESORT_STOPS

__all__ = ["DrainOutcome", "DrainResult", "PodIssue", "PodProgress", "drain_node"]

log = logging.getLogger(__name__)

#: Evictions (or deletions) in flight at once: 250 pods must not mean 250 connections.
MAX_CONCURRENT_EVICTIONS: Final = 32
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


class _Kind(enum.Enum):
    """What the API server answered to one eviction (or deletion) request."""

    ACCEPTED = "accepted"
    BUDGET = "budget"  # 429 naming a PodDisruptionBudget
    OVERLOAD = "overload"  # 429 naming none: API Priority and Fairness shed the request
    TRANSIENT = "transient"  # no answer, 5xx, or 403 (an API server whose RBAC cache is not filled yet)
    GONE = "gone"  # 404, or the UID precondition failed: the pod we listed is no more
    FAILED = "failed"  # anything else: retrying would not help


@dataclass(frozen=True, slots=True)
class _Answer:
    kind: _Kind
    error: KubeError | None = None
    grace: int | None = None  # the grace period an accepted request carried (None: the pod's own)

    @property
    def budget(self) -> str:
        return self.error.budget or "" if isinstance(self.error, EvictionBlocked) else ""

    @property
    def retry_after(self) -> float | None:
        return self.error.retry_after_seconds if isinstance(self.error, EvictionBlocked) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class PodProgress:
    """Passed to ``on_progress``: one pod changed state (evicted, deleted, stopped, blocked, failed,
    gone)."""

    namespace: str
    name: str
    uid: str
    outcome: str
    detail: str = ""

    @property
    def pod(self) -> str:
        return f"{self.namespace}/{self.name}"


ProgressCallback = Callable[[PodProgress], Awaitable[None] | None]
ReportCallback = Callable[[DrainResult], Awaitable[None]]


class _Drain:
    """One drain's mutable bookkeeping; lives only inside :func:`drain_node`."""

    def __init__(
        self,
        client: KubeClient,
        node_name: str,
        *,
        deadline: float,
        grace_period_seconds: int,
        disable_eviction: bool,
        last_resort: bool,
        event_type: EventType,
        on_progress: ProgressCallback | None,
        recorder: EventRecorder | None,
        surger: Surger | None = None,
    ) -> None:
        self.client = client
        self.surger = surger
        self.node_name = node_name
        self.deadline = deadline
        self.grace_period_seconds = grace_period_seconds
        self.disable_eviction = disable_eviction
        self.last_resort = last_resort and not disable_eviction
        self.event_type = event_type
        self.on_progress = on_progress
        self.recorder = recorder
        self.loop = asyncio.get_running_loop()
        self.window = max(deadline - self.loop.time(), 0.0)
        self.throttle = Throttle(MAX_CONCURRENT_EVICTIONS, clock=self.loop.time)
        self.turns = BudgetTurns(clock=self.loop.time)
        self.state: dict[str, _State] = {}
        self.reason: dict[str, str] = {}
        # The budget that refused a pod's latest request: only such a pod may be stopped as a last resort.
        self.budget_of: dict[str, str] = {}
        # Pods whose last-resort stop was refused (no right to delete pods, or an error): never again.
        self.no_last_resort: set[str] = set()
        self.forbidden_logged = False
        self.removed: list[str] = []  # accepted evictions/deletions, in order
        self.stopped: list[PodIssue] = []  # deleted by the last-resort stop, with the reason
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
        """Evict (or delete) ``pod`` until accepted, gone, failed, stopped, or out of time."""
        if self.surger is not None:
            # The pod's Events need not wait for this pod's first request, which may wait for a
            # replacement (up to its last chance).
            self._answered(pod)
            await self.surger.replace_first(
                pod,
                until=self._last_chance(pod),
                clock=self.loop.time,
                timeout_seconds=DEFAULT_CALL_TIMEOUT_SECONDS,
            )
        attempt = 0
        while self.state[pod.key] in (_State.PENDING, _State.BLOCKED):
            if self.time_left() <= 0:
                return
            attempt += 1
            budget = self.budget_of.get(pod.key)
            if budget is None:
                answer = await self._ask(pod)
                if answer is not None and answer.kind is _Kind.BUDGET:
                    # Refusals of one first burst are one refusal: they do not lengthen the wait.
                    self.turns.refused(answer.budget, answer.retry_after, escalate=False)
            else:
                # One question per budget at a time, spaced after refusals; at the pod's last chance
                # (or the deadline) it asks without waiting for its turn.
                async with self.turns.turn(budget, until=self._wake_limit(pod)) as in_turn:
                    answer = await self._ask(pod)
                    if answer is not None and answer.kind is _Kind.ACCEPTED:
                        self.turns.allowed(budget)
                    elif answer is not None and answer.kind is _Kind.BUDGET:
                        self.turns.refused(answer.budget, answer.retry_after, escalate=in_turn)
            if answer is None:  # the deadline came while it waited
                return
            await self._settle(pod, answer, attempt)

    def _wake_limit(self, pod: PodInfo) -> float:
        """Until when a pod blocked by a budget may wait for its turn: its last chance, or the deadline."""
        if self.last_resort and pod.key not in self.no_last_resort:
            last_chance = self._last_chance(pod)
            if self.loop.time() < last_chance:
                return last_chance
        return self.deadline

    def _last_resort_grace(self, pod: PodInfo) -> int:
        return last_resort_grace(
            pod_seconds=pod.grace_period_seconds,
            configured=self.grace_period_seconds,
            window_seconds=self.window,
        )

    def _last_chance(self, pod: PodInfo) -> float:
        return last_resort_at(self.deadline, self._last_resort_grace(pod))

    async def _ask(self, pod: PodInfo) -> _Answer | None:
        """One eviction (or deletion) request, within the throttle; its answer, classified, or None
        when the deadline came while it waited for the throttle."""
        async with self.throttle.slot():
            time_left = self.time_left()
            if time_left <= 0:
                return None
            grace = effective_grace_period(
                pod_seconds=pod.grace_period_seconds,
                configured=self.grace_period_seconds,
                time_left=time_left,
            )
            try:
                await self._request(pod, grace, timeout_seconds=min(DEFAULT_CALL_TIMEOUT_SECONDS, time_left))
            except EvictionBlocked as exc:
                return _Answer(_Kind.BUDGET if exc.budget else _Kind.OVERLOAD, exc)
            except (KubeUnavailable, KubeForbidden) as exc:
                return _Answer(_Kind.TRANSIENT, exc)
            except KubeError as exc:
                return _Answer(_Kind.GONE if _is_gone(exc) else _Kind.FAILED, exc)
        self.throttle.accepted()
        return _Answer(_Kind.ACCEPTED, grace=grace)

    async def _settle(self, pod: PodInfo, answer: _Answer, attempt: int) -> None:
        """Act on one answer: record it, wait after transient errors, stop the pod at its last chance."""
        exc = answer.error
        if answer.kind is _Kind.ACCEPTED:
            outcome = "deleted" if self.disable_eviction else "evicted"
            self._set(pod, _State.REQUESTED, "still terminating")
            self.budget_of.pop(pod.key, None)
            self.removed.append(pod.key)
            EVICTIONS.labels(result=outcome).inc()
            grace = "pod's own" if answer.grace is None else f"{answer.grace}s"
            log.info("%s %s (grace period %s)", outcome, pod.key, grace)
            await self._progress(pod, outcome)
        elif answer.kind is _Kind.BUDGET:
            self.pdb_retries += 1
            EVICTIONS.labels(result="pdb_blocked_retried").inc()
            why = f"blocked by PodDisruptionBudget {answer.budget}"
            if self.state[pod.key] is not _State.BLOCKED:
                log.info("eviction of %s refused, retrying until the deadline: %s", pod.key, why)
                await self._progress(pod, "blocked", why)
                if self.surger is not None:
                    # A replacement Ready elsewhere lets the budget allow the eviction asked again.
                    until = self._last_chance(pod) if self.last_resort else self.deadline
                    await self.surger.surge_for(
                        pod,
                        seconds_left=until - self.loop.time(),
                        timeout_seconds=min(DEFAULT_CALL_TIMEOUT_SECONDS, max(self.time_left(), 0.1)),
                    )
            self._set(pod, _State.BLOCKED, why)
            self.budget_of[pod.key] = answer.budget
            if (
                self.last_resort
                and pod.key not in self.no_last_resort
                and self.loop.time() >= self._last_chance(pod)
            ):
                await self._stop(pod, answer.budget)
        elif answer.kind is _Kind.OVERLOAD:
            # Refused for load, not by a budget: such a pod is not stopped as a last resort until a
            # budget refuses it again.
            self.budget_of.pop(pod.key, None)
            EVICTIONS.labels(result="throttled_retried").inc()
            pause = self.throttle.overloaded(answer.retry_after)
            self.reason[pod.key] = f"eviction refused by the API server (too many requests): {exc}"
            log.info(
                "evicting %s: the API server sheds load (attempt %d); every eviction waits %.2fs, "
                "at most %d at once: %s",
                pod.key,
                attempt,
                pause,
                self.throttle.limit,
                exc,
            )
        elif answer.kind is _Kind.TRANSIENT:
            # A 403 is retried too: a restarted API server answers before its RBAC cache is filled,
            # and a permanent one costs nothing but the time the pod could not use anyway.
            self.budget_of.pop(pod.key, None)
            if isinstance(exc, KubeForbidden) and self.reason.get(pod.key) != str(exc):
                log.warning("evicting %s is forbidden (retrying until the deadline): %s", pod.key, exc)
            self.reason[pod.key] = str(exc)
            log.info("evicting %s failed (attempt %d, retrying): %s", pod.key, attempt, exc)
            await asyncio.sleep(max(min(backoff_seconds(attempt), self.time_left()), 0))
        elif answer.kind is _Kind.GONE:
            self._set(pod, _State.GONE, "")
            await self._progress(pod, "gone")
        else:
            self._set(pod, _State.FAILED, str(exc))
            self.failed.append(PodIssue(pod=pod.key, reason=str(exc)))
            EVICTIONS.labels(result="failed").inc()
            log.warning("could not evict %s: %s", pod.key, exc)
            await self._progress(pod, "failed", str(exc))

    # --- the last resort ------------------------------------------------------------------------
    async def _stop(self, pod: PodInfo, budget: str) -> None:
        """Delete a pod that a budget still protects at its last chance, with its shortened grace
        period: it gets SIGTERM and that time before the VM is gone, instead of nothing."""
        planned = self._last_resort_grace(pod)
        # Woken late (a busy machine): the grace period is cut so that it still ends before the deadline.
        grace = min(planned, max(math.floor(self.time_left()) - GRACE_MARGIN_SECONDS, 1)) if planned else 0
        why = (
            f"PodDisruptionBudget {budget} still refused its eviction {self.time_left():.0f}s before the "
            f"{self.event_type.value} deadline; stopped with a {grace}s grace period"
        )
        try:
            async with self.throttle.slot():
                await self._delete(
                    pod,
                    grace,
                    why=why,
                    timeout_seconds=min(DEFAULT_CALL_TIMEOUT_SECONDS, max(self.time_left(), 0.1)),
                )
        except KubeForbidden as exc:
            self.no_last_resort.add(pod.key)
            LAST_RESORT_STOPS.labels(type=self.event_type.value, result="forbidden").inc()
            if not self.forbidden_logged:
                self.forbidden_logged = True
                log.error(
                    "cannot stop %s as a last resort: the handler may not delete pods (%s). Install the "
                    "chart with rbac.allowPodDelete=true (its default), or turn the stop off with "
                    "-lastResort=false; pods a PodDisruptionBudget still protects at the deadline lose "
                    "their graceful shutdown when the VM goes",
                    pod.key,
                    exc,
                )
            return
        except KubeUnavailable as exc:
            log.warning("last-resort stop of %s failed (will try again): %s", pod.key, exc)
            await asyncio.sleep(max(min(backoff_seconds(1), self.time_left()), 0))
            return
        except KubeError as exc:
            if _is_gone(exc):
                self._set(pod, _State.GONE, "")
                await self._progress(pod, "gone")
                return
            self.no_last_resort.add(pod.key)
            LAST_RESORT_STOPS.labels(type=self.event_type.value, result="failed").inc()
            log.warning("last-resort stop of %s failed: %s", pod.key, exc)
            return
        self._set(pod, _State.REQUESTED, "still terminating (stopped as a last resort)")
        self.budget_of.pop(pod.key, None)
        self.stopped.append(PodIssue(pod=pod.key, reason=why))
        LAST_RESORT_STOPS.labels(type=self.event_type.value, result="stopped").inc()
        log.warning("stopped %s as a last resort: %s", pod.key, why)
        await self._progress(pod, "stopped", why)

    async def _delete(self, pod: PodInfo, grace: int | None, *, why: str, timeout_seconds: float) -> None:
        """A forced stop: the pod is marked ``DisruptionTarget`` first (``aksnth.kube.disruption``), as
        an eviction would mark it, then deleted."""
        await mark_disruption_target(
            self.client, pod, event_type=self.event_type, why=why, timeout_seconds=timeout_seconds
        )
        await delete_pod(self.client, pod, grace_period_seconds=grace, timeout_seconds=timeout_seconds)

    async def _request(self, pod: PodInfo, grace: int | None, *, timeout_seconds: float) -> None:
        if self.disable_eviction:
            why = f"deleted (-disableEviction) because of an Azure {self.event_type.value} event"
            await self._delete(pod, grace, why=why, timeout_seconds=timeout_seconds)
            return
        delete_options: dict[str, Any] = {}
        if grace is not None:
            delete_options["gracePeriodSeconds"] = grace
        if pod.uid:
            # The UID precondition: never evict a namesake that replaced the pod we listed.
            delete_options["preconditions"] = {"uid": pod.uid}
        eviction = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod.name, "namespace": pod.namespace},
            "deleteOptions": delete_options,
        }
        async with api_call(f"evict pod {pod.key}", timeout_seconds=timeout_seconds):
            await self.client.create(namespaced_path(pod.namespace, "pods", pod.name, "eviction"), eviction)

    def _set(self, pod: PodInfo, state: _State, reason: str) -> None:
        self.state[pod.key] = state
        self.reason[pod.key] = reason
        if state is not _State.PENDING:
            self._answered(pod)

    def _answered(self, pod: PodInfo) -> None:
        if pod.key in self.unanswered:
            self.unanswered.discard(pod.key)
            if not self.unanswered:
                self.first_requests_answered.set()

    async def _progress(self, pod: PodInfo, outcome: str, detail: str = "") -> None:
        progress = PodProgress(
            namespace=pod.namespace, name=pod.name, uid=pod.uid, outcome=outcome, detail=detail
        )
        if self.recorder is not None and outcome in ("evicted", "deleted", "stopped"):
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
            pod = ObjectRef.pod(progress.namespace, progress.name, progress.uid)
            if progress.outcome == "stopped":
                await self.recorder.record(
                    pod,
                    type="Warning",
                    reason=REASON_LAST_RESORT_STOP,
                    message=f"Deleted by {COMPONENT} draining node {self.node_name} as a last resort: "
                    f"{progress.detail}",
                )
            else:
                verb = "Deleted" if progress.outcome == "deleted" else "Evicted"
                await self.recorder.record(
                    pod,
                    type="Normal",
                    reason=REASON_POD_EVICTED,
                    message=f"{verb} by {COMPONENT} draining node {self.node_name}",
                )
            self.events.task_done()

    # --- the result ---------------------------------------------------------------------------------
    def result(
        self,
        plan: DrainPlan,
        *,
        duration: float,
        dry_run: bool = False,
        error: str = "",
        going_on: bool = False,
    ) -> DrainResult:
        """What the drain did; ``going_on``: a report before the deadline, the evictions go on."""
        remaining = tuple(
            PodIssue(pod=p.key, reason=self._remaining_reason(p, going_on=going_on))
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
        stopped = tuple(issue.pod for issue in self.stopped)
        return DrainResult(
            result=outcome,
            planned=tuple(p.key for p in plan.to_remove),
            evicted=() if self.disable_eviction else removed,
            deleted=(removed if self.disable_eviction else ()) + stopped,
            stopped=tuple(self.stopped),
            skipped=tuple(PodIssue(pod=p.key, reason=c.value) for p, c in plan.skipped),
            failed=tuple(self.failed),
            remaining=remaining,
            pdb_blocked_retries=self.pdb_retries,
            duration_seconds=duration,
            error=error,
        )

    def _remaining_reason(self, pod: PodInfo, *, going_on: bool = False) -> str:
        state = self.state.get(pod.key, _State.PENDING)
        reason = self.reason.get(pod.key, "")
        if state is _State.REQUESTED:
            return "still terminating"
        if going_on and state in (_State.PENDING, _State.BLOCKED):
            stop = self.last_resort and pod.key not in self.no_last_resort
            until = "its last chance" if stop else "the deadline"
            return f"{reason or 'not evicted yet'}; asked again until {until}"
        if state is _State.PENDING:
            return reason or "not evicted: out of time"
        return reason


async def drain_node(
    client: KubeClient,
    node_name: str,
    *,
    deadline: float,
    grace_period_seconds: int = -1,
    disable_eviction: bool = False,
    dry_run: bool = False,
    last_resort: bool = False,
    on_progress: ProgressCallback | None = None,
    recorder: EventRecorder | None = None,
    event_type: EventType = EventType.UNKNOWN,
    report_at: float | None = None,
    on_report: ReportCallback | None = None,
    surger: Surger | None = None,
) -> DrainResult:
    """Drain ``node_name`` by ``deadline`` (``loop.time()`` based: the VM's end) and report what is left.

    ``report_at`` (default: the deadline) is when the drain reports if it has not finished by then:
    ``on_report`` is awaited once at that moment, with a ``timed_out`` result naming the pods that are
    still asked; the evictions and the last-resort stop go on until the deadline regardless, and the
    final result is returned. A drain over by ``report_at`` never calls it.
    ``grace_period_seconds`` -1 keeps each pod's own (always cut to fit the time left).
    ``last_resort``: a pod whose eviction a PodDisruptionBudget still refuses at its last chance (the
    deadline minus its shortened grace period, see ``drainplan.last_resort_at``) is deleted with that
    grace period, so that it stops gracefully before the VM is gone; never a pod refused for another
    reason. Counts ``last_resort_stops_total{type,result}`` and records a Warning Event on the pod.
    ``on_progress`` (sync or async, must be quick) hears about every pod's change of state;
    ``recorder`` gets a ``PodEvicted`` Event per evicted pod, written in the background.
    ``surger``: a pod a budget refuses, or whose Deployment has no other replica Ready elsewhere, gets
    its Deployment surged first (``aksnth.kube.surge``).
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
        last_resort=last_resort,
        event_type=event_type,
        on_progress=on_progress,
        recorder=recorder,
        surger=surger,
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
    report_at = deadline if report_at is None else min(report_at, deadline)
    tasks: list[asyncio.Task[None]] = []
    regular_until = regular_phase_end(started, report_at, has_critical=bool(plan.critical))
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
        if not await drain.wait_settled(plan.to_remove, until=report_at) and report_at < deadline:
            interim = drain.result(plan, duration=loop.time() - started, going_on=True)
            log.warning(
                "drain of node %s not finished by its report time; evictions go on for %.0fs: %s",
                node_name,
                drain.time_left(),
                interim.summary(max_pods=20),
            )
            if on_report is not None:
                await on_report(interim)
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


def _is_gone(exc: KubeError) -> bool:
    """404, or the UID precondition failed: the pod we listed is gone (a namesake may have replaced it)."""
    return exc.status == 404 or (exc.status == 409 and "precondition" in str(exc).lower())


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
