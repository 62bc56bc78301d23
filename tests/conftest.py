"""Fixtures shared by unit, integration and end-to-end tests.

The control plane is session-scoped and lazy: it starts the first time a test asks for `control_plane`
(directly or through `kube` / `namespace`), so `pytest tests/unit` starts no binaries.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from aksnth.azure.simulator import ImdsSimulator
from tests.support.chart import handler_cluster_rules
from tests.support.cluster import AksNode, create_aks_node, service_account_kubeconfig, unique_suffix
from tests.support.controlplane import ControlPlane

_CLIENT_TIMEOUT = httpx2.Timeout(10.0)


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver (RBAC) + kube-controller-manager (disruption controller) on 127.0.0.1."""
    with ControlPlane() as plane:
        _report(request, f"test control plane ready in {plane.startup_seconds:.2f} s (logs: {plane.log_dir})")
        yield plane


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[AsyncClient]:
    """A lightkube AsyncClient authenticated as the admin (system:masters)."""
    control_plane.check_running()
    client = AsyncClient(KubeConfig.from_file(control_plane.kubeconfig_path), timeout=_CLIENT_TIMEOUT)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def namespace(kube: AsyncClient) -> AsyncIterator[str]:
    """A fresh namespace per test. Deleting it is only requested: without a namespace controller it stays
    Terminating, which is why names are never reused."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await kube.create(Namespace(metadata=ObjectMeta(name=name, labels={"aksnth.test/namespace": "true"})))
    yield name
    await kube.delete(Namespace, name)


def _report(request: pytest.FixtureRequest, message: str) -> None:
    """One line on the terminal, outside output capturing (the start-up time is worth seeing)."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(message)


# --- the handler under test: its identity, its IMDS and its node ------------------------------------


@pytest.fixture
def handler_may_delete_pods() -> bool:
    """Whether the handler's ServiceAccount gets pod delete (the chart's default, which the last-resort
    stop and -disableEviction need); a conftest may override this with False
    (``rbac.allowPodDelete=false``)."""
    return True


@pytest.fixture
async def handler_kubeconfig(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str, handler_may_delete_pods: bool
) -> Path:
    """A kubeconfig of a ServiceAccount holding exactly the chart's ClusterRole rules."""
    return await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=namespace,
        name=f"aksnth-{unique_suffix()}",
        cluster_rules=handler_cluster_rules(allow_pod_delete=handler_may_delete_pods),
    )


@pytest.fixture
def simulator() -> Iterator[ImdsSimulator]:
    """The IMDS simulator on a free loopback port."""
    with ImdsSimulator() as sim:
        yield sim


@pytest.fixture
async def node(kube: AsyncClient) -> AksNode:
    """A fresh AKS-like Spot node (VMSS providerID, AKS labels)."""
    return await create_aks_node(kube)
