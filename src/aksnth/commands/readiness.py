"""``aks-node-termination-handler readiness``: would these nodes drain if Azure evicted them now?

For one node (``-node``) or every node matching ``-selector`` (AKS Spot nodes by default), it reads
the nodes, the pods and the PodDisruptionBudgets (three list requests, nothing else: it never
writes) and runs the handler's own drain plan on them as if the event arrived now. It prints what
would happen to each pod and a verdict per node; ``-o json`` prints the same as one JSON document.

Exit codes, for CI pipelines: 0 every node drains within the notice (with ``-fail-on-risk``: and no
pod is at risk); 1 a node would not drain within the notice (or, with ``-fail-on-risk``, a pod is at
risk); 2 bad usage: a flag, the kubeconfig, the selector, an unknown node; 3 the cluster could not be
read: the API server is unreachable, or refused a request.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from aksnth.config import KubeSettings
from aksnth.durations import format_duration
from aksnth.errors import ConfigError, KubeError, KubeForbidden, NodeNotFound
from aksnth.flags import HelpRequested, Kind, Option, OptionValue, parse_flags
from aksnth.kube.api import KubeClient
from aksnth.kube.client import open_client
from aksnth.kube.keys import SPOT_LABEL, SPOT_VALUE
from aksnth.kube.labelselector import Selector, parse_selector
from aksnth.kube.pods import PodInfo
from aksnth.kube.readiness.assess import Scenario, assess_node
from aksnth.kube.readiness.cluster import RIGHTS, read_cluster
from aksnth.kube.readiness.placement import add_cluster_risks
from aksnth.kube.readiness.report import Assessment, render_json, render_table
from aksnth.model import DOCUMENTED_NOTICE_SECONDS, EventType

PROG: Final = "aks-node-termination-handler readiness"
DEFAULT_SELECTOR: Final = f"{SPOT_LABEL}={SPOT_VALUE}"
SPOT_SELECTOR: Final = parse_selector(DEFAULT_SELECTOR)
EXIT_DRAINS, EXIT_WOULD_NOT_DRAIN, EXIT_USAGE, EXIT_CLUSTER = 0, 1, 2, 3
_OUTPUTS: Final = ("", "wide", "json")
_G = "readiness"
OPTIONS: Final = (
    Option(name="kubeconfig", kind=Kind.STRING, default="", group=_G, usage="kubeconfig file"),
    Option(name="context", kind=Kind.STRING, default="", group=_G, usage="kubeconfig context"),
    Option(name="node", kind=Kind.STRING, default="", group=_G, usage="one node"),
    Option(name="selector", kind=Kind.STRING, default=DEFAULT_SELECTOR, group=_G, usage="node selector"),
    Option(name="l", kind=Kind.STRING, default=DEFAULT_SELECTOR, group=_G, usage="node selector"),
    Option(name="event-type", kind=Kind.STRING, default="Preempt", group=_G, usage="event type"),
    Option(name="notice", kind=Kind.DURATION, default=0.0, group=_G, usage="notice (default: the type's)"),
    Option(name="podGracePeriodSeconds", kind=Kind.INT, default=-1, group=_G, usage="as the handler's"),
    Option(name="nodeGracePeriodSeconds", kind=Kind.INT, default=120, group=_G, usage="as the handler's"),
    Option(name="disableEviction", kind=Kind.BOOL, default=False, group=_G, usage="as the handler's"),
    Option(name="o", kind=Kind.STRING, default="", group=_G, usage="output format"),
    Option(name="output", kind=Kind.STRING, default="", group=_G, usage="output format"),
    Option(name="fail-on-risk", kind=Kind.BOOL, default=False, group=_G, usage="exit 1 on any risk"),
    Option(name="v", kind=Kind.BOOL, default=False, group=_G, usage="log retries on stderr"),
)
BY_NAME: Final = {option.name: option for option in OPTIONS}
_EVENT_TYPES: Final = ", ".join(t.value for t in DOCUMENTED_NOTICE_SECONDS)

USAGE = f"""\
Usage: {PROG} [-node NAME | -selector SELECTOR] [flags]

What would happen to each pod if Azure sent a Spot eviction (Preempt, 30s notice), or the event
given by -event-type and -notice, now: evicted in time (with which grace period), blocked by which
PodDisruptionBudget, grace period cut, lost for good (no controller), emptyDir data lost, every
replica on Spot nodes, no other node for its replacement; and per node a verdict. The same drain
plan as the handler's. Read-only: it lists nodes, pods and PodDisruptionBudgets, nothing else.

