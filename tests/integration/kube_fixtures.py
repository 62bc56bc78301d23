"""Shared by the tests/integration/test_kube_*.py modules: the handler's own API client, which
authenticates as a ServiceAccount holding exactly the chart's ClusterRole rules for the test's values."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from lightkube import AsyncClient

from aksnth.config import KubeSettings
from aksnth.kube.api import KubeClient
from aksnth.kube.client import open_client
from aksnth.model import EventType, ScheduledEvent
from testkit.chart import HANDLER_ACCOUNT_PREFIX, handler_cluster_rules
from testkit.cluster import service_account_kubeconfig, unique_suffix
from testkit.controlplane import ControlPlane
from testkit.events import scheduled_event as testkit_event


@asynccontextmanager
async def handler_client(
    kube: AsyncClient,
    control_plane: ControlPlane,
    namespace: str,
    chart_values: tuple[str, ...] = (),
    *,
    account: str = "",
) -> AsyncIterator[KubeClient]:
    """The client the handler opens (``open_client``), as ServiceAccount ``namespace/account`` (a new
    name when not given) with the rights the chart grants when installed with ``chart_values`` (none:
    its defaults)."""
    path = await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=namespace,
        name=account or f"{HANDLER_ACCOUNT_PREFIX}{unique_suffix()}",
        cluster_rules=handler_cluster_rules(chart_values),
    )
    client = open_client(KubeSettings(kubeconfig=str(path), node_name="unused", request_timeout_seconds=10.0))
    try:
        yield client
    finally:
        await client.close()


def scheduled_event(
    event_id: str | None = None, kind: EventType = EventType.PREEMPT, resource: str = "vmss_0"
) -> ScheduledEvent:
    return testkit_event(
        kind,
        event_id=event_id or f"EV-{unique_suffix()}",
        resources=(resource,),
        not_before=datetime.now(UTC) + timedelta(seconds=30),
    )
