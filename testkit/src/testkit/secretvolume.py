"""A Secret (or ConfigMap, or projected) volume laid out on disk as the kubelet lays it out.

The kubelet's AtomicWriter (``pkg/volume/util/atomic_writer.go``) writes every version of the
volume's files into a fresh hidden directory ``..<timestamp>``, points the symlink ``..data`` at it
by renaming a new symlink over the old one, and gives each file a top-level symlink
``NAME -> ..data/NAME``; the previous ``..<timestamp>`` directory is then removed. A program that
opens ``volume/NAME`` always sees one consistent version; one that resolved the symlinks once holds a
path into a directory that the next rotation deletes.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

_DATA = "..data"


class SecretVolume:
    """``folder`` as the kubelet keeps a Secret volume; :meth:`write` is one update of the Secret."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._versions = itertools.count(1)
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def current(self) -> Path:
        """The ``..<timestamp>`` directory that ``..data`` points at now."""
        return self.folder / os.readlink(self.folder / _DATA)

    def write(self, files: Mapping[str, bytes | str]) -> Path:
        """Publish a new version holding exactly ``files``; returns its ``..<timestamp>`` directory."""
        old = self.folder / _DATA
        previous = self.current if old.is_symlink() else None
        version = self.folder / f"..2025_01_01_00_00_{next(self._versions):02d}.{os.getpid()}"
        version.mkdir()
        for name, content in files.items():
            (version / name).write_bytes(content.encode() if isinstance(content, str) else content)
        staged = self.folder / "..data_tmp"
        staged.symlink_to(version.name)
        staged.replace(old)  # rename(2): atomic, as the kubelet swaps it
        for name in files:
            link = self.folder / name
            if not link.is_symlink():
                link.symlink_to(f"{_DATA}/{name}")
        if previous is not None:
            for stale in [entry for entry in self.folder.iterdir() if entry.is_symlink()]:
                if stale.name not in files and stale.name != _DATA:
                    stale.unlink()
            shutil.rmtree(previous)
        return version
