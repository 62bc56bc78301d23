"""The documented drain-readiness example is what the report prints for the cluster it describes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aksnth.commands.readiness import exit_code
from aksnth.kube.budgets import BudgetInfo
from aksnth.kube.labelselector import parse_selector
from aksnth.kube.mutations import Taint
from aksnth.kube.pods import PodInfo
from aksnth.kube.readiness.assess import Scenario, assess_node
from aksnth.kube.readiness.placement import ClusterView, NodeInfo, Placement, Toleration, add_cluster_risks
from aksnth.kube.readiness.report import Assessment, render_table
from tests.unit.kube.readiness.pods import running_pod

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PROMPT = "$ aks-node-termination-handler readiness\n"


def shown_example(page: str) -> str:
    """What a page shows after the command: up to the next prompt or the end of the code block."""
    output = page.split(PROMPT, 1)[1]
    return min(output.split("$ ", 1)[0], output.split("```", 1)[0], key=len)


def test_the_documented_example_is_what_the_report_prints() -> None:
    """The example of docs/readiness.md, rebuilt from the cluster it describes, is printed exactly as
    shown there, and so on every other page that shows it (the README did once)."""
    spot_taint = Taint(key="kubernetes.azure.com/scalesetpriority", value="spot", effect="NoSchedule")
    spot_labels = {"kubernetes.azure.com/scalesetpriority": "spot"}
    a, b, system = (
        "aks-spot-12345678-vmss000003",
        "aks-spot-12345678-vmss000004",
        "aks-system-87654321-vmss000000",
    )
    nodes = {
        a: NodeInfo(name=a, labels=spot_labels, taints=(spot_taint,)),
        b: NodeInfo(name=b, labels=spot_labels, taints=(spot_taint,)),
        system: NodeInfo(name=system),
    }

    def pod(name: str, node: str, kind: str, owner: str, app: str, **kw: object) -> PodInfo:
        return running_pod(name, node, kind=kind, owner=owner, labels={"app": app}, **kw)

    pods = [
        pod("web-7c9d8b6f4-x2lqp", a, "ReplicaSet", "web-7c9d8b6f4", "web"),
        pod("web-7c9d8b6f4-9hkzt", system, "ReplicaSet", "web-7c9d8b6f4", "web"),
        pod("db-0", a, "StatefulSet", "db", "db"),
        pod("db-1", b, "StatefulSet", "db", "db"),
        pod(
            "cache-5f6d7c8b9-qq7rw",
            a,
            "ReplicaSet",
            "cache-5f6d7c8b9",
            "cache",
            empty_dir_volumes=("scratch",),
        ),
        pod("report-manual", a, "", "", "report", grace_period_seconds=120),
        pod("node-exporter-4kx8d", a, "DaemonSet", "node-exporter", "ne"),
        pod("web-7c9d8b6f4-m5v2c", b, "ReplicaSet", "web-7c9d8b6f4", "web"),
    ]
    tolerates_spot = Placement(
        tolerations=(Toleration(key=spot_taint.key, value="spot", effect="NoSchedule"),)
    )
    cluster = ClusterView(nodes=nodes, pods=pods, placements={p.key: tolerates_spot for p in pods})
    db = BudgetInfo(
        namespace="shop", name="db", selector=parse_selector("app=db"), current_healthy=2, desired_healthy=2
    )
    assessment = Assessment(
        scenario=Scenario(),
        assessed_at=NOW,
        selector="kubernetes.azure.com/scalesetpriority=spot",
        nodes=tuple(
            add_cluster_risks(
                assess_node(
                    name, [p for p in pods if p.node_name == name], [db], scenario=Scenario(), now=NOW
                ),
                cluster,
            )
            for name in (a, b)
        ),
    )
    root = Path(__file__).parents[4]
    shown = {
        page.relative_to(root).as_posix(): shown_example(page.read_text(encoding="utf-8"))
        for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]
        if PROMPT in page.read_text(encoding="utf-8")
    }
    assert "docs/readiness.md" in shown
    assert shown == dict.fromkeys(shown, render_table(assessment))
    assert exit_code(assessment, fail_on_risk=False) == 1
