"""Least privilege, proven against the real API server: what the chart's ServiceAccount may not do, the
node restriction policy (a token bound to a pod on node A may change node A, not node B), the
container's security context, and secrets that never reach logs, Events or metrics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, AsyncClient, KubeConfig, codecs
from lightkube.models.authentication_v1 import BoundObjectReference, TokenRequestSpec
from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.authentication_v1 import SelfSubjectReview
from lightkube.resources.authorization_v1 import SelfSubjectAccessReview
from lightkube.resources.core_v1 import Event, Node, Pod, Secret, ServiceAccount
from lightkube.types import PatchType

from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.chart import SEED_VALUES_DIR, chart_cluster_rules, find_object, render_chart
from testkit.cluster import (
    create_aks_node,
    create_pod,
    create_pods,
    eventually,
    service_account_kubeconfig,
    token_kubeconfig,
    unique_suffix,
)
from testkit.controlplane import ControlPlane
from testkit.handler import running_handler
from testkit.kubelet import FakeKubelet
from testkit.nodestate import wait_phase
from testkit.process import HandlerProcess, handler_argv, handler_environment, handler_flags
from testkit.receivers import Receiver, TelegramApi
from tests.reliability.tally import count

NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"


@contextlib.asynccontextmanager
async def client_for(path: Path) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(KubeConfig.from_file(path), timeout=10)
    try:
        yield client
    finally:
        await client.close()


async def allowed(client: AsyncClient, verb: str, resource: str, *, subresource: str = "") -> bool:
    review = SelfSubjectAccessReview(
        spec=SelfSubjectAccessReviewSpec(
            resourceAttributes=ResourceAttributes(
                verb=verb, resource=resource, subresource=subresource or None
            )
        )
    )
    answer = await client.create(review)
    return bool(answer.status and answer.status.allowed)


async def _first(items: Any) -> Any:
    async for item in items:
        return item
    return None


async def refused(call: Any) -> int:
    """The HTTP status of an API call that must fail."""
    with pytest.raises(ApiError) as failure:
        await call
    return int(failure.value.status.code)


# --- (a) RBAC ----------------------------------------------------------------------------------------


@pytest.mark.controlplane
async def test_the_chart_service_account_without_pod_delete_cannot_read_secrets_delete_nodes_or_pods(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str
) -> None:
    """``rbac.allowPodDelete=false``: the narrowest install (with ``-lastResort=false``)."""
    node = await create_aks_node(kube)
    pod = await create_pod(kube, namespace, node.name)
    await kube.create(
        Secret(metadata=ObjectMeta(name="precious", namespace=namespace), stringData={"k": "v"})
    )
    path = await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=namespace,
        name=f"sa-{unique_suffix()}",
        cluster_rules=chart_cluster_rules(set_values=["rbac.allowPodDelete=false"]),
    )
    async with client_for(path) as handler:
        assert not await allowed(handler, "list", "secrets")
        assert not await allowed(handler, "get", "secrets")
        assert not await allowed(handler, "delete", "nodes")
        assert not await allowed(handler, "delete", "pods")
        assert await allowed(handler, "create", "pods", subresource="eviction")
        assert await allowed(handler, "patch", "nodes", subresource="status")  # the node condition
        assert not await allowed(handler, "update", "nodes", subresource="status")
        # Real requests, not only the review: each is refused with 403.
        assert await refused(_first(handler.list(Secret, namespace="*"))) == 403
        assert await refused(handler.get(Secret, "precious", namespace=namespace)) == 403
        assert await refused(handler.delete(Node, node.name)) == 403
        assert await refused(handler.delete(Pod, pod.metadata.name, namespace=namespace)) == 403
    await kube.get(Node, node.name)  # still there
    await kube.get(Pod, pod.metadata.name, namespace=namespace)
    count("forbidden requests refused to the chart's ServiceAccount", 4)


@pytest.mark.controlplane
async def test_pod_delete_is_possible_with_allow_pod_delete(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str
) -> None:
    node = await create_aks_node(kube)
    pod = await create_pod(kube, namespace, node.name)
    path = await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=namespace,
        name=f"sa-{unique_suffix()}",
        cluster_rules=chart_cluster_rules(set_values=["rbac.allowPodDelete=true"]),
    )
    async with client_for(path) as handler:
        assert await allowed(handler, "delete", "pods")
        await handler.delete(Pod, pod.metadata.name, namespace=namespace)
        assert await refused(handler.delete(Node, node.name)) == 403


# --- (b) the node restriction policy -----------------------------------------------------------------


async def bound_token_kubeconfig(
    kube: AsyncClient, control_plane: ControlPlane, *, namespace: str, service_account: str, pod: Pod
) -> Path:
    """A kubeconfig with a token bound to ``pod``, as the kubelet mounts into the handler's pod."""
    assert pod.metadata is not None
    answer = await kube.create(
        ServiceAccount.Token(
            metadata=ObjectMeta(name=service_account, namespace=namespace),
            spec=TokenRequestSpec(
                audiences=[],
                expirationSeconds=3600,
                boundObjectRef=BoundObjectReference(
                    kind="Pod", apiVersion="v1", name=pod.metadata.name, uid=pod.metadata.uid
                ),
            ),
        ),
        name=service_account,
        namespace=namespace,
    )
    assert answer.status is not None
    account = f"{namespace}:{service_account}"
    return token_kubeconfig(control_plane, account, answer.status.token, suffix=f"-{pod.metadata.name}-bound")


