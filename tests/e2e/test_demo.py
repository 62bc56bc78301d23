"""`make demo` as a newcomer runs it: `python -m demo` from the repository root, as a process.

It starts its own control plane (not the session's), so it is run once with the smallest useful
scene; the second test interrupts it like Ctrl-C in a terminal. Both check that nothing it started
outlives it: no process refers to its folders, and the folders are gone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.controlplane

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-m", "demo", "--pods", "10"]
_RUN_TIMEOUT_SECONDS = 120
# "13:41:42.310   +0.896s  cordoned  ..." : wall clock, offset from the publication, label
_TIMELINE_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} +([+-]\d+\.\d{3})s  (\S.*?)(?: {2,}|$)")
_FOLDERS = re.compile(r"(?:/[\w.-]+)*/aksnth-(?:controlplane|demo)-\w+")  # its two temporary folders


def _timeline(output: str) -> list[tuple[float, str]]:
    return [
        (float(match.group(1)), match.group(2).strip())
        for line in output.splitlines()
        if (match := _TIMELINE_LINE.match(line))
    ]


def _folders(output: str) -> set[str]:
    """The demo's own folders (control plane, work dir), from the paths it prints."""
    found = set(_FOLDERS.findall(output))
    assert len(found) == 2, f"expected the paths of its two temporary folders in its output:\n{output}"
    return found


def _processes_referring_to(folders: set[str]) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if any(folder in command for folder in folders):
            found.append(f"{entry.name}: {command[:200]}")
    return found


def _assert_cleaned_up(output: str) -> None:
    folders = _folders(output)
    assert _processes_referring_to(folders) == []
    assert [f for f in folders if Path(f).exists()] == []


def test_demo_shows_the_preempt_response_and_cleans_up() -> None:
    completed = subprocess.run(
        DEMO,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=_RUN_TIMEOUT_SECONDS,
        start_new_session=True,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output

    timeline = _timeline(completed.stdout)
    labels = [label for _, label in timeline]
    for step in (
        "event published",
        "event seen",
        "notification received",
        "cordoned",
        "evicted 8/8",
        "node drained",
        "event approved",
        "event started",
    ):
        assert step in labels, f"no {step!r} line in the timeline:\n{completed.stdout}"
    assert labels[0] == "event published"
    offsets = [offset for offset, _ in timeline]
    assert offsets == sorted(offsets), f"the timeline is not in time order:\n{completed.stdout}"
    assert labels.index("cordoned") < labels.index("node drained") < labels.index("event approved")
    assert "This is message for aks-spot-12345678-vmss000000" in completed.stdout  # the seed's Slack text
    assert "taint aks-node-termination-handler/preempt=" in completed.stdout
    assert re.search(r"^ {2}node drained +\d+\.\d{3} s", completed.stdout, re.MULTILINE), completed.stdout
    _assert_cleaned_up(output)


def test_ctrl_c_stops_and_removes_everything(tmp_path: Path) -> None:
    log_path = tmp_path / "demo.out"
    with log_path.open("w") as log_file:
        demo = subprocess.Popen(
            DEMO, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + _RUN_TIMEOUT_SECONDS
        while "cordoned" not in log_path.read_text():
            assert demo.poll() is None, f"the demo ended early:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no cordon within the time limit:\n{log_path.read_text()}"
            time.sleep(0.1)
        # A terminal sends SIGINT to the whole foreground process group.
        os.killpg(demo.pid, signal.SIGINT)
        code = demo.wait(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=10)
    output = log_path.read_text()
    assert code == 130, output
    assert "interrupted" in output
    _assert_cleaned_up(output)
