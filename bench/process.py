"""A handler under measurement: any program, started from a command-line template (and run as
``testkit.process.HandlerProcess``), with its footprint read from /proc.

The template is split like a shell would split it (no shell runs it), then the placeholders are
filled in each word, so a path with spaces stays one argument. Placeholders: {imds_url},
{kubeconfig}, {node}, {resource}, {webhook_url}, {web_address}.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PLACEHOLDERS = ("imds_url", "kubeconfig", "node", "resource", "webhook_url", "web_address")
OUR_PROGRAM = Path(sys.executable).parent / "aks-node-termination-handler"
# Our handler with its defaults (the default -period of 1 s): only what the harness must point it at.
OUR_TEMPLATE = (
    f"{OUR_PROGRAM} -kubeconfig={{kubeconfig}} -node={{node}} -resource.name={{resource}} "
    "-endpoint={imds_url} -webhook.url={webhook_url} -web.address={web_address}"
)
# The same, optimized and importing only what the container image has (see bench/image_like.py).
IMAGE_LIKE_TEMPLATE = OUR_TEMPLATE.replace(str(OUR_PROGRAM), f"{sys.executable} -OO -m bench.image_like", 1)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True, kw_only=True)
class Implementation:
    name: str
    template: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    at: float  # monotonic
    rss_kib: int  # VmRSS of the process and all its descendants
    cpu_seconds: float  # utime + stime of the process and all its descendants (live ones)


def command_line(template: str, values: dict[str, str]) -> list[str]:
    """The argv of `template` with each `{placeholder}` replaced; unknown braces are left alone."""
    unknown = set(values) - set(PLACEHOLDERS)
    if unknown:
        raise ValueError(f"not placeholders: {sorted(unknown)}")
    argv = []
    for word in shlex.split(template):
        filled = word
        for name in PLACEHOLDERS:
            filled = filled.replace("{" + name + "}", values.get(name, ""))
        argv.append(filled)
    if not argv:
        raise ValueError("the handler command template is empty")
    return argv


def sample(root: int) -> Sample:
    """RSS (VmRSS of each process of `root`'s tree, summed) and CPU time so far.

    CPU time is each thread's time on a CPU from ``/proc/PID/task/TID/schedstat``, in
    nanoseconds: ``utime + stime`` of ``/proc/PID/stat`` counts 10 ms clock ticks, and an idle
    handler uses about 1.5 ms a second, so over a minute one tick more or less moved the figure by
    0.017 % of a core. A thread that ends inside the window takes its time with it; both kinds of
    handler measured here keep their threads. Without schedstat (a kernel built without it) the
    ticks are used.
    """
    rss_kib, ticks, nanoseconds = 0, 0, 0
    precise = True
    for pid in _tree(root):
        stat = _read_stat(pid)
        rss = _vm_rss_kib(pid)
        if stat is None or rss is None:
            continue  # gone meanwhile
        ticks += int(stat[11]) + int(stat[12])  # utime, stime (fields 14 and 15 of stat)
        on_cpu = _on_cpu_nanoseconds(pid) if precise else None
        if on_cpu is None:
            precise = False
        else:
            nanoseconds += on_cpu
        rss_kib += rss
    cpu_seconds = nanoseconds / 1e9 if precise else ticks / _CLOCK_TICKS
    return Sample(at=time.monotonic(), rss_kib=rss_kib, cpu_seconds=cpu_seconds)


def _on_cpu_nanoseconds(pid: int) -> int | None:
    """Time on a CPU of every live thread of ``pid`` (schedstat's first field), None without schedstat."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for tid in tids:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        except (OSError, ValueError, IndexError):
            return None
    return total


def _read_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def _vm_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def tree_rss_kib(root: int) -> int:
    """VmRSS of `root` and all its descendants, summed (processes gone meanwhile count nothing)."""
    return sum(rss for pid in _tree(root) if (rss := _vm_rss_kib(pid)) is not None)


def trees_rss_kib(roots: Iterable[int]) -> dict[int, int]:
    """:func:`tree_rss_kib` of each of `roots`, from one look at /proc for them all (a fleet has a
    hundred handlers)."""
    children = _children()
    return {
        root: sum(rss for pid in _tree(root, children) if (rss := _vm_rss_kib(pid)) is not None)
        for root in roots
    }


def _children() -> dict[int, list[int]]:
    """Parent pid → its children's pids, over every process."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read_stat(int(entry))
        if stat is not None:
            children.setdefault(int(stat[1]), []).append(int(entry))  # ppid is field 4
    return children


def _tree(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """`root` and its descendants (a template may start a wrapper that starts the real handler)."""
    if children is None:
        children = _children()
    found, frontier = [root], [root]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        found += frontier
    return found
