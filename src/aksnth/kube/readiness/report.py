"""The readiness report, as people and pipelines read it: kubectl-style tables (``-o wide`` adds each
risk's explanation) and a JSON document (``-o json``). Pure: an assessment in, text out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aksnth.kube.readiness.assess import NodeReadiness, PodReadiness, Scenario

KIND: Final = "DrainReadiness"
_GAP: Final = "   "  # kubectl's column padding


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    scenario: Scenario
    assessed_at: datetime
    nodes: tuple[NodeReadiness, ...]
    node: str = ""  # -node, when one node was asked for
    selector: str = ""  # the node selector otherwise

    @property
    def drain_seconds(self) -> float:
        return self.scenario.drain_seconds(self.assessed_at)

    @property
    def drains_within_notice(self) -> bool:
        return all(node.drains_within_notice for node in self.nodes)

    @property
    def at_risk(self) -> bool:
        return any(node.at_risk for node in self.nodes)


def headline(assessment: Assessment) -> str:
    scenario = assessment.scenario
    target = (
        f"node {assessment.node}" if assessment.node else f"nodes matching {assessment.selector or '(all)'}"
    )
    return (
        f"If a {scenario.event_type.value} with {_seconds(scenario.notice_seconds)} notice arrived now "
        f"(drain deadline {_seconds(assessment.drain_seconds)}), {target}:"
    )


def render_table(assessment: Assessment, *, wide: bool = False) -> str:
    """A node table (the verdicts), then a pod table (what happens to each pod, and its risks)."""
    nodes = [
        [node.node, str(len(node.pods)), str(len(node.at_risk)), node.verdict] for node in assessment.nodes
    ]
    pod_headers = ["NODE", "NAMESPACE", "POD", "WHAT HAPPENS", "RISKS"] + (["RISK DETAILS"] if wide else [])
    pods = [_pod_row(node.node, pod, wide=wide) for node in assessment.nodes for pod in node.pods]
    parts = [headline(assessment), "", _table(["NODE", "PODS", "AT RISK", "VERDICT"], nodes)]
    if pods:
        parts += ["", _table(pod_headers, pods)]
    return "\n".join(parts) + "\n"


def _pod_row(node: str, pod: PodReadiness, *, wide: bool) -> list[str]:
    row = [node, pod.pod.namespace, pod.pod.name, pod.detail, ",".join(pod.reasons) or "-"]
    if wide:
        row.append("; ".join(f"{risk.reason}: {risk.message}" for risk in pod.risks) or "-")
    return row


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        _GAP.join(cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row))
        for row in [headers, *rows]
    ]
    return "\n".join(lines)


def to_json(assessment: Assessment) -> dict[str, Any]:
    scenario = assessment.scenario
    return {
        "kind": KIND,
        "assessedAt": assessment.assessed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "event": {
            "type": scenario.event_type.value,
            "noticeSeconds": float(scenario.notice_seconds),
            "drainSeconds": assessment.drain_seconds,
        },
        "node": assessment.node or None,
        "selector": None if assessment.node else assessment.selector,
        "drainsWithinNotice": assessment.drains_within_notice,
        "nodes": [_node_json(node) for node in assessment.nodes],
    }


def render_json(assessment: Assessment) -> str:
    return json.dumps(to_json(assessment), indent=2) + "\n"


def _node_json(node: NodeReadiness) -> dict[str, Any]:
    return {
        "name": node.node,
        "drainsWithinNotice": node.drains_within_notice,
        "verdict": node.verdict,
        "podsAtRisk": {str(reason): count for reason, count in node.pods_at_risk_by_reason().items()},
        "pods": [_pod_json(pod) for pod in node.pods],
    }


def _pod_json(pod: PodReadiness) -> dict[str, Any]:
    info = pod.pod
    return {
        "namespace": info.namespace,
        "name": info.name,
        "class": str(pod.pod_class),
        "controller": info.controller or None,
        "outcome": str(pod.outcome),
        "detail": pod.detail,
        "evictedAfterSeconds": pod.evicted_after_seconds,
        "terminationGracePeriodSeconds": info.grace_period_seconds,
        "gracePeriodSeconds": pod.grace_period_seconds,
        "risks": [{"reason": str(risk.reason), "message": risk.message} for risk in pod.risks],
    }


def _seconds(value: float) -> str:
    return f"{value:g}s"
