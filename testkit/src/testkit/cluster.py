"""Builders for the objects tests put into the test control plane: AKS-looking nodes, pods bound to
them, PodDisruptionBudgets, and ServiceAccounts with a kubeconfig of their own. All async, lightkube.

There is no scheduler: pods are created with `spec.nodeName` set. Play the kubelet with
`testkit.kubelet.FakeKubelet` to make them Running and to finish graceful deletions.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx2
import yaml
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.apps_v1 import ReplicaSet
from lightkube.resources.core_v1 import Node, Pod, ServiceAccount
from lightkube.resources.flowcontrol_apiserver_v1 import FlowSchema, PriorityLevelConfiguration
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding
from lightkube.types import PatchType

from testkit.controlplane import ControlPlane, kubeconfig

SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000000000"
RESOURCE_GROUP = "mc_rg"
CLUSTER_NAME = "mc_rg"
REGION = "westeurope"
INSTANCE_TYPE = "Standard_D4s_v5"
SPOT_TAINT = {"key": "kubernetes.azure.com/scalesetpriority", "value": "spot", "effect": "NoSchedule"}
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DEFAULT_WAIT_SECONDS = 30.0
_CALL_TIMEOUT_SECONDS = 10.0

OwnerKind = Literal["ReplicaSet", "DaemonSet", "StatefulSet", "Job", "ReplicationController"]
_OWNER_API_VERSIONS = {
    "ReplicaSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "Job": "batch/v1",
    "ReplicationController": "v1",
}
_unique = itertools.count(1)
T = TypeVar("T")


def unique_suffix() -> str:
    return f"{next(_unique)}{uuid.uuid4().hex[:5]}"


# -- waiting ------------------------------------------------------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    timeout_seconds: float = DEFAULT_WAIT_SECONDS,
    interval_seconds: float = 0.05,
) -> T:
    """Polls `probe` until it returns something other than None/False; fails with `what` after the
    timeout. The probe's own exceptions propagate."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = await probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_seconds:.0f} s waiting for {what}")
        await asyncio.sleep(interval_seconds)


# -- nodes --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AksNode:
    """A node created by `create_aks_node`. `resource_name` is what IMDS Scheduled Events list in
    `Resources` for this VM (`<vmss>_<instance id>`), derived from the providerID."""

    name: str
    resource_name: str
    provider_id: str
    vmss: str
    instance_id: str
    boot_id: str


def vmss_provider_id(vmss: str, instance_id: str) -> str:
    return (
        f"azure:///subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
        f"/providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}/virtualMachines/{instance_id}"
    )


async def create_aks_node(
    kube: AsyncClient,
    name: str | None = None,
    *,
    vmss: str = "aks-spot-12345678-vmss",
    instance_id: str = "3",
    spot: bool = True,
    unschedulable: bool = False,
    provider_id: str | None = None,
    labels: Mapping[str, str] | None = None,
    zone: str = "1",
) -> AksNode:
    """Creates a Ready Node that looks like an AKS VMSS node (labels, Spot taint, providerID, status
    with nodeInfo.bootID). The default name is AKS's `<vmss><instance id, 6 chars>` plus a unique
    suffix, so each call makes a new node. `provider_id=""` makes a node without one (fresh node)."""
    node_name = name or f"{vmss}{instance_id.zfill(6)}-{unique_suffix()}"
    pid = vmss_provider_id(vmss, instance_id) if provider_id is None else provider_id
    pool = vmss.split("-")[1] if vmss.count("-") >= 2 else "nodepool1"
    node_labels = {
        "kubernetes.azure.com/cluster": CLUSTER_NAME,
        "kubernetes.azure.com/agentpool": pool,
        "kubernetes.azure.com/role": "agent",
        "node.kubernetes.io/instance-type": INSTANCE_TYPE,
        "beta.kubernetes.io/instance-type": INSTANCE_TYPE,
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "kubernetes.io/role": "agent",
        "kubernetes.io/hostname": node_name,
        "topology.kubernetes.io/region": REGION,
        "topology.kubernetes.io/zone": f"{REGION}-{zone}",
    }
    if spot:
        node_labels["kubernetes.azure.com/scalesetpriority"] = "spot"
    node_labels.update(labels or {})
    spec: dict[str, Any] = {"taints": [dict(SPOT_TAINT)] if spot else []}
    if pid:
        spec["providerID"] = pid
    if unschedulable:
        spec["unschedulable"] = True
    async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
        await kube.create(
            Node.from_dict({"metadata": {"name": node_name, "labels": node_labels}, "spec": spec})
        )
    boot_id = str(uuid.uuid4())
    async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
        await kube.patch(
            Node.Status, node_name, {"status": _node_status(node_name, boot_id)}, patch_type=PatchType.MERGE
        )
    return AksNode(
        name=node_name,
        resource_name=f"{vmss}_{instance_id}",
        provider_id=pid,
        vmss=vmss,
        instance_id=instance_id,
        boot_id=boot_id,
    )


