"""`helm upgrade --install` of the chart into the real test API server, with the original README's
command lines and values files: the objects are accepted and created, the pod template passes the API
server's validation and admission, and the ServiceAccount has exactly the rights the handler needs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client, KubeConfig, codecs
from lightkube.models.authorization_v1 import ResourceAttributes, SubjectAccessReviewSpec
from lightkube.resources.apps_v1 import DaemonSet
from lightkube.resources.authorization_v1 import SubjectAccessReview
from lightkube.resources.core_v1 import ConfigMap, Secret, ServiceAccount
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding

from testkit.chart import CHART_DIR, SEED_VALUES_DIR, chart_cluster_rules, run_helm

pytestmark = pytest.mark.controlplane

NAMESPACE = "kube-system"  # where the README installs it (system-node-critical is meant for it)
RELEASE = "aks-node-termination-handler"


@pytest.fixture(scope="module")
def kubeconfig(control_plane: Any) -> Path:
    path: Path = control_plane.kubeconfig_path
    return path


@pytest.fixture(scope="module")
def client(kubeconfig: Path) -> Iterator[Client]:
    client = Client(KubeConfig.from_file(kubeconfig), field_manager="aksnth-chart-test")
    try:
        yield client
    finally:
        client.close()


def helm_install(kubeconfig: Path, release: str, *values_args: str) -> str:
    """The README's `helm upgrade --install` command (chart path instead of the repository); the output."""
    return run_helm(
        "upgrade",
        release,
        "--install",
        "--namespace",
        NAMESPACE,
        str(CHART_DIR),
        *values_args,
        kubeconfig=kubeconfig,
    ).stdout


@pytest.fixture
def installed(kubeconfig: Path) -> Iterator[list[str]]:
    """Release names to uninstall after the test (cluster-scoped RBAC objects would outlive it)."""
    releases: list[str] = []
    yield releases
    for release in releases:
        run_helm("uninstall", release, "--namespace", NAMESPACE, "--wait", kubeconfig=kubeconfig)


def assert_pod_template_is_admitted(client: Client, daemonset: DaemonSet) -> dict[str, Any]:
    """Submits the DaemonSet's pod template as a pod with a server-side dry run: the API server
    validates it (security context, probes, env, volumes) and runs admission (e.g. the priority
    class) as it would for the pods the DaemonSet controller creates. Returns the pod as admitted."""
    template = daemonset.to_dict()["spec"]["template"]
    pod = codecs.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**template["metadata"], "generateName": "chart-test-", "namespace": NAMESPACE},
            "spec": {**template["spec"], "nodeName": "aks-spot-12345678-vmss000000"},
        }
    )
    admitted = client.create(pod, dry_run=True)
    assert admitted.metadata.uid is not None  # an object the server would have stored
    result: dict[str, Any] = admitted.to_dict()
    return result


SEED_COMMAND_LINES = [
    pytest.param(["--set", "priorityClassName=system-node-critical"], id="install"),
    pytest.param(
        [
            "--set",
            "priorityClassName=system-node-critical",
            "--set",
            "args[0]=-telegram.token=<telegram token>",
            "--set",
            "args[1]=-telegram.chatID=<telegram chatid>",
        ],
        id="telegram",
    ),
    pytest.param(["--values", str(SEED_VALUES_DIR / "slack.yaml")], id="slack"),
    pytest.param(["--values", str(SEED_VALUES_DIR / "pushgateway.yaml")], id="pushgateway"),
    pytest.param(["--values", str(SEED_VALUES_DIR / "proxy.yaml")], id="proxy"),
    pytest.param(
        [
            "--set",
            "priorityClassName=system-node-critical",
            "--set",
            "image=paskalmaksim/aks-node-termination-handler:latest-ltsc2019",
        ],
        id="windows2019-image",
    ),
    pytest.param(
        ["--set", "priorityClassName=system-node-critical", "--set", "hostNetwork=true"], id="openshift"
    ),
    pytest.param(
        ["--set", "networkPolicy.enabled=true", "--set", "networkPolicy.controlPlaneIP=10.11.12.2"],
        id="network-policy",
    ),
]


@pytest.mark.parametrize("values_args", SEED_COMMAND_LINES)
def test_readme_install_command_installs_the_daemonset(
    kubeconfig: Path, client: Client, installed: list[str], values_args: list[str]
) -> None:
    output = helm_install(kubeconfig, RELEASE, *values_args)
    installed.append(RELEASE)
    token_in_args = any(arg.startswith("args[0]=-telegram.token=") for arg in values_args)
    assert ("Prefer secrets.telegramToken" in output) == token_in_args

    daemonset = client.get(DaemonSet, RELEASE, namespace=NAMESPACE)
    rendered_pod = assert_pod_template_is_admitted(client, daemonset)
    (container,) = rendered_pod["spec"]["containers"]
    assert container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert container["ports"][0]["containerPort"] == 17923

    assert client.get(ServiceAccount, RELEASE, namespace=NAMESPACE).metadata.name == RELEASE
    assert client.get(ConfigMap, f"{RELEASE}-files", namespace=NAMESPACE).metadata.name == f"{RELEASE}-files"
    binding = client.get(ClusterRoleBinding, RELEASE)
    assert binding.subjects[0].name == RELEASE
    assert binding.subjects[0].namespace == NAMESPACE
    role = client.get(ClusterRole, RELEASE)
    assert [rule.to_dict() for rule in role.rules] == chart_cluster_rules(release=RELEASE)


