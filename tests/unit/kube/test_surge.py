"""Surge before evict: which Deployments can surge, and the patch that starts their rollout."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aksnth.kube.surge import RESTARTED_AT_ANNOTATION, restart_patch, why_no_surge


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
