"""The Helm chart, linted and rendered by the real `helm`: the original README's install commands and
values files render unchanged, and each value does what its documentation says."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from aksnth.kube.keys import TO_BE_DELETED_TAINT, taint_key
from aksnth.model import EventType
from testkit.chart import (
    CHART_DIR,
    SEED_VALUES_DIR,
    HelmError,
    chart_cluster_rules,
    find_object,
    helm_binary,
    render_chart,
    run_helm,
    seed_values,
)

FULLNAME = "aksnth-aks-node-termination-handler"


@pytest.fixture(scope="module", autouse=True)
def _helm_is_built() -> None:
    helm_binary()  # fails with "run make test-binaries" when missing


def daemonset(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return find_object(objects, "DaemonSet")


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = daemonset(objects)["spec"]["template"]["spec"]
    return spec


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (only,) = pod_spec(objects)["containers"]
    return only


def pod_annotations(objects: list[dict[str, Any]]) -> dict[str, str]:
    return daemonset(objects)["spec"]["template"]["metadata"].get("annotations") or {}


def env_by_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container(objects).get("env", [])}


# --- lint -------------------------------------------------------------------------------------------


def test_lint_passes_with_defaults_and_with_every_optional_object() -> None:
    run_helm("lint", "--strict", str(CHART_DIR))
    run_helm(
        "lint",
        "--strict",
        str(CHART_DIR),
        "--set",
        "networkPolicy.enabled=true,serviceMonitor.enabled=true,podMonitor.enabled=true",
        "--set",
        "secrets.telegramToken=t,secrets.webhookURL=https://example.invalid/hook,rbac.allowPodDelete=true",
    )


# --- defaults ---------------------------------------------------------------------------------------


def test_defaults_render_the_handler_daemonset_with_its_rbac_and_files() -> None:
    objects = render_chart(namespace="node-handlers")

    kinds = sorted(f"{obj['kind']}/{obj['metadata']['name']}" for obj in objects)
    assert kinds == [
        f"ClusterRole/{FULLNAME}",
        f"ClusterRoleBinding/{FULLNAME}",
        "ConfigMap/aksnth-files",
        f"DaemonSet/{FULLNAME}",
        f"ServiceAccount/{FULLNAME}",
        f"ValidatingAdmissionPolicy/{FULLNAME}-node-restriction",
        f"ValidatingAdmissionPolicyBinding/{FULLNAME}-node-restriction",
    ]
    for obj in objects:
        if obj["kind"] not in {
            "ClusterRole",
            "ClusterRoleBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        }:
            assert obj["metadata"]["namespace"] == "node-handlers", obj["kind"]

    spec = pod_spec(objects)
    assert spec["serviceAccountName"] == FULLNAME
    assert spec["hostNetwork"] is False
    assert "dnsPolicy" not in spec
    assert "priorityClassName" not in spec
    assert with_own_sorted(spec["tolerations"]) == [
        {
            "key": "kubernetes.azure.com/scalesetpriority",
            "operator": "Equal",
            "value": "spot",
            "effect": "NoSchedule",
        },
        *OWN_TAINT_TOLERATIONS,
    ]
    assert spec["volumes"] == [{"name": "files", "configMap": {"name": "aksnth-files"}}]

    main = container(objects)
    assert main["image"] == "ghcr.io/aks-node-termination-handler/aks-node-termination-handler:0.1.0"
    assert main["imagePullPolicy"] == "Always"
    assert "args" not in main
    assert env_by_name(objects) == {
        "MY_NODE_NAME": {"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    }
    assert main["ports"] == [{"name": "http", "containerPort": 17923, "protocol": "TCP"}]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": "HTTP"}
    assert main["volumeMounts"] == [{"name": "files", "mountPath": "/files", "readOnly": True}]
    assert main["resources"] == {"limits": {"memory": "100Mi"}, "requests": {"cpu": "20m", "memory": "100Mi"}}

    security = main["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}

    annotations = pod_annotations(objects)
    assert annotations["prometheus.io/port"] == "17923"
    assert annotations["prometheus.io/scrape"] == "true"

    strategy = daemonset(objects)["spec"]["updateStrategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}}

    binding = find_object(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "node-handlers"}]


def test_pod_selector_labels_match_the_original_chart_so_an_upgrade_in_place_keeps_the_daemonset() -> None:
    ds = daemonset(render_chart(release="aks-node-termination-handler"))
    assert ds["metadata"]["name"] == "aks-node-termination-handler"
    assert ds["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "aks-node-termination-handler",
        "app.kubernetes.io/instance": "aks-node-termination-handler",
    }
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


# --- RBAC -------------------------------------------------------------------------------------------


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_cluster_role_grants_exactly_what_the_handler_does() -> None:
    """The rights, pinned; that the handler uses each of them is proven by tests/test_least_privilege.py."""
    grants = _grants(chart_cluster_rules())
    assert grants == {
        ("", "nodes", "get"),
        ("", "nodes", "patch"),
        # list and watch: during an event, waiting for the other nodes under it to be cordoned
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("", "nodes/status", "patch"),  # the AzureScheduledEvent condition
        ("", "pods", "list"),
        ("", "pods", "delete"),  # the last-resort stop
        ("", "pods/status", "patch"),  # DisruptionTarget before such a stop
        ("", "pods/eviction", "create"),
        ("", "events", "create"),
        ("", "events", "patch"),
    }


def test_pod_delete_is_granted_by_default_and_left_out_with_allow_pod_delete_false() -> None:
    assert ("", "pods", "delete") in _grants(chart_cluster_rules())
    without = _grants(chart_cluster_rules(set_values=["rbac.allowPodDelete=false"]))
    assert _grants(chart_cluster_rules()) - without == {("", "pods", "delete"), ("", "pods/status", "patch")}


def test_readiness_check_adds_its_flag_after_the_args_and_only_then_lists_budgets() -> None:
    """readinessCheck.interval turns the periodic check on: the flag joins the args, and the only right
    it needs beyond the handler's, list on PodDisruptionBudgets, is granted with it and never without."""
    objects = render_chart(set_values=["readinessCheck.interval=5m", "args[0]=-taint.node"])
    assert container(objects)["args"] == ["-taint.node", "-readiness.interval=5m"]
    granted = _grants(chart_cluster_rules(set_values=["readinessCheck.interval=5m"]))
    assert granted - _grants(chart_cluster_rules()) == {("policy", "poddisruptionbudgets", "list")}
    assert "args" not in container(render_chart())
    with pytest.raises(HelmError) as failure:
        render_chart(set_values=["readinessCheck.interval=5 minutes"])
    assert "/readinessCheck/interval" in failure.value.stderr


