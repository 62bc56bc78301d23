"""What a node pulls: the files of the images built from docker/Dockerfile, amd64 and arm64.

Read from the docker archives `hack/build-test-image` writes (the layers as a registry would hold
them), without running anything: the image is the handler's environment and the part of Python that
runs it, on `scratch`. No shell, no package manager and no pip can be used in a container nobody
meant to be entered, and every megabyte is pulled by every new node before it is protected.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path, PurePosixPath

import pytest
from bench.imagesize import compressed_size_mib

from tests.support.realcluster import image_dir

ARCHIVES = ("aksnth.tar", "aksnth-arm64.tar")
#: The goal for the image a node pulls (linux/amd64, gzipped layers), kept for both platforms.
COMPRESSED_LIMIT_MIB = 40.0
SHELLS = ("bin/sh", "bin/bash", "bin/dash", "bin/busybox", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash")


def image_files(archive: Path) -> set[str]:
    """Every path the image's layers hold (files, links and folders), without a leading slash."""
    paths: set[str] = set()
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            stream = outer.extractfile(layer)
            assert stream is not None
            with tarfile.open(fileobj=stream, mode="r|") as inner:
                paths.update(member.name.removeprefix("./").rstrip("/") for member in inner)
    return paths


@pytest.fixture(params=ARCHIVES)
def archive(request: pytest.FixtureRequest) -> Path:
    path = image_dir() / request.param
    if not path.is_file():
        reason = f"the image archive {path}: run `hack/build-test-image` (root, Debian)"
        if os.environ.get("CI"):
            pytest.fail(f"missing {reason} (CI is set: that is a failure)", pytrace=False)
        pytest.skip(f"missing {reason}")
    return path


def test_the_image_has_no_shell_no_package_manager_and_no_pip(archive: Path) -> None:
    """The handler, its Python and nothing to log in with or install with."""
    files = image_files(archive)
    assert "opt/aksnth/bin/aks-node-termination-handler" in files
    assert [shell for shell in SHELLS if shell in files] == []
    assert [
        f for f in files if PurePosixPath(f).name in ("apt", "apt-get", "dpkg", "apk", "pip", "pip3")
    ] == []
    assert [f for f in files if "/site-packages/pip" in f or "/site-packages/setuptools" in f] == []


def test_the_image_keeps_only_the_byte_code_it_runs(archive: Path) -> None:
    """Python runs with PYTHONOPTIMIZE=2 and reads only ``.opt-2.pyc``; byte code for the other
    levels, and the standard library's tests, would be pulled for nothing."""
    files = image_files(archive)
    other_levels = [f for f in files if f.endswith(".pyc") and ".opt-2." not in f]
    assert other_levels == [], other_levels[:5]
    assert any(f.endswith("asyncio/__pycache__/base_events.cpython-311.opt-2.pyc") for f in files)
    assert [f for f in files if "/python3.11/test/" in f or "/idlelib/" in f] == []


def test_the_image_a_node_pulls_is_at_most_40_mib_gzipped(archive: Path) -> None:
    """Its layers, gzipped as a registry stores them, are within the goal of 40 MiB."""
    assert compressed_size_mib(archive) <= COMPRESSED_LIMIT_MIB
