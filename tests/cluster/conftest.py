"""The real cluster for the scenarios of this folder: started on first use, stopped after the last test
of this folder (package scope), so the rest of the suite does not share the machine with idle kubelets.

Where the machine cannot run it (not root, no Debian packages, images or node binaries), every test
here is skipped with one line saying what is missing and how to get it; when CI is set, that is a
failure instead, so a CI machine never passes by skipping them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from lightkube import AsyncClient

from testkit.cluster import admin_client
from testkit.hostnetwork import HostNetwork
from testkit.realcluster import RealCluster, missing_prerequisites
from testkit.scenario import restore_node
from tests.support.reporting import report

_HOST_BEFORE = pytest.StashKey[HostNetwork]()


@pytest.fixture(scope="package")
def host_network_before(request: pytest.FixtureRequest, real_cluster: RealCluster) -> HostNetwork:
    """The machine's network as it was just before the real cluster started."""
    return request.config.stash[_HOST_BEFORE]


@pytest.fixture(scope="package")
def real_cluster(request: pytest.FixtureRequest) -> Iterator[RealCluster]:
    missing = missing_prerequisites()
    if missing:
        message = "real-node tests need " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: a missing prerequisite is a failure)", pytrace=False)
        pytest.skip(message + ". `make test` as root on Debian builds and installs all of it.")
    request.config.stash[_HOST_BEFORE] = HostNetwork.snapshot()
    with RealCluster() as cluster:
        report(
            request,
            f"real cluster (control plane, {len(cluster.nodes)} kubelets) ready in "
            f"{cluster.startup_seconds:.1f} s (files: {cluster.work_dir})",
        )
        yield cluster


@pytest.fixture
async def rkube(real_cluster: RealCluster) -> AsyncIterator[AsyncClient]:
    """An admin client of the real cluster; each node is made fresh again after the test."""
    real_cluster.check_running()
    async with admin_client(real_cluster.kubeconfig_path, timeout_seconds=15.0) as client:
        try:
            yield client
        finally:
            if real_cluster.simulator is not None:
                real_cluster.simulator.reset()
            for node in real_cluster.nodes:
                await restore_node(client, node.name)
