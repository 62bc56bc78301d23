"""Node mutations against the real API server, as the chart's ServiceAccount: protect is idempotent,
give-back undoes only our changes, dry-run writes nothing, a concurrent writer's 409 is retried."""

from __future__ import annotations

import pytest
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Node, Pod
from lightkube.types import PatchType
from prometheus_client import REGISTRY

from aksnth.config import TaintEffect
from aksnth.errors import NodeNotFound
from aksnth.kube import node as kube_node
from aksnth.kube.api import KubeClient
from aksnth.kube.keys import EXCLUDE_FROM_LB_LABEL, STATE_ANNOTATION
from aksnth.kube.record import NodeRecord
from aksnth.lifecycle import Phase
from aksnth.model import EventType, ScheduledEvent
from testkit.cluster import SPOT_TAINT, create_aks_node, create_pod
from testkit.controlplane import ControlPlane
from tests.integration.kube_fixtures import scheduled_event

pytestmark = pytest.mark.controlplane


OUR_TAINT_PREFIX = "aks-node-termination-handler/"


def taints_of(node: Node) -> list[tuple[str, str | None, str]]:
    assert node.spec is not None
    return [(t.key, t.value, t.effect) for t in node.spec.taints or []]


async def protect(
    kube: KubeClient,
    node: str,
    event: ScheduledEvent,
    *,
    effect: TaintEffect = TaintEffect.NO_SCHEDULE,
    exclude_from_lb: bool = True,
    dry_run: bool = False,
) -> NodeRecord:
    """``protect_node`` with our taint, as ``-taint.node`` has it."""
    return await kube_node.protect_node(
        kube, node, event=event, taint=True, effect=effect, exclude_from_lb=exclude_from_lb, dry_run=dry_run
    )


async def test_read_node_gives_boot_id_provider_id_and_annotations(
    kube: AsyncClient, handler_kube: KubeClient
):
    aks = await create_aks_node(kube)
    snapshot = await kube_node.read_node(handler_kube, aks.name)
    assert snapshot.boot_id == aks.boot_id
    assert snapshot.provider_id == aks.provider_id
    assert not snapshot.unschedulable
    assert snapshot.labels["kubernetes.azure.com/scalesetpriority"] == "spot"


async def test_a_missing_node_is_node_not_found(handler_kube: KubeClient):
    with pytest.raises(NodeNotFound, match="get node no-such-node"):
        await kube_node.read_node(handler_kube, "no-such-node")


async def test_protect_is_idempotent_and_never_duplicates_the_taint(
    kube: AsyncClient, handler_kube: KubeClient
):
    aks = await create_aks_node(kube)
    event = scheduled_event(kind=EventType.PREEMPT)
    first = await protect(handler_kube, aks.name, event)
    after_first = await kube.get(Node, aks.name)
    second = await protect(handler_kube, aks.name, event)
    after_second = await kube.get(Node, aks.name)

    assert after_second.metadata.resourceVersion == after_first.metadata.resourceVersion  # nothing written
    assert after_second.spec.unschedulable is True
    assert after_second.metadata.labels[EXCLUDE_FROM_LB_LABEL] == "true"
    assert taints_of(after_second) == [
        (SPOT_TAINT["key"], SPOT_TAINT["value"], "NoSchedule"),
        (f"{OUR_TAINT_PREFIX}preempt", event.event_id, "NoSchedule"),
    ]
    assert first == second
    record = NodeRecord.parse(after_second.metadata.annotations[STATE_ANNOTATION])
    assert record.cordoned_by_us and record.label_added_by_us
    assert record.boot_id == aks.boot_id
    assert record.events[event.event_id].phase is Phase.PROTECTED


async def test_no_execute_taint_only_after_the_drain_and_once(kube: AsyncClient, handler_kube: KubeClient):
    aks = await create_aks_node(kube)
    event = scheduled_event(kind=EventType.TERMINATE)
    await protect(handler_kube, aks.name, event, effect=TaintEffect.NO_EXECUTE, exclude_from_lb=False)
    assert [t for t in taints_of(await kube.get(Node, aks.name)) if t[0].startswith(OUR_TAINT_PREFIX)] == []
    for _ in range(2):
        await kube_node.apply_after_drain_taint(handler_kube, aks.name, event=event, dry_run=False)
    ours = [t for t in taints_of(await kube.get(Node, aks.name)) if t[0].startswith(OUR_TAINT_PREFIX)]
    assert ours == [(f"{OUR_TAINT_PREFIX}terminate", event.event_id, "NoExecute")]


async def test_give_back_undoes_our_cordon_label_and_taint(kube: AsyncClient, handler_kube: KubeClient):
    aks = await create_aks_node(kube)
    event = scheduled_event(kind=EventType.REBOOT)
    await protect(handler_kube, aks.name, event)

    result = await kube_node.give_back(handler_kube, aks.name, event_id=event.event_id, dry_run=False)

    node = await kube.get(Node, aks.name)
    assert not node.spec.unschedulable
    assert EXCLUDE_FROM_LB_LABEL not in node.metadata.labels
    assert taints_of(node) == [(SPOT_TAINT["key"], SPOT_TAINT["value"], "NoSchedule")]
    assert result.uncordoned and result.label_removed
    record = NodeRecord.parse(node.metadata.annotations[STATE_ANNOTATION])
    assert record.events[event.event_id].phase is Phase.GIVEN_BACK


