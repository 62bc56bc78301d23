"""``readiness`` against the real control plane: one scenario per risk, each judged from what the API
server holds (pods made Ready by the kubelet stand-in, budgets whose status the real disruption
controller computed), read with a ServiceAccount that may only get and list.

The scenarios of one node's own risks run on a regular (non-Spot) node: there, a single-replica
workload is not also "every replica on Spot", so each scenario shows exactly its own risk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node

from aksnth.commands.readiness import Request, assess, parse_request
from aksnth.config import KubeSettings
from aksnth.errors import NodeNotFound
from aksnth.kube.client import open_client
from aksnth.kube.readiness.assess import NodeReadiness, Outcome, PodReadiness, Reason
from aksnth.kube.readiness.placement import NO_PLACE_MESSAGE
from testkit.cluster import (
    AksNode,
    create_aks_node,
    create_pdb,
    create_pod,
    create_pods,
    create_replicaset,
    pod_manifest,
    service_account_kubeconfig,
    unique_suffix,
    wait_pdb_observed,
)
from testkit.controlplane import ControlPlane
from testkit.kubelet import FakeKubelet

pytestmark = pytest.mark.controlplane

#: All the report may do: get and list, nothing that writes.
READ_ONLY_RULES = (
    {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["get", "list"]},
)


@pytest.fixture
async def reader(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str
) -> AsyncIterator[AsyncClient]:
    """The client the subcommand opens, as a ServiceAccount that can only read."""
    path = await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=namespace,
        name=f"reader-{unique_suffix()}",
        cluster_rules=READ_ONLY_RULES,
    )
    client = open_client(KubeSettings(kubeconfig=str(path), node_name=""))
    try:
        yield client
    finally:
        await client.close()


def request(*args: str) -> Request:
    return parse_request([*args, "-kubeconfig=/dev/null"], {})


async def one_node(reader: AsyncClient, node: AksNode, *args: str) -> NodeReadiness:
    assessment = await assess(reader, request(f"-node={node.name}", *args), now=datetime.now(UTC))
    (result,) = assessment.nodes
    return result


def pod_named(result: NodeReadiness, name: str) -> PodReadiness:
    return next(p for p in result.pods if p.pod.name == name)


@pytest.fixture
async def regular(kube: AsyncClient) -> AksNode:
    """A node of a regular (not Spot) pool, with a second node in the pool: replacements have a place."""
    await create_aks_node(kube, vmss="aks-system-12345678-vmss", spot=False, instance_id="1")
    return await create_aks_node(kube, vmss="aks-system-12345678-vmss", spot=False)


async def test_a_node_of_plain_replicas_drains_within_the_notice(
    kube: AsyncClient, reader: AsyncClient, namespace: str, regular: AksNode
) -> None:
    await create_pods(kube, namespace, regular.name, 2, name_prefix="web")
    async with FakeKubelet(kube, node=regular.name):
        result = await one_node(reader, regular)
    assert result.drains_within_notice
    assert result.verdict == "drains within the notice"
    assert {p.outcome for p in result.pods} == {Outcome.EVICTED}


async def test_a_budget_that_allows_no_disruption_blocks_the_drain(
    kube: AsyncClient, reader: AsyncClient, namespace: str, regular: AksNode
) -> None:
    guarded = {"app": "db"}
    await create_pods(kube, namespace, regular.name, 2, name_prefix="db", labels=guarded)
    async with FakeKubelet(kube, node=regular.name):
        pdb = await create_pdb(kube, namespace, guarded, min_available=2)
        await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=2)
        result = await one_node(reader, regular)
    assert not result.drains_within_notice
    assert result.verdict == "would not drain within the notice: 2 pods blocked by a PodDisruptionBudget"
    db = pod_named(result, "db-0")
    assert db.outcome is Outcome.BLOCKED
    assert db.risks[0].reason is Reason.PDB_BLOCKED
    assert db.risks[0].message == (
        f"PodDisruptionBudget {namespace}/{pdb.metadata.name} allows no disruption (2 healthy, 2 wanted)"
    )


async def test_a_budget_allowing_one_disruption_lets_one_of_two_pods_go(
    kube: AsyncClient, reader: AsyncClient, namespace: str, regular: AksNode
) -> None:
    guarded = {"app": "queue"}
    rs = await create_replicaset(kube, namespace, labels=guarded, replicas=2)
    await create_pods(kube, namespace, regular.name, 2, name_prefix="queue", labels=guarded, owner=rs)
    async with FakeKubelet(kube, node=regular.name):
        pdb = await create_pdb(kube, namespace, guarded, max_unavailable=1)
        await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=2)
        result = await one_node(reader, regular)
    assert [p.outcome for p in result.pods] == [Outcome.EVICTED, Outcome.BLOCKED]
    assert "allows 1 disruption and 2 of its pods are on this node" in result.pods[1].detail


async def test_a_pod_in_two_budgets_is_refused(
    kube: AsyncClient, reader: AsyncClient, namespace: str, regular: AksNode
) -> None:
    labels = {"app": "twice", "tier": "back"}
    await create_pod(kube, namespace, regular.name, name="twice", labels=labels)
    async with FakeKubelet(kube, node=regular.name):
        for selector in ({"app": "twice"}, {"tier": "back"}):
            pdb = await create_pdb(kube, namespace, selector, min_available=0)
            await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=1)
        result = await one_node(reader, regular)
    assert pod_named(result, "twice").outcome is Outcome.REFUSED
    assert pod_named(result, "twice").reasons == (Reason.SEVERAL_PDBS,)
    assert not result.drains_within_notice


async def test_a_grace_period_longer_than_the_notice_is_cut(
    kube: AsyncClient, reader: AsyncClient, namespace: str, regular: AksNode
) -> None:
    await create_pod(kube, namespace, regular.name, name="slow", grace_seconds=120)
    result = await one_node(reader, regular)
    slow = pod_named(result, "slow")
    assert (slow.reasons, slow.grace_period_seconds) == ((Reason.GRACE_CUT,), 29)
    assert slow.detail == "evicted at once, grace period cut from 120s to 29s"
    assert result.drains_within_notice
    # With a Terminate's 5 minutes, the same pod keeps its own grace period.
    terminate = await one_node(reader, regular, "-event-type=Terminate")
    assert pod_named(terminate, "slow").risks == ()
    # The evictions go on until the event's deadline, whatever -nodeGracePeriodSeconds (its report).
    assert terminate.drain_seconds == 300


async def test_a_pod_without_controller_is_lost_for_good(
    kube: AsyncClient, reader: AsyncClient, namespace: str, regular: AksNode
) -> None:
    await create_pod(kube, namespace, regular.name, name="bare", owner=None)
    result = await one_node(reader, regular)
    assert pod_named(result, "bare").reasons == (Reason.NO_CONTROLLER,)
    assert result.verdict == "drains within the notice; 1 pod at risk"


async def test_emptydir_data_is_lost(
    kube: AsyncClient, reader: AsyncClient, namespace: str, regular: AksNode
) -> None:
    await create_pod(kube, namespace, regular.name, name="cache", empty_dir=True)
    result = await one_node(reader, regular)
    cache = pod_named(result, "cache")
    assert [(r.reason, r.message) for r in cache.risks] == [(Reason.EMPTY_DIR, "emptyDir data lost: scratch")]


async def test_a_workload_with_every_replica_on_spot_nodes(
    kube: AsyncClient, reader: AsyncClient, namespace: str, node: AksNode
) -> None:
    other_spot = await create_aks_node(kube, instance_id="7")
    regular = await create_aks_node(kube, vmss="aks-system-12345678-vmss", spot=False)
    spot_only = await create_replicaset(kube, namespace, labels={"app": "spotty"}, replicas=2)
    mixed = await create_replicaset(kube, namespace, labels={"app": "mixed"}, replicas=2)
    await create_pod(kube, namespace, node.name, name="spotty-1", owner=spot_only, labels={"app": "spotty"})
    await create_pod(
        kube, namespace, other_spot.name, name="spotty-2", owner=spot_only, labels={"app": "spotty"}
    )
    await create_pod(kube, namespace, node.name, name="mixed-1", owner=mixed, labels={"app": "mixed"})
    await create_pod(kube, namespace, regular.name, name="mixed-2", owner=mixed, labels={"app": "mixed"})
    result = await one_node(reader, node)
    spotty = pod_named(result, "spotty-1")
    assert spotty.reasons == (Reason.ALL_REPLICAS_ON_SPOT,)
    assert (
        spotty.risks[0].message
        == f"ReplicaSet {namespace}/{spot_only.metadata.name}: all 2 replicas run on Spot nodes"
    )
    assert pod_named(result, "mixed-1").risks == ()


async def test_a_replacement_with_no_node_to_go_to(
    kube: AsyncClient, reader: AsyncClient, namespace: str, node: AksNode
) -> None:
    """The pod selects a pool whose only other node is cordoned: its replacement would stay Pending.
    Once that node is uncordoned, there is a place again."""
    pool = {"example.com/pool": f"p{unique_suffix()}"}
    await kube.patch(Node, node.name, {"metadata": {"labels": pool}})
    spare = await create_aks_node(kube, instance_id="8", labels=pool, unschedulable=True)
    manifest = pod_manifest(namespace, node.name, name="pinned")
    manifest.spec.nodeSelector = dict(pool)
    await kube.create(manifest)
    pinned = pod_named(await one_node(reader, node), "pinned")
    assert Reason.NO_PLACE in pinned.reasons
    assert next(r.message for r in pinned.risks if r.reason is Reason.NO_PLACE) == NO_PLACE_MESSAGE
    await kube.patch(Node, spare.name, {"spec": {"unschedulable": None}})
    assert Reason.NO_PLACE not in pod_named(await one_node(reader, node), "pinned").reasons


async def test_nodes_are_chosen_by_selector_and_an_unknown_node_is_refused_with_a_suggestion(
    kube: AsyncClient, reader: AsyncClient, regular: AksNode
) -> None:
    batch = {"example.com/batch": f"b{unique_suffix()}"}
    chosen = [await create_aks_node(kube, labels=batch, instance_id=str(i)) for i in (4, 5)]
    selector = ",".join(f"{k}={v}" for k, v in batch.items())
    assessment = await assess(reader, request(f"-l={selector}"), now=datetime.now(UTC))
    assert [n.node for n in assessment.nodes] == sorted(n.name for n in chosen)
    assert assessment.selector == selector and assessment.drains_within_notice
    with pytest.raises(NodeNotFound, match=f"no node named '{regular.name}x' in the cluster \\(did you mean"):
        await assess(reader, request(f"-node={regular.name}x"), now=datetime.now(UTC))