def _node_status(name: str, boot_id: str) -> dict[str, Any]:
    now = _now()
    resources = {"cpu": "4", "memory": "16365096Ki", "pods": "110", "ephemeral-storage": "129886128Ki"}
    return {
        "capacity": resources,
        "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": "10.224.0.4"}, {"type": "Hostname", "address": name}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
        "nodeInfo": {
            "machineID": uuid.uuid4().hex,
            "systemUUID": str(uuid.uuid4()),
            "bootID": boot_id,
            "kernelVersion": "5.15.0-1079-azure",
            "osImage": "Ubuntu 22.04.5 LTS",
            "containerRuntimeVersion": "containerd://1.7.27-1",
            "kubeletVersion": "v1.35.4",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


# -- pods ---------------------------------------------------------------------------------------


def owner_reference(owner: OwnerKind | ReplicaSet | OwnerReference) -> OwnerReference:
    """A controller reference: a kind alone gets a made-up name and uid (no such object exists, which
    is enough for the eviction logic); a ReplicaSet object (see `create_replicaset`) its own, which the
    disruption controller needs for `max_unavailable` and percentage budgets."""
    if isinstance(owner, OwnerReference):
        return owner
    if isinstance(owner, ReplicaSet):
        assert owner.metadata is not None and owner.metadata.name and owner.metadata.uid
        return OwnerReference(
            apiVersion="apps/v1",
            kind="ReplicaSet",
            name=owner.metadata.name,
            uid=owner.metadata.uid,
            controller=True,
            blockOwnerDeletion=True,
        )
    return OwnerReference(
        apiVersion=_OWNER_API_VERSIONS[owner],
        kind=owner,
        name=f"{owner.lower()}-{unique_suffix()}",
        uid=str(uuid.uuid4()),
        controller=True,
        blockOwnerDeletion=True,
    )


def pod_manifest(
    namespace: str,
    node: str | AksNode,
    *,
    name: str | None = None,
    owner: OwnerKind | ReplicaSet | OwnerReference | None = "ReplicaSet",
    mirror: bool = False,
    empty_dir: bool = False,
    priority_class_name: str | None = None,
    labels: Mapping[str, str] | None = None,
    grace_seconds: int = 30,
) -> Pod:
    """A Pod bound to `node`.

    `owner`: a controller kind (made-up name/uid), a ReplicaSet from `create_replicaset`, an
    OwnerReference, or None for a bare pod. `mirror`: a static pod's mirror (the
    `kubernetes.io/config.mirror` annotation, owned by the Node). `labels` default to
    `{"app": "aksnth-test"}`.
    """
    node_name = node.name if isinstance(node, AksNode) else node
    pod_name = name or f"pod-{unique_suffix()}"
    annotations = {MIRROR_ANNOTATION: uuid.uuid4().hex} if mirror else {}
    container: dict[str, Any] = {"name": "app", "image": "registry.invalid/app:1"}
    volumes = []
    if empty_dir:
        volumes.append({"name": "scratch", "emptyDir": {}})
        container["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    spec: dict[str, Any] = {
        "nodeName": node_name,
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": grace_seconds,
        "tolerations": [{**SPOT_TAINT, "operator": "Equal"}],
    }
    if priority_class_name is not None:
        spec["priorityClassName"] = priority_class_name
    metadata: dict[str, Any] = {
        "name": pod_name,
        "namespace": namespace,
        "labels": dict(labels) if labels is not None else {"app": "aksnth-test"},
        "annotations": annotations,
    }
    if owner is not None and not mirror:
        metadata["ownerReferences"] = [owner_reference(owner).to_dict()]
    if mirror:
        # A static pod's mirror is owned by its Node, as the kubelet creates it.
        metadata["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "name": node_name,
                "uid": str(uuid.uuid4()),
                "controller": True,
            }
        ]
    return Pod.from_dict({"metadata": metadata, "spec": spec})