# --- the seed README's values files -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values_file", "template_file"),
    [
        ("slack.yaml", "slack-payload.json"),
        ("pushgateway.yaml", "prometheus-pushgateway-payload.txt"),
        ("proxy.yaml", "payload.json"),
    ],
)
def test_webhook_examples_pass_args_through_and_mount_their_payload_under_files(
    values_file: str, template_file: str
) -> None:
    values = seed_values(values_file)
    objects = render_chart([SEED_VALUES_DIR / values_file])

    main = container(objects)
    assert main["args"] == values["args"]
    assert f"-webhook.template-file=/files/{template_file}" in main["args"]
    assert pod_spec(objects)["priorityClassName"] == "system-node-critical"

    config_map = find_object(objects, "ConfigMap")
    assert config_map["data"] == values["configMap"]["data"]
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "files")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert {"name": "files", "mountPath": "/files", "readOnly": True} in main["volumeMounts"]
    assert pod_annotations(objects)["checksum/files"]  # pods roll when a payload changes


def test_payload_change_changes_the_pod_template() -> None:
    first = pod_annotations(render_chart(set_values=["configMap.data.a\\.txt=one"]))
    second = pod_annotations(render_chart(set_values=["configMap.data.a\\.txt=two"]))
    assert first["checksum/files"] != second["checksum/files"]


