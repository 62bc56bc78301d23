"""Readiness risks that need the rest of the cluster, without I/O: a workload whose every replica runs
on Spot nodes (a Spot eviction wave takes them all), and a pod whose replacement would find no other
node it tolerates and selects (it would stay Pending).

"Fits" follows the scheduler's filters that a pod's spec decides: the node is Ready and schedulable
(or the pod tolerates ``node.kubernetes.io/unschedulable``), the pod tolerates each NoSchedule and
NoExecute taint, and the node matches ``nodeSelector`` and the required node affinity. Free capacity,
pod (anti-)affinity and topology spread are not looked at: a node that fits may still be full.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aksnth.kube.keys import SPOT_LABEL, SPOT_VALUE
from aksnth.kube.labelselector import Selector
from aksnth.kube.mutations import Taint
from aksnth.kube.pods import FINISHED_PHASES, PodInfo
from aksnth.kube.readiness.assess import NodeReadiness, Outcome, PodReadiness, Reason, Risk

#: What ``spec.unschedulable`` means to the scheduler (its NodeUnschedulable filter): a pod that
#: tolerates this taint may still be placed on a cordoned node.
UNSCHEDULABLE_TAINT = Taint(key="node.kubernetes.io/unschedulable", effect="NoSchedule")
_FILTERING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
NO_PLACE_MESSAGE = "no other Ready, schedulable node it tolerates and selects: a replacement stays Pending"


@dataclass(frozen=True, slots=True, kw_only=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""  # empty: every effect

    def tolerates(self, taint: Taint) -> bool:
        """As ``Toleration.ToleratesTaint`` in Kubernetes: an empty key with Exists tolerates everything."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return self.operator in ("", "Equal") and self.value == taint.value


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeTerm:
    """One ``nodeSelectorTerm`` of a required node affinity: its expressions and fields all hold."""

    expressions: Selector = field(default_factory=Selector)
    fields: Selector = field(default_factory=Selector)  # only metadata.name exists

    def matches(self, node: NodeInfo) -> bool:
        if not self.expressions.requirements and not self.fields.requirements:
            return False  # an empty term selects no node
        return self.expressions.matches(node.labels) and self.fields.matches({"metadata.name": node.name})


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """What of a pod's spec decides where its replacement may go (the replacement has the same spec)."""

    tolerations: tuple[Toleration, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    required_terms: tuple[NodeTerm, ...] = ()  # any one must match; none: no required node affinity

    def fits(self, node: NodeInfo) -> bool:
        if not node.ready:
            return False
        if node.unschedulable and not self.tolerates(UNSCHEDULABLE_TAINT):
            return False
        if any(t.effect in _FILTERING_EFFECTS and not self.tolerates(t) for t in node.taints):
            return False
        if any(node.labels.get(key) != value for key, value in self.node_selector.items()):
            return False
        return not self.required_terms or any(term.matches(node) for term in self.required_terms)

    def tolerates(self, taint: Taint) -> bool:
        return any(toleration.tolerates(taint) for toleration in self.tolerations)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: bool = True

    @property
    def spot(self) -> bool:
        return self.labels.get(SPOT_LABEL) == SPOT_VALUE


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterView:
    """The nodes, the pods of every node, and where each pod (by key) may be placed."""

    nodes: Mapping[str, NodeInfo] = field(default_factory=dict)
    pods: Sequence[PodInfo] = ()
    placements: Mapping[str, Placement] = field(default_factory=dict)


def add_cluster_risks(readiness: NodeReadiness, cluster: ClusterView) -> NodeReadiness:
    """``readiness`` with the replicas-all-on-Spot and no-place risks of each pod the drain removes
    (or leaves to die with the VM) that a controller would recreate."""
    replicas: dict[str, list[PodInfo]] = {}
    for pod in cluster.pods:
        if pod.controller_uid and pod.node_name and pod.phase not in FINISHED_PHASES and not pod.deleting:
            replicas.setdefault(pod.controller_uid, []).append(pod)
    others = [node for name, node in cluster.nodes.items() if name != readiness.node]
    pods = [_judge(pod, replicas, others, cluster) for pod in readiness.pods]
    return readiness.with_pods(pods, reasons_assessed=tuple(Reason))


def _judge(
    pod: PodReadiness, replicas: Mapping[str, list[PodInfo]], others: Sequence[NodeInfo], cluster: ClusterView
) -> PodReadiness:
    info = pod.pod
    if pod.outcome is Outcome.LEFT or not info.controller_uid:
        return pod
    risks: list[Risk] = []
    group = replicas.get(info.controller_uid) or [info]
    if all(_on_spot(replica, cluster) for replica in group):
        count = len(group)
        every = "its only replica runs" if count == 1 else f"all {count} replicas run"
        risks.append(
            Risk(reason=Reason.ALL_REPLICAS_ON_SPOT, message=f"{info.controller}: {every} on Spot nodes")
        )
    placement = cluster.placements.get(info.key)
    if placement is not None and not any(placement.fits(node) for node in others):
        risks.append(Risk(reason=Reason.NO_PLACE, message=NO_PLACE_MESSAGE))
    return pod.with_risks(risks)


def _on_spot(pod: PodInfo, cluster: ClusterView) -> bool:
    node = cluster.nodes.get(pod.node_name)
    return node is not None and node.spot
