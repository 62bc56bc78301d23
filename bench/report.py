"""The table: one row per figure, one column per implementation, the budget of DESIGN §6 where there is
one (marked ok / MISS), and with two implementations the ratio second / first."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from testkit.safety import TOLERANCE_SECONDS

Results = dict[str, Any]  # one implementation's figures: {"reaction": …, "drain": {key: …}, "footprint": …}


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    limit: float
    at_most: bool = True  # False: at least
    text: str = ""

    def met(self, value: float) -> bool:
        return value <= self.limit if self.at_most else value >= self.limit

    def describe(self, unit: str) -> str:
        return self.text or f"{'≤' if self.at_most else '≥'} {_number(self.limit, unit)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    section: str
    figure: str
    unit: str  # "s", "MiB", "%", "/min", "" (a count)
    read: Callable[[Results], float | None]
    budget: Budget | None = None


def _get(*path: str) -> Callable[[Results], float | None]:
    def read(results: Results) -> float | None:
        value: Any = results
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return float(value) if isinstance(value, int | float) else None

    return read


def rows(
    *,
    events: int,
    cases: Sequence[tuple[str, str]],
    preempt_case: str | None,
    readiness_interval: float = 10.0,
    fleet: str | None = None,
) -> list[Row]:
    """`cases`: (key, label) of each drain case, in order; `preempt_case`: the key of the 110-pod case;
    `readiness_interval`: the -readiness.interval of the readiness section, seconds; `fleet`: the
    fleet's label, when it was measured."""
    table: list[Row] = []
    reaction = f"Reaction ({events} Preempt events, default period)"
    for name, key in (("published → cordoned", "cordon_seconds"), ("published → webhook", "notify_seconds")):
        for stat in ("p50", "p90", "p99", "max"):
            budget = Budget(limit=1.2) if key == "cordon_seconds" and stat == "p99" else None
            table.append(
                Row(
                    section=reaction,
                    figure=f"{name} {stat}",
                    unit="s",
                    read=_get("reaction", key, stat),
                    budget=budget,
                )
            )
    for stat in ("p50", "max"):
        table.append(
            Row(
                section=reaction,
                figure=f"cancelled → uncordoned {stat}",
                unit="s",
                read=_get("reaction", "give_back_seconds", stat),
            )
        )
    for key, label in cases:
        section = f"Drain, {label}"
        reference = key == "110"
        table += [
            Row(
                section=section,
                figure="published → cordoned",
                unit="s",
                read=_get("drain", key, "cordon_seconds"),
            ),
            Row(
                section=section,
                figure="published → first eviction",
                unit="s",
                read=_get("drain", key, "first_eviction_seconds"),
            ),
            Row(
                section=section,
                figure="evictions issued (first → last)",
                unit="s",
                read=_get("drain", key, "issue_seconds"),
                budget=Budget(limit=1.0) if reference else None,
            ),
            Row(
                section=section,
                figure="cordon → last eviction",
                unit="s",
                read=_get("drain", key, "cordon_to_last_eviction_seconds"),
            ),
            Row(
                section=section,
                figure="cordon → node empty",
                unit="s",
                read=_get("drain", key, "cordon_to_empty_seconds"),
                budget=Budget(limit=3.0) if reference else None,
            ),
            Row(
                section=section,
                figure="eviction requests",
                unit="",
                read=_get("drain", key, "eviction_requests"),
            ),
            Row(
                section=section,
                figure="  of which refused (429…)",
                unit="",
                read=_get("drain", key, "evictions_refused"),
            ),
            Row(
                section=section,
                figure="API requests (publication → empty)",
                unit="",
                read=_get("drain", key, "api_requests"),
            ),
        ]
    if preempt_case is not None:
        section = "Preempt budget (110 pods, 30 s notice)"
        table += [
            Row(
                section=section,
                figure="published → last eviction",
                unit="s",
                read=_get("drain", preempt_case, "last_eviction_seconds"),
            ),
            Row(
                section=section,
                figure="share of 30 s left for pods' shutdown",
                unit="%",
                read=lambda r: _percent(_get("drain", preempt_case, "preempt_budget_share_left")(r)),
                budget=Budget(limit=90.0, at_most=False, text="well inside (≥ 90 %)"),
            ),
        ]
    section = "Footprint (idle, default period)"
    table += [
        Row(
            section=section,
            figure="start → first IMDS poll, median of the starts",
            unit="s",
            read=_get("footprint", "startup_median_seconds"),
            budget=Budget(limit=0.1),
        ),
        Row(
            section=section,
            figure="start → first IMDS poll, quickest start",
            unit="s",
            read=_get("footprint", "startup_min_seconds"),
        ),
        Row(
            section=section,
            figure="start → first IMDS poll, the footprint's start",
            unit="s",
            read=_get("footprint", "startup_seconds"),
        ),
        Row(
            section=section,
            figure="API requests at start-up",
            unit="",
            read=_get("footprint", "startup_api_requests"),
        ),
        Row(
            section=section,
            figure="RSS, steady",
            unit="MiB",
            read=_get("footprint", "rss_mib"),
            budget=Budget(limit=36.0),
        ),
        Row(section=section, figure="RSS, max", unit="MiB", read=_get("footprint", "rss_max_mib")),
        Row(
            section=section,
            figure="installed size (locked runtime + project)",
            unit="MiB",
            read=_get("footprint", "installed_mib"),
        ),
        Row(
            section=section,
            figure="CPU, idle",
            unit="%",
            read=_get("footprint", "cpu_percent"),
            budget=Budget(limit=0.15, text="≤ 0.15 % of a core"),
        ),
        Row(
            section=section,
            figure="container working set, real node",
            unit="MiB",
            read=_get("footprint", "node_working_set_mib"),
        ),
        Row(
            section=section,
            figure="container CPU, idle, real node",
            unit="%",
            read=_get("footprint", "node_cpu_percent"),
        ),
        Row(
            section=section,
            figure="image layers, uncompressed",
            unit="MiB",
            read=_get("footprint", "image_layers_mib"),
        ),
        Row(
            section=section,
            figure="image layers, gzipped (what a node pulls)",
            unit="MiB",
            read=_get("footprint", "image_compressed_mib"),
            budget=Budget(limit=40.0),
        ),
        Row(
            section=section,
            figure="real node: image import (containerd unpacks it)",
            unit="s",
            read=_get("footprint", "node_image_import_seconds"),
        ),
        Row(
            section=section,
            figure="real node: image import → first IMDS poll",
            unit="s",
            read=_get("footprint", "node_import_to_first_poll_seconds"),
        ),
        Row(
            section=section,
            figure="real node: image import → handler Ready",
            unit="s",
            read=_get("footprint", "node_import_to_ready_seconds"),
        ),
        Row(
            section=section,
            figure="IMDS requests per minute",
            unit="/min",
            read=_get("footprint", "imds_requests_per_minute"),
        ),
        Row(
            section=section,
            figure="API requests per minute, idle",
            unit="/min",
            read=_get("footprint", "api_requests_per_minute"),
            budget=Budget(limit=0.0, text="0"),
        ),
    ]
    section = f"Readiness check (-readiness.interval={readiness_interval:g}s, no event)"
    table += [
        Row(section=section, figure="checks in the window", unit="", read=_get("readiness", "checks")),
        Row(
            section=section,
            figure="lists of the node's pods per interval",
            unit="",
            read=_get("readiness", "pod_lists_per_interval"),
            budget=Budget(limit=1.0),
        ),
        Row(
            section=section,
            figure="lists of PodDisruptionBudgets per interval",
            unit="",
            read=_get("readiness", "budget_lists_per_interval"),
            budget=Budget(limit=1.0),
        ),
        Row(
            section=section,
            figure="other API requests in the window",
            unit="",
            read=_get("readiness", "other_requests"),
            budget=Budget(limit=0.0, text="0"),
        ),
        Row(
            section=section,
            figure="shortest time between two checks",
            unit="s",
            read=_get("readiness", "shortest_gap_seconds"),
            budget=Budget(limit=readiness_interval, at_most=False),
        ),
    ]
    if fleet is not None:
        table += fleet_rows(fleet)
    return table