def test_linux_and_windows2022_install_keeps_windows2019_nodes_out() -> None:
    values = seed_values("linux-windows2022.values.yaml")
    objects = render_chart([SEED_VALUES_DIR / "linux-windows2022.values.yaml"])
    assert container(objects)["image"] == "paskalmaksim/aks-node-termination-handler:latest"
    assert pod_spec(objects)["affinity"] == values["affinity"]
    assert pod_spec(objects)["priorityClassName"] == "system-node-critical"


def test_windows2019_install_selects_only_windows2019_nodes() -> None:
    objects = render_chart(
        [SEED_VALUES_DIR / "linux-windows2019.values.yaml"],
        release="aks-node-termination-handler-windows-2019",
    )
    assert container(objects)["image"] == "paskalmaksim/aks-node-termination-handler:latest-ltsc2019"
    assert pod_spec(objects)["nodeSelector"] == {"kubernetes.azure.com/os-sku": "Windows2019"}
    assert daemonset(objects)["metadata"]["name"] == "aks-node-termination-handler-windows-2019"


# --- the seed README's --set command lines ----------------------------------------------------------


def test_priority_class_from_the_install_command() -> None:
    objects = render_chart(set_values=["priorityClassName=system-node-critical"])
    assert pod_spec(objects)["priorityClassName"] == "system-node-critical"


def test_telegram_args_from_the_install_command_are_passed_verbatim() -> None:
    objects = render_chart(
        set_values=[
            "priorityClassName=system-node-critical",
            "args[0]=-telegram.token=<telegram token>",
            "args[1]=-telegram.chatID=<telegram chatid>",
        ]
    )
    assert container(objects)["args"] == [
        "-telegram.token=<telegram token>",
        "-telegram.chatID=<telegram chatid>",
    ]


def test_windows2019_image_from_the_install_command() -> None:
    objects = render_chart(set_values=["image=paskalmaksim/aks-node-termination-handler:latest-ltsc2019"])
    assert container(objects)["image"] == "paskalmaksim/aks-node-termination-handler:latest-ltsc2019"


def test_host_network_for_openshift_uses_cluster_dns() -> None:
    objects = render_chart(set_values=["priorityClassName=system-node-critical", "hostNetwork=true"])
    assert pod_spec(objects)["hostNetwork"] is True
    assert pod_spec(objects)["dnsPolicy"] == "ClusterFirstWithHostNet"


def _egress_rule_on_port(policy: dict[str, Any], port: int) -> dict[str, Any]:
    (rule,) = [r for r in policy["spec"]["egress"] if any(p["port"] == port for p in r.get("ports", []))]
    return rule


def test_network_policy_limits_api_server_egress_to_the_control_plane_ip() -> None:
    objects = render_chart(
        set_values=["networkPolicy.enabled=true", "networkPolicy.controlPlaneIP=10.11.12.2"]
    )
    policy = find_object(objects, "NetworkPolicy")
    pod_labels = daemonset(objects)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]

    api_server = _egress_rule_on_port(policy, 443)
    assert api_server["to"] == [{"ipBlock": {"cidr": "10.11.12.2/32"}}]
    assert {p["port"] for p in api_server["ports"]} == {443, 6443}

    imds = _egress_rule_on_port(policy, 80)
    assert imds["to"] == [{"ipBlock": {"cidr": "169.254.169.254/32"}}]

    dns = _egress_rule_on_port(policy, 53)
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}

    assert policy["spec"]["ingress"] == [{"ports": [{"port": 17923, "protocol": "TCP"}]}]


def test_network_policy_without_control_plane_ip_allows_api_ports_anywhere() -> None:
    policy = find_object(render_chart(set_values=["networkPolicy.enabled=true"]), "NetworkPolicy")
    assert "to" not in _egress_rule_on_port(policy, 443)


