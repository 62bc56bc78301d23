"""The chart README lists every value, and is what hack/chart-readme makes of values.yaml today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "hack" / "chart-readme"
CHART = REPO_ROOT / "charts" / "aks-node-termination-handler"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_chart_readme_is_up_to_date() -> None:
    result = run_script("--check")
    assert result.returncode == 0, result.stderr


def test_chart_readme_documents_every_value_with_its_default() -> None:
    readme = (CHART / "README.md").read_text()
    for row in (
        '| `priorityClassName` | string | `""` |',
        '| `configMap.mountPath` | string | `"/files"` |',
        "| `networkPolicy.controlPlaneIP` | string |",
        "| `metrics.addAnnotations` | bool | `true` |",
        "| `rbac.allowPodDelete` | bool | `true` |",
    ):
        assert row in readme


def test_a_stale_readme_is_reported(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text("# -- Documented.\nimage: x\n")
    (tmp_path / "README.md").write_text("old\n")
    result = run_script("--check", "--chart", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == f"chart-readme: {tmp_path / 'README.md'} is out of date; run hack/chart-readme\n"


def test_an_undocumented_value_is_refused(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text("# -- Documented.\nimage: x\n# a plain comment\nsneaky: 1\n")
    result = run_script("--chart", str(tmp_path))
    assert result.returncode == 1
    assert "sneaky" in result.stderr
    assert not (tmp_path / "README.md").exists()