def test_slack_example_pod_template_is_what_the_chart_renders(
    kubeconfig: Path, client: Client, installed: list[str]
) -> None:
    output = helm_install(kubeconfig, RELEASE, "--values", str(SEED_VALUES_DIR / "slack.yaml"))
    installed.append(RELEASE)

    spec = client.get(DaemonSet, RELEASE, namespace=NAMESPACE).spec.template.spec
    assert spec.priorityClassName == "system-node-critical"
    (container,) = spec.containers
    assert container.args[0].startswith("-webhook.url=https://hooks.slack.com/services/")
    assert "-webhook.template-file=/files/slack-payload.json" in container.args
    assert container.livenessProbe.httpGet.path == "/healthz"
    assert container.readinessProbe.httpGet.path == "/readyz"
    assert container.securityContext.runAsNonRoot is True
    assert container.securityContext.readOnlyRootFilesystem is True
    files = client.get(ConfigMap, f"{RELEASE}-files", namespace=NAMESPACE)
    assert '"channel": "#mychannel"' in files.data["slack-payload.json"]
    assert "DaemonSet kube-system/aks-node-termination-handler" in output


def test_linux_and_windows2019_releases_live_side_by_side(
    kubeconfig: Path, client: Client, installed: list[str]
) -> None:
    windows_release = f"{RELEASE}-windows-2019"
    helm_install(kubeconfig, RELEASE, f"--values={SEED_VALUES_DIR / 'linux-windows2022.values.yaml'}")
    installed.append(RELEASE)
    helm_install(kubeconfig, windows_release, f"--values={SEED_VALUES_DIR / 'linux-windows2019.values.yaml'}")
    installed.append(windows_release)

    linux = client.get(DaemonSet, RELEASE, namespace=NAMESPACE)
    windows = client.get(DaemonSet, windows_release, namespace=NAMESPACE)
    assert windows.spec.template.spec.nodeSelector == {"kubernetes.azure.com/os-sku": "Windows2019"}
    term = linux.spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
    assert term.nodeSelectorTerms[0].matchExpressions[0].values == ["Windows2019"]
    # Each release selects only its own pods.
    assert linux.spec.selector.matchLabels != windows.spec.selector.matchLabels
    assert client.get(ClusterRole, windows_release).metadata.name == windows_release


def test_secrets_network_policy_and_notes_on_a_host_network_install(
    kubeconfig: Path, client: Client, installed: list[str]
) -> None:
    output = helm_install(
        kubeconfig,
        RELEASE,
        "--set",
        "hostNetwork=true,networkPolicy.enabled=true,networkPolicy.controlPlaneIP=10.11.12.2",
        "--set",
        "secrets.telegramToken=123456:token,secrets.webhookURL=https://example.invalid/hook",
        "--set",
        "args[0]=-telegram.chatID=-1001",
    )
    installed.append(RELEASE)

    secret = client.get(Secret, RELEASE, namespace=NAMESPACE)
    assert set(secret.data) == {"telegram-token", "webhook-url"}
    policy = client.get(NetworkPolicy, RELEASE, namespace=NAMESPACE)
    assert any(
        peer.ipBlock and peer.ipBlock.cidr == "10.11.12.2/32"
        for rule in policy.spec.egress
        for peer in rule.to or []
    )
    pod = assert_pod_template_is_admitted(client, client.get(DaemonSet, RELEASE, namespace=NAMESPACE))
    assert pod["spec"]["dnsPolicy"] == "ClusterFirstWithHostNet"
    notes = output[output.index("NOTES:") :]
    assert "NetworkPolicies do not apply to host-network pods" in notes


def can(
    client: Client, service_account: str, verb: str, resource: str, group: str = "", sub: str = ""
) -> bool:
    review = SubjectAccessReview(
        spec=SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{NAMESPACE}:{service_account}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}", "system:authenticated"],
            resourceAttributes=ResourceAttributes(verb=verb, resource=resource, group=group, subresource=sub),
        )
    )
    return bool(client.create(review).status.allowed)


def test_service_account_may_drain_and_stop_pods_as_a_last_resort_but_not_read_secrets(
    kubeconfig: Path, client: Client, installed: list[str]
) -> None:
    helm_install(kubeconfig, RELEASE, "--set", "priorityClassName=system-node-critical")
    installed.append(RELEASE)

    assert can(client, RELEASE, "create", "pods", sub="eviction")
    assert can(client, RELEASE, "list", "pods")
    assert can(client, RELEASE, "patch", "nodes")
    assert can(client, RELEASE, "create", "events")
    assert not can(client, RELEASE, "update", "nodes")
    assert can(client, RELEASE, "delete", "pods")  # the last-resort stop, on by default
    assert not can(client, RELEASE, "get", "secrets")
    assert not can(client, RELEASE, "delete", "nodes")
    assert not can(client, RELEASE, "get", "daemonsets", group="apps")

    helm_install(kubeconfig, RELEASE, "--set", "rbac.allowPodDelete=false")
    assert not can(client, RELEASE, "delete", "pods")

    # The Go project's image drains with kubectl's helper, which reads each DaemonSet pod's DaemonSet.
    helm_install(kubeconfig, RELEASE, "--set", "goImage=true")
    assert can(client, RELEASE, "get", "daemonsets", group="apps")