def test_network_policy_appends_additional_egress_rules(tmp_path: Path) -> None:
    webhook_rule = {
        "ports": [{"port": 443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
    }
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump({"networkPolicy": {"enabled": True, "additionalEgressRules": [webhook_rule]}})
    )
    policy = find_object(render_chart([values]), "NetworkPolicy")
    assert policy["spec"]["egress"][-1] == webhook_rule
    assert len(policy["spec"]["egress"]) == 4


def test_no_network_policy_by_default() -> None:
    assert not [obj for obj in render_chart() if obj["kind"] == "NetworkPolicy"]


# --- secrets ----------------------------------------------------------------------------------------


def test_secrets_reach_the_handler_through_secret_key_refs_not_args() -> None:
    token, url = "123456:telegram-token-value", "https://hooks.slack.com/services/T0/B0/secret-part"
    objects = render_chart(set_values=[f"secrets.telegramToken={token}", f"secrets.webhookURL={url}"])

    secret = find_object(objects, "Secret", FULLNAME)
    assert base64.b64decode(secret["data"]["telegram-token"]).decode() == token
    assert base64.b64decode(secret["data"]["webhook-url"]).decode() == url
    env = env_by_name(objects)
    assert env["TELEGRAM_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": FULLNAME, "key": "telegram-token"}}
    assert env["WEBHOOK_URL"]["valueFrom"] == {"secretKeyRef": {"name": FULLNAME, "key": "webhook-url"}}
    assert token not in json.dumps(daemonset(objects))
    assert url not in json.dumps(daemonset(objects))


def test_existing_secret_is_referenced_optionally_and_none_is_created() -> None:
    objects = render_chart(
        set_values=["secrets.existingSecret=handler-credentials", "secrets.telegramToken=ignored"]
    )
    assert not [obj for obj in objects if obj["kind"] == "Secret"]
    env = env_by_name(objects)
    for variable, key in (("TELEGRAM_TOKEN", "telegram-token"), ("WEBHOOK_URL", "webhook-url")):
        assert env[variable]["valueFrom"] == {
            "secretKeyRef": {"name": "handler-credentials", "key": key, "optional": True}
        }


def test_no_secret_and_no_secret_env_by_default() -> None:
    objects = render_chart()
    assert not [obj for obj in objects if obj["kind"] == "Secret"]
    assert set(env_by_name(objects)) == {"MY_NODE_NAME"}


# --- other values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("set_values", "image"),
    [
        (["imageTag=1.2.3"], "ghcr.io/aks-node-termination-handler/aks-node-termination-handler:1.2.3"),
        (["image=registry.local:5000/team/handler"], "registry.local:5000/team/handler:0.1.0"),
        (["image=registry.local:5000/team/handler:v9"], "registry.local:5000/team/handler:v9"),
        (["image=example.org/handler@sha256:" + "a" * 64], "example.org/handler@sha256:" + "a" * 64),
    ],
)
def test_image_reference(set_values: list[str], image: str) -> None:
    assert container(render_chart(set_values=set_values))["image"] == image


# The taints the handler puts on its own node, each tolerated by its pods whatever the values: our
# taint for every event type (any effect, -taint.effect=NoExecute included) and the autoscaler's.
OWN_TAINT_TOLERATIONS = [
    *(
        {"key": taint_key(event_type), "operator": "Exists"}
        for event_type in EventType
        if event_type is not EventType.UNKNOWN
    ),
    {"key": TO_BE_DELETED_TAINT, "operator": "Exists", "effect": "NoSchedule"},
]
OWN_TAINT_TOLERATIONS.sort(key=lambda toleration: toleration["key"])


def with_own_sorted(tolerations: list[dict[str, str]]) -> list[dict[str, str]]:
    """The tolerations as rendered, with the handler's own (the last ones) in the order of their keys."""
    own = len(OWN_TAINT_TOLERATIONS)
    return [*tolerations[:-own], *sorted(tolerations[-own:], key=lambda toleration: toleration["key"])]


