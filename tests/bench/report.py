"""Results: collected per metric and target, written as JSON, a table and a chart.

Every ratio is a *speed-up*: how many times better the target did than the baseline,
whichever way the metric points (MB/s up, seconds down). So ">1x" always means "better
than the baseline", and the columns can be read without checking units.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tests.bench.workloads import Metric, Workload

BASELINES = ("local", "juicefs")
LATENCY_PREFIXES = ("fork_", "commit_", "ttfb_")  # the version-feature metrics (chart panel 2)


@dataclass
class Cell:
    """One metric on one target: every run's value, or why there is none."""

    runs: list[float] = field(default_factory=list)
    status: str = "pending"  # ok | n/a | error | pending (never ran: interrupted, skipped)
    note: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.status == "ok" and self.runs else None


@dataclass
class Results:
    targets: list[str]
    descriptions: dict[str, str]
    workloads: list[Workload]
    metrics: list[tuple[str, Metric]]  # (workload key, metric)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def cell(self, metric: str, target: str) -> Cell:
        return self.cells.setdefault((metric, target), Cell())

    def record(self, target: str, values: dict[str, float]) -> None:
        for key, value in values.items():
            cell = self.cell(key, target)
            cell.runs.append(value)
            cell.status = "ok"

    def mark(self, workload: Workload, target: str, status: str, note: str) -> None:
        """Mark every metric of ``workload`` on ``target`` (n/a, or error with its reason)."""
        for key, metric in self.metrics:
            if key == workload.key:
                cell = self.cell(metric.key, target)
                cell.status, cell.note, cell.runs = status, note, []
        if status == "error":
            self.errors.append(f"{target} / {workload.title}: {note}")

    def ratio(self, metric: Metric, target: str, baseline: str) -> float | None:
        """Speed-up of ``target`` over ``baseline`` (>1: better), None when either is missing."""
        value = self.cell(metric.key, target).median
        base = self.cell(metric.key, baseline).median
        if value is None or base is None or value <= 0 or base <= 0:
            return None
        return value / base if metric.higher_is_better else base / value

    def ratio_pairs(self) -> list[tuple[str, str]]:
        """(target, baseline) pairs worth a column: each non-baseline target against both
        baselines, and JuiceFS against the local disk."""
        pairs = []
        for target in self.targets:
            for baseline in BASELINES:
                if target != baseline and baseline in self.targets and target != "local":
                    pairs.append((target, baseline))
        return pairs

    def to_json(self, header: dict[str, Any]) -> dict[str, Any]:
        rows = []
        for workload_key, metric in self.metrics:
            values = {}
            for target in self.targets:
                cell = self.cell(metric.key, target)
                values[target] = {
                    "median": cell.median,
                    "runs": cell.runs,
                    "status": cell.status,
                    "note": cell.note,
                }
            ratios = {f"{t}/{b}": self.ratio(metric, t, b) for t, b in self.ratio_pairs()}
            rows.append(
                {
                    "metric": metric.key,
                    "workload": workload_key,
                    "label": metric.label,
                    "unit": metric.unit,
                    "higher_is_better": metric.higher_is_better,
                    "values": values,
                    "speedup": ratios,
                }
            )
        return {
            **header,
            "targets": {t: self.descriptions[t] for t in self.targets},
            "workloads": [
                {"key": w.key, "title": w.title, "measures": w.measures} for w in self.workloads
            ],
            "results": rows,
            "errors": self.errors,
        }


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "MB/s":
        return f"{value:,.0f} MB/s"
    if value >= 10_000:
        return f"{value / 1000:.1f}k{'/s' if unit == 'ops/s' else ' IOPS'}"
    return f"{value:,.0f}{'/s' if unit == 'ops/s' else ' IOPS'}"


def format_ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}x"


