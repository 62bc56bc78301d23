"""No orphans: every program a test starts dies with the test process, even when that is killed outright."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For ``subprocess.Popen(preexec_fn=...)``: runs in the child between fork and exec and asks the
    kernel to SIGKILL it when its parent (the test process) dies. Only calls prctl, which is fork-safe."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
