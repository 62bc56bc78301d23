"""Kubernetes Events: created as the chart's ServiceAccount, visible where kubectl describe looks,
repeats aggregated into one Event with a count."""

from __future__ import annotations

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event

from aksnth.kube.api import KubeClient
from aksnth.kube.events import REASON_CORDONED, REASON_POD_EVICTED, EventRecorder, ObjectRef
from testkit.cluster import create_aks_node, create_pod

pytestmark = pytest.mark.controlplane


async def node_events(kube: AsyncClient, node_name: str) -> list[Event]:
    # What `kubectl describe node` asks for: kind Node, the node's name as uid, namespace "default".
    fields = {
        "involvedObject.kind": "Node",
        "involvedObject.name": node_name,
        "involvedObject.uid": node_name,
    }
    return [e async for e in kube.list(Event, namespace="default", fields=fields)]


async def test_repeats_aggregate_into_one_event_with_a_count(kube: AsyncClient, handler_kube: KubeClient):
    node = await create_aks_node(kube)
    recorder = EventRecorder(handler_kube, host=node.name)

    await recorder.record_node(type="Normal", reason=REASON_CORDONED, message="Cordoned for Preempt E1")
    await recorder.record_node(type="Normal", reason=REASON_CORDONED, message="Cordoned for Preempt E1")
    await recorder.record_node(type="Normal", reason=REASON_CORDONED, message="Cordoned for Preempt E2")

    events = sorted(await node_events(kube, node.name), key=lambda e: e.message)
    assert [(e.reason, e.message, e.count) for e in events] == [
        (REASON_CORDONED, "Cordoned for Preempt E1", 2),
        (REASON_CORDONED, "Cordoned for Preempt E2", 1),
    ]
    first = events[0]
    assert first.source.component == "aks-node-termination-handler"
    assert first.source.host == node.name
    assert first.type == "Normal"
    assert first.lastTimestamp >= first.firstTimestamp
    assert recorder.failures == 0


async def test_an_event_on_a_pod_lives_in_its_namespace(
    kube: AsyncClient, handler_kube: KubeClient, namespace: str
):
    node = await create_aks_node(kube)
    pod = await create_pod(kube, namespace, node, name="app")
    recorder = EventRecorder(handler_kube, host=node.name)

    await recorder.record(
        ObjectRef.pod(namespace, "app", pod.metadata.uid),
        type="Normal",
        reason=REASON_POD_EVICTED,
        message="Evicted",
    )

    (event,) = [e async for e in kube.list(Event, namespace=namespace, fields={"involvedObject.name": "app"})]
    assert event.involvedObject.uid == pod.metadata.uid
    assert event.involvedObject.kind == "Pod"


async def test_a_failure_is_counted_and_logged_never_raised(
    kube: AsyncClient, handler_kube: KubeClient, caplog
):
    node = await create_aks_node(kube)
    recorder = EventRecorder(handler_kube, host=node.name)

    # No such namespace: the API server refuses; the caller goes on.
    await recorder.record(ObjectRef.pod("no-such-namespace", "p"), type="Warning", reason="X", message="y")

    assert recorder.failures == 1
    assert "could not record Event X on Pod p" in caplog.text
