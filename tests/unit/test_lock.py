"""requirements.lock is current: it pins, with hashes, exactly the runtime dependencies that
pyproject.toml declares and what they need, and the test environment runs those very versions.

No network: the lock is checked against pyproject.toml and against the metadata of the installed
distributions (which `make venv` installs from the lock). A failure means: run `make lock`, then
`make venv`.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
PROJECT = "aks-node-termination-handler"
FIX = "requirements.lock is stale: run `make lock` (and `make venv`)"

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;(?P<marker>[^\\]+))?")


@dataclass(frozen=True, slots=True)
class Pin:
    name: NormalizedName
    version: Version
    marker: Marker | None
    hashes: int

    def applies(self) -> bool:
        return self.marker is None or self.marker.evaluate({"extra": ""})


def read_lock() -> list[Pin]:
    pins: list[Pin] = []
    current: dict[str, object] | None = None
    for line in LOCK.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _PIN.match(line)
        if match:
            if current is not None:
                pins.append(Pin(**current))  # type: ignore[arg-type]
            marker = match["marker"]
            current = {
                "name": canonicalize_name(match["name"]),
                "version": Version(match["version"]),
                "marker": Marker(marker.strip()) if marker else None,
                "hashes": 0,
            }
        if current is not None and "--hash=sha256:" in stripped:
            current["hashes"] = int(current["hashes"]) + stripped.count("--hash=sha256:")  # type: ignore[call-overload]
    if current is not None:
        pins.append(Pin(**current))  # type: ignore[arg-type]
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def applicable(pins: Iterable[Pin]) -> dict[NormalizedName, Pin]:
    return {pin.name: pin for pin in pins if pin.applies()}


def needs_of(name: str, extras: Iterable[str]) -> list[Requirement]:
    """The installed distribution's requirements that apply here, with the extras asked of it."""
    wanted = ["", *extras]
    found: list[Requirement] = []
    for text in importlib.metadata.requires(name) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in wanted):
            requirement.marker = None  # decided here, where the extras are known
            found.append(requirement)
    return found


def test_every_pin_carries_hashes() -> None:
    pins = read_lock()
    assert pins, "requirements.lock pins nothing"
    assert [pin.name for pin in pins if pin.hashes == 0] == []
    assert len({(pin.name, str(pin.marker)) for pin in pins}) == len(pins), "a package is pinned twice"


def test_each_declared_dependency_is_pinned_within_its_range() -> None:
    pins = applicable(read_lock())
    for requirement in declared():
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement} is not in the lock; {FIX}"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{requirement} but the lock pins {pin.version}; {FIX}"
        )


def test_the_lock_holds_what_the_dependencies_need_and_nothing_else() -> None:
    pins = applicable(read_lock())
    reached: set[NormalizedName] = set()
    walked: set[tuple[NormalizedName, frozenset[str]]] = set()
    todo: list[Requirement] = declared()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        pin = pins.get(name)
        assert pin is not None, f"{requirement} is needed but not locked; {FIX}"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{requirement} is needed but the lock pins {pin.version}; {FIX}"
        )
        key = (name, frozenset(requirement.extras))
        if key not in walked:
            walked.add(key)
            reached.add(name)
            todo.extend(needs_of(name, requirement.extras))
    assert sorted(set(pins) - reached) == [], f"locked but needed by nothing; {FIX}"


def test_the_environment_runs_the_locked_versions() -> None:
    try:
        importlib.metadata.version(PROJECT)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the project is not installed here")
    moved = {
        pin.name: (str(pin.version), importlib.metadata.version(pin.name))
        for pin in applicable(read_lock()).values()
        if Version(importlib.metadata.version(pin.name)) != pin.version
    }
    assert moved == {}, "installed versions differ from the lock (locked, installed): run `make venv`"
