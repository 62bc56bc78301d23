"""Where a benchmark's figures come from: the commit measured and the machine, for its result JSON."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def commit() -> str:
    """The commit measured, with "+dirty" when the work tree differs from it ("" outside git)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty else "")


def machine() -> str:
    """The architecture, the CPUs this process may use and the Python that ran the bench."""
    cpus = len(os.sched_getaffinity(0))
    return f"{platform.machine()}, {cpus} CPUs, Python {platform.python_version()}"
