"""Every Kubernetes key (taint, label, annotation, name) the handler reads or writes, in one place.

Changing one of these changes what existing clusters see (tolerations, alerts, dashboards): the taint
key prefix and the load-balancer label are the Go original's and must stay as they are.
"""

from __future__ import annotations

from typing import Final

from aksnth.model import EventType

#: Who we are: the field manager of every write, ``source.component`` of our Events, the
#: ``reportingComponent`` of our Events.
COMPONENT: Final = "aks-node-termination-handler"
FIELD_MANAGER: Final = COMPONENT

#: Our taints are ``aks-node-termination-handler/<lower-case EventType>=<EventId>`` (the original's format).
TAINT_KEY_PREFIX: Final = f"{COMPONENT}/"

#: Azure's cloud provider leaves nodes carrying this label out of external load balancers; its value is
#: not read, only its presence.
EXCLUDE_FROM_LB_LABEL: Final = "node.kubernetes.io/exclude-from-external-load-balancers"
EXCLUDE_FROM_LB_VALUE: Final = "true"

#: The cluster autoscaler's taint (NoSchedule, value: Unix seconds) on a node it is about to delete. Since
#: Kubernetes 1.30 (KEP-3836) kube-proxy fails its ``/healthz`` (port 10256) on a node that carries it, so
#: that cloud load balancers stop sending to the node; we add it on events that remove the VM
#: (``-taint.toBeDeleted``) and remove it on give-back only when we added it.
TO_BE_DELETED_TAINT: Final = "ToBeDeletedByClusterAutoscaler"

#: Our state record on the Node (JSON, see ``aksnth.kube.record``): what we saw and what we changed,
#: so that a restarted handler resumes, and a give-back undoes only our own changes.
STATE_ANNOTATION: Final = f"{COMPONENT}/state"

#: The Node condition that shows a pending or handled event to every tool (``kubectl describe node``):
#: reason = the event type, message = EventId, NotBefore, status and our phase; removed once it is over.
SCHEDULED_EVENT_CONDITION: Final = "AzureScheduledEvent"

#: Static pods are represented in the API by "mirror pods" carrying this annotation; the API refuses
#: to evict or delete them for good (the kubelet recreates them), so the drain leaves them alone.
MIRROR_POD_ANNOTATION: Final = "kubernetes.io/config.mirror"

#: Pods in these priority classes (or in kube-system) keep the node running and are evicted last.
SYSTEM_PRIORITY_CLASSES: Final = frozenset({"system-node-critical", "system-cluster-critical"})
SYSTEM_NAMESPACE: Final = "kube-system"

#: AKS labels the nodes of Spot pools ``kubernetes.azure.com/scalesetpriority=spot``: the nodes whose
#: VMs Azure may evict with 30 s of notice (the readiness report's default node selector).
SPOT_LABEL: Final = "kubernetes.azure.com/scalesetpriority"
SPOT_VALUE: Final = "spot"

#: Field selector of "pods bound to this node" (the drain never lists all pods of the cluster).
POD_NODE_NAME_FIELD: Final = "spec.nodeName"

#: AKS labels each node with its node pool (one scale set): the nodes that share Scheduled Events
#: documents (a scale set's placement group) are found among the nodes of the same pool.
AGENT_POOL_LABEL: Final = "kubernetes.azure.com/agentpool"

#: Events about cluster-scoped objects (the Node) live in this namespace, as the kubelet's do.
NODE_EVENTS_NAMESPACE: Final = "default"


def taint_key(event_type: EventType) -> str:
    """``aks-node-termination-handler/preempt`` for a Preempt event; the value of the taint is the EventId."""
    return f"{TAINT_KEY_PREFIX}{event_type.value.lower()}"


def is_our_taint_key(key: str) -> bool:
    return key.startswith(TAINT_KEY_PREFIX)
