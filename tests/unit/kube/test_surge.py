"""Surge before evict: which Deployments can surge, and the patch that starts their rollout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from aksnth.errors import KubeForbidden
from aksnth.kube.api import ObjectList
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


# -- the trigger without a budget: a Deployment's only Ready replica is on the node ------------------


def pod_object(name: str, node: str, *, ready: bool, deleting: bool = False, app: str = "web") -> dict:
    meta: dict = {"name": name, "namespace": "shop", "labels": {"app": app}}
    if deleting:
        meta["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


class PodsApi(AppsApi):
    """AppsApi plus the namespace's pods: the doomed pod web-rs-abc on node doomed, and whatever a
    rollout adds (`after_patch`, listed from the `ready_after`-th read after the patch on)."""

    def __init__(
        self,
        deployment: dict,
        pods: list[dict],
        *,
        after_patch: list[dict] | None = None,
        ready_after: int = 1,
    ) -> None:
        super().__init__(deployment)
        self.pods = pods
        self.after_patch = after_patch or []
        self.ready_after = ready_after
        self.reads_after_patch = 0

    async def list(self, path: str, **_: object) -> ObjectList:
        assert path == "/api/v1/namespaces/shop/pods"
        if self.patches:
            self.reads_after_patch += 1
            if self.reads_after_patch >= self.ready_after:
                return ObjectList(self.pods + self.after_patch, "1")
        return ObjectList(self.pods, "1")


def doomed() -> PodInfo:
    return PodInfo(
        namespace="shop",
        name="web-rs-abc",
        node_name="doomed",
        labels={"app": "web"},
        controller_kind="ReplicaSet",
        controller_name="web-rs",
    )


def selecting(obj: dict) -> dict:
    obj["spec"]["selector"] = {"matchLabels": {"app": "web"}}
    return obj


class Clock:
    """Loop time, for the bound of the wait."""

    def __call__(self) -> float:
        return asyncio.get_running_loop().time()


async def test_the_only_ready_replica_on_the_node_is_surged_and_its_eviction_waits_for_the_replacement() -> (
    None
):
    api = PodsApi(
        selecting(deployment()),
        [
            pod_object("web-rs-abc", "doomed", ready=True),
            pod_object("other-app", "spare", ready=True, app="db"),
        ],
        after_patch=[pod_object("web-new", "spare", ready=True)],
        ready_after=3,
    )
    surger = Surger(api, recorder=None, because="Azure Preempt E1")  # type: ignore[arg-type]
    clock = Clock()
    await surger.replace_first(doomed(), until=clock() + 20, clock=clock, timeout_seconds=1)
    assert len(api.patches) == 1
    assert api.reads_after_patch == 3  # it returned once the replacement was Ready on the spare node
    # The budget trigger does not start a second rollout of the same Deployment.
    assert not await surger.surge_for(doomed(), seconds_left=20, timeout_seconds=1)
    assert len(api.patches) == 1


async def test_no_surge_when_a_replica_is_ready_on_another_node() -> None:
    elsewhere = pod_object("web-2", "spare", ready=True)
    api = PodsApi(selecting(deployment(2)), [pod_object("web-rs-abc", "doomed", ready=True), elsewhere])
    surger = Surger(api, recorder=None, because="Azure Preempt E1")  # type: ignore[arg-type]
    clock = Clock()
    await surger.replace_first(doomed(), until=clock() + 20, clock=clock, timeout_seconds=1)
    assert api.patches == []


@pytest.mark.parametrize(
    "not_serving",
    [
        pod_object("web-2", "spare", ready=False),  # not Ready
        pod_object("web-2", "spare", ready=True, deleting=True),  # terminating
        pod_object("web-2", "doomed", ready=True),  # Ready, but on the same node
    ],
    ids=["not-ready", "terminating", "same-node"],
)
async def test_a_replica_that_would_not_serve_after_the_eviction_does_not_count(not_serving: dict) -> None:
    api = PodsApi(
        selecting(deployment(2)),
        [pod_object("web-rs-abc", "doomed", ready=True), not_serving],
        after_patch=[pod_object("web-new", "spare", ready=True)],
    )
    surger = Surger(api, recorder=None, because="Azure Preempt E1")  # type: ignore[arg-type]
    clock = Clock()
    await surger.replace_first(doomed(), until=clock() + 20, clock=clock, timeout_seconds=1)
    assert len(api.patches) == 1


async def test_the_wait_ends_at_the_pods_last_chance_without_a_replacement() -> None:
    api = PodsApi(selecting(deployment()), [pod_object("web-rs-abc", "doomed", ready=True)])
    surger = Surger(api, recorder=None, because="Azure Preempt E1")  # type: ignore[arg-type]
    clock = Clock()
    until = clock() + SURGE_LEAD_SECONDS + 0.5
    await surger.replace_first(doomed(), until=until, clock=clock, timeout_seconds=1)
    assert len(api.patches) == 1
    assert until <= clock() < until + 1  # it waited, and not past the bound


async def test_the_wait_ends_when_the_pod_is_gone() -> None:
    api = PodsApi(selecting(deployment()), [])
    # Read before the rollout: the pod, Ready on the doomed node; then gone (deleted by its controller).
    api.list = reads([pod_object("web-rs-abc", "doomed", ready=True)], [])  # type: ignore[method-assign]
    surger = Surger(api, recorder=None, because="Azure Preempt E1")  # type: ignore[arg-type]
    clock = Clock()
    until = clock() + 20
    await surger.replace_first(doomed(), until=until, clock=clock, timeout_seconds=1)
    assert len(api.patches) == 1 and clock() < until - 15


def reads(*answers: list[dict]) -> Callable[..., Awaitable[ObjectList]]:
    """A list method that answers `answers` in turn, then the last one again."""
    queue = list(answers)

    async def list_(path: str, **_: object) -> ObjectList:
        return ObjectList(queue.pop(0) if len(queue) > 1 else queue[0], "1")

    return list_


async def test_no_surge_and_no_wait_with_less_than_the_lead_time() -> None:
    api = PodsApi(selecting(deployment()), [pod_object("web-rs-abc", "doomed", ready=True)])
    surger = Surger(api, recorder=None, because="Azure Preempt E1")  # type: ignore[arg-type]
    clock = Clock()
    await surger.replace_first(
        doomed(), until=clock() + SURGE_LEAD_SECONDS - 0.1, clock=clock, timeout_seconds=1
    )
    assert api.patches == []


async def test_a_deployment_that_cannot_surge_is_evicted_without_a_wait() -> None:
    api = PodsApi(
        selecting(deployment(strategy=rolling(0))), [pod_object("web-rs-abc", "doomed", ready=True)]
    )
    surger = Surger(api, recorder=None, because="Azure Preempt E1")  # type: ignore[arg-type]
    clock = Clock()
    until = clock() + 20
    await surger.replace_first(doomed(), until=until, clock=clock, timeout_seconds=1)
    assert api.patches == [] and clock() < until - 15
