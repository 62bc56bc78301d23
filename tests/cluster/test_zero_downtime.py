"""No request lost when a Spot node goes: requests through a Service and the real kube-proxy of the
other node, counted while the handler (installed by helm with the seed's Slack values,
`-taint.node=true` and the chart's `surgeDeployments=true`) protects the doomed node and the VM then
goes (`testkit.nodeloss`)."""

from __future__ import annotations

import pytest
from lightkube import AsyncClient

from aksnth.kube.surge import REASON_SURGED
from testkit.metrics import PREFIX, Scrape
from testkit.nodeloss import Shape, measure_node_loss
from testkit.realcluster import HANDLER_IMAGE, RealCluster
from testkit.scenario import (
    SLACK_PATH,
    Release,
    released,
    scrape,
    slack_values,
    wait_handlers_ready,
)
from tests.support.reporting import report


@pytest.mark.parametrize("shape", list(Shape), ids=[s.name.lower() for s in Shape])
async def test_no_request_fails_while_the_serving_node_goes(
    request: pytest.FixtureRequest, real_cluster: RealCluster, rkube: AsyncClient, shape: Shape
) -> None:
    """A Preempt for the node that serves a web Deployment (readiness probe, preStop delay, graceful
    shutdown): every request sent to its Service from the other node succeeds, from the event's
    publication until the VM is gone and the Service answers from the other node alone, and the pod
    on the doomed node leaves by an accepted eviction, never by a forced stop, and only once a replica
    on the other node is Ready. Shape (a): two replicas, one per node. Shape (b): one replica with a
    PodDisruptionBudget of minAvailable 1, which refuses every eviction until the handler's surge (an
    Event on the Deployment, counted in surges_total) has a replacement Ready on the other node
    (without it: the last-resort stop shortly before the deadline). Shape (c): one replica and no
    budget; the handler surges before it asks for the eviction and holds that until the replacement is
    Ready (without it: evicted at once, its replacement started only after the eviction)."""
    with real_cluster.receiver() as slack:
        values = {**slack_values(slack.url(SLACK_PATH), "-taint.node=true"), "surgeDeployments": True}
        async with released(Release(real_cluster, values=values), rkube):
            nodes = [n.name for n in real_cluster.nodes]
            handlers = await wait_handlers_ready(rkube, nodes, image=HANDLER_IMAGE)
            loss = await measure_node_loss(real_cluster, rkube, shape)
            report(request, loss.line())
            assert loss.recovered, loss.line()
            assert not loss.traffic.failed, loss.line()
            assert (loss.evictions, loss.forced_stops) == (1, 0), loss.line()
            assert loss.ready_elsewhere_first, loss.line()
            # The doomed node's handler (the node is back, as a new VM would be) counted its surges.
            exposition = scrape(real_cluster, handlers[nodes[0]].status.podIP)
            surges = Scrape(exposition, prefix=PREFIX).value("surges_total", result="started")
    if shape in (Shape.SINGLE, Shape.LONE):
        assert REASON_SURGED in loss.event_reasons, sorted(loss.event_reasons)
        assert surges == 1, exposition[:2000]
    else:  # a replica is Ready elsewhere: the eviction is allowed at once, nothing to surge
        assert REASON_SURGED not in loss.event_reasons and not surges, sorted(loss.event_reasons)