def _over_nodes(section: str, figure: str, key: str, budget: Budget | None = None) -> list[Row]:
    """p50, p99 and max over the Spot nodes of a per-node time; the budget applies to the p99."""
    return [
        Row(
            section=section,
            figure=f"{figure} {stat}",
            unit="s",
            read=_get("fleet", key, stat),
            budget=budget if stat == "p99" else None,
        )
        for stat in ("p50", "p99", "max")
    ]


def _zero(section: str, figure: str, key: str) -> Row:
    return Row(
        section=section, figure=figure, unit="", read=_get("fleet", key), budget=Budget(limit=0, text="0")
    )


def fleet_rows(label: str) -> list[Row]:
    section = f"Fleet ({label}, one Preempt)"

    def count(figure: str, key: str) -> Row:
        return Row(section=section, figure=figure, unit="", read=_get("fleet", key))

    return [
        count("workload pods on the Spot nodes", "workload_pods_on_spot"),
        *_over_nodes(section, "published → cordoned", "cordon_seconds", Budget(limit=1.5)),
        *_over_nodes(section, "published → every eviction issued", "issued_seconds"),
        *_over_nodes(section, "published → node empty", "empty_seconds"),
        Row(
            section=section,
            figure="Spot nodes not empty at the deadline (30 s)",
            unit="",
            read=_get("fleet", "nodes_not_empty"),
            budget=Budget(limit=0, text="0"),
        ),
        count("eviction requests", "eviction_requests"),
        count("  refused by a budget (429)", "refused_by_budget"),
        count("  refused for load, API Priority and Fairness (429)", "refused_for_load"),
        count("  other errors", "eviction_errors"),
        count("pods stopped as a last resort", "last_resort_stops"),
        Row(
            section=section,
            figure="  the earliest, after its last chance",
            unit="s",
            read=_get("fleet", "earliest_stop_after_last_chance_seconds"),
            budget=Budget(limit=-TOLERANCE_SECONDS, at_most=False),
        ),
        Row(
            section=section,
            figure="StartRequests after the last listed node emptied",
            unit="s",
            read=_get("fleet", "approval_after_empty_seconds"),
            budget=Budget(limit=-TOLERANCE_SECONDS, at_most=False),
        ),
        count("handlers' API requests (publication → empty)", "handler_api_requests"),
        Row(
            section=section,
            figure="  per node and event",
            unit="/node",
            read=_get("fleet", "handler_api_requests_per_node"),
        ),
        count("all API requests (publication → empty)", "api_requests"),
        count("API Priority and Fairness rejections (429), all users", "apf_rejections"),
        count("  of which the handlers'", "handler_apf_rejections"),
        Row(
            section=section,
            figure="API server latency p50, all users (no watches)",
            unit="s",
            read=_get("fleet", "api_latency_seconds", "p50"),
        ),
        Row(section=section, figure="  p99", unit="s", read=_get("fleet", "api_latency_seconds", "p99")),
        Row(
            section=section,
            figure="  peak (slowest answer)",
            unit="s",
            read=_get("fleet", "peak_api_latency_seconds"),
        ),
        Row(
            section=section,
            figure="  the handlers' requests, p99",
            unit="s",
            read=_get("fleet", "handler_api_latency_seconds", "p99"),
        ),
        Row(
            section=section,
            figure="handler RSS under load, p50 over handlers",
            unit="MiB",
            read=_get("fleet", "handler_rss_mib", "p50"),
        ),
        Row(section=section, figure="  the largest", unit="MiB", read=_get("fleet", "handler_rss_max_mib")),
        Row(
            section=section,
            figure="API server's peak request rate (1 s)",
            unit="/s",
            read=_get("fleet", "peak_requests_per_second"),
        ),
        Row(
            section=section,
            figure="  of which the handlers'",
            unit="/s",
            read=_get("fleet", "handler_peak_requests_per_second"),
        ),
        _zero(section, "replacements on a node under the event", "replacements_on_doomed"),
        _zero(section, "pods without SIGTERM", "without_sigterm"),
        _zero(section, "pods whose grace period ran past the deadline", "grace_past_end"),
        _zero(section, "safety findings (checks a-d, per pod and event)", "safety_findings"),
        count("PDB statuses below minimum (after the publication)", "budgets_below_minimum"),
    ]


