"""The example Grafana dashboard is valid JSON and queries only metrics the handler exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

import aksnth.observe.metrics  # noqa: F401 - registers every metric in the default registry

DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana-dashboard.json"
METRIC = re.compile(r"\baks_node_termination_handler_[a-z_]+")


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def exposed_sample_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        suffixes = SUFFIXES.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return []


def test_dashboard_queries_only_exposed_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {name for expr in expressions(dashboard) for name in METRIC.findall(expr)}
    assert queried, "the dashboard queries no handler metric"
    assert queried <= exposed_sample_names(), sorted(queried - exposed_sample_names())


def test_dashboard_panels_have_unique_ids_and_positions() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert all({"x", "y", "w", "h"} <= panel["gridPos"].keys() for panel in panels)
    titles = " ".join(panel["title"].lower() for panel in panels)
    topics = (
        "events by type",
        "drain duration",
        "evictions",
        "cordon",
        "notifications",
        "imds",
        "poll",
        "readiness",
    )
    for topic in topics:
        assert topic in titles, topic
