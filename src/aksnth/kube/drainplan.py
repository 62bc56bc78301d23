"""What a drain does, decided without I/O: which pods go, in which order, with which grace period,
and how its result reads. ``aksnth.kube.drain`` carries it out.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from aksnth.kube.keys import MIRROR_POD_ANNOTATION, SYSTEM_NAMESPACE, SYSTEM_PRIORITY_CLASSES
from aksnth.kube.pods import FINISHED_PHASES, PodInfo
from aksnth.retry import Backoff

#: Share of the time that regular pods get before the critical ones are evicted regardless.
REGULAR_SHARE: Final = 2 / 3
#: A pod's grace period is cut so that it ends this many seconds before the deadline.
GRACE_MARGIN_SECONDS: Final = 1
#: The last-resort stop gives a pod at most this share of the drain's time as its grace period: the
#: evictions through the PodDisruptionBudgets keep the rest.
LAST_RESORT_GRACE_SHARE: Final = 1 / 3
#: The last-resort stop is sent this long before it must be, so that waking up and the request itself
#: never cut the grace period it carries.
LAST_RESORT_LEAD_SECONDS: Final = 0.5
#: Refusals by one PodDisruptionBudget are retried after a growing, jittered wait: the first and the
#: longest step. A budget frees up when a replacement is Ready, which takes a second or more; a longer
#: step would leave the budget unused while it allows a disruption (one handler asks each budget at
#: most once a second, so a fleet's questions stay bounded by its handlers and budgets).
BUDGET_RETRY_FIRST_SECONDS: Final = 0.5
BUDGET_RETRY_MAX_SECONDS: Final = 2.0
#: The wait after a 429 from API Priority and Fairness when the server names none.
OVERLOAD_PAUSE_SECONDS: Final = 1.0
#: The longest Retry-After an overload pause honours: the API server asks for 1 s; a longer one comes
#: from something in front of it, and pausing every eviction for it would use up a Preempt's notice.
MAX_OVERLOAD_PAUSE_SECONDS: Final = 5.0


class PodClass(enum.StrEnum):
    REGULAR = "regular"  # evicted first
    CRITICAL = "critical"  # system priority class or kube-system: evicted last
    DAEMONSET = "daemonset"  # skipped: its controller ignores the cordon and would recreate it
    MIRROR = "mirror"  # skipped: a static pod; the API cannot remove it
    FINISHED = "finished"  # skipped: Succeeded or Failed, holds no workload

    @property
    def skipped(self) -> bool:
        return self not in (PodClass.REGULAR, PodClass.CRITICAL)


def classify(pod: PodInfo) -> PodClass:
    if MIRROR_POD_ANNOTATION in pod.annotations:
        return PodClass.MIRROR
    if pod.controller_kind == "DaemonSet":
        return PodClass.DAEMONSET
    if pod.phase in FINISHED_PHASES:
        return PodClass.FINISHED
    if pod.priority_class in SYSTEM_PRIORITY_CLASSES or pod.namespace == SYSTEM_NAMESPACE:
        return PodClass.CRITICAL
    return PodClass.REGULAR


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainPlan:
    regular: tuple[PodInfo, ...] = ()
    critical: tuple[PodInfo, ...] = ()
    skipped: tuple[tuple[PodInfo, PodClass], ...] = ()

    @property
    def to_remove(self) -> tuple[PodInfo, ...]:
        return self.regular + self.critical


def plan_drain(pods: Iterable[PodInfo]) -> DrainPlan:
    """Regular pods first, critical ones last, the rest skipped; each group sorted by name (stable logs)."""
    by_class: dict[PodClass, list[PodInfo]] = {c: [] for c in PodClass}
    for pod in pods:
        by_class[classify(pod)].append(pod)
    for group in by_class.values():
        group.sort(key=lambda p: p.key)
    skipped = tuple((pod, c) for c in PodClass if c.skipped for pod in by_class[c])
    return DrainPlan(
        regular=tuple(by_class[PodClass.REGULAR]),
        critical=tuple(by_class[PodClass.CRITICAL]),
        skipped=skipped,
    )


def regular_phase_end(start: float, deadline: float, *, has_critical: bool) -> float:
    """When critical pods are evicted even if regular ones remain: after the regular share of the time."""
    if not has_critical or deadline <= start:
        return deadline
    return start + (deadline - start) * REGULAR_SHARE


def effective_grace_period(*, pod_seconds: int, configured: int, time_left: float) -> int | None:
    """The ``gracePeriodSeconds`` to send, or None to let the pod use its own.

    ``configured`` -1 means the pod's own. Whatever is wanted is cut to end a moment before the
    deadline, but never below 1 s (0 would be a forced deletion) unless 0 was configured.
    """
    wanted = pod_seconds if configured < 0 else configured
    budget = max(math.floor(time_left) - GRACE_MARGIN_SECONDS, 1)
    if wanted <= budget:
        return None if configured < 0 else configured
    return budget


def last_resort_grace(*, pod_seconds: int, configured: int, window_seconds: float) -> int:
    """The grace period of a last-resort stop: the pod's own (or ``configured``), cut to a share of
    the drain's window so that the stop does not take the time the evictions need; at least 1 s
    (SIGTERM, then a moment), unless 0 was configured."""
    wanted = pod_seconds if configured < 0 else configured
    if wanted <= 0:
        return 0
    cap = max(math.floor(window_seconds * LAST_RESORT_GRACE_SHARE), 1)
    return min(wanted, cap)


def last_resort_at(deadline: float, grace_seconds: int) -> float:
    """The last moment at which a pod can still be stopped with ``grace_seconds`` before ``deadline``:
    until then a PodDisruptionBudget that refuses its eviction is honoured."""
    return deadline - grace_seconds - GRACE_MARGIN_SECONDS - LAST_RESORT_LEAD_SECONDS


#: Waits after a budget's refusals (see :func:`budget_retry_delay`).
BUDGET_BACKOFF: Final = Backoff(
    first_seconds=BUDGET_RETRY_FIRST_SECONDS,
    max_seconds=BUDGET_RETRY_MAX_SECONDS,
    spread=(0.5, 1.0),
    retry_after_spread=(1.0, 1.5),
)
#: The pause after an overload (see :func:`overload_pause`).
OVERLOAD_BACKOFF: Final = Backoff(
    steps=(OVERLOAD_PAUSE_SECONDS,),
    spread=(1.0, 1.5),
    max_retry_after_seconds=MAX_OVERLOAD_PAUSE_SECONDS,
    retry_after_replaces=True,
    retry_after_spread=(1.0, 1.5),
)


def budget_retry_delay(refusals: int, *, retry_after: float | None, draw: float) -> float:
    """Seconds before a budget that refused ``refusals`` evictions in a row is asked again.

    An exponential step (``BUDGET_RETRY_FIRST_SECONDS`` doubling up to ``BUDGET_RETRY_MAX_SECONDS``)
    of which a random half is waited (``draw`` in [0, 1)): many handlers asking one budget spread out
    instead of asking in lockstep. Never sooner than the server's Retry-After, jittered the same way.
    """
    return BUDGET_BACKOFF.delay(max(refusals, 1), retry_after=retry_after, draw=draw)


def overload_pause(*, retry_after: float | None, draw: float) -> float:
    """Seconds every eviction waits after API Priority and Fairness rejected one (a 429 that names no
    budget): the server's Retry-After (at most ``MAX_OVERLOAD_PAUSE_SECONDS``), or
    ``OVERLOAD_PAUSE_SECONDS``, plus up to half of it at random."""
    return OVERLOAD_BACKOFF.delay(1, retry_after=retry_after or None, draw=draw)


# --- the result ------------------------------------------------------------------------------------


class DrainOutcome(enum.StrEnum):
    DRAINED = "drained"  # every pod that had to go is gone
    TIMED_OUT = "timed_out"  # the deadline came first; ``remaining`` says what is left and why
    FAILED = "failed"  # a pod could not be evicted (not a retryable refusal), or pods could not be listed
    DRY_RUN = "dry_run"  # nothing was changed; ``planned`` lists what would have been evicted


@dataclass(frozen=True, slots=True, kw_only=True)
class PodIssue:
    pod: str  # namespace/name
    reason: str

    def __str__(self) -> str:
        return f"{self.pod} ({self.reason})"


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainResult:
    result: DrainOutcome
    planned: tuple[str, ...] = ()  # pods the drain set out to remove, in order
    evicted: tuple[str, ...] = ()  # eviction accepted
    deleted: tuple[str, ...] = ()  # deleted (-disableEviction, or by the last-resort stop)
    stopped: tuple[PodIssue, ...] = ()  # deleted by the last-resort stop (also in ``deleted``), and why
    skipped: tuple[PodIssue, ...] = ()  # left alone on purpose (DaemonSet, mirror, finished)
    failed: tuple[PodIssue, ...] = ()  # eviction failed with an error that retrying would not fix
    remaining: tuple[PodIssue, ...] = ()  # still on the node at the end, with the reason
    pdb_blocked_retries: int = 0
    duration_seconds: float = 0.0
    error: str = ""  # why the drain could not even start (pods could not be listed)

    @property
    def succeeded(self) -> bool:
        return self.result in (DrainOutcome.DRAINED, DrainOutcome.DRY_RUN)

    def summary(self, *, max_pods: int = 5) -> str:
        """One line for logs, Events and notifications."""
        if self.result is DrainOutcome.DRY_RUN:
            text = f"dry run: would evict {len(self.planned)} pod(s)"
            if self.planned:
                text += f" ({_names(self.planned, max_pods)})"
            return f"{text}, skip {len(self.skipped)}"
        removed = len(self.evicted) + len(self.deleted) - len(self.stopped)
        verb = "deleted" if len(self.deleted) > len(self.stopped) and not self.evicted else "evicted"
        text = f"{self.result.value}: {verb} {removed} pod(s) in {self.duration_seconds:.1f}s"
        text += f", skipped {len(self.skipped)}"
        if self.stopped:
            stopped = _names((issue.pod for issue in self.stopped), max_pods)
            text += f"; stopped {len(self.stopped)} as a last resort: {stopped}"
        if self.error:
            text += f"; {self.error}"
        if self.remaining:
            text += f"; {len(self.remaining)} remaining: {_names(map(str, self.remaining), max_pods)}"
        return text

    def as_template_data(self) -> dict[str, Any]:
        """Plain values for notification templates (``.Drain.Result`` …)."""
        return {
            "Result": self.result.value,
            "Evicted": len(self.evicted),
            "Deleted": len(self.deleted),
            "Skipped": len(self.skipped),
            "Failed": len(self.failed),
            "Remaining": [str(r) for r in self.remaining],
            "DurationSeconds": round(self.duration_seconds, 3),
            "Summary": self.summary(),
        }


def _names(items: Iterable[str], limit: int) -> str:
    listed = list(items)
    shown = ", ".join(listed[:limit])
    return shown if len(listed) <= limit else f"{shown}, … (+{len(listed) - limit})"
