"""Waiting for the other nodes under the same Azure events to be cordoned (aksnth.kube.peers), against
the real API server, as the chart's ServiceAccount."""

from __future__ import annotations

import asyncio

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from aksnth.azure.resource_name import resource_name_from_provider_id
from aksnth.kube.api import KubeClient
from aksnth.kube.keys import AGENT_POOL_LABEL
from aksnth.kube.peers import wait_peers_cordoned
from testkit.cluster import AksNode, create_aks_node, unique_suffix

pytestmark = pytest.mark.controlplane

#: How long these tests let a wait run when a peer is never cordoned (the bound under test).
SHORT_WAIT_SECONDS = 1.0


def resource_of(provider_id: str) -> str | None:
    try:
        return resource_name_from_provider_id(provider_id)
    except ValueError:
        return None


async def pool(kube: AsyncClient, size: int, *, name: str | None = None) -> list[AksNode]:
    """`size` nodes of a scale set of their own (node pool `name`, unique by default)."""
    pool_name = name or f"p{unique_suffix()}"
    vmss = f"aks-{pool_name}-12345678-vmss"
    return [await create_aks_node(kube, vmss=vmss, instance_id=str(i)) for i in range(size)]


async def cordon(kube: AsyncClient, node: AksNode) -> None:
    await kube.patch(Node, node.name, {"spec": {"unschedulable": True}}, patch_type=PatchType.MERGE)


def in_seconds(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_the_wait_ends_when_every_other_node_is_cordoned(kube: AsyncClient, handler_kube: KubeClient):
    me, early, late = await pool(kube, 3)
    await cordon(kube, early)
    waiting = asyncio.create_task(
        wait_peers_cordoned(
            handler_kube,
            [early.resource_name, late.resource_name],
            resource_of=resource_of,
            until=in_seconds(60),
        )
    )
    await cordon(kube, late)
    result = await waiting
    assert result.waited_for in ((late.name,), ())  # () when the late cordon came before the list
    assert result.complete and result.schedulable == ()
    assert me.name not in result.waited_for


async def test_a_node_nobody_cordons_ends_the_wait_at_its_bound_and_is_named(
    kube: AsyncClient, handler_kube: KubeClient
):
    _me, forgotten = await pool(kube, 2)
    result = await wait_peers_cordoned(
        handler_kube, [forgotten.resource_name], resource_of=resource_of, until=in_seconds(SHORT_WAIT_SECONDS)
    )
    assert result.waited_for == (forgotten.name,) and result.schedulable == (forgotten.name,)
    assert not result.complete


async def test_nodes_cordoned_already_are_not_waited_for(kube: AsyncClient, handler_kube: KubeClient):
    _me, done = await pool(kube, 2)
    await cordon(kube, done)
    result = await wait_peers_cordoned(
        handler_kube, [done.resource_name], resource_of=resource_of, until=in_seconds(60)
    )
    assert result.waited_for == () and result.complete


async def test_vms_that_are_no_nodes_here_are_not_waited_for(kube: AsyncClient, handler_kube: KubeClient):
    result = await wait_peers_cordoned(
        handler_kube,
        [f"aks-elsewhere-{unique_suffix()}-vmss_{i}" for i in range(16)],
        resource_of=resource_of,
        until=in_seconds(60),
    )
    assert result.waited_for == () and result.complete


async def test_the_label_selector_leaves_other_pools_out(kube: AsyncClient, handler_kube: KubeClient):
    mine = await pool(kube, 2)
    other = await pool(kube, 1)  # never cordoned: waiting for it would last the whole bound
    pool_label = mine[0].vmss.split("-")[1]
    waiting = asyncio.create_task(
        wait_peers_cordoned(
            handler_kube,
            [mine[1].resource_name, other[0].resource_name],
            resource_of=resource_of,
            until=in_seconds(60),
            labels={AGENT_POOL_LABEL: pool_label},
        )
    )
    await cordon(kube, mine[1])
    result = await waiting
    assert other[0].name not in result.waited_for and result.complete
