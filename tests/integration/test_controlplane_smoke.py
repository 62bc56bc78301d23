"""The test control plane behaves like a cluster where it matters to the handler: evictions go through
the Eviction API and end through the (stand-in) kubelet, PDB status comes from the real disruption
controller, RBAC denies what a ServiceAccount was not granted, and graceful deletions finish."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import httpx2
import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.scheduling_v1 import PriorityClass

from testkit import controlplane
from testkit.cluster import (
    MIRROR_ANNOTATION,
    create_aks_node,
    create_pdb,
    create_pod,
    create_pods,
    create_replicaset,
    eventually,
    pod_exists,
    service_account_kubeconfig,
    wait_pdb_observed,
    wait_pod_gone,
    wait_pod_running,
)
from testkit.controlplane import ControlPlane, ControlPlaneError
from testkit.kubelet import FakeKubelet
from testkit.ports import free_loopback_port


def eviction(name: str, namespace: str) -> Pod.Eviction:
    return Pod.Eviction(metadata=ObjectMeta(name=name, namespace=namespace))


@pytest.mark.controlplane
async def test_aks_node_looks_like_a_vmss_spot_node(kube: AsyncClient) -> None:
    aks = await create_aks_node(kube, vmss="aks-spot-87654321-vmss", instance_id="12")

    node = await kube.get(Node, aks.name)

    assert aks.resource_name == "aks-spot-87654321-vmss_12"
    assert node.spec is not None and node.spec.providerID == aks.provider_id
    assert aks.provider_id.endswith("/virtualMachineScaleSets/aks-spot-87654321-vmss/virtualMachines/12")
    assert node.metadata is not None and node.metadata.labels is not None
    assert node.metadata.labels["kubernetes.azure.com/scalesetpriority"] == "spot"
    assert [(t.key, t.value, t.effect) for t in node.spec.taints or []] == [
        ("kubernetes.azure.com/scalesetpriority", "spot", "NoSchedule")
    ]
    assert node.status is not None and node.status.nodeInfo is not None
    assert node.status.nodeInfo.bootID == aks.boot_id
    assert [c.status for c in node.status.conditions or [] if c.type == "Ready"] == ["True"]


@pytest.mark.controlplane
async def test_eviction_of_a_running_pod_completes_through_the_kubelet(
    kube: AsyncClient, namespace: str
) -> None:
    node = await create_aks_node(kube)
    async with FakeKubelet(kube, node=node.name) as kubelet:
        pod = await create_pod(kube, namespace, node, grace_seconds=30)
        assert pod.metadata is not None and pod.metadata.name is not None
        name = pod.metadata.name
        await wait_pod_running(kube, namespace, name)

        await kube.create(eviction(name, namespace), name=name, namespace=namespace)

        await wait_pod_gone(kube, namespace, name)
        assert kubelet.deleted == [f"{namespace}/{name}"]


@pytest.mark.controlplane
async def test_pdb_without_allowed_disruptions_answers_429_and_keeps_the_pod(
    kube: AsyncClient, namespace: str
) -> None:
    node = await create_aks_node(kube)
    labels = {"app": "guarded"}
    async with FakeKubelet(kube, node=node.name):
        pods = await create_pods(kube, namespace, node, 2, labels=labels)
        names = [p.metadata.name for p in pods if p.metadata is not None and p.metadata.name]
        for name in names:
            await wait_pod_running(kube, namespace, name)
        pdb = await create_pdb(kube, namespace, labels, min_available=2)
        assert pdb.metadata is not None and pdb.metadata.name is not None

        observed = await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=2)
        assert observed.status is not None and observed.status.disruptionsAllowed == 0

        with pytest.raises(ApiError) as refused:
            await kube.create(eviction(names[0], namespace), name=names[0], namespace=namespace)
        assert refused.value.status.code == 429
        assert "disruption budget" in (refused.value.status.message or "")
        evicted = await kube.get(Pod, names[0], namespace=namespace)
        assert evicted.metadata is not None and evicted.metadata.deletionTimestamp is None


@pytest.mark.controlplane
async def test_pdb_with_max_unavailable_counts_a_real_replicaset(kube: AsyncClient, namespace: str) -> None:
    node = await create_aks_node(kube)
    labels = {"app": "scaled"}
    owner = await create_replicaset(kube, namespace, labels=labels, replicas=3)
    async with FakeKubelet(kube, node=node.name):
        pods = await create_pods(kube, namespace, node, 3, labels=labels, owner=owner)
        for pod in pods:
            assert pod.metadata is not None and pod.metadata.name is not None
            await wait_pod_running(kube, namespace, pod.metadata.name)
        pdb = await create_pdb(kube, namespace, labels, max_unavailable=1)
        assert pdb.metadata is not None and pdb.metadata.name is not None

        observed = await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=3)

        assert observed.status is not None
        assert (observed.status.currentHealthy, observed.status.disruptionsAllowed) == (3, 1)


@pytest.mark.controlplane
async def test_service_account_without_rights_is_forbidden(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str
) -> None:
    path = await service_account_kubeconfig(
        kube, control_plane, namespace=namespace, name="nobody", cluster_rules=[]
    )
    weak = AsyncClient(KubeConfig.from_file(path))
    try:
        with pytest.raises(ApiError) as denied:
            async for _ in weak.list(Pod, namespace=namespace):
                pass
        assert denied.value.status.code == 403
    finally:
        await weak.close()


@pytest.mark.controlplane
async def test_service_account_with_rules_can_do_what_they_grant(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str
) -> None:
    node = await create_aks_node(kube)
    rules = [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    path = await service_account_kubeconfig(
        kube, control_plane, namespace=namespace, name="reader", cluster_rules=rules
    )
    reader = AsyncClient(KubeConfig.from_file(path))
    try:
        fetched = await reader.get(Node, node.name)
        assert fetched.metadata is not None and fetched.metadata.name == node.name
        with pytest.raises(ApiError) as denied:
            await reader.delete(Node, node.name)
        assert denied.value.status.code == 403
    finally:
        await reader.close()


async def delete_as(kubeconfig: Path, pod: Pod) -> int:
    """Delete ``pod`` as the kubeconfig's user: 200, or the status code of the refusal."""
    client = AsyncClient(KubeConfig.from_file(kubeconfig))
    try:
        await client.delete(Pod, pod.metadata.name, namespace=pod.metadata.namespace)
    except ApiError as refused:
        return refused.status.code or 0
    finally:
        await client.close()
    return 200


