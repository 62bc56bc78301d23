"""The DaemonSet's optional drain-readiness check of its own node (``-readiness.interval``), as metrics.

Each check costs one list of the node's pods (field selector, as the drain lists them) and one list
of the cluster's PodDisruptionBudgets (none with ``-disableEviction``, which bypasses them), and runs
the same assessment as the ``readiness`` subcommand for a Spot eviction (Preempt, 30 s notice)
under the handler's own drain settings. A failed check is counted and logged, never retried before
the next interval: the cost per interval stays bounded. While the handler handles an event, the
check is skipped (the node is being drained; its verdict would mean nothing, and the API server has
better things to do). The first check comes at a random moment within the first interval, so the
pods of a DaemonSet started together do not all list at once.

Only what the node's own pods and the budgets decide is assessed here; "every replica on Spot" and
"no place for a replacement" need every pod and node of the cluster: the subcommand reports those.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from aksnth.config import ResponseSettings
from aksnth.errors import KubeError, KubeForbidden
from aksnth.kube.api import KubeClient
from aksnth.kube.budgets import BudgetInfo, list_budgets
from aksnth.kube.pods import list_pods_on_node
from aksnth.kube.readiness.assess import NodeReadiness, Scenario, assess_node
from aksnth.model import DOCUMENTED_NOTICE_SECONDS, EventType
from aksnth.observe import metrics

log = logging.getLogger(__name__)

#: One check (both lists) is abandoned after this long; the next interval tries again.
CHECK_TIMEOUT_SECONDS: Final = 30.0
FORBIDDEN_HINT: Final = (
    "the ServiceAccount needs list on pods and poddisruptionbudgets.policy: install the chart with "
    "readinessCheck.interval set (it adds -readiness.interval and the rule)"
)


def spot_eviction(response: ResponseSettings) -> Scenario:
    """A Spot eviction with Azure's least notice, drained as this handler is configured to drain."""
    return Scenario(
        event_type=EventType.PREEMPT,
        notice_seconds=DOCUMENTED_NOTICE_SECONDS[EventType.PREEMPT],
        pod_grace_period_seconds=response.pod_grace_period_seconds,
        node_grace_period_seconds=response.node_grace_period_seconds,
        disable_eviction=response.disable_eviction,
    )


class ReadinessCheck:
    def __init__(
        self,
        client: KubeClient,
        node_name: str,
        *,
        interval_seconds: float,
        scenario: Scenario,
        busy: Callable[[], bool] = lambda: False,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        first_delay_seconds: float | None = None,
    ) -> None:
        self._client = client
        self._node_name = node_name
        self._interval = interval_seconds
        self._scenario = scenario
        self._busy = busy
        self._now = wall_clock
        self._first_delay = (
            random.uniform(0, interval_seconds) if first_delay_seconds is None else first_delay_seconds
        )
        self._last_verdict = ""
        self._warned_forbidden = False

    async def run(self) -> None:
        """Check every interval until cancelled."""
        log.info(
            "drain-readiness check of node %s every %.0fs (first in %.0fs)",
            self._node_name,
            self._interval,
            self._first_delay,
        )
        await asyncio.sleep(self._first_delay)
        while True:
            await self.check_once()
            await asyncio.sleep(self._interval)

    async def check_once(self) -> NodeReadiness | None:
        """One check: the verdict, also published as metrics; None when skipped or failed."""
        if self._busy():
            metrics.READINESS_CHECKS.labels(result="skipped").inc()
            log.debug("drain-readiness check skipped: an event is being handled")
            return None
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                pods, budgets = await asyncio.gather(
                    list_pods_on_node(self._client, self._node_name), self._budgets()
                )
        except (KubeError, TimeoutError) as exc:
            metrics.READINESS_CHECKS.labels(result="failed").inc()
            self._report_failure(exc)
            return None
        result = assess_node(self._node_name, pods, budgets, scenario=self._scenario, now=self._now())
        self._publish(result)
        return result

    async def _budgets(self) -> list[BudgetInfo]:
        # -disableEviction deletes pods: budgets play no part, and need not be read.
        return [] if self._scenario.disable_eviction else await list_budgets(self._client)

    def _publish(self, result: NodeReadiness) -> None:
        for reason, count in result.pods_at_risk_by_reason().items():
            metrics.READINESS_PODS_AT_RISK.labels(reason=reason.value).set(count)
        event_type = self._scenario.event_type.value
        metrics.READINESS_DRAINS_WITHIN_NOTICE.labels(type=event_type).set(
            1 if result.drains_within_notice else 0
        )
        metrics.READINESS_LAST_CHECK.set(self._now().timestamp())
        metrics.READINESS_CHECKS.labels(result="ok").inc()
        verdict = result.verdict
        if verdict != self._last_verdict:
            # Logged when it changes, with the pods at risk: the metrics say how many, this says which.
            level = logging.INFO if result.drains_within_notice else logging.WARNING
            at_risk = "; ".join(f"{p.pod.key} ({', '.join(p.reasons)})" for p in result.at_risk)
            log.log(
                level,
                "drain readiness of node %s: %s%s",
                self._node_name,
                verdict,
                f": {at_risk}" if at_risk else "",
            )
            self._last_verdict = verdict

    def _report_failure(self, exc: BaseException) -> None:
        what = str(exc) or f"no answer within {CHECK_TIMEOUT_SECONDS:.0f}s"
        if isinstance(exc, KubeForbidden):
            if not self._warned_forbidden:
                log.error("drain-readiness check failed: %s; %s", what, FORBIDDEN_HINT)
                self._warned_forbidden = True
            return
        log.warning("drain-readiness check failed (next try in %.0fs): %s", self._interval, what)