def test_the_pods_tolerate_the_handlers_own_taints_also_with_tolerations_of_the_users() -> None:
    """A handler pod restarted on a node under an event must come back to resume it: the DaemonSet
    tolerates every taint the handler itself puts on a node (the list follows the code's event types),
    after the tolerations a values file gives."""
    gpu = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    objects = render_chart(
        set_values=[
            "tolerations[0].key=sku",
            "tolerations[0].operator=Equal",
            "tolerations[0].value=gpu",
            "tolerations[0].effect=NoSchedule",
        ]
    )
    assert with_own_sorted(pod_spec(objects)["tolerations"]) == [gpu, *OWN_TAINT_TOLERATIONS]
    alone = pod_spec(render_chart(set_values=["tolerations=null"]))["tolerations"]
    assert with_own_sorted(alone) == OWN_TAINT_TOLERATIONS


def test_tolerate_all_taints_replaces_the_tolerations() -> None:
    objects = render_chart(set_values=["tolerateAllTaints=true"])
    assert pod_spec(objects)["tolerations"] == [{"operator": "Exists"}]


def test_metrics_annotations_can_be_turned_off() -> None:
    annotations = pod_annotations(render_chart(set_values=["metrics.addAnnotations=false"]))
    assert not {"prometheus.io/port", "prometheus.io/scrape"} & set(annotations)


def test_common_labels_and_annotations_reach_every_object_and_pod_values_reach_the_pods() -> None:
    objects = render_chart(
        set_values=[
            "commonLabels.team=platform",
            "commonAnnotations.owner=sre",
            "podLabels.tier=node",
            "podAnnotations.note=hello",
            "labels.legacy-label=yes",
            "annotations.legacy-annotation=yes",
            "networkPolicy.enabled=true",
        ]
    )
    for obj in objects:
        assert obj["metadata"]["labels"]["team"] == "platform", obj["kind"]
        assert obj["metadata"]["annotations"]["owner"] == "sre", obj["kind"]
    template = daemonset(objects)["spec"]["template"]["metadata"]
    assert template["labels"]["tier"] == "node"
    assert template["labels"]["legacy-label"] == "yes"
    assert template["annotations"]["note"] == "hello"
    assert template["annotations"]["legacy-annotation"] == "yes"


def test_names_follow_overrides() -> None:
    assert daemonset(render_chart(set_values=["fullnameOverride=anth"]))["metadata"]["name"] == "anth"
    renamed = daemonset(render_chart(set_values=["nameOverride=anth"]))
    assert renamed["metadata"]["name"] == "aksnth-anth"
    assert renamed["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "anth"


def test_an_existing_config_map_is_mounted_when_the_chart_creates_none() -> None:
    objects = render_chart(set_values=["configMap.create=false", "configMap.name=my-payloads"])
    assert not [obj for obj in objects if obj["kind"] == "ConfigMap"]
    assert pod_spec(objects)["volumes"][0] == {"name": "files", "configMap": {"name": "my-payloads"}}


def test_extra_volumes_env_and_pull_secrets(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"env": [{"name": "TELEGRAM_CHATID", "value": "-1001"}]}))
    objects = render_chart(
        [values],
        set_values=[
            "extraVolumes[0].name=ca",
            "extraVolumes[0].secret.secretName=corporate-ca",
            "extraVolumeMounts[0].name=ca",
            "extraVolumeMounts[0].mountPath=/etc/ssl/corporate",
            "imagePullSecrets[0]=registry-credentials",
        ],
    )
    assert {"name": "ca", "secret": {"secretName": "corporate-ca"}} in pod_spec(objects)["volumes"]
    assert {"name": "ca", "mountPath": "/etc/ssl/corporate"} in container(objects)["volumeMounts"]
    assert env_by_name(objects)["TELEGRAM_CHATID"] == {"name": "TELEGRAM_CHATID", "value": "-1001"}
    assert pod_spec(objects)["imagePullSecrets"] == [{"name": "registry-credentials"}]