@pytest.mark.controlplane
async def test_the_handler_under_test_holds_the_chart_defaults_unless_the_scenario_sets_values(
    kube: AsyncClient, namespace: str, handler_kubeconfig: Path
) -> None:
    """``handler_kubeconfig`` without a ``chart_values`` marker: the chart's default ClusterRole, which
    grants pod delete (the last-resort stop, on by default, needs it)."""
    node = await create_aks_node(kube)
    pod = await create_pod(kube, namespace, node.name)
    assert await delete_as(handler_kubeconfig, pod) == 200


@pytest.mark.controlplane
@pytest.mark.chart_values("rbac.allowPodDelete=false")
async def test_a_scenario_with_chart_values_holds_the_rules_rendered_for_them(
    kube: AsyncClient, namespace: str, handler_kubeconfig: Path
) -> None:
    """With `rbac.allowPodDelete=false` the rendered ClusterRole withholds pod delete."""
    node = await create_aks_node(kube)
    pod = await create_pod(kube, namespace, node.name)
    assert await delete_as(handler_kubeconfig, pod) == 403
    assert await pod_exists(kube, namespace, pod.metadata.name)


@pytest.mark.controlplane
async def test_graceful_deletion_completes_through_the_kubelet(kube: AsyncClient, namespace: str) -> None:
    node = await create_aks_node(kube)
    async with FakeKubelet(kube, node=node.name, grace_period_scale=0.01) as kubelet:
        pod = await create_pod(kube, namespace, node, owner=None, grace_seconds=50)
        assert pod.metadata is not None and pod.metadata.name is not None
        name = pod.metadata.name
        await wait_pod_running(kube, namespace, name)

        await kube.delete(Pod, name, namespace=namespace)
        terminating = await kube.get(Pod, name, namespace=namespace)
        assert terminating.metadata is not None and terminating.metadata.deletionTimestamp is not None

        await wait_pod_gone(kube, namespace, name)
        assert kubelet.deleted == [f"{namespace}/{name}"]


@pytest.mark.controlplane
async def test_pods_of_every_kind_can_be_created(kube: AsyncClient, namespace: str) -> None:
    node = await create_aks_node(kube)
    classes = {pc.metadata.name async for pc in kube.list(PriorityClass) if pc.metadata is not None}
    assert {"system-node-critical", "system-cluster-critical"} <= classes

    daemon = await create_pod(
        kube, namespace, node, owner="DaemonSet", priority_class_name="system-node-critical"
    )
    mirror = await create_pod(kube, namespace, node, mirror=True)
    stateful = await create_pod(kube, namespace, node, owner="StatefulSet", empty_dir=True)

    assert daemon.spec is not None and daemon.spec.priority == 2000001000
    assert [o.kind for o in (daemon.metadata.ownerReferences or [])] == ["DaemonSet"]  # type: ignore[union-attr]
    assert mirror.metadata is not None and MIRROR_ANNOTATION in (mirror.metadata.annotations or {})
    assert stateful.spec is not None and [v.emptyDir is not None for v in stateful.spec.volumes or []] == [
        True
    ]
    assert await pod_exists(kube, namespace, stateful.metadata.name)  # type: ignore[union-attr,arg-type]


