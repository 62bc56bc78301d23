"""Where the real programs of the tests are (kube-apiserver, etcd, helm, the Pushgateway, ...).

`hack/build-test-binaries` builds them into a cache outside the repository (`make test-binaries`);
the Makefile exports that folder as AKSNTH_TEST_BIN_DIR, and a run without it asks the script.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


@functools.cache
def find_bin_dir() -> Path:
    """The folder with the test binaries: $AKSNTH_TEST_BIN_DIR, else what the build script prints."""
    configured = os.environ.get("AKSNTH_TEST_BIN_DIR")
    if configured:
        return Path(configured)
    script = REPO_ROOT / "hack" / "build-test-binaries"
    printed = subprocess.run(
        [str(script), "--print-dir"], check=True, capture_output=True, text=True, timeout=30
    )
    return Path(printed.stdout.strip())