def _percent(share: float | None) -> float | None:
    return None if share is None else 100.0 * share


def _number(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "/min":
        return f"{value:.1f}/min"
    if unit == "/s":
        return f"{value:.0f}/s"
    if unit == "/node":
        return f"{value:.1f}/node"
    return f"{value:.0f}"


def render(table: Sequence[Row], results: dict[str, Results], names: Sequence[str]) -> str:
    """A Markdown table (readable as is on a terminal)."""
    header = ["figure", "budget", *names]
    if len(names) == 2:
        header.append(f"{names[1]} / {names[0]}")
    lines: list[list[str]] = []
    section = ""
    for row in table:
        if row.section != section:
            section = row.section
            lines.append([f"**{section}**", "", *([""] * (len(header) - 2))])
        values = [row.read(results.get(name, {})) for name in names]
        cells = [row.figure, row.budget.describe(row.unit) if row.budget else ""]
        for value in values:
            if value is None:
                cells.append("-")
                continue
            mark = ""
            if row.budget is not None:
                mark = " ok" if row.budget.met(value) else " MISS"
            cells.append(_number(value, row.unit) + mark)
        if len(names) == 2:
            first, second = values
            ratio = "-" if first is None or second is None or first == 0 else f"{second / first:.2f}x"
            cells.append(ratio)
        lines.append(cells)
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in lines]
    return "\n".join(out)


def budget_verdicts(
    table: Sequence[Row], results: dict[str, Results], names: Sequence[str]
) -> dict[str, dict[str, bool | None]]:
    """For each implementation, each budgeted figure: met, missed, or None (not measured)."""
    verdicts: dict[str, dict[str, bool | None]] = {}
    for name in names:
        verdicts[name] = {}
        for row in table:
            if row.budget is None:
                continue
            value = row.read(results.get(name, {}))
            verdicts[name][f"{row.section}: {row.figure}"] = None if value is None else row.budget.met(value)
    return verdicts
