"""`make bench`: measure the handler (and optionally a second implementation) and print a table.

    python -m bench.run [--events 20] [--pods 30,110,250] [--idle-seconds 60]
                        [--fleet-spot 100] [--fleet-regular 15] [--fleet-pods 30]
                        [--only reaction,drain,footprint,fleet] [--candidate "CMD TEMPLATE"] [--json FILE]

Everything runs on loopback: a real kube-apiserver + etcd (the test binaries), the IMDS simulator and
a webhook receiver. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.drain import DrainCase, measure_drain
from bench.fleet import FleetCase, fleet_lab, measure_fleet
from bench.footprint import installed_size_mib, measure_footprint, measure_starts
from bench.image_like import precompile
from bench.imagesize import binary_image_compressed_mib, compressed_size_mib, uncompressed_size_mib
from bench.lab import Lab
from bench.node import NodeFootprintUnavailable, measure_node_footprint
from bench.process import IMAGE_LIKE_TEMPLATE, OUR_TEMPLATE, PLACEHOLDERS, Implementation
from bench.provenance import commit, machine
from bench.reaction import measure_reaction
from bench.readiness import measure_readiness
from bench.report import budget_verdicts, render, rows
from testkit.fleet import FleetShape
from testkit.realcluster import image_dir

log = logging.getLogger("bench")

SECTIONS = ("reaction", "drain", "footprint", "readiness", "fleet")
GRACE_VARIANT = DrainCase(pods=110, grace_seconds=5)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Reaction time, drain throughput and footprint of the handler, against the local "
        "control plane and the IMDS simulator; optionally side by side with another implementation.",
        epilog=f"Command templates are split like a shell would, then these placeholders are filled in: "
        f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}. Default template: {OUR_TEMPLATE}",
    )
    parser.add_argument("--events", type=int, default=20, help="Preempt events for the reaction figures")
    parser.add_argument(
        "--pods",
        default="30,110,250",
        help="drain cases, pods per node, comma-separated (default %(default)s)",
    )
    parser.add_argument(
        "--no-grace-variant",
        action="store_true",
        help="skip the 110-pod case whose pods take 5 s to stop",
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="footprint window (default 60)")
    parser.add_argument(
        "--no-real-node",
        action="store_true",
        help="skip the footprint of the handler's container on a real node (kubelet, containerd, the "
        "image built from docker/Dockerfile); it runs by default where `make test-images` can build",
    )
    parser.add_argument(
        "--starts",
        type=int,
        default=5,
        help="footprint: start each handler this many times for start → first IMDS poll (default 5)",
    )
    parser.add_argument(
        "--candidate-binary",
        type=Path,
        help="the second implementation's static binary: its image size is that binary alone on scratch",
    )
    parser.add_argument(
        "--readiness-interval",
        type=float,
        default=10.0,
        help="-readiness.interval of the readiness section, seconds (default 10, the least allowed)",
    )
    parser.add_argument(
        "--readiness-checks",
        type=int,
        default=6,
        help="the readiness section's window, in intervals (default 6)",
    )
    # A real Spot reclaim can take a whole pool of 100 nodes or more at once; 15 regular nodes have
    # room (250 pods each) for every pod of the pool and their own.
    parser.add_argument(
        "--fleet-spot", type=int, default=100, help="fleet: Spot nodes preempted at once (default 100)"
    )
    parser.add_argument("--fleet-regular", type=int, default=15, help="fleet: regular nodes (default 15)")
    parser.add_argument(
        "--fleet-pods",
        type=int,
        default=30,
        help="fleet: pods per node, DaemonSet pods included (default 30)",
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections to run (default: all)")
    parser.add_argument(
        "--handler", default=OUR_TEMPLATE, help="command template of the first implementation"
    )
    parser.add_argument("--name", default="ours", help="column name of the first implementation")
    parser.add_argument("--candidate", help="command template of a second implementation, measured alike")
    parser.add_argument("--candidate-name", default="candidate", help="its column name")
    parser.add_argument(
        "--image-like",
        action="store_true",
        help="second column: our handler importing only what the container image has (bench/image_like.py)",
    )
    parser.add_argument(
        "--period",
        type=float,
        default=1.0,
        help="the handlers' poll period in seconds, for the random publication offsets (default 1, ours)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random publication offsets")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the handlers' logs and the audit log")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each measurement")
    args = parser.parse_args(argv)
    if args.image_like:
        if args.candidate:
            parser.error("--image-like and --candidate both set the second implementation; choose one")
        args.candidate, args.candidate_name = IMAGE_LIKE_TEMPLATE, "image-like"
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(
            f"--only: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}"
        )
    try:
        args.cases = [DrainCase(pods=int(p)) for p in args.pods.split(",") if p.strip()]
    except ValueError:
        parser.error(f"--pods: expected pod counts like 30,110,250, got {args.pods!r}")
    if any(c.pods < 1 for c in args.cases):
        parser.error("--pods: every count must be at least 1")
    if not args.no_grace_variant and "drain" in args.sections:
        args.cases.append(GRACE_VARIANT)
    if args.events < 1 or args.idle_seconds < 5:
        parser.error("--events must be at least 1 and --idle-seconds at least 5")
    if args.readiness_interval < 10 or args.readiness_checks < 2:
        parser.error(
            "--readiness-interval must be at least 10 (as the flag) and --readiness-checks at least 2"
        )
    if args.fleet_spot < 1 or args.fleet_regular < 1 or args.fleet_pods < 6:
        parser.error("--fleet-spot and --fleet-regular must be at least 1, --fleet-pods at least 6")
    args.fleet = FleetCase(
        shape=FleetShape(
            spot_nodes=args.fleet_spot, regular_nodes=args.fleet_regular, pods_per_node=args.fleet_pods
        )
    )
    return args


async def measure(
    args: argparse.Namespace, implementations: list[Implementation], work_dir: Path
) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {impl.name: {"errors": {}} for impl in implementations}
    single = [s for s in args.sections if s != "fleet"]
    if single:
        await _measure_single_node(args, implementations, work_dir, single, results)
    if "fleet" in args.sections:
        # Its own control plane (a scheduler and the workload controllers act on every pod in it).
        for impl in implementations:
            log.info("measuring fleet of %s (%s)", impl.name, args.fleet.label)
            began = time.monotonic()
            try:
                async with fleet_lab(work_dir) as lab:
                    results[impl.name]["fleet"] = await measure_fleet(
                        lab, impl, args.fleet, period_seconds=args.period, seed=args.seed
                    )
                    _keep_audit_log(args, lab, work_dir, f"audit-fleet-{impl.name}.log")
            except Exception as exc:
                # With the traceback: a harness failure (a kubelet stand-in, a watch) names its cause.
                log.error("%s fleet failed: %s", impl.name, exc, exc_info=exc)
                results[impl.name]["errors"]["fleet"] = str(exc)
            log.info("fleet of %s took %.0f s", impl.name, time.monotonic() - began)
    return results


async def _measure_single_node(
    args: argparse.Namespace,
    implementations: list[Implementation],
    work_dir: Path,
    sections: list[str],
    results: dict[str, dict[str, Any]],
) -> None:
    async with Lab(work_dir=work_dir) as lab:
        log.info("control plane ready in %.1f s", lab.control_plane.startup_seconds or 0.0)
        for section in sections:
            for impl in implementations:
                log.info("measuring %s of %s", section, impl.name)
                began = time.monotonic()
                try:
                    if section == "reaction":
                        results[impl.name]["reaction"] = await measure_reaction(
                            lab, impl, events=args.events, period_seconds=args.period, seed=args.seed
                        )
                    elif section == "drain":
                        drained = results[impl.name].setdefault("drain", {})
                        for case in args.cases:
                            try:
                                drained[case.key] = await measure_drain(lab, impl, case)
                            except Exception as exc:
                                log.error("%s drain %s failed: %s", impl.name, case.label, exc)
                                results[impl.name]["errors"][f"drain {case.key}"] = str(exc)
                    elif section == "readiness":
                        results[impl.name]["readiness"] = await measure_readiness(
                            lab,
                            impl,
                            interval_seconds=args.readiness_interval,
                            window_seconds=args.readiness_interval * args.readiness_checks,
                        )
                    else:
                        footprint = await measure_footprint(lab, impl, idle_seconds=args.idle_seconds)
                        results[impl.name]["footprint"] = footprint
                        footprint.update(await measure_starts(lab, impl, starts=args.starts))
                        footprint.update(_image_sizes(args, first=impl is implementations[0]))
                        if impl is implementations[0]:
                            footprint["installed_mib"] = installed_size_mib()
                        if impl is implementations[0] and not args.no_real_node:
                            # The image is this build's: only the first implementation has one.
                            try:
                                footprint.update(await measure_node_footprint(idle_seconds=args.idle_seconds))
                            except NodeFootprintUnavailable as exc:
                                log.warning("real-node footprint skipped: %s", exc)
                except Exception as exc:
                    log.error("%s %s failed: %s", impl.name, section, exc)
                    results[impl.name]["errors"][section] = str(exc)
                log.info("%s of %s took %.0f s", section, impl.name, time.monotonic() - began)
        _keep_audit_log(args, lab, work_dir, "audit.log")


def _image_sizes(args: argparse.Namespace, *, first: bool) -> dict[str, float]:
    """The compressed image: ours from the archive `hack/build-test-image` wrote, when it is there;
    the candidate's from `--candidate-binary`, that binary alone on scratch."""
    if first:
        archive = image_dir() / "aksnth.tar"
        if not archive.is_file():
            return {}
        return {
            "image_compressed_mib": compressed_size_mib(archive),
            "image_layers_mib": uncompressed_size_mib(archive),
        }
    if args.candidate_binary is None:
        return {}
    binary: Path = args.candidate_binary
    return {
        "image_compressed_mib": binary_image_compressed_mib(binary, path_in_image=f"/{binary.name}"),
        "image_layers_mib": binary.stat().st_size / (1024 * 1024),
    }


