"""Handlers that break the safety promises on purpose, to prove that `testkit.safety` catches
them, and one that keeps them, to prove that it does not cry wolf. Each is a real process, against the
real API server (as the handler's ServiceAccount) and the IMDS simulator:

    python -m testkit.misbehaving MODE --kubeconfig K --node N --vm VM --endpoint URL

It polls the Scheduled Events endpoint until an event lists `--vm`, does what MODE says, and exits.
`MisbehavingHandler` starts one from a test.

- `delete-at-once`: deletes every pod of its node that must go, with the pod's own grace period, the
  moment the event appears (breaks (a): no budget refused them; (b): long before their last chance);
- `kill-at-once`: the same with gracePeriodSeconds=0 (breaks (d): no SIGTERM);
- `approve-at-once`: sends StartRequests the moment the event appears, moves nothing (breaks (c), and
  (d) for the pods the early start catches);
- `ignore`: does nothing (breaks (d): its pods are still there at the deadline);
- `evict-late`: waits until 2 s before the deadline, then evicts with the pods' own grace period
  (breaks (d): the grace period ends after the deadline);
- `approve-own-node`: evicts its node's pods, waits until its own node is empty and approves, without
  looking at the other nodes the event lists (breaks (c) while they still drain);
- `keep-promises`: evicts with the grace period cut to fit, asks again while a budget refuses, stops a
  refused pod at its last chance (deadline - grace - 1.5 s) with that grace, and with `--approve`
  approves once every node whose VM the event lists is empty.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lightkube import ApiError, Client, KubeConfig
from lightkube.models.meta_v1 import DeleteOptions, ObjectMeta
from lightkube.resources.core_v1 import Node, Pod

from aksnth.azure.documents import parse_not_before
from aksnth.azure.resource_name import ProviderIdError, resource_name_from_provider_id
from aksnth.kube.drainplan import GRACE_MARGIN_SECONDS, LAST_RESORT_LEAD_SECONDS
from aksnth.kube.keys import MIRROR_POD_ANNOTATION
from testkit.process import HandlerProcess

MODES = (
    "delete-at-once",
    "kill-at-once",
    "approve-at-once",
    "ignore",
    "evict-late",
    "approve-own-node",
    "keep-promises",
)
POLL_SECONDS = 0.2
RETRY_SECONDS = 0.5
#: A Started event's deadline when it comes without NotBefore (as aksnth.policy assumes).
STARTED_NOTICE_SECONDS = 30.0
EVICT_LATE_SECONDS = 2.0
_TIMEOUT_SECONDS = 10.0

log = logging.getLogger("misbehaving")


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    resources: tuple[str, ...]
    deadline: float  # wall clock


class Imds:
    def __init__(self, url: str) -> None:
        self.url = url
        # No proxy: the simulator is on loopback.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, data: bytes | None = None) -> Any:
        request = urllib.request.Request(self.url, data=data, headers={"Metadata": "true"})
        with self._opener.open(request, timeout=_TIMEOUT_SECONDS) as response:
            body = response.read()
        return json.loads(body) if body.strip() else None

    def wait_event(self, vm: str) -> Event:
        while True:
            for entry in self._call()["Events"]:
                if vm.lower() in (r.lower() for r in entry["Resources"]):
                    not_before = parse_not_before(entry.get("NotBefore", ""))
                    deadline = not_before.timestamp() if not_before else time.time() + STARTED_NOTICE_SECONDS
                    return Event(entry["EventId"], tuple(entry["Resources"]), deadline)
            time.sleep(POLL_SECONDS)

    def approve(self, event: Event) -> None:
        self._call(json.dumps({"StartRequests": [{"EventId": event.event_id}]}).encode())
        log.info("approved %s", event.event_id)


def must_go(pod: Pod) -> bool:
    meta = pod.metadata
    assert meta is not None
    owners = meta.ownerReferences or []
    return (
        MIRROR_POD_ANNOTATION not in (meta.annotations or {})
        and not any(o.kind == "DaemonSet" for o in owners)
        and meta.deletionTimestamp is None
    )


def pods_to_drain(kube: Client, node: str, *, terminating: bool = False) -> list[Pod]:
    """The pods of `node` that must go (with `terminating`, those already deleting count too)."""
    found = []
    for pod in kube.list(Pod, namespace="*", fields={"spec.nodeName": node}):
        meta = pod.metadata
        assert meta is not None
        if must_go(pod) or (terminating and meta.deletionTimestamp is not None and _regular(pod)):
            found.append(pod)
    return found


def _regular(pod: Pod) -> bool:
    meta = pod.metadata
    assert meta is not None
    owners = meta.ownerReferences or []
    return MIRROR_POD_ANNOTATION not in (meta.annotations or {}) and not any(
        o.kind == "DaemonSet" for o in owners
    )


def _names(pod: Pod) -> tuple[str, str]:
    meta = pod.metadata
    assert meta is not None and meta.name is not None and meta.namespace is not None
    return meta.name, meta.namespace


def own_grace(pod: Pod) -> int:
    return (
        pod.spec.terminationGracePeriodSeconds if pod.spec and pod.spec.terminationGracePeriodSeconds else 30
    )


def fitted_grace(pod: Pod, deadline: float) -> int:
    """The pod's own grace period, cut to end a second before the deadline, never below 1 s."""
    return max(min(own_grace(pod), math.floor(deadline - time.time()) - GRACE_MARGIN_SECONDS), 1)


def delete(kube: Client, pod: Pod, grace: int | None) -> None:
    name, namespace = _names(pod)
    kube.delete(Pod, name, namespace=namespace, grace_period=grace)
    log.info("deleted %s/%s (grace %s)", namespace, name, grace)


