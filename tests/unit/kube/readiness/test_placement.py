"""Readiness risks that need the rest of the cluster: every replica on Spot, nowhere for a replacement."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aksnth.kube.labelselector import Op, Requirement, Selector
from aksnth.kube.mutations import Taint
from aksnth.kube.pods import PodInfo
from aksnth.kube.readiness.assess import Reason, Scenario, assess_node
from aksnth.kube.readiness.placement import (
    ClusterView,
    NodeInfo,
    NodeTerm,
    Placement,
    Toleration,
    add_cluster_risks,
)
from tests.unit.kube.readiness.pods import running_pod

SPOT_TAINT = Taint(key="kubernetes.azure.com/scalesetpriority", value="spot", effect="NoSchedule")
TOLERATES_SPOT = Toleration(key=SPOT_TAINT.key, value="spot", effect="NoSchedule")
SPOT_LABELS = {"kubernetes.azure.com/scalesetpriority": "spot", "pool": "spot"}


def spot_node(name: str, **kw) -> NodeInfo:
    return NodeInfo(name=name, labels={**SPOT_LABELS, **kw.pop("labels", {})}, taints=(SPOT_TAINT,), **kw)


def regular_node(name: str, **kw) -> NodeInfo:
    return NodeInfo(name=name, labels={"pool": "system", **kw.pop("labels", {})}, **kw)


def replica(name: str, node: str, *, workload: str = "web") -> PodInfo:
    return running_pod(name, node, kind="ReplicaSet", owner=workload)


def risks(cluster: ClusterView, node: str = "spot-a") -> dict[str, tuple[Reason, ...]]:
    on_node = [p for p in cluster.pods if p.node_name == node]
    base = assess_node(node, on_node, [], scenario=Scenario(), now=datetime(2026, 1, 1, tzinfo=UTC))
    return {p.pod.name: p.reasons for p in add_cluster_risks(base, cluster).pods}


def test_a_workload_with_every_replica_on_spot_nodes() -> None:
    nodes = {n.name: n for n in (spot_node("spot-a"), spot_node("spot-b"), regular_node("sys"))}
    everywhere = [TOLERATES_SPOT]
    pods = [
        replica("web-1", "spot-a"),
        replica("web-2", "spot-b"),
        replica("api-1", "spot-a", workload="api"),
    ]
    pods.append(replica("api-2", "sys", workload="api"))
    placements = {f"shop/{p.name}": Placement(tolerations=tuple(everywhere)) for p in pods}
    cluster = ClusterView(nodes=nodes, pods=pods, placements=placements)
    assert risks(cluster) == {"web-1": (Reason.ALL_REPLICAS_ON_SPOT,), "api-1": ()}
    base = assess_node("spot-a", pods[:1], [], scenario=Scenario(), now=datetime(2026, 1, 1, tzinfo=UTC))
    (web,) = add_cluster_risks(base, cluster).pods
    assert web.risks[0].message == "ReplicaSet shop/web: all 2 replicas run on Spot nodes"


def test_a_replacement_with_nowhere_to_go() -> None:
    """The only other node does not fit: it is a Spot node the pod does not tolerate."""
    pods = [replica("web-1", "spot-a")]
    cluster = ClusterView(
        nodes={"spot-a": spot_node("spot-a"), "spot-b": spot_node("spot-b"), "sys": regular_node("sys")},
        pods=pods,
        placements={"shop/web-1": Placement(tolerations=(TOLERATES_SPOT,), node_selector={"pool": "spot"})},
    )
    # It tolerates spot-b and selects it: a place exists.
    assert Reason.NO_PLACE not in risks(cluster)["web-1"]
    cordoned = ClusterView(
        nodes={**cluster.nodes, "spot-b": spot_node("spot-b", unschedulable=True)},
        pods=pods,
        placements=cluster.placements,
    )
    assert Reason.NO_PLACE in risks(cordoned)["web-1"]


@pytest.mark.parametrize(
    ("placement", "node", "fits"),
    [
        (Placement(), regular_node("n"), True),
        (Placement(), spot_node("n"), False),  # NoSchedule taint not tolerated
        (Placement(tolerations=(TOLERATES_SPOT,)), spot_node("n"), True),
        (Placement(tolerations=(Toleration(operator="Exists"),)), spot_node("n"), True),  # tolerates all
        (Placement(tolerations=(Toleration(key=SPOT_TAINT.key, operator="Exists"),)), spot_node("n"), True),
        (Placement(tolerations=(Toleration(key=SPOT_TAINT.key, value="x"),)), spot_node("n"), False),
        (
            Placement(tolerations=(Toleration(key=SPOT_TAINT.key, value="spot", effect="NoExecute"),)),
            spot_node("n"),
            False,
        ),
        (Placement(), regular_node("n", taints=(Taint(key="soft", effect="PreferNoSchedule"),)), True),
        (Placement(), regular_node("n", ready=False), False),
        (Placement(), regular_node("n", unschedulable=True), False),
        (
            Placement(tolerations=(Toleration(key="node.kubernetes.io/unschedulable", operator="Exists"),)),
            regular_node("n", unschedulable=True),
            True,
        ),
        (Placement(node_selector={"pool": "gpu"}), regular_node("n"), False),
        (
            Placement(
                required_terms=(
                    NodeTerm(expressions=Selector((Requirement("pool", Op.IN, ("gpu", "system")),))),
                )
            ),
            regular_node("n"),
            True,
        ),
        (
            Placement(
                required_terms=(
                    NodeTerm(fields=Selector((Requirement("metadata.name", Op.IN, ("other",)),))),
                )
            ),
            regular_node("n"),
            False,
        ),
        (Placement(required_terms=(NodeTerm(),)), regular_node("n"), False),  # an empty term selects nothing
    ],
)
def test_fits_follows_the_schedulers_filters(placement: Placement, node: NodeInfo, fits: bool) -> None:
    assert placement.fits(node) is fits


def test_pods_left_alone_or_without_controller_get_no_cluster_risk() -> None:
    agent = PodInfo(
        namespace="shop", name="agent", node_name="spot-a", controller_kind="DaemonSet", controller_uid="ds"
    )
    bare = PodInfo(namespace="shop", name="bare", node_name="spot-a", phase="Running")
    cluster = ClusterView(nodes={"spot-a": spot_node("spot-a")}, pods=[agent, bare], placements={})
    assert risks(cluster) == {"bare": (Reason.NO_CONTROLLER,), "agent": ()}