def _keep_audit_log(args: argparse.Namespace, lab: Lab, work_dir: Path, name: str) -> None:
    if args.keep_logs and lab.control_plane.audit_log_path is not None:
        shutil.copy(lab.control_plane.audit_log_path, work_dir / name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("bench").setLevel(logging.INFO)
    for noisy in ("httpx", "httpx2", "testkit.controlplane", "imds_simulator"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    implementations = [Implementation(name=args.name, template=args.handler)]
    if args.candidate:
        if args.candidate_name == args.name:
            print("--candidate-name must differ from --name", file=sys.stderr)
            return 2
        implementations.append(Implementation(name=args.candidate_name, template=args.candidate))
    if IMAGE_LIKE_TEMPLATE in (args.handler, args.candidate):
        precompile()
    work_dir = Path(tempfile.mkdtemp(prefix="aksnth-bench-"))
    began = time.monotonic()
    started_at = dt.datetime.now(dt.UTC)
    try:
        results = asyncio.run(_cancel_on_sigterm(measure(args, implementations, work_dir)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"interrupted; handler logs in {work_dir}", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - began
    names = [impl.name for impl in implementations]
    table = rows(
        events=args.events,
        cases=[(c.key, c.label) for c in args.cases] if "drain" in args.sections else [],
        preempt_case="110" if any(c.key == "110" for c in args.cases) and "drain" in args.sections else None,
        readiness_interval=args.readiness_interval,
        fleet=args.fleet.label if "fleet" in args.sections else None,
    )
    table = [row for row in table if _section_selected(row.section, args.sections)]
    print(render(table, results, names))
    failed = {name: r["errors"] for name, r in results.items() if r["errors"]}
    for name, errors in failed.items():
        for section, message in errors.items():
            print(f"\n{name}, {section}: {message.splitlines()[0] if message else 'failed'}")
    print(f"\n{machine()}; {elapsed:.0f} s in all")
    if args.json:
        document = {
            "started_at": started_at.isoformat(timespec="seconds"),
            "elapsed_seconds": elapsed,
            "machine": machine(),
            "commit": commit(),
            "command": " ".join(sys.argv),
            "implementations": [{"name": i.name, "template": i.template} for i in implementations],
            "options": {
                "events": args.events,
                "pods": [c.pods for c in args.cases if not c.grace_seconds],
                "grace_variant": not args.no_grace_variant,
                "idle_seconds": args.idle_seconds,
                "fleet": {
                    "spot_nodes": args.fleet_spot,
                    "regular_nodes": args.fleet_regular,
                    "pods_per_node": args.fleet_pods,
                },
                "sections": args.sections,
                "period_seconds": args.period,
                "readiness_interval_seconds": args.readiness_interval,
                "readiness_checks": args.readiness_checks,
                "seed": args.seed,
            },
            "results": results,
            "budgets": budget_verdicts(table, results, names),
        }
        args.json.write_text(json.dumps(_finite(document), indent=2) + "\n")
    if args.keep_logs or failed:
        print(f"handler logs: {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if failed else 0


async def _cancel_on_sigterm(awaitable: Any) -> Any:
    """SIGTERM cancels the run like Ctrl-C does, so every handler and the control plane are stopped."""
    task = asyncio.ensure_future(awaitable)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    return await task


def _section_selected(title: str, sections: list[str]) -> bool:
    first_word = title.split(maxsplit=1)[0].strip(",").lower()
    wanted = {
        "reaction": "reaction",
        "drain": "drain",
        "preempt": "drain",
        "footprint": "footprint",
        "readiness": "readiness",
        "fleet": "fleet",
    }
    return wanted.get(first_word, "") in sections


def _finite(value: Any) -> Any:
    """NaN/inf are not JSON: write null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    raise SystemExit(main())