Which nodes:
  -node NAME                  one node
  -selector, -l SELECTOR      nodes whose labels match, kubectl syntax (default {DEFAULT_SELECTOR})

The event and the handler's settings:
  -event-type TYPE            {_EVENT_TYPES} (default Preempt)
  -notice DURATION            its notice (default: Azure's documented minimum for the type:
                              Preempt 30s, Terminate 5m, Redeploy 10m, Reboot and Freeze 15m)
  -podGracePeriodSeconds N    as the handler's flag (default -1: each pod's own)
  -nodeGracePeriodSeconds N   as the handler's flag (default 120)
  -disableEviction            as the handler's flag: delete instead of evict (budgets bypassed)

Output and cluster:
  -o, -output FORMAT          table (default), wide (adds each risk's explanation) or json
  -fail-on-risk               exit 1 also when a pod is at risk on a node that drains
  -kubeconfig FILE            default: $KUBECONFIG (its files merged), then ~/.kube/config, then in-cluster
  -context NAME               a context of the kubeconfig (default: its current context)
  -v                          log what happens (requests retried) on stderr

Exit codes: 0 every node drains within the notice; 1 a node would not drain within the notice (or
a pod is at risk, with -fail-on-risk); 2 bad usage (flags, kubeconfig, selector, unknown node);
3 the cluster could not be read (API server unreachable, or a request refused).

Flags use Go's syntax, as the handler's: -name=value, -name value, --name=value.

examples:
  {PROG}
  {PROG} -node aks-spot-12345678-vmss000003 -o wide
  {PROG} -l agentpool=batch -event-type Terminate -notice 10m -o json
"""


class UsageError(Exception):
    """Bad flags: exit 2."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    scenario: Scenario
    node: str = ""
    selector: Selector = SPOT_SELECTOR
    selector_text: str = DEFAULT_SELECTOR
    output: str = ""  # "", "wide" or "json"
    fail_on_risk: bool = False
    #: One file (-kubeconfig), the files of KUBECONFIG (merged), or "" for in-cluster.
    kubeconfig: str | tuple[str, ...] = ""
    context: str = ""
    verbose: bool = False


def parse_request(argv: Sequence[str], env: Mapping[str, str]) -> Request:
    """The command line as a ``Request``; ``UsageError`` naming the problem, or ``HelpRequested``."""
    try:
        parsed = parse_flags(argv, OPTIONS)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if parsed.positional:
        raise UsageError(f"unexpected argument {parsed.positional[0]!r}: name a node with -node")
    given = parsed.values

    def text(name: str) -> str:
        value = given.get(name, "")
        assert isinstance(value, str)
        return value.strip()

    if "selector" in given and "l" in given:
        raise UsageError("-selector and -l are the same flag: give one")
    selector_text = (
        text("selector") if "selector" in given else text("l") if "l" in given else DEFAULT_SELECTOR
    )
    node = text("node")
    if node and ("selector" in given or "l" in given):
        raise UsageError("give -node or -selector, not both")
    try:
        selector = parse_selector(selector_text)
    except ValueError as exc:
        raise UsageError(f"-selector: {exc}") from None
    output = text("o") or text("output")
    if output not in _OUTPUTS:
        raise UsageError(f"-o: unknown output format {output!r} (use wide or json; the default is a table)")
    return Request(
        scenario=_scenario(given),
        node=node,
        selector=selector,
        selector_text=selector_text,
        output=output,
        fail_on_risk=bool(given.get("fail-on-risk", False)),
        kubeconfig=text("kubeconfig") or default_kubeconfig(env),
        context=text("context"),
        verbose=bool(given.get("v", False)),
    )


def _scenario(given: Mapping[str, OptionValue]) -> Scenario:
    def number(name: str) -> float:
        value = given.get(name, BY_NAME[name].default)
        assert isinstance(value, int | float) and not isinstance(value, bool), name
        return value

    name = str(given.get("event-type", "Preempt"))
    event_type = EventType.parse(name)
    if event_type not in DOCUMENTED_NOTICE_SECONDS:
        raise UsageError(f"-event-type: unknown event type {name!r} (use {_EVENT_TYPES})")
    notice = number("notice")
    if notice < 0:
        raise UsageError(f"-notice: must not be negative, got {format_duration(notice)}")
    pod_grace, node_grace = int(number("podGracePeriodSeconds")), int(number("nodeGracePeriodSeconds"))
    if pod_grace < -1:
        raise UsageError(f"-podGracePeriodSeconds: must be at least -1, got {pod_grace}")
    if node_grace < 1:
        raise UsageError(f"-nodeGracePeriodSeconds: must be at least 1, got {node_grace}")
    return Scenario(
        event_type=event_type,
        notice_seconds=notice if "notice" in given else DOCUMENTED_NOTICE_SECONDS[event_type],
        pod_grace_period_seconds=pod_grace,
        node_grace_period_seconds=node_grace,
        disable_eviction=bool(given.get("disableEviction", False)),
    )


def default_kubeconfig(env: Mapping[str, str]) -> str | tuple[str, ...]:
    """As kubectl looks for it: the files of $KUBECONFIG (merged when loaded, as kubectl merges them)
    when one of them exists, then ~/.kube/config; "" for in-cluster."""
    listed = tuple(name for name in env.get("KUBECONFIG", "").split(os.pathsep) if name)
    if any(Path(name).is_file() for name in listed):  # "~" unexpanded, as kubectl has it
        return listed
    home = Path(env.get("HOME", "~")).expanduser() / ".kube" / "config"
    if home.is_file():
        return str(home)
    if not env.get("KUBERNETES_SERVICE_HOST"):
        raise UsageError(
            "no kubeconfig: pass -kubeconfig, set KUBECONFIG, or create ~/.kube/config "
            "(e.g. az aks get-credentials); in a pod the in-cluster configuration is used"
        )
    return ""


async def assess(client: KubeClient, request: Request, *, now: datetime) -> Assessment:
    """Read the cluster once and assess the requested nodes."""
    state = await read_cluster(client)
    view = state.view
    if request.node:
        if request.node not in view.nodes:
            raise NodeNotFound(_unknown_node(request.node, view.nodes))
        targets = [request.node]
    else:
        targets = sorted(name for name, node in view.nodes.items() if request.selector.matches(node.labels))
    by_node: dict[str, list[PodInfo]] = {name: [] for name in targets}
    for pod in view.pods:
        if pod.node_name in by_node:
            by_node[pod.node_name].append(pod)
    nodes = tuple(
        add_cluster_risks(
            assess_node(name, by_node[name], state.budgets, scenario=request.scenario, now=now), view
        )
        for name in targets
    )
    return Assessment(
        scenario=request.scenario,
        assessed_at=now,
        nodes=nodes,
        node=request.node,
        selector="" if request.node else request.selector_text,
    )


def _unknown_node(name: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else " (kubectl get nodes lists them)"
    return f"-node: no node named {name!r} in the cluster{hint}"


async def _run(request: Request) -> Assessment:
    settings = KubeSettings(kubeconfig=request.kubeconfig, context=request.context, node_name=request.node)
    client = open_client(settings)
    try:
        return await assess(client, request, now=datetime.now(UTC))
    finally:
        await client.close()


def exit_code(assessment: Assessment, *, fail_on_risk: bool) -> int:
    if not assessment.drains_within_notice or (fail_on_risk and assessment.at_risk):
        return EXIT_WOULD_NOT_DRAIN
    return EXIT_DRAINS


def main(argv: list[str]) -> int:
    try:
        request = parse_request(argv, os.environ)
        # The outcome is the report and, on failure, one message; retries are only told with -v.
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO if request.verbose else logging.ERROR, format="%(message)s"
        )
        assessment = asyncio.run(_run(request))
    except HelpRequested:
        sys.stdout.write(USAGE)
        return EXIT_DRAINS
    except (UsageError, ConfigError, NodeNotFound) as exc:
        return _fail(str(exc), EXIT_USAGE, hint="run with --help for usage")
    except KubeForbidden as exc:
        hint = (
            "the API server does not accept the kubeconfig's credentials (expired?)"
            if exc.status == 401
            else f"grant {RIGHTS}, or use another -kubeconfig/-context"
        )
        return _fail(str(exc), EXIT_CLUSTER, hint=hint)
    except KubeError as exc:
        return _fail(
            str(exc), EXIT_CLUSTER, hint="is the cluster up, and -kubeconfig/-context the right one?"
        )
    if request.output == "json":
        sys.stdout.write(render_json(assessment))
    else:
        sys.stdout.write(render_table(assessment, wide=request.output == "wide"))
    if not assessment.nodes:
        sys.stderr.write(f"{PROG}: no node matches -selector {request.selector_text}\n")
    return exit_code(assessment, fail_on_risk=request.fail_on_risk)


def _fail(message: str, code: int, *, hint: str) -> int:
    sys.stderr.write(f"{PROG}: {' '.join(message.split())}\n{hint}\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