@contextlib.asynccontextmanager
async def node_restriction(kube: AsyncClient, objects: list[dict[str, Any]]) -> AsyncIterator[None]:
    created = [await kube.create(codecs.from_dict(obj)) for obj in objects]
    try:
        yield
    finally:
        for obj in reversed(created):
            with contextlib.suppress(ApiError):
                await kube.delete(type(obj), obj.metadata.name)


def label_patch(value: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"example.com/touched": value}}}


def condition_patch(message: str) -> dict[str, Any]:
    condition = {"type": "AzureScheduledEvent", "status": "True", "reason": "Test", "message": message}
    return {"status": {"conditions": [condition]}}


@pytest.mark.controlplane
@pytest.mark.timeout(90)
async def test_the_node_restriction_policy_keeps_a_handler_to_its_own_node(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str, simulator: ImdsSimulator
) -> None:
    release = f"nr{unique_suffix()}"
    objects = render_chart(release=release, namespace=namespace, set_values=["rbac.allowPodDelete=true"])
    service_account = find_object(objects, "ServiceAccount")["metadata"]["name"]
    policy = [
        find_object(objects, "ValidatingAdmissionPolicy"),
        find_object(objects, "ValidatingAdmissionPolicyBinding"),
    ]
    node_a, node_b = await create_aks_node(kube), await create_aks_node(kube, instance_id="4")
    unbound = await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=namespace,
        name=service_account,
        cluster_rules=chart_cluster_rules(set_values=["rbac.allowPodDelete=true"]),
    )
    handler_pod = await kube.create(
        Pod.from_dict(
            {
                "metadata": {"name": "handler", "namespace": namespace},
                "spec": {
                    "nodeName": node_a.name,
                    "serviceAccountName": service_account,
                    "containers": [{"name": "handler", "image": "registry.invalid/aksnth:1"}],
                },
            }
        )
    )
    bound = await bound_token_kubeconfig(
        kube, control_plane, namespace=namespace, service_account=service_account, pod=handler_pod
    )
    pod_on_a = await create_pod(kube, namespace, node_a.name)
    pod_on_b = await create_pod(kube, namespace, node_b.name)

    async with client_for(bound) as on_a, client_for(unbound) as nowhere:
        # The API server puts the pod's node into the token's user info (ServiceAccountTokenPodNodeInfo).
        review = await on_a.create(SelfSubjectReview())
        assert review.status.userInfo.extra[NODE_NAME_EXTRA] == [node_a.name]
        assert NODE_NAME_EXTRA not in (
            (await nowhere.create(SelfSubjectReview())).status.userInfo.extra or {}
        )
        # Without the policy, RBAC lets the handler patch any node.
        await on_a.patch(Node, node_b.name, label_patch("before"), patch_type=PatchType.MERGE)

        async with node_restriction(kube, policy):

            async def in_force() -> bool:
                try:
                    await on_a.patch(Node, node_b.name, label_patch("probe"), patch_type=PatchType.MERGE)
                except ApiError as exc:
                    return "may change only that node" in (exc.status.message or "")
                return False

            await eventually(in_force, what="the ValidatingAdmissionPolicy to be in force")
            await on_a.patch(Node, node_a.name, label_patch("mine"), patch_type=PatchType.MERGE)
            with pytest.raises(ApiError) as other_node:
                await on_a.patch(Node, node_b.name, label_patch("not-mine"), patch_type=PatchType.MERGE)
            assert f"may change only that node, not {node_b.name}" in other_node.value.status.message
            # The node's status too: the AzureScheduledEvent condition of its own node only.
            await on_a.patch(
                Node.Status, node_a.name, condition_patch("mine"), patch_type=PatchType.STRATEGIC
            )
            with pytest.raises(ApiError) as other_status:
                await on_a.patch(
                    Node.Status, node_b.name, condition_patch("not-mine"), patch_type=PatchType.STRATEGIC
                )
            assert f"may change only that node, not {node_b.name}" in other_status.value.status.message
            with pytest.raises(ApiError) as no_node:
                await nowhere.patch(Node, node_a.name, label_patch("who"), patch_type=PatchType.MERGE)
            assert "names no node" in no_node.value.status.message
            with pytest.raises(ApiError) as other_pod:
                await on_a.delete(Pod, pod_on_b.metadata.name, namespace=namespace)
            assert "may stop only pods on that node" in other_pod.value.status.message
            # The DisruptionTarget mark that goes before a forced stop is held to the same node.
            marked = {
                "status": {
                    "conditions": [
                        {"type": "DisruptionTarget", "status": "True", "reason": "Test", "message": "test"}
                    ]
                }
            }

            async def mark(pod: Pod) -> None:
                await on_a.patch(
                    Pod.Status, pod.metadata.name, marked, namespace=namespace, patch_type=PatchType.STRATEGIC
                )

            with pytest.raises(ApiError) as other_mark:
                await mark(pod_on_b)
            assert "may stop only pods on that node" in other_mark.value.status.message
            await mark(pod_on_a)
            await on_a.delete(Pod, pod_on_a.metadata.name, namespace=namespace)

            # The real handler, with the bound token, still does its whole job on its own node.
            await create_pods(kube, namespace, node_a.name, 3)
            async with (
                FakeKubelet(kube, node=node_a.name),
                running_handler(
                    kubeconfig=bound, node=node_a.name, simulator=simulator, extra=["-taint.node"]
                ),
            ):
                event_id = simulator.schedule("Redeploy", [node_a.resource_name], notice_seconds=600)
                await wait_phase(kube, node_a.name, event_id, Phase.DRAINED)
                simulator.cancel(event_id)
                await wait_phase(kube, node_a.name, event_id, Phase.GIVEN_BACK)
    assert (await kube.get(Node, node_b.name)).metadata.labels["example.com/touched"] != "not-mine"
    count("writes outside the handler's own node denied by the node restriction policy", 4)


