"""Surge before evict: which Deployments can surge, and the patch that starts their rollout."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aksnth.errors import KubeForbidden
from aksnth.kube.pods import PodInfo
from aksnth.kube.surge import (
    RESTARTED_AT_ANNOTATION,
    SURGE_LEAD_SECONDS,
    Surger,
    restart_patch,
    why_no_surge,
)


def deployment(replicas: int = 1, *, paused: bool = False, strategy: dict | None = None) -> dict:
    spec: dict = {"replicas": replicas, "paused": paused}
    if strategy is not None:
        spec["strategy"] = strategy
    return {"metadata": {"name": "web", "namespace": "shop"}, "spec": spec}


def rolling(max_surge: object) -> dict:
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": 0}}


@pytest.mark.parametrize(
    "obj",
    [
        deployment(),  # the defaults: RollingUpdate, maxSurge 25% (one pod, rounded up)
        deployment(strategy=rolling(1)),
        deployment(3, strategy=rolling("10%")),
        deployment(strategy={"type": "RollingUpdate"}),
    ],
)
def test_a_rolling_deployment_with_room_to_surge_can(obj: dict) -> None:
    assert why_no_surge(obj) == ""


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        (deployment(paused=True), "its rollout is paused"),
        (deployment(strategy={"type": "Recreate"}), "its strategy is Recreate"),
        (deployment(strategy=rolling(0)), "its maxSurge is 0"),
        (deployment(4, strategy=rolling("0%")), "its maxSurge is 0"),
    ],
)
def test_a_deployment_that_cannot_add_a_pod_first_is_not_surged(obj: dict, why: str) -> None:
    assert why_no_surge(obj) == why


def test_the_patch_is_the_one_kubectl_rollout_restart_sends() -> None:
    patch = restart_patch(datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC))
    assert patch == {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: "2024-05-01T12:00:00Z"}}}}
    }


# -- Surger: which pods lead to a rollout, against an API of plain objects --------------------------


class AppsApi:
    """A ReplicaSet web-rs owned by Deployment web (namespace shop); records every patch. `forbid`
    makes the patch a 403."""

    def __init__(self, deployment: dict, *, forbid: bool = False) -> None:
        self.objects = {
            "/apis/apps/v1/namespaces/shop/replicasets/web-rs": {
                "metadata": {"ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}]}
            },
            "/apis/apps/v1/namespaces/shop/deployments/web": deployment,
        }
        self.forbid = forbid
        self.patches: list[tuple[str, dict]] = []

    async def get(self, path: str) -> dict:
        return self.objects[path]

    async def patch(self, path: str, body: dict, **_: object) -> dict:
        if self.forbid:
            raise KubeForbidden("deployments.apps is forbidden")
        self.patches.append((path, body))
        return {}


def pod(kind: str = "ReplicaSet", name: str = "web-rs") -> PodInfo:
    return PodInfo(namespace="shop", name="web-rs-abc", controller_kind=kind, controller_name=name)


async def test_a_deployments_pod_refused_by_a_budget_starts_one_rollout() -> None:
    api = AppsApi(deployment())
    surger = Surger(api, recorder=None, because="Azure Preempt E1")  # type: ignore[arg-type]
    assert await surger.surge_for(pod(), seconds_left=20, timeout_seconds=1)
    assert not await surger.surge_for(pod(), seconds_left=20, timeout_seconds=1)  # once per Deployment
    [(path, body)] = api.patches
    assert path == "/apis/apps/v1/namespaces/shop/deployments/web"
    assert RESTARTED_AT_ANNOTATION in body["spec"]["template"]["metadata"]["annotations"]


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet", ""])
async def test_pods_of_other_controllers_are_never_surged(kind: str) -> None:
    api = AppsApi(deployment())
    surger = Surger(api, recorder=None, because="Azure Preempt E1")  # type: ignore[arg-type]
    assert not await surger.surge_for(pod(kind, "db" if kind else ""), seconds_left=20, timeout_seconds=1)
    assert api.patches == []


async def test_no_rollout_with_less_than_the_lead_time_before_the_last_chance() -> None:
    api = AppsApi(deployment())
    surger = Surger(api, recorder=None, because="Azure Preempt E1")  # type: ignore[arg-type]
    assert not await surger.surge_for(pod(), seconds_left=SURGE_LEAD_SECONDS - 0.1, timeout_seconds=1)
    assert api.patches == []


async def test_a_refused_patch_is_no_rollout_and_no_error() -> None:
    api = AppsApi(deployment(), forbid=True)
    surger = Surger(api, recorder=None, because="Azure Preempt E1")  # type: ignore[arg-type]
    assert not await surger.surge_for(pod(), seconds_left=20, timeout_seconds=1)
