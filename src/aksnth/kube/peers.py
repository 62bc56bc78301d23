"""The other nodes under the same Azure events: wait until they are cordoned before evicting.

Azure reclaims Spot capacity in bulk: every VM of a scale set may get its Preempt in the same second,
and each VM's Scheduled Events document lists the others'. Their handlers see it up to one poll period
apart, so without a wait the first handler's evicted pods would be rescheduled onto nodes whose own
handler has not cordoned them yet, and be evicted again moments later (or be lost with the VM). One
list and one watch of the nodes not yet cordoned, bounded in time; a failure only ends the wait early,
the drain goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final

import httpx2

from aksnth.errors import KubeError
from aksnth.kube.api import NODES, ApiError, KubeClient, UnreadableAnswer, child
from aksnth.kube.client import api_call, translate

log = logging.getLogger(__name__)

ResourceOf = Callable[[str], str | None]  # providerID -> Azure resource name, None if not an Azure VM


#: A field selector of nodes not cordoned: the list and the watch see only those, and a node that
#: gets cordoned leaves the watch as a DELETED event.
SCHEDULABLE: Final[Mapping[str, str]] = {"spec.unschedulable": "false"}


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerWait:
    waited_for: tuple[str, ...] = ()  # the nodes of the resources that were still schedulable
    schedulable: tuple[str, ...]  # those still schedulable when the wait ended
    seconds: float

    @property
    def complete(self) -> bool:
        return not self.schedulable


async def wait_peers_cordoned(
    client: KubeClient,
    resources: Collection[str],
    *,
    resource_of: ResourceOf,
    until: float,
    labels: Mapping[str, str] | None = None,
) -> PeerWait:
    """Until every node whose VM is one of ``resources`` is unschedulable (or gone), or ``until``
    (loop time). ``labels`` narrows the nodes looked at (e.g. the same node pool)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    wanted = {resource.lower() for resource in resources}
    selector = dict(labels) if labels else None
    try:
        # Only the nodes still schedulable: when a whole pool goes, every handler asks, and each node
        # it is sent costs it and the API server their CPU at the moment the others react.
        async with api_call("list nodes", timeout_seconds=max(until - started, 0.1)):
            listed = await client.list(NODES, labels=selector, fields=SCHEDULABLE)
    except KubeError as exc:
        log.warning("cannot list the other nodes under the event (evicting without waiting): %s", exc)
        return PeerWait(schedulable=(), seconds=loop.time() - started)
    pending = set()
    for node in listed.items:
        resource = resource_of(child(node, "spec").get("providerID") or "")
        name = child(node, "metadata").get("name")
        if resource is not None and resource.lower() in wanted and name:
            pending.add(name)
    waiting = tuple(sorted(pending))
    if pending:
        await _watch_until_cordoned(client, pending, selector, listed.resource_version, until=until)
    return PeerWait(waited_for=waiting, schedulable=tuple(sorted(pending)), seconds=loop.time() - started)


async def _watch_until_cordoned(
    client: KubeClient,
    pending: set[str],
    selector: Mapping[str, str] | None,
    version: str,
    *,
    until: float,
) -> None:
    """Remove nodes from ``pending`` as they become unschedulable or are deleted; ends at ``until``."""
    try:
        # aclosing: leaving the loop early closes the watch's connection now, not when collected.
        watch = client.watch(NODES, labels=selector, fields=SCHEDULABLE, resource_version=version)
        async with asyncio.timeout_at(until), contextlib.aclosing(watch) as changes:
            async for kind, node in changes:
                name = child(node, "metadata").get("name")
                if name in pending and (kind == "DELETED" or child(node, "spec").get("unschedulable")):
                    pending.discard(name)
                if not pending:
                    return
    except TimeoutError:
        return
    except (ApiError, UnreadableAnswer, httpx2.HTTPError) as exc:
        log.warning(
            "watching the other nodes under the event failed (evicting without waiting longer): %s",
            translate(exc, "watch nodes"),
        )