# --- (c) the container -------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["defaults", "slack.yaml", "pushgateway.yaml", "proxy.yaml"])
def test_the_container_runs_non_root_read_only_without_capabilities(values: str) -> None:
    files = [] if values == "defaults" else [SEED_VALUES_DIR / values]
    daemonset = find_object(render_chart(values_files=files), "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0 and security["runAsGroup"] != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostPID") and not pod.get("hostIPC")
    assert all("hostPath" not in volume for volume in pod.get("volumes", []))
    assert all(mount.get("readOnly") for mount in container.get("volumeMounts", []))


# --- (e) secrets never leave ---------------------------------------------------------------------------

TELEGRAM_TOKEN = "123456789:AAE-s3cretTelegramTokenThatMustNotLeak"
WEBHOOK_PASSWORD = "hunter2-webhook-password-that-must-not-leak"


@pytest.mark.controlplane
@pytest.mark.timeout(90)
async def test_secrets_never_reach_the_logs_the_events_or_the_metrics(
    kube: AsyncClient, namespace: str, simulator: ImdsSimulator, handler_kubeconfig: Path, tmp_path: Path
) -> None:
    node = await create_aks_node(kube)
    await create_pods(kube, namespace, node.name, 2)
    with Receiver() as hook, TelegramApi(TELEGRAM_TOKEN) as telegram:
        webhook_url = f"http://aksnth:{WEBHOOK_PASSWORD}@127.0.0.1:{hook.port}/hook?key={WEBHOOK_PASSWORD}"
        handler = await HandlerProcess(
            handler_argv(
                handler_flags(
                    kubeconfig=handler_kubeconfig,
                    node=node.name,
                    simulator=simulator,
                    extra=[
                        "-telegram.chatID=42",
                        f"-telegram.apiURL={telegram.origin}",
                        "-notify.drainFinished",
                    ],
                )
            ),
            log_path=tmp_path / "handler.log",
            env=handler_environment(None, {"TELEGRAM_TOKEN": TELEGRAM_TOKEN, "WEBHOOK_URL": webhook_url}),
        ).start_serving()
        try:
            async with FakeKubelet(kube, node=node.name):
                event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
                await wait_phase(kube, node.name, event_id, Phase.DRAINED)
                await hook.wait_for_requests(2)
                await eventually(lambda: _true(len(telegram.messages()) >= 2), what="two Telegram messages")
                metrics_text = handler.get("/metrics").text
        finally:
            handler.stop()
        assert hook.requests[0].headers.get("authorization", "").startswith("Basic ")  # the password was used
    log = handler.log_text()
    events = [
        f"{ev.reason} {ev.message}"
        async for ev in kube.list(Event, namespace="*")
        if ev.involvedObject.name == node.name or (ev.message or "").find(node.name) >= 0
    ]
    assert "drain" in log and len(events) >= 3 and "aks_node_termination_handler" in metrics_text  # non-empty
    for secret in (TELEGRAM_TOKEN, WEBHOOK_PASSWORD, TELEGRAM_TOKEN.split(":")[1]):
        assert secret not in log
        assert all(secret not in text for text in events)
        assert secret not in metrics_text
    count("secrets looked for in logs, Events and /metrics (never found)", 3)


async def _true(value: bool) -> bool:
    return value
