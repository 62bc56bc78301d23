"""What a node pulls: the files of the images built from docker/Dockerfile, amd64 and arm64.

The image is the handler's environment and the part of Python that runs it, on `scratch`: no shell,
no package manager and no pip can be used in a container nobody meant to be entered, every megabyte is
pulled by every new node before it is protected, and none of the IMDS simulator ships to a node (the
simulator is a part of its own, imds-simulator/, with an image of its own). The images read here are
the ones `hack/build-test-image` builds from docker/Dockerfile, unchanged, and saves as
docker-archives; their layers are read as the files they are, so nothing is run. The installed wheel's
own file list (the dist-info RECORD) is read from the same image.
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile
from pathlib import Path, PurePosixPath

import pytest
from bench.imagesize import compressed_size_mib

from testkit.realcluster import image_dir

VENV = "opt/aksnth/"
# What only the simulator's code holds: its package name and its class; docs (the wheel's METADATA,
# the README) may name the simulator, code may not.
SIMULATOR_MARKERS = (b"imds_simulator", b"ImdsSimulator")
CODE_SUFFIXES = (".py", ".pyc", "RECORD", "entry_points.txt")
ARCHIVES = ("aksnth.tar", "aksnth-arm64.tar")
#: The goal for the image a node pulls (linux/amd64, gzipped layers), kept for both platforms.
COMPRESSED_LIMIT_MIB = 40.0
SHELLS = ("bin/sh", "bin/bash", "bin/dash", "bin/busybox", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash")


def image_entries(archive: Path, prefix: str = "") -> dict[str, bytes | None]:
    """Every entry below `prefix` in the image saved in `archive` (a docker-archive), as its layers
    leave them: a later layer replaces an entry, and its whiteouts (``.wh.NAME``) remove one. A regular
    file maps to its content; a link or a folder to None."""
    entries: dict[str, bytes | None] = {}
    with tarfile.open(archive) as outer:
        manifest_member = outer.extractfile("manifest.json")
        assert manifest_member is not None, f"{archive} has no manifest.json: not a docker-archive"
        [manifest] = json.load(manifest_member)
        for layer_name in manifest["Layers"]:
            layer_file = outer.extractfile(layer_name)
            assert layer_file is not None, f"{archive}: layer {layer_name} is missing"
            with tarfile.open(fileobj=layer_file, mode="r:*") as layer:
                for member in layer:
                    name = member.name.removeprefix("./").rstrip("/")
                    folder, base = posixpath.split(name)
                    if base.startswith(".wh."):
                        gone = posixpath.join(folder, base.removeprefix(".wh."))
                        entries = {
                            k: v for k, v in entries.items() if k != gone and not k.startswith(gone + "/")
                        }
                    elif name.startswith(prefix):
                        content = layer.extractfile(member) if member.isfile() else None
                        entries[name] = content.read() if content is not None else None
    return entries


def image_files(archive: Path, prefix: str) -> dict[str, bytes]:
    """The regular files below `prefix` in the image, with their content."""
    return {name: content for name, content in image_entries(archive, prefix).items() if content is not None}


def simulator_code(files: dict[str, bytes]) -> list[str]:
    """The files of `files` that are, or carry, simulator code: named after it, or code (source, byte
    code, the wheel's file list, its console scripts) that names its package or class."""
    return sorted(
        name
        for name, content in files.items()
        if "simulator" in posixpath.basename(name).lower()
        or (name.endswith(CODE_SUFFIXES) and any(marker in content for marker in SIMULATOR_MARKERS))
    )


def archive_or_skip(name: str) -> Path:
    """The image archive `name` of the image folder; a skip where it is missing (a failure with CI set)."""
    path = image_dir() / name
    if not path.is_file():
        reason = f"the image archive {path}: run `hack/build-test-image` (root, Debian)"
        if os.environ.get("CI"):
            pytest.fail(f"missing {reason} (CI is set: that is a failure)", pytrace=False)
        pytest.skip(f"missing {reason}")
    return path


@pytest.fixture(scope="module")
def handler_image_files() -> dict[str, bytes]:
    return image_files(archive_or_skip("aksnth.tar"), VENV)


def test_the_handler_image_holds_no_simulator_code(handler_image_files: dict[str, bytes]) -> None:
    """No file of the image's environment is the simulator's or carries its code, and the handler's
    installed wheel lists none: the simulator never ships to a node."""
    assert any(name.endswith("/aksnth/cli.py") for name in handler_image_files), (
        "the image's environment holds no handler: is this the handler's image?"
    )
    records = [name for name in handler_image_files if name.endswith(".dist-info/RECORD")]
    assert any("aks_node_termination_handler" in name for name in records), records
    found = simulator_code(handler_image_files)
    assert found == [], (
        f"the handler's image ships simulator code: {found} (an archive built from an older tree? "
        "`hack/build-test-image` rebuilds it when src/ changed)"
    )


def test_the_check_finds_simulator_code_where_it_is() -> None:
    """The check above can fail: an environment like the handler's that also carries the simulator
    (as a module of the handler's package, or as its own package) is caught, by name and by content."""
    handler = {f"{VENV}lib/python3.11/site-packages/aksnth/cli.py": b"def main(): ..."}
    inside = {f"{VENV}lib/python3.11/site-packages/aksnth/azure/__pycache__/simulator.cpython-311.pyc": b"x"}
    record = {
        f"{VENV}lib/python3.11/site-packages/aks_node_termination_handler-0.1.0.dist-info/RECORD": (
            b"imds_simulator/server.py,sha256=abc,100\n"
        )
    }
    renamed = {
        f"{VENV}lib/python3.11/site-packages/aksnth/azure/__pycache__/tools.pyc": b"class ImdsSimulator"
    }
    assert simulator_code(handler) == []
    for extra in (inside, record, renamed):
        assert simulator_code({**handler, **extra}) == sorted(extra)


@pytest.fixture(params=ARCHIVES)
def archive(request: pytest.FixtureRequest) -> Path:
    return archive_or_skip(request.param)


def test_the_image_has_no_shell_no_package_manager_and_no_pip(archive: Path) -> None:
    """The handler, its Python and nothing to log in with or install with."""
    files = set(image_entries(archive))
    assert "opt/aksnth/bin/aks-node-termination-handler" in files
    assert [shell for shell in SHELLS if shell in files] == []
    assert [
        f for f in files if PurePosixPath(f).name in ("apt", "apt-get", "dpkg", "apk", "pip", "pip3")
    ] == []
    assert [f for f in files if "/site-packages/pip" in f or "/site-packages/setuptools" in f] == []


def test_the_image_keeps_only_the_byte_code_it_runs(archive: Path) -> None:
    """Python runs with PYTHONOPTIMIZE=2 and reads only ``.opt-2.pyc``; byte code for the other
    levels, and the standard library's tests, would be pulled for nothing."""
    files = set(image_entries(archive))
    other_levels = [f for f in files if f.endswith(".pyc") and ".opt-2." not in f]
    assert other_levels == [], other_levels[:5]
    assert any(f.endswith("asyncio/__pycache__/base_events.cpython-311.opt-2.pyc") for f in files)
    assert [f for f in files if "/python3.11/test/" in f or "/idlelib/" in f] == []


def test_the_image_a_node_pulls_is_at_most_40_mib_gzipped(archive: Path) -> None:
    """Its layers, gzipped as a registry stores them, are within the goal of 40 MiB."""
    assert compressed_size_mib(archive) <= COMPRESSED_LIMIT_MIB
