"""The drain-readiness verdict for one node, without I/O: the node's pods and the cluster's
PodDisruptionBudgets in, what the drain would do to each pod and whether it would finish within the
notice out.

It runs the handler's own drain plan (``aksnth.kube.drainplan``: which pods go, in which order, the
regular pods' share of the time, the grace periods cut to fit) on the deadline the handler would set
(``aksnth.policy.drain_deadline``), and asks ``aksnth.kube.budgets`` what the Eviction API would
answer. Timing is the worst case: every evicted pod uses its whole grace period.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from aksnth import policy
from aksnth.kube.budgets import Answer, BudgetInfo, EvictionAnswer, eviction_answers
from aksnth.kube.drainplan import (
    GRACE_MARGIN_SECONDS,
    PodClass,
    effective_grace_period,
    plan_drain,
    regular_phase_end,
)
from aksnth.kube.pods import PodInfo
from aksnth.model import DOCUMENTED_NOTICE_SECONDS, FATAL_EVENT_TYPES, EventType


class Reason(enum.StrEnum):
    """Why a pod is at risk. The values are the ``reason`` label of the readiness metrics."""

    PDB_BLOCKED = "pdb_blocked"  # its PodDisruptionBudget refuses the eviction now
    SEVERAL_PDBS = "several_pdbs"  # two budgets select it: the Eviction API refuses it for good
    GRACE_CUT = "grace_cut"  # less time than its grace period to shut down
    NO_CONTROLLER = "no_controller"  # nothing recreates it: lost for good
    EMPTY_DIR = "empty_dir"  # its emptyDir data is lost
    ALL_REPLICAS_ON_SPOT = "all_replicas_on_spot"  # every replica of its workload runs on Spot nodes
    NO_PLACE = "no_place"  # no other node its replacement tolerates and selects


#: Reasons that keep the node from draining within the notice.
BLOCKING: Final = frozenset({Reason.PDB_BLOCKED, Reason.SEVERAL_PDBS})
#: Reasons decided from the node's own pods and the budgets alone (the periodic check's).
NODE_REASONS: Final = (
    Reason.PDB_BLOCKED,
    Reason.SEVERAL_PDBS,
    Reason.GRACE_CUT,
    Reason.NO_CONTROLLER,
    Reason.EMPTY_DIR,
)


class Outcome(enum.StrEnum):
    EVICTED = "evicted"  # the eviction is accepted; the pod is gone within the notice
    DELETED = "deleted"  # -disableEviction: deleted, budgets bypassed
    BLOCKED = "blocked"  # refused by its budget until the deadline
    REFUSED = "refused"  # refused for good (two budgets)
    LEFT = "left"  # not the drain's to remove: DaemonSet, mirror or finished pod


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """The event assumed to arrive now, and the handler's settings that shape its drain."""

    event_type: EventType = EventType.PREEMPT
    notice_seconds: float = DOCUMENTED_NOTICE_SECONDS[EventType.PREEMPT]
    pod_grace_period_seconds: int = -1  # -podGracePeriodSeconds
    node_grace_period_seconds: int = 120  # -nodeGracePeriodSeconds
    disable_eviction: bool = False  # -disableEviction

    def drain_seconds(self, now: datetime) -> float:
        """The drain's time, as the handler computes it for an event with NotBefore = now + notice:
        until the event's deadline (at least the minimum drain), whatever -nodeGracePeriodSeconds."""
        return max(self.notice_seconds, policy.MIN_DRAIN.total_seconds())

    def report_seconds(self, now: datetime) -> float:
        """When the drain reports (-nodeGracePeriodSeconds, cut to the deadline): the critical pods'
        turn comes at two thirds of it at the latest."""
        not_before = now + timedelta(seconds=self.notice_seconds)
        report = policy.drain_deadline(
            not_before, now=now, node_grace_period_seconds=self.node_grace_period_seconds
        )
        return (report - now).total_seconds()