@pytest.mark.controlplane
async def test_api_server_restart_keeps_data_and_the_kubelet_recovers(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str
) -> None:
    node = await create_aks_node(kube)
    async with FakeKubelet(kube, node=node.name):
        before = await create_pod(kube, namespace, node)
        assert before.metadata is not None and before.metadata.name is not None
        await wait_pod_running(kube, namespace, before.metadata.name)

        await control_plane.stop_apiserver_async()
        with pytest.raises(httpx2.TransportError):
            await kube.get(Node, node.name)
        await control_plane.start_apiserver_async()

        fetched = await kube.get(Node, node.name)
        assert fetched.metadata is not None and fetched.metadata.name == node.name
        after = await create_pod(kube, namespace, node)
        assert after.metadata is not None and after.metadata.name is not None
        await wait_pod_running(kube, namespace, after.metadata.name)


def fake_binaries(folder: Path, *, apiserver_script: str) -> Path:
    """Stand-ins for the real programs, to see how start-up failures are reported."""
    scripts = {
        "etcd": "exec sleep 60",
        "kube-apiserver": apiserver_script,
        "kube-controller-manager": "exec sleep 60",
    }
    for name, body in scripts.items():
        path = folder / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return folder


def test_missing_binaries_say_how_to_build_them(tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneError, match="make test-binaries") as missing:
        ControlPlane(bin_dir=tmp_path).start()
    assert "etcd, kube-apiserver, kube-controller-manager" in str(missing.value)


def test_a_component_that_dies_at_start_up_is_reported_with_its_log(tmp_path: Path) -> None:
    bin_dir = fake_binaries(tmp_path, apiserver_script='echo "Error: unknown flag: --bogus" >&2; exit 3')

    with pytest.raises(ControlPlaneError) as failed:
        ControlPlane(bin_dir=bin_dir, ready_timeout_seconds=10).start()

    message = str(failed.value)
    assert "kube-apiserver exited with code 3 during start-up" in message
    assert "unknown flag: --bogus" in message
    log_path = Path(message.split("Its log is ")[1].split(";", maxsplit=1)[0])
    assert log_path.name == "kube-apiserver.log" and log_path.is_file()  # kept for the post-mortem
    shutil.rmtree(log_path.parent.parent)


@pytest.mark.controlplane
def test_ports_taken_before_etcd_and_the_api_server_bind_them_are_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ports are picked before the programs bind them. When etcd's port, and then kube-apiserver's, is
    taken in between (here: by a socket of the test that listens there), each exits, and the control
    plane starts both again on other ports until it runs (within testkit.ports.PORT_ATTEMPTS)."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        # Per attempt: etcd's client port, etcd's peer port, kube-apiserver's port.
        attempts = [
            (taken, free_loopback_port(), free_loopback_port()),
            (free_loopback_port(), free_loopback_port(), taken),
            (free_loopback_port(), free_loopback_port(), free_loopback_port()),
        ]
        picks = iter([port for attempt in attempts for port in attempt])
        monkeypatch.setattr(controlplane, "free_loopback_port", lambda: next(picks))
        with ControlPlane(controller_manager=False) as plane:
            with httpx2.Client(verify=plane.admin_ssl_context(), timeout=5) as client:
                assert client.get(f"{plane.server_url}/readyz").status_code == 200
            assert plane.server_url != f"https://127.0.0.1:{taken}"
            logs = {name: (plane.log_dir / f"{name}.log").read_text() for name in ("etcd", "kube-apiserver")}
    assert next(picks, None) is None  # all three attempts made
    for name, text in logs.items():  # both started three times, each once refused its port
        assert text.count(f"starting {name}") == 3, text
        assert "address already in use" in text, text


@pytest.mark.controlplane
async def test_an_api_server_restarted_while_its_port_is_taken_starts_once_the_port_is_free() -> None:
    """A restarted kube-apiserver must keep its port (every kubeconfig names it): when someone took
    the port while it was down, it is started again once the port is free."""
    with ControlPlane(controller_manager=False) as plane:
        await plane.stop_apiserver_async()
        port = int(plane.server_url.rpartition(":")[2])
        log_path = plane.log_dir / "kube-apiserver.log"
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            restart = asyncio.create_task(plane.start_apiserver_async())

            async def refused_its_port() -> bool:
                return log_path.read_text().count("address already in use") == 1

            await eventually(refused_its_port, what="kube-apiserver to find its port taken")
        await restart
        with httpx2.Client(verify=plane.admin_ssl_context(), timeout=5) as client:
            assert client.get(f"{plane.server_url}/readyz").status_code == 200