def test_monitors_are_off_by_default_and_select_the_pods_when_on() -> None:
    assert not [obj for obj in render_chart() if obj["apiVersion"].startswith("monitoring.coreos.com")]
    objects = render_chart(
        set_values=[
            "serviceMonitor.enabled=true",
            "podMonitor.enabled=true",
            "podMonitor.labels.release=prom",
        ]
    )
    pod_labels = daemonset(objects)["spec"]["template"]["metadata"]["labels"]
    service = find_object(objects, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    service_monitor = find_object(objects, "ServiceMonitor")
    assert service_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert service_monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service_monitor["spec"]["endpoints"][0]["port"] == "http"
    pod_monitor = find_object(objects, "PodMonitor")
    assert pod_monitor["metadata"]["labels"]["release"] == "prom"
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "http"


# --- the schema -------------------------------------------------------------------------------------


def test_schema_rejects_a_misspelt_value_and_names_it() -> None:
    with pytest.raises(HelmError) as failure:
        render_chart(set_values=["priorityClasName=system-node-critical"])
    assert "additional properties 'priorityClasName' not allowed" in failure.value.stderr


def test_schema_rejects_a_misspelt_nested_value_and_names_it() -> None:
    with pytest.raises(HelmError) as failure:
        render_chart(set_values=["networkPolicy.controlPlaneIp=10.0.0.1"])
    assert "/networkPolicy" in failure.value.stderr
    assert "'controlPlaneIp' not allowed" in failure.value.stderr


def test_schema_rejects_a_wrong_type_and_names_the_value_and_the_wanted_type() -> None:
    with pytest.raises(HelmError) as failure:
        render_chart(set_values=["hostNetwork=yes"])
    assert "/hostNetwork" in failure.value.stderr
    assert "want boolean" in failure.value.stderr


def test_schema_rejects_a_non_string_arg() -> None:
    with pytest.raises(HelmError) as failure:
        run_helm("template", "x", str(CHART_DIR), "--set-json", "args=[-1]")
    assert "/args/0" in failure.value.stderr


def test_schema_rejects_a_number_as_an_environment_value() -> None:
    # `--set env[0].value=-1001` (a Telegram chat ID) gives a number, which the API server would refuse
    # later and less clearly.
    with pytest.raises(HelmError) as failure:
        render_chart(set_values=["env[0].name=TELEGRAM_CHATID", "env[0].value=-1001"])
    assert "/env/0/value" in failure.value.stderr
    assert "want string" in failure.value.stderr


def test_schema_lists_exactly_the_values_of_values_yaml() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert set(schema["properties"]) - {"global"} == set(values)


def test_go_image_option_adds_only_the_go_drains_rights_and_probes_readiness_on_healthz() -> None:
    """With the Go project's image (goImage=true) its drain can read DaemonSets and wait for evicted
    pods (pods get), it has the node right its own chart gave beyond ours (update), and its pod can become
    Ready (it serves /healthz, not /readyz); nothing else changes, and a path set by hand is kept."""
    granted = _grants(chart_cluster_rules(set_values=["goImage=true"]))
    assert granted - _grants(chart_cluster_rules()) == {
        ("apps", "daemonsets", "get"),
        ("", "pods", "get"),
        ("", "nodes", "update"),
    }
    assert ("apps", "daemonsets", "get") not in _grants(chart_cluster_rules())

    def readiness(*set_values: str) -> dict[str, Any]:
        objects = render_chart(set_values=list(set_values))
        (container,) = find_object(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"]
        return container["readinessProbe"]["httpGet"]

    assert readiness("goImage=true")["path"] == "/healthz"
    assert readiness()["path"] == "/readyz"
    assert readiness("goImage=true", "readinessProbe.httpGet.path=/custom")["path"] == "/custom"