@dataclass(frozen=True, slots=True, kw_only=True)
class Risk:
    reason: Reason
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PodReadiness:
    pod: PodInfo
    pod_class: PodClass
    outcome: Outcome
    detail: str  # one line: what happens to it
    evicted_after_seconds: float | None = None  # from the start of the drain; None when not evicted
    grace_period_seconds: int | None = None  # what the eviction would carry; None: the pod's own
    risks: tuple[Risk, ...] = ()

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(risk.reason for risk in self.risks)

    @property
    def blocks_drain(self) -> bool:
        return any(reason in BLOCKING for reason in self.reasons)

    def with_risks(self, extra: Iterable[Risk]) -> PodReadiness:
        added = tuple(risk for risk in extra if risk not in self.risks)
        if not added:
            return self
        return PodReadiness(
            pod=self.pod,
            pod_class=self.pod_class,
            outcome=self.outcome,
            detail=self.detail,
            evicted_after_seconds=self.evicted_after_seconds,
            grace_period_seconds=self.grace_period_seconds,
            risks=self.risks + added,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeReadiness:
    node: str
    scenario: Scenario
    drain_seconds: float
    pods: tuple[PodReadiness, ...] = ()
    reasons_assessed: tuple[Reason, ...] = NODE_REASONS  # the cluster-wide ones are added by placement

    @property
    def drains_within_notice(self) -> bool:
        return not any(pod.blocks_drain for pod in self.pods)

    @property
    def at_risk(self) -> tuple[PodReadiness, ...]:
        return tuple(pod for pod in self.pods if pod.risks)

    def pods_at_risk_by_reason(self) -> dict[Reason, int]:
        """Pods at risk for each assessed reason (a pod with two reasons counts under both)."""
        counts = Counter(reason for pod in self.pods for reason in set(pod.reasons))
        return {reason: counts.get(reason, 0) for reason in self.reasons_assessed}

    @property
    def verdict(self) -> str:
        blocked = sum(1 for pod in self.pods if Reason.PDB_BLOCKED in pod.reasons)
        refused = sum(1 for pod in self.pods if Reason.SEVERAL_PDBS in pod.reasons)
        if blocked or refused:
            why = []
            if blocked:
                why.append(f"{_pods(blocked)} blocked by a PodDisruptionBudget")
            if refused:
                why.append(f"{_pods(refused)} in several PodDisruptionBudgets (eviction refused)")
            return f"would not drain within the notice: {', '.join(why)}"
        if self.at_risk:
            return f"drains within the notice; {_pods(len(self.at_risk))} at risk"
        return "drains within the notice"

    def with_pods(
        self, pods: Sequence[PodReadiness], *, reasons_assessed: tuple[Reason, ...]
    ) -> NodeReadiness:
        return NodeReadiness(
            node=self.node,
            scenario=self.scenario,
            drain_seconds=self.drain_seconds,
            pods=tuple(pods),
            reasons_assessed=reasons_assessed,
        )


def assess_node(
    node: str,
    pods: Iterable[PodInfo],
    budgets: Sequence[BudgetInfo],
    *,
    scenario: Scenario,
    now: datetime,
) -> NodeReadiness:
    """What a drain of ``node`` starting ``now`` would do to each of its ``pods`` (in the drain's order:
    regular, critical, then the pods it leaves alone)."""
    drain_seconds = scenario.drain_seconds(now)
    plan = plan_drain(pods)
    answers: Mapping[str, EvictionAnswer] = (
        {} if scenario.disable_eviction else eviction_answers(plan.to_remove, budgets)
    )
    allowed = EvictionAnswer(answer=Answer.ALLOWED)
    fatal = scenario.event_type in FATAL_EVENT_TYPES
    judge = _Judge(scenario=scenario, drain_seconds=drain_seconds, fatal=fatal)

    regular = [
        judge.pod(pod, PodClass.REGULAR, answers.get(pod.key, allowed), start=0.0) for pod in plan.regular
    ]
    # Critical pods go once the regular ones are gone (each using its whole grace period, at worst),
    # or when the regular ones have had their share of the time: as the drain does it.
    gone_at = [(p.evicted_after_seconds or 0.0) + _grace(p) for p in regular if p.outcome in _REMOVED]
    settled_at = math.inf if any(p.outcome is Outcome.BLOCKED for p in regular) else max(gone_at, default=0.0)
    report_seconds = scenario.report_seconds(now)
    critical_start = min(settled_at, regular_phase_end(0.0, report_seconds, has_critical=bool(plan.critical)))
    critical = [
        judge.pod(pod, PodClass.CRITICAL, answers.get(pod.key, allowed), start=critical_start)
        for pod in plan.critical
    ]
    left = [
        PodReadiness(pod=pod, pod_class=why, outcome=Outcome.LEFT, detail=f"left alone ({_LEFT[why]})")
        for pod, why in plan.skipped
    ]
    return NodeReadiness(
        node=node, scenario=scenario, drain_seconds=drain_seconds, pods=(*regular, *critical, *left)
    )


_REMOVED: Final = (Outcome.EVICTED, Outcome.DELETED)
_LEFT: Final = {
    PodClass.DAEMONSET: "DaemonSet pod",
    PodClass.MIRROR: "mirror pod of a static pod",
    PodClass.FINISHED: "finished",
}


def _grace(pod: PodReadiness) -> float:
    return float(
        pod.pod.grace_period_seconds if pod.grace_period_seconds is None else pod.grace_period_seconds
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Judge:
    scenario: Scenario
    drain_seconds: float
    fatal: bool  # the VM goes away: a pod left behind dies with it

    def pod(self, pod: PodInfo, pod_class: PodClass, answer: EvictionAnswer, *, start: float) -> PodReadiness:
        risks: list[Risk] = []
        when = "at once" if start <= 0 else f"after {start:.0f}s (critical pods go last)"
        grace: int | None = None
        if answer.answer is Answer.BLOCKED:
            outcome = Outcome.BLOCKED
            detail = f"blocked: {answer.detail}"
            risks.append(Risk(reason=Reason.PDB_BLOCKED, message=answer.detail))
        elif answer.answer is Answer.SEVERAL_BUDGETS:
            outcome = Outcome.REFUSED
            detail = f"eviction refused: {answer.detail}"
            risks.append(Risk(reason=Reason.SEVERAL_PDBS, message=answer.detail))
        else:
            outcome = Outcome.DELETED if self.scenario.disable_eviction else Outcome.EVICTED
            grace, grace_text, cut = self._grace(pod, time_left=self.drain_seconds - start)
            detail = f"{outcome.value} {when}, {grace_text}"
            if cut:
                risks.append(Risk(reason=Reason.GRACE_CUT, message=cut))
        if outcome in _REMOVED or self.fatal:
            if not pod.controller_kind:
                risks.append(Risk(reason=Reason.NO_CONTROLLER, message="no controller: nothing recreates it"))
            if pod.empty_dir_volumes:
                names = ", ".join(pod.empty_dir_volumes)
                risks.append(Risk(reason=Reason.EMPTY_DIR, message=f"emptyDir data lost: {names}"))
        return PodReadiness(
            pod=pod,
            pod_class=pod_class,
            outcome=outcome,
            detail=detail,
            evicted_after_seconds=start if outcome in _REMOVED else None,
            grace_period_seconds=grace,
            risks=tuple(risks),
        )

    def _grace(self, pod: PodInfo, *, time_left: float) -> tuple[int | None, str, str]:
        """The grace period the eviction would carry, how to say it, and the risk text if it is cut."""
        configured = self.scenario.pod_grace_period_seconds
        wanted = pod.grace_period_seconds if configured < 0 else configured
        source = "its own" if configured < 0 else "-podGracePeriodSeconds"
        sent = effective_grace_period(
            pod_seconds=pod.grace_period_seconds, configured=configured, time_left=time_left
        )
        given = wanted if sent is None else sent
        # The drain always keeps a second before the deadline: 30 s cut to 29 s in a 30 s notice is
        # the margin, not a risk. More than that is.
        if given < wanted - GRACE_MARGIN_SECONDS:
            return (
                sent,
                f"grace period cut from {wanted}s to {given}s",
                f"grace period cut from {wanted}s to {given}s",
            )
        if given < wanted:
            return (
                sent,
                f"grace period {given}s of {'its' if configured < 0 else 'the configured'} {wanted}s",
                "",
            )
        return sent, f"grace period {given}s ({source})", ""


def _pods(count: int) -> str:
    return f"{count} pod{'s' if count != 1 else ''}"
