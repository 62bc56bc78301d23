"""A kubelet stand-in for the kubelet-less test control plane, in the spirit of kwok's pod stages.

It watches the pods bound to one node (or to any node) and
- marks each new pod Running with Ready=True through the `pods/status` subresource;
- finishes a graceful deletion (a pod with a deletionTimestamp, after an eviction or a delete) with a
  delete of grace period 0, after `deletion_delay_seconds`, or the pod's own grace period times
  `grace_period_scale` when that is set.

It survives API server restarts (the watch is re-established and the state re-read).

    async with FakeKubelet(kube, node=node.name) as kubelet:
        ...
    # kubelet.deleted: the "namespace/name" of each pod whose deletion it finished
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from types import TracebackType
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.operators import not_equal
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

log = logging.getLogger(__name__)

_CALL_TIMEOUT_SECONDS = 10.0
_RETRY_FIRST_SECONDS = 0.05
_RETRY_MAX_SECONDS = 1.0


class FakeKubelet:
    def __init__(
        self,
        kube: AsyncClient,
        *,
        node: str | None = None,
        deletion_delay_seconds: float = 0.0,
        grace_period_scale: float | None = None,
        mark_running: bool = True,
    ) -> None:
        """`node=None` serves every pod bound to any node. `grace_period_scale` (e.g. 0.01) replaces
        the fixed delay by the pod's deletion grace period times the scale. `mark_running=False` leaves
        new pods Pending (for tests of Pending pods)."""
        self._kube = kube
        self.node = node
        self.deletion_delay_seconds = deletion_delay_seconds
        self.grace_period_scale = grace_period_scale
        self.mark_running = mark_running
        self.deleted: list[str] = []
        self.started: list[str] = []
        self._watcher: asyncio.Task[None] | None = None
        self._pending_deletions: dict[str, asyncio.Task[None]] = {}
        self._failure: BaseException | None = None
        self._deletions_begun: set[str | None] = set()

    async def __aenter__(self) -> FakeKubelet:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def start(self) -> None:
        if self._watcher is not None:
            raise RuntimeError("FakeKubelet already started")
        name = f"fake-kubelet:{self.node or '*'}"
        self._watcher = asyncio.create_task(self._watch_forever(), name=name)

    async def stop(self) -> None:
        """Cancels the watch and every deletion still waiting, and waits for them to end. Raises
        whatever broke the stand-in (an unexpected error must not let a test pass silently)."""
        tasks = [t for t in (self._watcher, *self._pending_deletions.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watcher = None
        self._pending_deletions.clear()
        if self._failure is not None:
            raise RuntimeError(f"FakeKubelet for {self.node or 'all nodes'} failed") from self._failure

    # -- the watch loop -----------------------------------------------------------------------------

    async def _watch_forever(self) -> None:
        fields = {"spec.nodeName": self.node} if self.node else {"spec.nodeName": not_equal("")}
        delay = _RETRY_FIRST_SECONDS
        while True:
            try:
                # A watch without resourceVersion begins with an ADDED event for every existing pod,
                # so after a reconnect nothing that changed meanwhile is missed.
                async for event, pod in self._kube.watch(Pod, namespace="*", fields=fields):
                    delay = _RETRY_FIRST_SECONDS
                    if event != "DELETED":
                        await self._handle(pod)
            except (ApiError, httpx2.HTTPError) as exc:
                log.debug("fake kubelet watch interrupted (%s); retrying in %.2f s", exc, delay)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failure = exc
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_SECONDS)

    async def _handle(self, pod: Pod) -> None:
        meta, status = pod.metadata, pod.status
        if meta is None or meta.name is None or meta.namespace is None:
            return
        key = f"{meta.namespace}/{meta.name}"
        if meta.deletionTimestamp is not None:
            if meta.uid not in self._deletions_begun:
                self._deletions_begun.add(meta.uid)
                self._pending_deletions[key] = asyncio.create_task(
                    self._finish_deletion(pod, key), name=f"fake-kubelet-delete:{key}"
                )
            return
        phase = status.phase if status is not None else None
        if self.mark_running and phase in (None, "Pending"):
            await self._mark_running(pod, key)

    async def _mark_running(self, pod: Pod, key: str) -> None:
        assert pod.metadata is not None and pod.spec is not None
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            {"type": kind, "status": "True", "lastTransitionTime": now}
            for kind in (
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            )
        ]
        containers = [
            {
                "name": c.name,
                "image": c.image,
                "imageID": f"{c.image}@sha256:{'0' * 64}",
                "containerID": f"containerd://{(pod.metadata.uid or '').replace('-', '')}{i}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for i, c in enumerate(pod.spec.containers)
        ]
        status: dict[str, Any] = {
            "phase": "Running",
            "conditions": conditions,
            "containerStatuses": containers,
            "startTime": now,
            "hostIP": "10.224.0.4",
            "podIP": "10.244.0.10",
        }
        try:
            async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
                await self._kube.patch(
                    Pod.Status,
                    pod.metadata.name,
                    {"status": status},
                    namespace=pod.metadata.namespace,
                    patch_type=PatchType.MERGE,
                )
        except ApiError as exc:
            if exc.status.code in (404, 409):  # gone meanwhile; a later event brings the news
                return
            raise
        self.started.append(key)

    async def _finish_deletion(self, pod: Pod, key: str) -> None:
        assert pod.metadata is not None and pod.metadata.name is not None
        try:
            await asyncio.sleep(self._deletion_delay(pod))
            delay = _RETRY_FIRST_SECONDS
            while True:
                try:
                    async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
                        if await self._delete_now(pod):
                            self.deleted.append(key)
                    break
                except (ApiError, httpx2.HTTPError, TimeoutError) as exc:
                    if isinstance(exc, ApiError) and exc.status.code == 404:
                        break  # already gone
                    log.debug("fake kubelet could not delete %s (%s); retrying", key, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failure = exc
            raise
        finally:
            if self._pending_deletions.get(key) is asyncio.current_task():
                del self._pending_deletions[key]

    async def _delete_now(self, pod: Pod) -> bool:
        assert pod.metadata is not None and pod.metadata.name is not None
        name, namespace = pod.metadata.name, pod.metadata.namespace
        # Never delete a same-named successor (lightkube's delete takes no uid precondition; no
        # controller here recreates pods, so checking first is enough).
        current = await self._kube.get(Pod, name, namespace=namespace)
        if current.metadata is None or current.metadata.uid != pod.metadata.uid:
            return False
        await self._kube.delete(Pod, name, namespace=namespace, grace_period=0)
        return True

    def _deletion_delay(self, pod: Pod) -> float:
        if self.grace_period_scale is None:
            return self.deletion_delay_seconds
        assert pod.metadata is not None and pod.spec is not None
        grace = pod.metadata.deletionGracePeriodSeconds
        if grace is None:
            grace = pod.spec.terminationGracePeriodSeconds or 0
        return grace * self.grace_period_scale
