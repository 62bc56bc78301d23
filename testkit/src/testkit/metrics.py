"""The Prometheus text format, read: what a test sees when it scrapes a handler's ``/metrics``."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

PREFIX = "aks_node_termination_handler_"
_TYPE_LINE = re.compile(r"^# TYPE (\S+) ", re.MULTILINE)


class Scrape:
    """One scrape of ``/metrics``: its samples and the metric names it declares. Names are looked up as
    ``prefix + name`` (``Scrape(text, prefix=PREFIX)`` for the handler's names without the prefix)."""

    def __init__(self, text: str, *, prefix: str = "") -> None:
        self.prefix = prefix
        self.declared = set(_TYPE_LINE.findall(text))
        self.samples: list[Sample] = [
            s for family in text_string_to_metric_families(text) for s in family.samples
        ]

    def matching(self, name: str, **labels: str) -> list[Sample]:
        """The samples of ``name`` whose labels include ``labels``."""
        full = self.prefix + name
        return [
            s for s in self.samples if s.name == full and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 when there is none)."""
        return float(sum(s.value for s in self.matching(name, **labels)))
