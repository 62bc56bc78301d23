"""The DaemonSet's periodic drain-readiness check against the real control plane, as the chart's
ServiceAccount: what each check costs, the metrics it sets, and what it says when a right is missing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lightkube import AsyncClient
from prometheus_client import REGISTRY

from aksnth.config import KubeSettings, ResponseSettings
from aksnth.kube.client import open_client
from aksnth.kube.readiness.assess import Reason
from aksnth.kube.readiness.periodic import ReadinessCheck, spot_eviction
from imds_simulator import ImdsSimulator
from testkit.chart import chart_cluster_rules
from testkit.cluster import (
    AksNode,
    create_pdb,
    create_pod,
    create_pods,
    eventually,
    service_account_kubeconfig,
    unique_suffix,
    wait_pdb_observed,
)
from testkit.controlplane import ControlPlane
from testkit.handler import running_handler
from testkit.kubelet import FakeKubelet

pytestmark = pytest.mark.controlplane

PREFIX = "aks_node_termination_handler_"


async def chart_kubeconfig(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str, *set_values: str
) -> Path:
    """A kubeconfig of the chart's ServiceAccount, installed with ``set_values``."""
    return await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=namespace,
        name=f"aksnth-{unique_suffix()}",
        cluster_rules=chart_cluster_rules(set_values=list(set_values)),
    )


async def chart_client(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str, *set_values: str
) -> AsyncIterator[AsyncClient]:
    path = await chart_kubeconfig(kube, control_plane, namespace, *set_values)
    client = open_client(KubeSettings(kubeconfig=str(path), node_name=""))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def with_check(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str
) -> AsyncIterator[AsyncClient]:
    """The chart's ServiceAccount installed with readinessCheck.interval set."""
    async for client in chart_client(kube, control_plane, namespace, "readinessCheck.interval=5m"):
        yield client


@pytest.fixture
async def without_check(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str
) -> AsyncIterator[AsyncClient]:
    """The chart's ServiceAccount with the default values: no right to list PodDisruptionBudgets."""
    async for client in chart_client(kube, control_plane, namespace):
        yield client


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(PREFIX + name, labels) or 0.0


def api_requests() -> float:
    """Every API request the handler's clients made (apiserver_request_total, all codes)."""
    return sum(
        s.value
        for family in REGISTRY.collect()
        if family.name == PREFIX + "apiserver_request"
        for s in family.samples
        if s.name.endswith("_total")
    )


def check(client: AsyncClient, node: AksNode, **response: object) -> ReadinessCheck:
    return ReadinessCheck(
        client,
        node.name,
        interval_seconds=300,
        scenario=spot_eviction(ResponseSettings(**response)),  # type: ignore[arg-type]
        first_delay_seconds=0,
    )


async def test_a_check_lists_the_nodes_pods_and_the_budgets_once_and_sets_the_metrics(
    kube: AsyncClient, namespace: str, node: AksNode, with_check: AsyncClient
) -> None:
    await create_pods(kube, namespace, node.name, 2, name_prefix="db", labels={"app": "db"})
    await create_pod(kube, namespace, node.name, name="cache", empty_dir=True, owner=None)
    await create_pod(kube, namespace, node.name, name="agent", owner="DaemonSet")
    async with FakeKubelet(kube, node=node.name):
        pdb = await create_pdb(kube, namespace, {"app": "db"}, min_available=2)
        await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=2)
        ok_before, requests_before = sample("readiness_checks_total", result="ok"), api_requests()
        result = await check(with_check, node).check_once()
        requests = api_requests() - requests_before

    assert requests == 2  # one list of the node's pods, one of the PodDisruptionBudgets
    assert result is not None and not result.drains_within_notice
    assert sample("readiness_checks_total", result="ok") == ok_before + 1
    assert sample("readiness_drains_within_notice", type="Preempt") == 0
    at_risk = {reason.value: sample("readiness_pods_at_risk", reason=reason.value) for reason in Reason}
    assert at_risk == {
        "pdb_blocked": 2,
        "several_pdbs": 0,
        "grace_cut": 0,
        "no_controller": 1,
        "empty_dir": 1,
        # Cluster-wide reasons are the subcommand's: the check does not read the whole cluster.
        "all_replicas_on_spot": 0,
        "no_place": 0,
    }
    assert REGISTRY.get_sample_value(PREFIX + "readiness_pods_at_risk", {"reason": "no_place"}) is None
    assert sample("readiness_last_check_timestamp_seconds") > 0


async def test_with_disable_eviction_a_check_reads_no_budget(
    kube: AsyncClient, namespace: str, node: AksNode, without_check: AsyncClient
) -> None:
    """-disableEviction bypasses PodDisruptionBudgets: the check lists the pods only, and needs no right
    beyond the chart's defaults."""
    await create_pod(kube, namespace, node.name, name="web")
    before = api_requests()
    result = await check(without_check, node, disable_eviction=True).check_once()
    assert api_requests() - before == 1
    assert result is not None and result.drains_within_notice
    assert sample("readiness_drains_within_notice", type="Preempt") == 1


async def test_a_check_without_the_right_to_list_budgets_fails_saying_how_to_grant_it(
    node: AksNode, without_check: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    failed_before = sample("readiness_checks_total", result="failed")
    checker = check(without_check, node)
    with caplog.at_level(logging.ERROR, logger="aksnth.kube.readiness.periodic"):
        assert await checker.check_once() is None
        assert await checker.check_once() is None
    assert sample("readiness_checks_total", result="failed") == failed_before + 2
    (record,) = [r for r in caplog.records if r.name == "aksnth.kube.readiness.periodic"]  # said once
    assert "list poddisruptionbudgets" in record.getMessage() and "forbidden" in record.getMessage().lower()
    assert "install the chart with readinessCheck.interval set" in record.getMessage()


async def test_no_request_while_an_event_is_handled(node: AksNode, with_check: AsyncClient) -> None:
    skipped_before, before = sample("readiness_checks_total", result="skipped"), api_requests()
    busy = ReadinessCheck(
        with_check,
        node.name,
        interval_seconds=300,
        scenario=spot_eviction(ResponseSettings()),
        busy=lambda: True,
        first_delay_seconds=0,
    )
    assert await busy.check_once() is None
    assert api_requests() == before
    assert sample("readiness_checks_total", result="skipped") == skipped_before + 1


async def test_the_handler_runs_the_check_with_readiness_interval(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str, node: AksNode, simulator: ImdsSimulator
) -> None:
    """-readiness.interval starts the check next to the poll loop; the first check comes within the
    first interval (at a random moment of it)."""
    path = await chart_kubeconfig(kube, control_plane, namespace, "readinessCheck.interval=10s")
    ok_before = sample("readiness_checks_total", result="ok")

    async def checked() -> bool:
        return sample("readiness_checks_total", result="ok") > ok_before

    async with running_handler(
        kubeconfig=path, node=node.name, simulator=simulator, extra=["-readiness.interval=10s"]
    ):
        await eventually(checked, what="the first drain-readiness check", timeout_seconds=20)
    assert sample("readiness_drains_within_notice", type="Preempt") == 1
