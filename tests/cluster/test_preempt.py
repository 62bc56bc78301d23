"""A Spot eviction on a real node, as a user lives it: the handler from the chart protects node A and
its real containers get SIGTERM while their replacements start on node B."""

from __future__ import annotations

import json

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Namespace, Node
from lightkube.resources.networking_v1 import NetworkPolicy

from aksnth.kube import keys
from aksnth.model import EventType
from testkit.cluster import eventually
from testkit.metrics import Scrape
from testkit.realcluster import HANDLER_IMAGE, RealCluster
from testkit.safety import accepted_evictions, check_safety, describe
from testkit.scenario import (
    RELEASE,
    RELEASE_NAMESPACE,
    SLACK_PATH,
    ReadyWatch,
    Release,
    handler_marks,
    new_namespace,
    pdb,
    pods,
    released,
    safety_watch,
    scrape,
    set_schedulable,
    sigterm_times,
    slack_values,
    wait_handlers_ready,
    wait_pods,
    workload,
    workload_pod_spec,
)

VARIANTS = {
    "pod-network": [],
    # The OpenShift setting; the NetworkPolicy is rendered and accepted by the API server, but the
    # bridge CNI enforces no policy (that needs a policy-aware CNI such as Calico or Cilium).
    "hostNetwork-networkPolicy": ["--set", "hostNetwork=true", "--set", "networkPolicy.enabled=true"],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_preempt_on_node_a_cordons_taints_drains_onto_node_b_and_notifies(
    real_cluster: RealCluster, rkube: AsyncClient, variant: str
) -> None:
    """Installed with the seed's Slack values (URL pointed at a receiver in the cluster's network)
    and `-taint.node=true`. A Preempt for node A's VM: node A is cordoned, tainted and labelled out of
    load balancers; the Deployment's and the StatefulSet's containers on A get SIGTERM before
    NotBefore and come back on node B; the PodDisruptionBudget (minAvailable 1) holds all along;
    the DaemonSet's pod on A is left running; Slack gets the seed payload; /metrics, scraped at the
    handler pod's address, counts the event. The safety checks find nothing in the record, which
    holds the handler's accepted eviction of each pod that left A."""
    node_a, node_b = real_cluster.nodes
    simulator = real_cluster.simulator
    assert simulator is not None
    namespace = await new_namespace(rkube, "preempt")
    with real_cluster.receiver() as slack:
        values = slack_values(slack.url(SLACK_PATH), "-taint.node=true")
        async with released(Release(real_cluster, values=values, extra=VARIANTS[variant]), rkube):
            handlers = await wait_handlers_ready(
                rkube, [n.name for n in real_cluster.nodes], image=HANDLER_IMAGE
            )
            if variant != "pod-network":
                assert handlers[node_a.name].spec.hostNetwork
                assert handlers[node_a.name].status.podIP == node_a.spec.ip
                policy = await rkube.get(NetworkPolicy, RELEASE, namespace=RELEASE_NAMESPACE)
                assert policy.spec.podSelector.matchLabels

            # Everything starts on node A (B cordoned meanwhile), as when a pool was scaled up.
            await set_schedulable(rkube, node_b.name, schedulable=False)
            try:
                spec = workload_pod_spec(real_cluster)
                await rkube.create(workload("Deployment", "web", namespace, spec, replicas=2))
                await rkube.create(pdb("web", namespace, app="web", min_available=1))
                await rkube.create(workload("StatefulSet", "db", namespace, spec))
                await rkube.create(workload("DaemonSet", "agent", namespace, spec))
                before = await wait_pods(
                    rkube, namespace, labels="app=web", count=2, node=node_a.name, what="web on A"
                )
                before += await wait_pods(
                    rkube, namespace, labels="app=db", count=1, node=node_a.name, what="db on A"
                )
                agents = await wait_pods(
                    rkube, namespace, labels="app=agent", count=2, what="agent on A and B"
                )
            finally:
                await set_schedulable(rkube, node_b.name, schedulable=True)
            agent_a = next(p for p in agents if p.spec.nodeName == node_a.name)

            async with (
                safety_watch(real_cluster, rkube, namespace) as safety,
                ReadyWatch(rkube, namespace, "web") as web_ready,
            ):
                event = safety.publish("Preempt", [node_a])
                event_id, published = event.event_id, event.published_at
                not_before = next(e for e in simulator.state()["events"] if e["EventId"] == event_id)[
                    "not_before"
                ]

                async def protected() -> Node | None:
                    node = await rkube.get(Node, node_a.name)
                    marks = handler_marks(node)
                    taint = marks.taints.get(keys.taint_key(EventType.PREEMPT))
                    return node if marks.unschedulable and taint == event_id and marks.labels else None

                await eventually(protected, what="node A cordoned, tainted and out of load balancers")
                await wait_pods(
                    rkube, namespace, labels="app=web", count=2, node=node_b.name, what="web on B"
                )
                await wait_pods(rkube, namespace, labels="app=db", count=1, node=node_b.name, what="db on B")
                await safety.wait_empty([node_a])
                record = safety.record()
            findings = check_safety(record)
            assert findings == [], describe(findings)
            evicted = set(accepted_evictions(record))
            assert evicted == {p.metadata.name for p in before}, "the audit log shows other evictions"
            assert web_ready.lowest is not None and web_ready.lowest >= 1, (
                "the PodDisruptionBudget was broken"
            )

            terms = sigterm_times(real_cluster, namespace)
            for pod in before:
                name = pod.metadata.name
                assert name in terms, f"{name} got no SIGTERM (recorded: {sorted(terms)})"
                assert published <= terms[name] <= not_before, (name, published, terms[name], not_before)
            # The DaemonSet's pod stays (its controller would put it back at once): no SIGTERM.
            assert agent_a.metadata.name not in terms
            still = {p.metadata.name for p in await pods(rkube, namespace, labels="app=agent")}
            assert agent_a.metadata.name in still

            [message] = await slack.wait_for_requests(1, within_seconds=30)
            assert message.path == SLACK_PATH
            assert json.loads(message.body)["text"] == (
                f"This is message for {node_a.name}, Standard_D4s_v5 from westeurope"
            )

            exposition = scrape(real_cluster, handlers[node_a.name].status.podIP)
            count = Scrape(exposition).value(
                "aks_node_termination_handler_scheduled_events_total", node=node_a.name, type="Preempt"
            )
            assert count >= 1, exposition[:2000]
            # Node B's handler saw the same document and left its node alone.
            assert not handler_marks(await rkube.get(Node, node_b.name)).any
            # One notification: the event (the drained one needs -notify.drainFinished).
            assert len(slack.requests) == 1
    await rkube.delete(Namespace, namespace)
