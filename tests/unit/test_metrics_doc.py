"""docs/metrics.md, where the README sends users for the metrics, documents every metric the handler
exports with its type and its labels, as the code defines them: a dashboard or an alert is written
from that page."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from aksnth.observe import metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
PREFIX = "aks_node_termination_handler_"


def documented_rows(text: str) -> dict[str, list[str]]:
    """The metric tables of the page: metric name -> [type, labels], as written."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[1] in {"counter", "gauge", "histogram"}:
            rows[cells[0].strip("`")] = cells[1:3]
    return rows


def exported() -> dict[str, list[str]]:
    """Every metric of aksnth.observe.metrics: its name as scraped (prefix off), type and labels."""
    found = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        # prometheus_client keeps a counter's name without `_total` and its labels in private fields.
        name = metric._name.removeprefix(PREFIX) + ("_total" if metric._type == "counter" else "")
        found[name] = [metric._type, ", ".join(f"`{label}`" for label in metric._labelnames)]
    return found


def test_every_exported_metric_is_documented_with_its_type_and_labels() -> None:
    assert len(exported()) >= 20
    rows = documented_rows(DOC.read_text(encoding="utf-8"))
    assert {name: rows.get(name) for name in exported()} == exported()


def test_the_page_documents_no_metric_that_is_not_exported() -> None:
    assert set(documented_rows(DOC.read_text(encoding="utf-8"))) <= set(exported())


def test_a_missing_or_wrong_row_is_seen() -> None:
    page = DOC.read_text(encoding="utf-8")
    assert "| `evictions_total` | counter | `result` |" in page
    without = page.replace(
        "| `evictions_total` | counter | `result` |", "| `evictions_total` | gauge | `result` |"
    )
    assert documented_rows(without)["evictions_total"] != exported()["evictions_total"]
    gone = "\n".join(line for line in page.splitlines() if not line.startswith("| `evictions_total`"))
    assert "evictions_total" not in documented_rows(gone)