async def create_pod(kube: AsyncClient, namespace: str, node: str | AksNode, **manifest: Any) -> Pod:
    """Creates the Pod ``pod_manifest(namespace, node, **manifest)`` describes, bound to `node`
    (Pending until a FakeKubelet marks it Running)."""
    async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
        return await kube.create(pod_manifest(namespace, node, **manifest))


async def create_pods(
    kube: AsyncClient,
    namespace: str,
    node: str | AksNode,
    count: int,
    *,
    name_prefix: str | None = None,
    concurrency: int = 16,
    owner: OwnerKind | ReplicaSet | OwnerReference | None = "ReplicaSet",
    empty_dir: bool = False,
    priority_class_name: str | None = None,
    labels: Mapping[str, str] | None = None,
    grace_seconds: int = 30,
) -> list[Pod]:
    """Creates `count` pods on `node` (`<prefix>-0` … `<prefix>-N`), `concurrency` requests at a time.
    With a kind as `owner`, all pods share one made-up controller, like the replicas of one ReplicaSet."""
    prefix = name_prefix or f"pod-{unique_suffix()}"
    shared_owner = owner_reference(owner) if owner is not None else None
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> Pod:
        async with gate:
            return await create_pod(
                kube,
                namespace,
                node,
                name=f"{prefix}-{index}",
                owner=shared_owner,
                empty_dir=empty_dir,
                priority_class_name=priority_class_name,
                labels=labels,
                grace_seconds=grace_seconds,
            )

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def create_replicaset(
    kube: AsyncClient, namespace: str, *, labels: Mapping[str, str], replicas: int, name: str | None = None
) -> ReplicaSet:
    """A real ReplicaSet object (no ReplicaSet controller runs, so it creates no pods): an owner the
    disruption controller can read the scale of. Pass it as `owner=` to `create_pod(s)`."""
    rs = ReplicaSet.from_dict(
        {
            "metadata": {"name": name or f"rs-{unique_suffix()}", "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
                },
            },
        }
    )
    async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
        return await kube.create(rs)


async def pod_exists(kube: AsyncClient, namespace: str, name: str) -> bool:
    try:
        async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
            await kube.get(Pod, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise
    return True


async def wait_pod_gone(
    kube: AsyncClient, namespace: str, name: str, *, timeout_seconds: float = DEFAULT_WAIT_SECONDS
) -> None:
    async def gone() -> bool:
        return not await pod_exists(kube, namespace, name)

    await eventually(gone, what=f"pod {namespace}/{name} to be deleted", timeout_seconds=timeout_seconds)


async def wait_pod_running(
    kube: AsyncClient, namespace: str, name: str, *, timeout_seconds: float = DEFAULT_WAIT_SECONDS
) -> Pod:
    """Waits until the pod is Running with Ready=True (a FakeKubelet must be watching its node)."""

    async def running() -> Pod | None:
        async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
            pod = await kube.get(Pod, name, namespace=namespace)
        return pod if is_running_and_ready(pod) else None

    return await eventually(
        running, what=f"pod {namespace}/{name} Running and Ready", timeout_seconds=timeout_seconds
    )


def is_running_and_ready(pod: Pod) -> bool:
    status = pod.status
    if status is None or status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])


