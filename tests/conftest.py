"""Fixtures shared by unit, integration and end-to-end tests.

The control plane is session-scoped and lazy: it starts the first time a test asks for `control_plane`
(directly or through `kube` / `namespace`), so `pytest tests/unit` starts no binaries. Its API server
keeps an audit log of every ServiceAccount's requests, which the `whole_suite` tests read at the end of
a whole run (tests/test_least_privilege.py).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from aksnth.config import KubeSettings
from aksnth.kube.api import KubeClient
from aksnth.kube.client import open_client
from imds_simulator import ImdsSimulator
from testkit.audit import suite_audit_policy
from testkit.chart import HANDLER_ACCOUNT_PREFIX, handler_cluster_rules
from testkit.cluster import AksNode, admin_client, create_aks_node, service_account_kubeconfig, unique_suffix
from testkit.controlplane import ControlPlane
from testkit.emulation import EmulationUnavailable, arm64_emulation
from testkit.realcluster import arm64_image_missing, image_dir
from tests.support.reporting import report


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver (RBAC, an audit log of the ServiceAccounts' requests) +
    kube-controller-manager (disruption controller) on 127.0.0.1."""
    with ControlPlane(audit_policy=suite_audit_policy()) as plane:
        report(request, f"test control plane ready in {plane.startup_seconds:.2f} s (logs: {plane.log_dir})")
        yield plane


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[AsyncClient]:
    """A lightkube AsyncClient authenticated as the admin (system:masters)."""
    control_plane.check_running()
    async with admin_client(control_plane.kubeconfig_path) as client:
        yield client


@pytest.fixture
async def namespace(kube: AsyncClient) -> AsyncIterator[str]:
    """A fresh namespace per test. Deleting it is only requested: without a namespace controller it stays
    Terminating, which is why names are never reused."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await kube.create(Namespace(metadata=ObjectMeta(name=name, labels={"aksnth.test/namespace": "true"})))
    yield name
    await kube.delete(Namespace, name)


# --- tests about the whole run: last, and only when every test is collected ---------------------

_DESELECTED = pytest.StashKey[int]()
_TESTS_DIR = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_DESELECTED] = 0


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        items[0].config.stash[_DESELECTED] += len(items)


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what they deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A `whole_suite` test checks what the rest of the run did, so it runs last, and is skipped when
    the run is not the whole suite (a file, -k, -m): a part of the suite proves nothing about it."""
    last = [item for item in items if item.get_closest_marker("whole_suite")]
    if not last:
        return
    items[:] = [item for item in items if item not in last] + last
    collected = {item.path for item in items}
    missing = sorted(
        str(path.relative_to(_TESTS_DIR)) for path in _TESTS_DIR.rglob("test_*.py") if path not in collected
    )
    if missing or config.stash[_DESELECTED]:
        left_out = f"{len(missing)} test files (e.g. {missing[0]})" if missing else "deselected tests"
        reason = f"checks the run of the whole suite (make test); this run leaves out {left_out}"
        for item in last:
            item.add_marker(pytest.mark.skip(reason=reason))


# --- the handler under test: its identity, its IMDS and its node ------------------------------------


@pytest.fixture
def handler_chart_values(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The chart values the scenario's handler would be installed with: the `--set` assignments of its
    `chart_values` marker (e.g. `testkit.chart.ALLOW_POD_DELETE` for -disableEviction), or none:
    the chart's defaults."""
    marker = request.node.get_closest_marker("chart_values")
    return tuple(marker.args) if marker is not None else ()


@pytest.fixture
async def handler_kubeconfig(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str, handler_chart_values: tuple[str, ...]
) -> Path:
    """A kubeconfig of a ServiceAccount holding exactly the rules of the chart's ClusterRole, as rendered
    for the scenario's values (`handler_chart_values`)."""
    return await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=namespace,
        name=f"{HANDLER_ACCOUNT_PREFIX}{unique_suffix()}",
        cluster_rules=handler_cluster_rules(handler_chart_values),
    )


@pytest.fixture
async def handler_kube(handler_kubeconfig: Path) -> AsyncIterator[KubeClient]:
    """The client the handler opens (``open_client``), as the ServiceAccount of `handler_kubeconfig`."""
    settings = KubeSettings(
        kubeconfig=str(handler_kubeconfig), node_name="unused", request_timeout_seconds=10.0
    )
    async with open_client(settings) as client:
        yield client


@pytest.fixture
def simulator() -> Iterator[ImdsSimulator]:
    """The IMDS simulator on a free loopback port."""
    with ImdsSimulator() as sim:
        yield sim


@pytest.fixture
async def node(kube: AsyncClient) -> AksNode:
    """A fresh AKS-like Spot node (VMSS providerID, AKS labels)."""
    return await create_aks_node(kube)


# --- the linux/arm64 image, run under emulation ----------------------------------------------------


def _arm64_unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the arm64 image tests need {reason} (CI is set: that is a failure)", pytrace=False)
    pytest.skip(f"the arm64 image tests need {reason}; `make test` as root on Debian builds it")


@pytest.fixture(scope="module")
def arm64_image() -> Iterator[Path]:
    """The folder of the test images (their archives, podman's configuration) once the arm64 image of
    `hack/build-test-image` is there, with arm64 emulation registered for the module's tests
    (`testkit.emulation.arm64_emulation`: undone after them when it was not there before).
    Where that cannot be, the module's tests are skipped with the reason; with CI set, they fail."""
    if os.geteuid() != 0:
        _arm64_unavailable("root (podman, containerd, binfmt_misc)")
    missing = arm64_image_missing()
    if missing:
        _arm64_unavailable(missing)
    emulation = contextlib.ExitStack()
    try:
        emulation.enter_context(arm64_emulation())
    except EmulationUnavailable as exc:
        _arm64_unavailable(f"arm64 emulation: {exc}")
    with emulation:
        yield image_dir()
