"""The drain when API Priority and Fairness sheds its requests: the handler's ServiceAccount is put in
a priority level of its own with the smallest share and no queue, so many of a drain's first 32
evictions are rejected with 429. Those real answers are read as load, not as a budget's refusal: the
drain pauses and goes on, every pod leaves, and none is stopped as a last resort. (That the pause
prevents a retry storm is shown against a fake server in tests/unit/kube/test_drain_overload.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod

from aksnth.kube.api import KubeClient
from aksnth.kube.drain import drain_node
from aksnth.kube.drainplan import DrainOutcome
from aksnth.observe.metrics import EVICTIONS
from testkit.chart import HANDLER_ACCOUNT_PREFIX
from testkit.cluster import create_aks_node, create_pods, eventually, squeezing_priority_level, unique_suffix
from testkit.controlplane import ControlPlane
from testkit.kubelet import FakeKubelet
from tests.integration.kube_fixtures import handler_client

pytestmark = pytest.mark.controlplane

PODS = 40


@dataclass(frozen=True)
class HandlerKube:
    client: KubeClient
    namespace: str  # of the ServiceAccount it authenticates as
    account: str


@pytest.fixture
async def named_handler(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str
) -> AsyncIterator[HandlerKube]:
    account = f"{HANDLER_ACCOUNT_PREFIX}{unique_suffix()}"
    async with handler_client(kube, control_plane, namespace, account=account) as client:
        yield HandlerKube(client=client, namespace=namespace, account=account)


async def squeeze(kube: AsyncClient, handler: HandlerKube) -> str:
    """A priority level with the smallest share and no queue, and a flow schema that puts the
    handler's ServiceAccount in it; returns the flow schema's uid once the API server applies it."""
    level, schema = squeezing_priority_level(
        f"squeezed-{unique_suffix()}", namespace=handler.namespace, service_account=handler.account
    )
    await kube.create(level)
    schema = await kube.create(schema)
    return schema.metadata.uid


async def test_rejections_by_api_priority_and_fairness_are_waited_out_and_never_taken_for_a_budget(
    kube: AsyncClient, named_handler: HandlerKube, namespace: str
):
    node = await create_aks_node(kube)
    uid = await squeeze(kube, named_handler)

    async def applied() -> bool:
        # The API server names the flow schema that classified a request in a response header.
        response = await named_handler.client.http.get(f"/api/v1/namespaces/{namespace}/pods")
        return response.headers.get("X-Kubernetes-PF-FlowSchema-UID") == uid

    await eventually(applied, what="the API server to apply the squeezing flow schema")

    async with FakeKubelet(kube, node=node.name):
        await create_pods(kube, namespace, node, PODS)
        refused_before = EVICTIONS.labels(result="throttled_retried")._value.get()
        evicted_before = EVICTIONS.labels(result="evicted")._value.get()
        deadline = asyncio.get_running_loop().time() + 60
        result = await drain_node(named_handler.client, node.name, deadline=deadline, last_resort=True)
        left = [p async for p in kube.list(Pod, namespace=namespace, fields={"spec.nodeName": node.name})]

    refused = EVICTIONS.labels(result="throttled_retried")._value.get() - refused_before
    assert result.result is DrainOutcome.DRAINED, result.summary()
    assert left == []
    assert EVICTIONS.labels(result="evicted")._value.get() - evicted_before == PODS
    assert refused >= 1  # the priority level did shed evictions
    assert result.pdb_blocked_retries == 0 and result.stopped == ()
