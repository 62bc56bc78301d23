"""Reliability and security tests: fixtures shared by the modules here, and the summary of what the run
tried (generated documents, injected faults, kills) printed at the end of the pytest run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from lightkube import AsyncClient

from aksnth.azure.simulator import ImdsSimulator
from tests.integration.kube_fixtures import handler_rules
from tests.reliability.tally import NOTES, TALLY
from tests.support.cluster import AksNode, create_aks_node, service_account_kubeconfig, unique_suffix
from tests.support.controlplane import ControlPlane


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY and not NOTES:
        return
    terminalreporter.section("reliability: what was tried")
    for kind, number in TALLY.items():
        terminalreporter.write_line(f"{number:>7}  {kind}")
    for text in NOTES:
        terminalreporter.write_line(f"         {text}")


@pytest.fixture
async def handler_kubeconfig(kube: AsyncClient, control_plane: ControlPlane, namespace: str) -> Path:
    """A kubeconfig of a ServiceAccount with exactly the chart's rights (with pod delete)."""
    return await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=namespace,
        name=f"aksnth-{unique_suffix()}",
        cluster_rules=handler_rules(),
    )


@pytest.fixture
def simulator() -> Iterator[ImdsSimulator]:
    with ImdsSimulator() as sim:
        yield sim


@pytest.fixture
async def node(kube: AsyncClient) -> AksNode:
    return await create_aks_node(kube)


@pytest.fixture
async def spare_node(kube: AsyncClient) -> AsyncIterator[AksNode]:
    yield await create_aks_node(kube, instance_id="9")