def is_serving(pod: Pod) -> bool:
    """Ready and not terminating: what the disruption controller counts as a healthy pod of a budget."""
    return pod.metadata is not None and pod.metadata.deletionTimestamp is None and is_running_and_ready(pod)


# -- disruption budgets -------------------------------------------------------------------------


async def create_pdb(
    kube: AsyncClient,
    namespace: str,
    selector: Mapping[str, str],
    *,
    min_available: int | str | None = None,
    max_unavailable: int | str | None = None,
    name: str | None = None,
) -> PodDisruptionBudget:
    """A policy/v1 PodDisruptionBudget over pods with the `selector` labels. The disruption controller
    fills its status; wait for that with `wait_pdb_observed` before relying on it (until then every
    eviction it covers is answered 429)."""
    if (min_available is None) == (max_unavailable is None):
        raise ValueError("create_pdb needs exactly one of min_available and max_unavailable")
    spec: dict[str, Any] = {"selector": {"matchLabels": dict(selector)}}
    if min_available is not None:
        spec["minAvailable"] = min_available
    else:
        spec["maxUnavailable"] = max_unavailable
    pdb = PodDisruptionBudget.from_dict(
        {"metadata": {"name": name or f"pdb-{unique_suffix()}", "namespace": namespace}, "spec": spec}
    )
    async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
        return await kube.create(pdb)


async def wait_pdb_observed(
    kube: AsyncClient,
    namespace: str,
    name: str,
    *,
    expected_pods: int | None = None,
    timeout_seconds: float = DEFAULT_WAIT_SECONDS,
) -> PodDisruptionBudget:
    """Waits until the disruption controller has processed the budget's current generation and, if
    `expected_pods` is given, counts that many pods, all of them healthy (Running and Ready), then
    returns it. Healthy matters: an eviction of a Pending pod skips the budget altogether, so a test
    that evicts before the kubelet stand-in has marked its pods Ready would not exercise the PDB."""

    async def observed() -> PodDisruptionBudget | None:
        async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
            pdb = await kube.get(PodDisruptionBudget, name, namespace=namespace)
        status, generation = pdb.status, pdb.metadata.generation if pdb.metadata else None
        if (
            status is None
            or status.observedGeneration is None
            or status.observedGeneration < (generation or 0)
        ):
            return None
        if expected_pods is not None and (
            status.expectedPods != expected_pods or status.currentHealthy != expected_pods
        ):
            return None
        return pdb

    return await eventually(
        observed,
        what=f"the disruption controller to observe PDB {namespace}/{name}"
        + (f" with {expected_pods} healthy pods" if expected_pods is not None else ""),
        timeout_seconds=timeout_seconds,
    )


async def hold_one_pod(
    kube: AsyncClient, namespace: str, node: str, *, timeout_seconds: float = DEFAULT_WAIT_SECONDS
) -> PodDisruptionBudget:
    """One more pod on `node` (label app=held) that a PodDisruptionBudget lets no eviction take, once the
    budget counts it healthy: a drain by eviction that cannot finish. Needs the node's kubelet running."""
    await create_pods(kube, namespace, node, 1, labels={"app": "held"})
    pdb = await create_pdb(kube, namespace, {"app": "held"}, min_available=1)
    assert pdb.metadata is not None and pdb.metadata.name is not None
    return await wait_pdb_observed(
        kube, namespace, pdb.metadata.name, expected_pods=1, timeout_seconds=timeout_seconds
    )


# -- identities ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def admin_client(kubeconfig_path: Path, *, timeout_seconds: float = 10.0) -> AsyncIterator[AsyncClient]:
    """A lightkube AsyncClient of the cluster's admin (the kubeconfig at `kubeconfig_path`), closed after."""
    client = AsyncClient(KubeConfig.from_file(kubeconfig_path), timeout=httpx2.Timeout(timeout_seconds))
    try:
        yield client
    finally:
        await client.close()


