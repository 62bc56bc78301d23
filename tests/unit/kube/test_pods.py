"""``.NodePods`` follows the Go version's rule: every pod of the node but DaemonSet pods, API order."""

from __future__ import annotations

from aksnth.kube.node import template_pod_names
from aksnth.kube.pods import PodInfo


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