def _cell_text(results: Results, metric: Metric, target: str) -> str:
    cell = results.cell(metric.key, target)
    if cell.status == "ok":
        return format_value(cell.median, metric.unit)
    return {"n/a": "n/a", "error": "ERROR", "pending": "…"}[cell.status]


def _columns(results: Results) -> list[str]:
    return (
        ["workload"]
        + results.targets
        + [f"{target} vs {baseline}" for target, baseline in results.ratio_pairs()]
    )


def _rows(results: Results) -> list[list[str]]:
    rows = []
    for _, metric in results.metrics:
        row = [metric.label]
        row += [_cell_text(results, metric, t) for t in results.targets]
        row += [format_ratio(results.ratio(metric, t, b)) for t, b in results.ratio_pairs()]
        rows.append(row)
    return rows


def print_table(results: Results, console: Console, title: str) -> None:
    """The readable table: medians per target, then speed-ups (>1x = better)."""
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(_columns(results)):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in _rows(results):
        styled = row[: 1 + len(results.targets)]
        for text in row[1 + len(results.targets) :]:
            ratio = float(text[:-1]) if text.endswith("x") else None
            style = "green" if ratio and ratio > 1.05 else "red" if ratio and ratio < 0.95 else ""
            styled.append(f"[{style}]{text}[/]" if style else text)
        table.add_row(*styled)
    console.print(table)
    console.print("speed-up columns: >1x means faster than the baseline (whatever the unit)")
    for error in results.errors:
        console.print(f"[bold red]ERROR[/] {error}")


def markdown_table(results: Results) -> str:
    """The same table as Markdown, for pasting into docs/benchmarks.md."""
    columns = _columns(results)
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(results)]
    return "\n".join(lines) + "\n"


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def write_chart(results: Results, path: Path, title: str) -> bool:
    """Two panels: speed-up over the local disk (log scale) for the I/O workloads, and
    absolute seconds for fork/commit/mount, big next to small to show they stay flat.

    Returns False when matplotlib is missing (``make bench`` installs it).
    """
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        "local": "#7f7f7f",
        "juicefs": "#1f77b4",
        "strata": "#d62728",
        "strata-ht": "#ff9896",
    }
    io_metrics = [m for _, m in results.metrics if not m.key.startswith(LATENCY_PREFIXES)]
    lat_metrics = [m for _, m in results.metrics if m.key.startswith(LATENCY_PREFIXES)]
    others = [t for t in results.targets if t != "local"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 10))

    width = 0.8 / max(1, len(others))
    for i, target in enumerate(others):
        ys = [results.ratio(m, target, "local") or 0 for m in io_metrics]
        xs = [x + (i - (len(others) - 1) / 2) * width for x in range(len(io_metrics))]
        top.bar(xs, ys, width, label=target, color=colors.get(target))
    top.axhline(1.0, color=colors["local"], linestyle="--", label="local disk = 1")
    top.set_yscale("log")
    top.set_ylabel("speed-up vs local disk (>1 = faster)")
    top.set_xticks(range(len(io_metrics)), [m.label for m in io_metrics], rotation=25, ha="right")
    top.legend()
    top.set_title("I/O workloads, relative to the local disk (medians)")

    width = 0.8 / max(1, len(results.targets))
    for i, target in enumerate(results.targets):
        ys = [results.cell(m.key, target).median or 0 for m in lat_metrics]
        xs = [x + (i - (len(results.targets) - 1) / 2) * width for x in range(len(lat_metrics))]
        bottom.bar(xs, ys, width, label=target, color=colors.get(target))
    if any(results.cell(m.key, t).median for m in lat_metrics for t in results.targets):
        bottom.set_yscale("log")
    bottom.set_ylabel("seconds (lower is better; missing bar = n/a)")
    labels = [m.label for m in lat_metrics]
    bottom.set_xticks(range(len(lat_metrics)), labels, rotation=25, ha="right")
    bottom.legend()
    bottom.set_title("Versions: fork, commit, time to first byte (should not grow with size)")

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
