"""The Markdown summary: one table per figure, targets as rows, reasons as footnotes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.suite.stats import Spread
from bench.suite.summary import BASELINE, Cell, Results

# (column header, runtime, figure key)
Column = tuple[str, str, str]


class Footnotes:
    """Why a cell has no number: one numbered note per distinct reason."""

    def __init__(self) -> None:
        self._notes: dict[str, int] = {}

    def mark(self, reason: str) -> str:
        kind, _, why = reason.partition(": ")
        number = self._notes.setdefault(reason, len(self._notes) + 1)
        return f"{kind} [{number}]" if why else reason

    def render(self) -> list[str]:
        return [f"[{n}] {reason.partition(': ')[2]}  " for reason, n in self._notes.items()]


def number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread(cell: Cell, notes: Footnotes, suffix: str = "") -> str:
    if isinstance(cell, str):
        return notes.mark(cell)
    if cell.rounds == 1 or number(cell.low) == number(cell.high):
        return number(cell.median) + suffix
    return f"{number(cell.median)}{suffix} ({number(cell.low)}-{number(cell.high)})"


def table(results: Results, title: str, columns: Sequence[Column], note: str = "") -> list[str]:
    notes = Footnotes()
    lines = [f"### {title}", ""]
    if note:
        lines += [note, ""]
    lines.append("| target | " + " | ".join(header for header, _, _ in columns) + " |")
    lines.append("|---|" + "---:|" * len(columns))
    for target in results.targets:
        cells = [spread(results.cell(target, runtime, key), notes) for _, runtime, key in columns]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return [*lines, "", *notes.render(), ""]


def both(results: Results, figures: Sequence[tuple[str, str]]) -> list[Column]:
    """The same figures for each runtime measured (Python, then Node)."""
    return [
        (f"{runtime.capitalize()} {header}", runtime, key)
        for runtime in results.runtimes
        for header, key in figures
    ]


HEADLINE = (
    ("warm no-op latency p50", "warm.noop.p50"),
    ("warm no-op latency p99", "warm.noop.p99"),
    ("cold start p50 (no-op)", "cold.noop.p50"),
    ("cold start p50 (200 ms init)", "cold.init200.p50"),
    ("server CPU per warm invocation", "cpu_ms.noop"),
    ("throughput at concurrency 8", "throughput.c8"),
    ("1 MB echo p50", "echo.p50"),
    ("memory per idle environment", "idle.env_mib"),
    ("new environments per second", "spawn.per_s"),
)


def headline(results: Results) -> list[str]:
    """Each other target's figure divided by Lamina's, within each round."""
    others = [t for t in results.targets if t != BASELINE]
    notes = Footnotes()
    lines = [
        "### Ratios to Lamina (other ÷ Lamina, taken within each round)",
        "",
        "For latency, CPU and memory a ratio above 1 means Lamina is better by that factor; "
        "for throughput and new environments per second, a ratio below 1 does. Median over "
        "rounds (min-max).",
        "",
        "| figure | runtime | " + " | ".join(others) + " |",
        "|---|---|" + "---:|" * len(others),
    ]
    for runtime in results.runtimes:
        for label, key in HEADLINE:
            if not results.ran(key):
                continue
            cells = [spread(results.ratio(other, runtime, key), notes, "x") for other in others]
            lines.append(f"| {label} | {runtime} | " + " | ".join(cells) + " |")
    return [*lines, "", *notes.render(), ""]


FLOOR = "floor"
FLOOR_FIGURES = (
    ("warm no-op latency p50", "warm.noop.p50"),
    ("server CPU per warm invocation", "cpu_ms.noop"),
    ("cold start p50 (no-op)", "cold.noop.p50"),
    ("throughput at concurrency 8", "throughput.c8"),
    ("new environments per second", "spawn.per_s"),
)


def floor_distance(results: Results) -> list[str]:
    """How close Lamina is to the floor: Lamina's figure over the floor's, per round."""
    if FLOOR not in results.measured():
        return []
    notes = Footnotes()
    lines = [
        "### Distance to the floor (Lamina ÷ floor, within each round)",
        "",
        "1 would be the floor itself; for latency and CPU, 2 means Lamina costs twice what a "
        "bare relay to a warm process costs; for throughput and new environments, 0.5 means "
        "half its rate.",
        "",
        "| figure | " + " | ".join(results.runtimes) + " |",
        "|---|" + "---:|" * len(results.runtimes),
    ]
    for label, key in FLOOR_FIGURES:
        if not results.ran(key):
            continue
        cells = [
            spread(results.ratio(BASELINE, runtime, key, baseline=FLOOR), notes, "x")
            for runtime in results.runtimes
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, "", *notes.render(), ""]


def asynchronous(results: Results) -> list[str]:
    lines = [
        "### Asynchronous invocation (Lamina default variant)",
        "",
        "Events accepted per second (each durable before its 202) over 8 connections with one "
        "dispatcher worker; then the server restarts with 8 workers and drains the queue "
        "(rate from 90% to 10% of it). Median (min-max) of the repeats. The peers have no "
        "queue: serverless-offline runs Event invokes fire-and-forget; python-lambda-local "
        "and the floor have no asynchronous path.",
        "",
        "| runtime | events | accepted / s | drained / s |",
        "|---|---:|---:|---:|",
    ]
    for runtime, run in next(iter(results.raw.get("async", {}).values()), {}).items():
        if "failed" in run:
            lines.append(f"| {runtime} | | {run['failed']} | |")
            continue
        accept, drain = Spread.of(run["accept_runs"]), Spread.of(run["drain_runs"])
        notes = Footnotes()
        lines.append(
            f"| {runtime} | {run['events']} | {spread(accept, notes)} | {spread(drain, notes)} |"
        )
    return [*lines, "", *_others(results, "ASYNC", SAME_QUEUE), ""]


def _growth(samples: list[dict[str, float]], key: str) -> float:
    """Last quarter's mean minus the first quarter's: start-up allocation does not count."""
    quarter = max(1, len(samples) // 4)
    first = sum(sample[key] for sample in samples[:quarter]) / quarter
    return sum(sample[key] for sample in samples[-quarter:]) / quarter - first


SAME_QUEUE = "skipped: the queue and its dispatcher are the same code under every variant"
SOAK_ONCE = (
    "skipped: the soak checks Lamina's own memory over time; a minute per runtime for every "
    "target would push `make bench` past 15 minutes"
)


def _others(results: Results, capability: str, lamina_reason: str) -> list[str]:
    """What the targets a Lamina-only table leaves out would show, and why."""
    lines = []
    for name, info in results.targets.items():
        if name == BASELINE:
            continue
        reason = info["unsupported"].get(capability) if capability else None
        if info.get("skipped"):
            why = f"skipped: {info['skipped']}"
        elif reason:
            why = f"not supported: {reason}"
        else:
            why = lamina_reason
        lines.append(f"- {name}: {why}")
    return lines


def soak(results: Results) -> list[str]:
    lines = [
        "### Soak (Lamina default variant)",
        "",
        "Back-to-back no-op invokes at concurrency 8; latency per window of the run, and memory "
        "sampled every second: the server process's RSS, and the PSS of its whole tree (the "
        "8 environments included). Growth: mean of the last quarter of the samples minus mean "
        "of the first quarter.",
        "",
        "| runtime | invocations | errors | p50 first → last window (ms) | "
        "p99 first → last window (ms) | server RSS growth (MiB) | whole tree PSS growth (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    runs: dict[str, Any] = next(iter(results.raw.get("soak", {}).values()), {})
    for runtime, run in runs.items():
        windows = run.get("windows")
        if not windows:
            lines.append(f"| {runtime} | {run.get('failed', 'no data')} | | | | |")
            continue
        first, last = windows[0], windows[-1]
        lines.append(
            f"| {runtime} | {run['invocations']:,} | {run['errors']} | "
            f"{number(first['p50'])} → {number(last['p50'])} | "
            f"{number(first['p99'])} → {number(last['p99'])} | "
            f"{_growth(run['memory'], 'server_rss_mib'):+.1f} | "
            f"{_growth(run['memory'], 'tree_pss_mib'):+.1f} |"
        )
    return [*lines, "", *_others(results, "", SOAK_ONCE), ""]
