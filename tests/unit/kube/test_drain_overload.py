"""The drain against a fake API server that sheds every eviction for half a second (429 without a
budget, as API Priority and Fairness answers): the drain pauses and halves what it sends instead of
retrying every pod at once, round after round, then evicts every pod."""

from __future__ import annotations

import asyncio
from typing import Any

from aksnth.errors import EvictionBlocked
from aksnth.kube.api import JsonObject, ObjectList
from aksnth.kube.drain import drain_node
from aksnth.kube.drainplan import DrainOutcome

PODS = 20
SHED_SECONDS = 0.5
RETRY_AFTER_SECONDS = 0.2


class SheddingApi:
    """Just enough of the Kubernetes API client for a drain: the node's pods, and evictions that are
    refused for load until ``shed_until`` (loop time), accepted after (the pod is then gone)."""

    def __init__(self, pods: int, *, shed_until: float) -> None:
        self.pods = {f"p{i}": _pod(f"p{i}") for i in range(pods)}
        self.shed_until = shed_until
        self.refused = 0
        self.accepted = 0

    async def create(self, path: str, eviction: JsonObject) -> None:
        name = eviction["metadata"]["name"]
        await asyncio.sleep(0)  # a request takes a turn of the loop, as a real one would
        if asyncio.get_running_loop().time() < self.shed_until:
            self.refused += 1
            raise EvictionBlocked(
                "Too many requests, please try again later.", retry_after_seconds=RETRY_AFTER_SECONDS
            )
        self.accepted += 1
        self.pods.pop(name, None)

    async def list(self, path: str, **_: Any) -> ObjectList:
        return ObjectList(list(self.pods.values()))


def _pod(name: str) -> JsonObject:
    return {
        "metadata": {"name": name, "namespace": "apps", "uid": f"uid-{name}"},
        "spec": {"nodeName": "n", "containers": [{"name": "app", "image": "x"}]},
        "status": {"phase": "Running"},
    }


async def test_evictions_shed_for_load_pause_and_shrink_instead_of_storming():
    loop = asyncio.get_running_loop()
    api = SheddingApi(PODS, shed_until=loop.time() + SHED_SECONDS)

    result = await drain_node(api, "n", deadline=loop.time() + 30, last_resort=True)  # type: ignore[arg-type]

    assert result.result is DrainOutcome.DRAINED, result.summary()
    assert api.accepted == PODS and not api.pods
    # Retrying every refused eviction at once would send thousands within the half second; pausing
    # for the Retry-After and halving what is in flight keeps it to about three rounds.
    assert PODS <= api.refused <= 3 * PODS, api.refused
    assert result.stopped == () and result.pdb_blocked_retries == 0  # load is not a budget's refusal
