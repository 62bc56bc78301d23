"""Assemble the image's whole file system in one folder: the handler's environment and only the part
of the Python base that runs it.

    python rootfs.py ROOTFS VENV

Run by docker/Dockerfile in a stage of the target platform, with the base's own Python (the one the
environment VENV was made with). The final image is ``FROM scratch`` plus ROOTFS, so every node pulls
this and nothing else: no shell, no package manager, no pip, no compiler, no documentation.

What goes in, found rather than listed, so that the same recipe serves python:3.11-slim (Python under
/usr/local) and a base made from Debian's packages (Python under /usr), amd64 and arm64 alike:
- the interpreter (``sys.executable``, every symbolic link on the way to it kept as a link);
- the standard library, byte code compiled for the image's level (``.opt-2.pyc``) beside the sources,
  without the packages the handler never imports (tests, IDLE, Tk, lib2to3, ensurepip, distutils,
  the build configuration) and without extension modules for databases and terminals;
- VENV as it is;
- the shared libraries the interpreter and every extension module load (``ldd``), the dynamic loader
  and its cache (``/etc/ld.so.cache``: the official images keep libpython in /usr/local/lib);
- the CA bundle OpenSSL is built to read (``ssl.get_default_verify_paths``), for https webhooks;
- ``/etc/passwd`` and ``/etc/group`` naming root and the image's user, 65532 (``nonroot``).
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

#: Parts of the standard library the handler never imports (directories, by name, anywhere in it).
SKIPPED_PACKAGES = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "lib2to3",
        "ensurepip",
        "distutils",
        "pydoc_data",
        "site-packages",
        "dist-packages",
        "__phello__",
    }
)
#: Extension modules for what a handler never does (databases, terminals, Tk, C-API tests): each
#: would bring its own shared libraries.
SKIPPED_EXTENSIONS = re.compile(
    r"^(_tkinter|_sqlite3|_dbm|_gdbm|_curses|_curses_panel|readline|_test\w*|xx\w*|"
    r"_ctypes_test|_xxtestfuzz|audioop|nis|_crypt)\."
)
#: Byte code other than the image's level (PYTHONOPTIMIZE=2) would never be read.
OTHER_BYTE_CODE = re.compile(r"\.cpython-\d+(\.opt-1)?\.pyc$")
#: A library in ldd's output: "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or the
#: loader's own line "/lib64/ld-linux-x86-64.so.2 (0x...)".
LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")

PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"


def copy_path(source: str | Path, rootfs: Path) -> None:
    """Copy ``source`` to the same path under ``rootfs``, keeping each symbolic link on the way
    (in a parent folder, such as Debian's /lib → usr/lib, or the file itself) as a link, and
    copying what it points to as well."""
    current = Path("/")
    parts = Path(os.path.abspath(source)).parts[1:]
    for index, part in enumerate(parts):
        current = current / part
        target = rootfs / current.relative_to("/")
        if current.is_symlink():
            link = os.readlink(current)
            if not target.is_symlink():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(link)
            rest = Path(*parts[index + 1 :]) if index + 1 < len(parts) else None
            resolved = (current.parent / link) if not os.path.isabs(link) else Path(link)
            copy_path(resolved / rest if rest else resolved, rootfs)
            return
    target = rootfs / current.relative_to("/")
    if current.is_dir():
        target.mkdir(parents=True, exist_ok=True)
    elif not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(current, target)


def standard_library(stdlib: Path) -> Iterator[Path]:
    """The files of the standard library that the image keeps."""
    for folder, folders, files in os.walk(stdlib):
        folders[:] = sorted(f for f in folders if f not in SKIPPED_PACKAGES and not f.startswith("config-"))
        for name in sorted(files):
            if OTHER_BYTE_CODE.search(name) or SKIPPED_EXTENSIONS.match(name):
                continue
            yield Path(folder) / name


def shared_libraries(binaries: Iterable[Path]) -> set[str]:
    """Every shared library (and the loader) that ``binaries`` load, as ldd names them."""
    needed: set[str] = set()
    for binary in binaries:
        listing = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
        needed.update(match.group(1) for match in LDD_PATH.finditer(listing))
    return needed


def is_elf(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(4) == b"\x7fELF"


def assemble(rootfs: Path, venv: Path) -> None:
    rootfs.mkdir(parents=True, exist_ok=True)
    interpreter = Path(sys.executable)
    copy_path(interpreter, rootfs)
    kept = list(standard_library(Path(sysconfig.get_path("stdlib"))))
    platstdlib = Path(sysconfig.get_path("platstdlib"))
    if platstdlib != Path(sysconfig.get_path("stdlib")):
        kept += standard_library(platstdlib)
    for path in kept:
        copy_path(path, rootfs)
    for path in sorted(p for p in venv.rglob("*") if p.is_file() or p.is_symlink()):
        copy_path(path, rootfs)
    binaries = [interpreter.resolve()] + [
        p for p in [*kept, *venv.rglob("*.so*")] if p.is_file() and not p.is_symlink() and is_elf(p)
    ]
    for library in sorted(shared_libraries(binaries)):
        copy_path(library, rootfs)
    for extra in ("/etc/ld.so.cache", ssl.get_default_verify_paths().openssl_cafile):
        if extra and os.path.exists(extra):
            copy_path(extra, rootfs)
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(PASSWD, encoding="ascii")
    (etc / "group").write_text(GROUP, encoding="ascii")
    tmp = rootfs / "tmp"  # empty: the root file system is read-only where the chart runs it
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python rootfs.py ROOTFS VENV\n")
        return 2
    assemble(Path(argv[0]), Path(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
