"""The Go project's values files that the chart, e2e and demo tests render and install
(tests/chart/values, verbatim from its README) are what users copy: each is shown, byte for byte, on
the page that documents it (the Windows files with this project's image in place of the Go project's).
Proven to work, and shown as proven."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "tests" / "chart" / "values"
GO_IMAGE = "image: paskalmaksim/aks-node-termination-handler:"
OUR_IMAGE = "image: ghcr.io/aks-node-termination-handler/aks-node-termination-handler:"

SHOWN_ON = {
    "slack.yaml": ["README.md", "docs/install.md", "docs/notifications.md"],
    "pushgateway.yaml": ["docs/install.md"],
    "proxy.yaml": ["docs/install.md"],
    "linux-windows2022.values.yaml": ["docs/install.md"],
    "linux-windows2019.values.yaml": ["docs/install.md"],
}


def test_every_seed_values_file_is_shown_somewhere() -> None:
    assert sorted(path.name for path in VALUES.glob("*.yaml")) == sorted(SHOWN_ON)


@pytest.mark.parametrize(
    ("values", "page"), [(values, page) for values, pages in SHOWN_ON.items() for page in pages]
)
def test_the_page_shows_the_values_file_verbatim(values: str, page: str) -> None:
    shown = (VALUES / values).read_text(encoding="utf-8").strip("\n").replace(GO_IMAGE, OUR_IMAGE)
    assert f"\n{shown}\n" in (ROOT / page).read_text(encoding="utf-8"), f"{page} does not show {values}"
