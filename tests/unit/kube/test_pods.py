"""The plain view of a pod (``PodInfo``), and ``.NodePods`` following the Go version's rule: every pod
of the node but DaemonSet pods, in API order."""

from __future__ import annotations

from aksnth.kube.node import template_pod_names
from aksnth.kube.pods import PodInfo, pod_info


def pod(namespace: str, name: str, *, owner: str = "", phase: str = "Running") -> PodInfo:
    return PodInfo(namespace=namespace, name=name, first_owner_kind=owner, phase=phase)


def test_daemonset_pods_are_left_out_and_finished_and_mirror_pods_kept() -> None:
    pods = [
        pod("default", "web", owner="ReplicaSet"),
        pod("kube-system", "kube-proxy-x", owner="DaemonSet"),
        pod("default", "done", owner="Job", phase="Succeeded"),
        pod("kube-system", "etcd-static", owner="Node"),
        pod("default", "bare"),
    ]
    assert template_pod_names(pods) == ("bare", "done", "web", "etcd-static")


def test_order_is_the_storage_key_order_namespace_slash_name() -> None:
    """etcd sorts ``<namespace>/<name>`` as bytes: ``a-b/…`` comes before ``a/…`` ('-' < '/')."""
    pods = [pod("a", "x"), pod("a-b", "y"), pod("a", "w")]
    assert template_pod_names(pods) == ("y", "w", "x")


def test_pod_info_keeps_what_the_drain_readiness_needs() -> None:
    """Labels (PodDisruptionBudget selectors), the Ready condition, the node, the controller and the
    names of emptyDir volumes are read from the Pod as the API server sends it."""
    api_pod = {
        "metadata": {
            "name": "web-0",
            "namespace": "shop",
            "uid": "u1",
            "labels": {"app": "web"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "n1"},
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": "web",
                    "uid": "s1",
                    "controller": True,
                },
            ],
        },
        "spec": {
            "nodeName": "node-a",
            "containers": [{"name": "app", "image": "x"}],
            "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "c"}}],
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    info = pod_info(api_pod)
    assert (info.node_name, dict(info.labels), info.ready) == ("node-a", {"app": "web"}, True)
    assert (info.controller_kind, info.controller_name, info.controller_uid) == ("StatefulSet", "web", "s1")
    assert info.controller == "StatefulSet shop/web"
    assert info.first_owner_kind == "Node"
    assert info.empty_dir_volumes == ("cache",) and info.has_empty_dir
    assert info.grace_period_seconds == 30  # the API server's default when the pod does not say


def test_a_pod_without_controller_or_ready_condition() -> None:
    info = pod_info({"metadata": {"name": "bare", "namespace": "d"}, "spec": {"containers": []}})
    assert (info.controller, info.ready, info.has_empty_dir) == ("", False, False)