async def test_an_admin_cordoned_node_stays_cordoned_after_give_back(
    kube: AsyncClient, handler_kube: KubeClient
):
    aks = await create_aks_node(kube, unschedulable=True)
    event = scheduled_event(kind=EventType.FREEZE)
    await protect(handler_kube, aks.name, event)

    result = await kube_node.give_back(handler_kube, aks.name, event_id=event.event_id, dry_run=False)

    node = await kube.get(Node, aks.name)
    assert node.spec.unschedulable is True
    assert result.kept_admin_cordon and not result.uncordoned
    assert EXCLUDE_FROM_LB_LABEL not in node.metadata.labels  # the label was ours
    assert not [t for t in taints_of(node) if t[0].startswith(OUR_TAINT_PREFIX)]


async def test_dry_run_writes_nothing(kube: AsyncClient, handler_kube: KubeClient):
    aks = await create_aks_node(kube)
    before = await kube.get(Node, aks.name)
    event = scheduled_event()

    record = await protect(handler_kube, aks.name, event, dry_run=True)
    result = await kube_node.give_back(handler_kube, aks.name, event_id=event.event_id, dry_run=True)
    await kube_node.update_record(
        handler_kube, aks.name, lambda r: r.with_finished(event.event_id), dry_run=True
    )

    after = await kube.get(Node, aks.name)
    assert after.metadata.resourceVersion == before.metadata.resourceVersion
    assert record.cordoned_by_us  # what would have been recorded
    assert result.dry_run


async def test_a_concurrent_writer_409_is_retried_and_its_change_kept(
    kube: AsyncClient, handler_kube: KubeClient, control_plane: ControlPlane
):
    aks = await create_aks_node(kube)
    event = scheduled_event()
    admin = Client(KubeConfig.from_file(control_plane.kubeconfig_path), timeout=10)
    calls: list[int] = []

    def mutate(record: NodeRecord) -> NodeRecord:
        calls.append(1)
        if len(calls) == 1:
            # Someone else writes the node between our read and our write: our write must get a 409.
            admin.patch(Node, aks.name, {"metadata": {"labels": {"team": "x"}}}, patch_type=PatchType.MERGE)
        return record.with_event_seen(event, now=event.not_before)

    try:
        record = await kube_node.update_record(handler_kube, aks.name, mutate, dry_run=False)
    finally:
        admin.close()

    assert len(calls) == 2
    node = await kube.get(Node, aks.name)
    assert node.metadata.labels["team"] == "x"
    assert NodeRecord.parse(node.metadata.annotations[STATE_ANNOTATION]) == record
    assert event.event_id in record.events


async def test_requests_are_counted_with_the_api_servers_host_and_port_as_cluster(
    kube: AsyncClient, handler_kube: KubeClient, control_plane: ControlPlane
):
    """``cluster`` is what client-go (and so the Go version) puts there: the server URL's host:port."""
    aks = await create_aks_node(kube)
    labels = {"cluster": control_plane.server_url.removeprefix("https://"), "code": "200"}
    before = REGISTRY.get_sample_value("aks_node_termination_handler_apiserver_request_total", labels) or 0.0
    await kube_node.read_node(handler_kube, aks.name)
    after = REGISTRY.get_sample_value("aks_node_termination_handler_apiserver_request_total", labels)
    assert after == before + 1


async def test_node_pods_for_templates_are_the_go_versions_list(
    kube: AsyncClient, handler_kube: KubeClient, namespace: str
):
    """``.NodePods`` is what the Go version computed from the same API server: the names of the pods
    whose ``spec.nodeName`` is the node, in the order of a cluster-wide list, without the pods whose
    first owner reference is a DaemonSet (bare, mirror and other nodes' pods as the rule says)."""
    aks = await create_aks_node(kube)
    other = await create_aks_node(kube)
    # A second namespace whose name sorts before the first one's by storage key ("<ns>-b/" < "<ns>/").
    second = f"{namespace}-b"
    await kube.create(Namespace(metadata=ObjectMeta(name=second, labels={"aksnth.test/namespace": "true"})))
    try:
        await create_pod(kube, namespace, aks, name="web-b", owner="ReplicaSet")
        await create_pod(kube, namespace, aks, name="web-a", owner="StatefulSet")
        await create_pod(kube, namespace, aks, name="agent", owner="DaemonSet")
        await create_pod(kube, namespace, aks, name="bare", owner=None)
        await create_pod(kube, namespace, aks, name="static", mirror=True)
        await create_pod(kube, namespace, other, name="elsewhere")
        await create_pod(kube, second, aks, name="job-1", owner="Job")
        await create_pod(kube, second, aks, name="log-agent", owner="DaemonSet")

        snapshot = await kube_node.read_node_with_pods(handler_kube, aks.name)

        # The Go version's rule, applied to the API server's own cluster-wide list.
        listed = [pod async for pod in kube.list(Pod, namespace="*")]
        go_version = [
            pod.metadata.name
            for pod in listed
            if pod.spec.nodeName == aks.name
            and next((o.kind for o in pod.metadata.ownerReferences or [] if o.kind), "") != "DaemonSet"
        ]
        assert list(snapshot.pod_names) == go_version
        assert list(snapshot.pod_names) == ["job-1", "bare", "static", "web-a", "web-b"]
    finally:
        await kube.delete(Namespace, second)
