"""linux/arm64 programs on this amd64 machine: qemu-user-static, registered in binfmt_misc.

The kernel hands an arm64 ELF binary to the interpreter registered for it under
``/proc/sys/fs/binfmt_misc``. Debian's qemu-user-static ships that entry
(``/usr/lib/binfmt.d/qemu-aarch64.conf``) with the flags ``POF``: F opens the interpreter when the
entry is registered, so it also serves programs inside containers, whose file systems have no qemu.

``arm64_emulation()`` makes sure the entry is there for the block and undoes only what it did itself:
it mounts binfmt_misc when it is not mounted and registers the entry when it is missing, and on exit
unregisters and unmounts what it registered and mounted. An entry that was already there (someone
else's, or left by a test process that was killed) stays as it was. `hack/build-test-image` does the
same around its arm64 build, and installs qemu-user-static.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
ENTRY_NAME = "qemu-aarch64"
DEBIAN_ENTRY = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
_TIMEOUT_SECONDS = 10.0


class EmulationUnavailable(RuntimeError):
    """arm64 programs cannot run on this machine; the message says why and how to fix it."""


def _entry() -> Path:
    return BINFMT_DIR / ENTRY_NAME


def _registration_line() -> str:
    if not DEBIAN_ENTRY.is_file():
        raise EmulationUnavailable(
            f"{DEBIAN_ENTRY} is missing: `apt-get install qemu-user-static` (hack/build-test-image does)"
        )
    lines = [line for line in DEBIAN_ENTRY.read_text().splitlines() if line and not line.startswith("#")]
    if len(lines) != 1:
        raise EmulationUnavailable(f"{DEBIAN_ENTRY} has {len(lines)} entries, not one")
    return lines[0]


def _check_entry() -> None:
    """The registered entry is enabled and has the F flag (else containers cannot use it)."""
    fields = dict(
        line.split(" ", 1) if " " in line else (line, "") for line in _entry().read_text().splitlines()
    )
    if "enabled" not in fields:
        raise EmulationUnavailable(f"{_entry()} is registered but disabled")
    if "F" not in fields.get("flags:", ""):
        raise EmulationUnavailable(
            f"{_entry()} is registered without the F flag (flags: {fields.get('flags:', '')!r}), so "
            "programs inside containers cannot find its interpreter"
        )


@contextlib.contextmanager
def arm64_emulation() -> Iterator[None]:
    """arm64 programs run (emulated) inside the block; see the module's docstring for what is undone."""
    if os.geteuid() != 0:
        raise EmulationUnavailable("registering an interpreter in binfmt_misc needs root")
    mounted = registered = False
    try:
        if not os.path.ismount(BINFMT_DIR):
            done = subprocess.run(
                ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)],
                capture_output=True,
                text=True,
                check=False,
                timeout=_TIMEOUT_SECONDS,
            )
            if done.returncode != 0:
                raise EmulationUnavailable(f"cannot mount binfmt_misc on {BINFMT_DIR}: {done.stderr.strip()}")
            mounted = True
        if not _entry().exists():
            line = _registration_line()
            try:
                (BINFMT_DIR / "register").write_text(line)
            except OSError as exc:
                raise EmulationUnavailable(f"binfmt_misc refused the entry of {DEBIAN_ENTRY}: {exc}") from exc
            registered = True
        _check_entry()
        yield
    finally:
        if registered:
            with contextlib.suppress(FileNotFoundError):
                _entry().write_text("-1")
        if mounted:
            subprocess.run(["umount", str(BINFMT_DIR)], check=False, timeout=_TIMEOUT_SECONDS)
