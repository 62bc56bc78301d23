"""The handler's image holds the handler and its dependencies, and none of the IMDS simulator.

The simulator is a part of its own (imds-simulator/, with an image of its own): it must not ship to
every node. The image read here is the one `hack/build-test-image` builds from docker/Dockerfile,
unchanged, and saves as a docker-archive; its layers are read as the files they are, so nothing is
run. The installed wheel's own file list (the dist-info RECORD) is read from the same image.
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile
from pathlib import Path

import pytest

from testkit.realcluster import image_dir

VENV = "opt/aksnth/"
# What only the simulator's code holds: its package name and its class; docs (the wheel's METADATA,
# the README) may name the simulator, code may not.
SIMULATOR_MARKERS = (b"imds_simulator", b"ImdsSimulator")
CODE_SUFFIXES = (".py", ".pyc", "RECORD", "entry_points.txt")


def image_files(archive: Path, prefix: str) -> dict[str, bytes]:
    """The regular files below `prefix` in the image saved in `archive` (a docker-archive), as its
    layers leave them: a later layer replaces a file, and its whiteouts (``.wh.NAME``) remove one."""
    files: dict[str, bytes] = {}
    with tarfile.open(archive) as outer:
        manifest_member = outer.extractfile("manifest.json")
        assert manifest_member is not None, f"{archive} has no manifest.json: not a docker-archive"
        [manifest] = json.load(manifest_member)
        for layer_name in manifest["Layers"]:
            layer_file = outer.extractfile(layer_name)
            assert layer_file is not None, f"{archive}: layer {layer_name} is missing"
            with tarfile.open(fileobj=layer_file, mode="r:*") as layer:
                for member in layer:
                    name = member.name.removeprefix("./")
                    folder, base = posixpath.split(name)
                    if base.startswith(".wh."):
                        gone = posixpath.join(folder, base.removeprefix(".wh."))
                        files = {k: v for k, v in files.items() if k != gone and not k.startswith(gone + "/")}
                    elif member.isfile() and name.startswith(prefix):
                        content = layer.extractfile(member)
                        assert content is not None
                        files[name] = content.read()
    return files


def simulator_code(files: dict[str, bytes]) -> list[str]:
    """The files of `files` that are, or carry, simulator code: named after it, or code (source, byte
    code, the wheel's file list, its console scripts) that names its package or class."""
    return sorted(
        name
        for name, content in files.items()
        if "simulator" in posixpath.basename(name).lower()
        or (name.endswith(CODE_SUFFIXES) and any(marker in content for marker in SIMULATOR_MARKERS))
    )


@pytest.fixture(scope="module")
def handler_image_files() -> dict[str, bytes]:
    archive = image_dir() / "aksnth.tar"
    if not archive.is_file():
        message = f"the handler's image archive {archive}: run `hack/build-test-image` (root, Debian)"
        if os.environ.get("CI"):
            pytest.fail(f"needs {message} (CI is set: that is a failure)", pytrace=False)
        pytest.skip(f"needs {message}")
    return image_files(archive, VENV)


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