ACCEPTED, BUDGET, REFUSED = "accepted", "refused by a budget", "refused"


def evict(kube: Client, pod: Pod, grace: int | None) -> str:
    """ACCEPTED (or the pod is gone), BUDGET when a disruption budget refused it, REFUSED otherwise."""
    name, namespace = _names(pod)
    eviction = Pod.Eviction(
        metadata=ObjectMeta(name=name, namespace=namespace),
        deleteOptions=DeleteOptions(gracePeriodSeconds=grace),
    )
    try:
        kube.create(eviction, name=name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return ACCEPTED
        if exc.status.code == 429:
            return BUDGET if "disruption budget" in (exc.status.message or "").lower() else REFUSED
        raise
    log.info("evicted %s/%s (grace %s)", namespace, name, grace)
    return ACCEPTED


def wait_empty(kube: Client, nodes: list[str]) -> None:
    while any(pods_to_drain(kube, node, terminating=True) for node in nodes):
        time.sleep(RETRY_SECONDS)


def listed_nodes(kube: Client, event: Event) -> list[str]:
    """The nodes of the cluster whose VM the event lists."""
    listed = {r.lower() for r in event.resources}
    nodes = []
    for node in kube.list(Node):
        try:
            vm = resource_name_from_provider_id(node.spec.providerID or "") if node.spec else ""
        except ProviderIdError:
            continue
        if vm.lower() in listed and node.metadata and node.metadata.name:
            nodes.append(node.metadata.name)
    return nodes


# --- the modes ------------------------------------------------------------------------------------


def delete_at_once(kube: Client, imds: Imds, event: Event, args: argparse.Namespace) -> None:
    for pod in pods_to_drain(kube, args.node):
        delete(kube, pod, None)


def kill_at_once(kube: Client, imds: Imds, event: Event, args: argparse.Namespace) -> None:
    for pod in pods_to_drain(kube, args.node):
        delete(kube, pod, 0)


def approve_at_once(kube: Client, imds: Imds, event: Event, args: argparse.Namespace) -> None:
    imds.approve(event)


def ignore(kube: Client, imds: Imds, event: Event, args: argparse.Namespace) -> None:
    log.info("ignoring %s", event.event_id)


def evict_late(kube: Client, imds: Imds, event: Event, args: argparse.Namespace) -> None:
    while time.time() < event.deadline - EVICT_LATE_SECONDS:
        time.sleep(POLL_SECONDS)
    for pod in pods_to_drain(kube, args.node):
        evict(kube, pod, own_grace(pod))


def approve_own_node(kube: Client, imds: Imds, event: Event, args: argparse.Namespace) -> None:
    while pods := pods_to_drain(kube, args.node):
        for pod in pods:
            evict(kube, pod, fitted_grace(pod, event.deadline))
        time.sleep(RETRY_SECONDS)
    wait_empty(kube, [args.node])
    imds.approve(event)


def keep_promises(kube: Client, imds: Imds, event: Event, args: argparse.Namespace) -> None:
    while pods := pods_to_drain(kube, args.node):
        for pod in pods:
            grace = fitted_grace(pod, event.deadline)
            if evict(kube, pod, grace) != BUDGET:
                continue
            # The budget is honoured until the pod's last chance, then the pod is stopped with the
            # grace period it can still have (the refusal just now is its latest answer).
            last_chance = event.deadline - grace - GRACE_MARGIN_SECONDS - LAST_RESORT_LEAD_SECONDS
            if time.time() >= last_chance:
                delete(kube, pod, grace)
        time.sleep(RETRY_SECONDS)
    if args.approve:
        wait_empty(kube, listed_nodes(kube, event))
        imds.approve(event)


ACTIONS: dict[str, Callable[[Client, Imds, Event, argparse.Namespace], None]] = {
    "delete-at-once": delete_at_once,
    "kill-at-once": kill_at_once,
    "approve-at-once": approve_at_once,
    "ignore": ignore,
    "evict-late": evict_late,
    "approve-own-node": approve_own_node,
    "keep-promises": keep_promises,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.misbehaving")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--vm", required=True, help="this node's VM name, as IMDS lists it in Resources")
    parser.add_argument("--endpoint", required=True, help="the Scheduled Events URL")
    parser.add_argument(
        "--approve", action="store_true", help="keep-promises: approve once every listed node is empty"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    kube = Client(KubeConfig.from_file(args.kubeconfig), field_manager="misbehaving-handler")
    imds = Imds(args.endpoint)
    log.info("%s on node %s (VM %s), polling %s", args.mode, args.node, args.vm, args.endpoint)
    event = imds.wait_event(args.vm)
    log.info("event %s, deadline %s", event.event_id, datetime.fromtimestamp(event.deadline, tz=UTC))
    ACTIONS[args.mode](kube, imds, event, args)
    log.info("done")
    return 0


# --- starting one from a test ----------------------------------------------------------------------


class MisbehavingHandler(HandlerProcess):
    """One process of this module. Its IMDS URL carries `&handler=<tag>`, so that the simulator's
    record tells its polls apart (`tag`)."""

    def __init__(
        self,
        mode: str,
        *,
        kubeconfig: Path,
        node: str,
        vm: str,
        endpoint: str,
        log_path: Path,
        approve: bool = False,
    ) -> None:
        self.tag = node
        argv = [
            sys.executable,
            "-m",
            "testkit.misbehaving",
            mode,
            f"--kubeconfig={kubeconfig}",
            f"--node={node}",
            f"--vm={vm}",
            f"--endpoint={endpoint}&handler={self.tag}",
            *(["--approve"] if approve else []),
        ]
        super().__init__(argv, log_path=log_path)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
