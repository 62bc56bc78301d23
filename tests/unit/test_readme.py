"""The README is what a user reads in ten minutes: at most 20 KB, the set-up commands and the install
first, the sections users of the Go project look for, and a pointer to every page its detail moved to.
It is also the package's long description and part of the image build, so it stays plain Markdown."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LIMIT_BYTES = 20_000

# In this order: the install, then the Go project's README's sections its users look for.
SECTIONS = [
    "## Installation",
    "## Send notification events",
    "### Send Telegram notification",
    "### Send Slack notification",
    "### Send Prometheus Pushgateway event",
    "### Use an HTTP proxy for making webhook requests",
    "## Windows 2019 support",
    "## Red Hat OpenShift support",
    "## NetworkPolicy support",
    "## Moving from the Go version",
]

# Where the README's former sections live now; the README must link to each.
POINTERS = [
    "docs/flags.md",
    "docs/metrics.md",
    "docs/node-response.md",
    "docs/readiness.md",
    "docs/reliability.md",
    "docs/moving-from-go.md",
    "docs/dependencies.md",
    "docs/azure.md",
    "imds-simulator/README.md",
    "docs/testing.md",
    "bench/README.md",
    "CONTRIBUTING.md",
]


def readme() -> str:
    return README.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_readme_is_at_most_20_kb() -> None:
    size = README.stat().st_size
    assert size <= LIMIT_BYTES, f"README.md is {size} bytes; move detail to docs/ (at most {LIMIT_BYTES})"


def test_what_it_is_and_the_two_set_up_commands_come_first() -> None:
    text = readme()
    assert text.startswith("# aks-node-termination-handler\n\nGracefully handle Azure Virtual Machine")
    first_block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "demo"], ["make", "test"]]
    assert text.index("```sh\n") < text.index("\n## ")


def test_the_install_and_the_go_projects_sections_come_in_order() -> None:
    text = readme()
    positions = [text.find(f"\n{heading}\n") for heading in SECTIONS]
    assert -1 not in positions, [h for h, p in zip(SECTIONS, positions, strict=True) if p == -1]
    assert positions == sorted(positions)
    install = section(text, "## Installation")
    assert "helm upgrade aks-node-termination-handler \\\n--install \\\n--namespace kube-system" in install


def test_the_readme_points_to_every_page_its_detail_lives_on() -> None:
    linked = set(re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme()))
    assert [page for page in POINTERS if page not in linked] == []


def test_every_runtime_dependency_is_justified_in_the_readme_and_in_full_in_the_docs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = [Requirement(text).name for text in project["dependencies"]]
    assert names
    listed = section(readme(), "## Dependencies")
    full = (ROOT / "docs" / "dependencies.md").read_text(encoding="utf-8")
    for name in names:
        row = re.compile(rf"^\| `{re.escape(name)}`[^|]* \| \w", re.M)  # named, with a reason beside it
        assert row.search(listed), f"README.md: {name} is not in the dependency list"
        assert row.search(full), f"docs/dependencies.md: {name} is not justified"
    assert "](docs/dependencies.md)" in listed
