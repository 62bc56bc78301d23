"""`make demo DEMO_ARGS=--real` as a newcomer runs it: `python -m demo --real`, as a process, with a
real cluster of its own (not the session's)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from testkit.realcluster import RealCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
_FOLDERS = re.compile(r"/dev/shm/aksnth-(?:controlplane|realcluster)-\w+")


def test_real_demo_shows_a_drain_with_sigterm_and_replacements_then_removes_everything(
    real_cluster: RealCluster,
) -> None:
    """The real demo exits 0 after a timeline in which the Spot node is cordoned, its containers get
    SIGTERM, replacements become Ready on the other node, the node is drained and the event is
    approved; its folders are gone afterwards and no process of it is left. (`real_cluster` only
    makes the test skip, with the same message, where real nodes cannot run.)"""
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--real"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for label in ("cordoned", "SIGTERM", "replacement", "node drained", "event approved"):
        assert re.search(rf"^\d\d:\d\d:\d\d\.\d{{3}} +\+\d+\.\d{{3}}s  {label}", output, re.M), (
            label,
            output,
        )
    assert "did not happen" not in output, output
    folders = set(_FOLDERS.findall(output))
    assert folders, output
    for folder in folders:
        assert not Path(folder).exists(), folder
    leftovers = subprocess.run(
        ["pgrep", "-af", "|".join(folders)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == "", leftovers.stdout