async def service_account_kubeconfig(
    kube: AsyncClient,
    control_plane: ControlPlane,
    *,
    namespace: str,
    name: str,
    cluster_rules: Sequence[Mapping[str, Any]],
    token_seconds: int = 24 * 3600,
) -> Path:
    """Creates ServiceAccount `namespace/name`, a ClusterRole with `cluster_rules` (dicts in the
    Kubernetes shape: apiGroups, resources, verbs, …) bound to it (none when the list is empty), mints
    a token with the TokenRequest API and writes a kubeconfig for it. Returns the kubeconfig's path."""
    role_name = f"{namespace}-{name}"
    async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
        await kube.create(ServiceAccount(metadata=ObjectMeta(name=name, namespace=namespace)))
        if cluster_rules:
            await kube.create(
                ClusterRole(
                    metadata=ObjectMeta(name=role_name),
                    rules=[PolicyRule.from_dict(dict(rule)) for rule in cluster_rules],
                )
            )
            await kube.create(
                ClusterRoleBinding(
                    metadata=ObjectMeta(name=role_name),
                    roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="ClusterRole", name=role_name),
                    subjects=[Subject(kind="ServiceAccount", name=name, namespace=namespace)],
                )
            )
        token_request = await kube.create(
            ServiceAccount.Token(
                metadata=ObjectMeta(name=name, namespace=namespace),
                spec=TokenRequestSpec(audiences=[], expirationSeconds=token_seconds),
            ),
            name=name,
            namespace=namespace,
        )
    assert token_request.status is not None
    return token_kubeconfig(control_plane, f"{namespace}:{name}", token_request.status.token)


def token_kubeconfig(control_plane: ControlPlane, account: str, token: str, *, suffix: str = "") -> Path:
    """A kubeconfig file of the ServiceAccount `account` (``namespace:name``) authenticating with
    `token`, written as ``<namespace>-<name><suffix>.kubeconfig`` beside the admin's."""
    path = (
        control_plane.kubeconfig_path.parent
        / "kubeconfigs"
        / f"{account.replace(':', '-')}{suffix}.kubeconfig"
    )
    path.parent.mkdir(exist_ok=True)
    document = kubeconfig(
        server_url=control_plane.server_url,
        ca_path=control_plane.ca_path,
        user=f"system:serviceaccount:{account}",
        credentials={"token": token},
    )
    path.write_text(yaml.safe_dump(document))
    return path


def squeezing_priority_level(
    name: str, *, namespace: str, service_account: str, borrowing: bool = True
) -> tuple[PriorityLevelConfiguration, FlowSchema]:
    """API Priority and Fairness squeezing one ServiceAccount: a PriorityLevelConfiguration `name` with
    the smallest share and no queue, rejecting (429) what does not fit (without `borrowing`, it lends
    and borrows no seats either), and a FlowSchema `name` that puts every request of the ServiceAccount
    there, before the built-in service-accounts schema (precedence 9000)."""
    limited: dict[str, Any] = {"nominalConcurrencyShares": 1, "limitResponse": {"type": "Reject"}}
    if not borrowing:
        limited |= {"lendablePercent": 0, "borrowingLimitPercent": 0}
    level = PriorityLevelConfiguration.from_dict(
        {"metadata": {"name": name}, "spec": {"type": "Limited", "limited": limited}}
    )
    everything = {
        "verbs": ["*"],
        "apiGroups": ["*"],
        "resources": ["*"],
        "namespaces": ["*"],
        "clusterScope": True,
    }
    account = {"kind": "ServiceAccount", "serviceAccount": {"namespace": namespace, "name": service_account}}
    schema = FlowSchema.from_dict(
        {
            "metadata": {"name": name},
            "spec": {
                "priorityLevelConfiguration": {"name": name},
                "matchingPrecedence": 500,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [{"subjects": [account], "resourceRules": [everything]}],
            },
        }
    )
    return level, schema


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
