"""Requests lost while a Spot node goes, on real kubelets: ours beside the Go version.

    python -m bench.zero_downtime [--handlers ours,go] [--shapes a,b,c] [--runs 1] [--cap-seconds 120]
                                  [--ours-args ARGS] [--json FILE]

The scenario is `testkit.nodeloss`: a web Deployment (readiness probe, preStop delay, graceful
shutdown) behind a Service, requests from the other node through its real kube-proxy, a Preempt for
the serving node, the VM gone when the event starts. Shapes: (a) two replicas, one per node; (b) one
replica with a PodDisruptionBudget of minAvailable 1; (c) one replica without a budget. Each handler
is installed by helm with the seed's Slack values (the receiver in the cluster's network) plus
`-taint.node=true`:

- *ours*: the image of `hack/build-test-image`, with the chart's `surgeDeployments=true` (unless
  `--ours-values` says otherwise) and the flags' defaults (`-taint.toBeDeleted`);
- *go*: the Go project's static binary in an image FROM scratch (`hack/build-go-image`, which this
  module runs when its archive is missing), with the chart's `goImage=true`.

Figures per run: failed requests of all sent (about 40 a second), the longest time without a
successful answer, each SIGTERM and the VM's loss after the event's publication, and whether the
Service answered again within `--cap-seconds` of the VM's loss (the Go version's shape (b) does not:
its eviction is refused until the node is declared lost and the 300 s NoExecute toleration ends).
Needs what the real-node tests need (`make test-images`, root).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube import AsyncClient, KubeConfig

from bench.provenance import commit, machine
from testkit.binaries import REPO_ROOT
from testkit.nodeloss import DEFAULT_CAP_SECONDS, NodeLoss, Shape, measure_node_loss
from testkit.realcluster import HANDLER_IMAGE, RealCluster, image_dir, missing_prerequisites
from testkit.scenario import (
    SLACK_PATH,
    Release,
    released,
    restore_node,
    slack_values,
    wait_handlers_ready,
)

log = logging.getLogger("bench.zero_downtime")

GO_IMAGE_SCRIPT = REPO_ROOT / "hack" / "build-go-image"
GO_ARCHIVE = "aksnth-go.tar"


@dataclass(frozen=True)
class Candidate:
    name: str
    image: str
    values: dict[str, Any]  # chart values beyond the seed's


def go_image() -> str:
    """Builds the Go version's image when its archive is missing; its name (from the script's stamp)."""
    subprocess.run([str(GO_IMAGE_SCRIPT)], check=True, timeout=1800)
    stamp = (image_dir() / "aksnth-go.inputs").read_text().split()[0]  # module@version
    return f"localhost/aks-node-termination-handler-go:{stamp.rsplit('@', 1)[1]}"


def candidates(names: list[str], ours_values: dict[str, Any]) -> list[Candidate]:
    found = []
    for name in names:
        if name == "ours":
            found.append(Candidate("ours", HANDLER_IMAGE, ours_values))
        elif name == "go":
            found.append(Candidate("go", go_image(), {"goImage": True}))
        else:
            raise SystemExit(f"unknown handler {name!r}: ours or go")
    return found


@contextlib.asynccontextmanager
async def admin(cluster: RealCluster) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(KubeConfig.from_file(cluster.kubeconfig_path))
    try:
        yield client
    finally:
        await client.close()


async def measure(
    cluster: RealCluster, candidate: Candidate, shape: Shape, *, cap_seconds: float
) -> NodeLoss:
    async with admin(cluster) as kube:
        with cluster.receiver() as slack:
            values = {**slack_values(slack.url(SLACK_PATH), "-taint.node=true"), **candidate.values}
            release = Release(cluster, values=values, extra=["--set", f"image={candidate.image}"])
            async with released(release, kube):
                await wait_handlers_ready(kube, [n.name for n in cluster.nodes], image=candidate.image)
                try:
                    return await measure_node_loss(cluster, kube, shape, cap_seconds=cap_seconds)
                finally:
                    for node in cluster.nodes:
                        await restore_node(kube, node.name)


def row(candidate: str, loss: NodeLoss) -> dict[str, Any]:
    report = loss.traffic
    return {
        "handler": candidate,
        "shape": loss.shape.value,
        "failed": len(report.failed),
        "requests": report.requests,
        "longest_gap_seconds": round(report.longest_gap_seconds, 2),
        "sigterms_after_event_seconds": sorted(
            round(t - loss.published_at, 1) for t in loss.sigterms.values()
        ),
        "vm_gone_after_event_seconds": round(loss.started_at - loss.published_at, 1),
        "recovered": loss.recovered,
        # The first failures with their causes (the error, where conntrack sent the connection).
        "first_failures": [
            {"after_event_seconds": round(a.started - loss.published_at, 2), "detail": a.detail}
            for a in report.failed[:10]
        ],
        "seconds_without_ready_endpoint": round(
            sum(end - start for start, end in loss.without_ready_endpoint), 2
        ),
    }


def render(rows: list[dict[str, Any]], cap_seconds: float) -> str:
    lines = [
        "| handler | shape | failed / requests | longest gap | SIGTERM after the event | VM gone | "
        "answering again |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        shape = Shape(r["shape"]).title
        terms = ", ".join(f"+{t:g} s" for t in r["sigterms_after_event_seconds"]) or "never"
        again = "yes" if r["recovered"] else f"no, within {cap_seconds:g} s of the VM's loss"
        gone = r["vm_gone_after_event_seconds"]
        lines.append(
            f"| {r['handler']} | {shape} | {r['failed']} / {r['requests']} | "
            f"{r['longest_gap_seconds']:.2f} s | {terms} | +{gone:g} s | {again} |"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    chosen = candidates(args.handlers.split(","), json.loads(args.ours_values))
    shapes = [Shape(s) for s in args.shapes.split(",")]
    rows = []
    with RealCluster() as cluster:
        if any(c.name == "go" for c in chosen):
            for node in cluster.nodes:
                node.import_image(image_dir() / GO_ARCHIVE, platform="linux/amd64")
        for _ in range(args.runs):
            for shape in shapes:
                for candidate in chosen:
                    log.info("%s, shape %s", candidate.name, shape.title)
                    loss = await measure(cluster, candidate, shape, cap_seconds=args.cap_seconds)
                    log.info("%s: %s", candidate.name, loss.line())
                    rows.append(row(candidate.name, loss))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.zero_downtime", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--handlers", default="ours,go", help="comma-separated: ours, go (default %(default)s)"
    )
    parser.add_argument("--shapes", default="a,b", help="comma-separated: a, b, c (default %(default)s)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each shape and handler (default 1)")
    parser.add_argument(
        "--cap-seconds",
        type=float,
        default=DEFAULT_CAP_SECONDS,
        help="how long after the VM's loss to wait for the Service to answer again (default %(default)g)",
    )
    parser.add_argument(
        "--ours-values",
        default='{"surgeDeployments": true}',
        help="chart values of ours beyond the seed's, as JSON (default %(default)s; '{}' for the chart's "
        "defaults)",
    )
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per API request otherwise
    missing = missing_prerequisites()
    if missing:
        print("bench.zero_downtime needs " + "; ".join(missing), file=sys.stderr)
        return 2
    started_at = dt.datetime.now(dt.UTC)
    rows = asyncio.run(run(args))
    print(render(rows, args.cap_seconds))
    if args.json:
        document = {
            "started_at": started_at.isoformat(timespec="seconds"),
            "machine": machine(),
            "commit": commit(),
            "command": " ".join(sys.argv),
            "rows": rows,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
