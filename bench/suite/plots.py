"""PNG plots of the summary: one figure per question, medians with min-max error bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import NullFormatter, ScalarFormatter

from bench.suite.stats import Spread
from bench.suite.summary import Results

PNG_NAMES = (
    "cold_start.png",
    "warm_latency.png",
    "overhead.png",
    "server_cpu.png",
    "throughput.png",
    "cpu_scaling.png",
    "echo.png",
    "burst.png",
    "idle_memory.png",
    "function_url.png",
    "soak.png",
)


def _bars(
    axes: Axes,
    results: Results,
    runtime: str,
    series: list[tuple[str, str]],
    ylabel: str,
    log: bool = False,
) -> None:
    """Grouped bars: one group per target, one bar per (label, figure key) in `series`."""
    targets = results.measured()
    width = 0.8 / len(series)
    drawn = False
    for offset, (label, key) in enumerate(series):
        xs, heights, lows, highs = [], [], [], []
        for index, target in enumerate(targets):
            cell = results.cell(target, runtime, key)
            if isinstance(cell, Spread):
                xs.append(index + (offset - (len(series) - 1) / 2) * width)
                heights.append(cell.median)
                lows.append(cell.median - cell.low)
                highs.append(cell.high - cell.median)
        axes.bar(xs, heights, width, yerr=[lows, highs], capsize=2, label=label)
        drawn = drawn or any(height > 0 for height in heights)
    axes.set_xticks(range(len(targets)), targets, rotation=25, ha="right", fontsize=8)
    axes.set_ylabel(ylabel)
    axes.set_title(runtime.capitalize())
    if not drawn:
        axes.text(0.5, 0.5, "not measured", ha="center", transform=axes.transAxes)
    elif log:
        axes.set_yscale("log")
        # Plain numbers (2, 20, 200) rather than powers of ten: they are read as milliseconds.
        axes.yaxis.set_major_formatter(ScalarFormatter())
        axes.yaxis.set_minor_formatter(NullFormatter())
    axes.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize=8)


def _figure(
    results: Results,
    path: Path,
    title: str,
    series: list[tuple[str, str]],
    ylabel: str,
    log: bool = False,
) -> None:
    runtimes = results.runtimes
    figure, axes = plt.subplots(
        1, len(runtimes), figsize=(6 * len(runtimes), 4.5), squeeze=False, layout="constrained"
    )
    for subplot, runtime in zip(axes[0], runtimes, strict=True):
        _bars(subplot, results, runtime, series, ylabel, log)
    figure.suptitle(title + " (median of rounds, bars: min-max)")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _throughput(results: Results, path: Path, concurrencies: list[int]) -> None:
    runtimes = results.runtimes
    figure, axes = plt.subplots(
        1, len(runtimes), figsize=(6 * len(runtimes), 4.5), squeeze=False, layout="constrained"
    )
    for subplot, runtime in zip(axes[0], runtimes, strict=True):
        # One colour per target in both panels, even where a target lacks a runtime.
        for colour, target in enumerate(results.measured()):
            points = [
                (concurrency, cell)
                for concurrency in concurrencies
                if isinstance(
                    cell := results.cell(target, runtime, f"throughput.c{concurrency}"), Spread
                )
            ]
            if points:
                subplot.errorbar(
                    [c for c, _ in points],
                    [s.median for _, s in points],
                    yerr=[
                        [s.median - s.low for _, s in points],
                        [s.high - s.median for _, s in points],
                    ],
                    marker="o",
                    capsize=2,
                    label=target,
                    color=f"C{colour}",
                )
        subplot.set_xscale("log", base=2)
        subplot.set_xticks(concurrencies, [str(c) for c in concurrencies])
        subplot.set_xlabel("concurrent connections")
        subplot.set_ylabel("invocations / s")
        subplot.set_title(runtime.capitalize())
        subplot.grid(alpha=0.3)
        subplot.legend(fontsize=8)
    figure.suptitle("Warm no-op throughput vs concurrency (median of rounds, bars: min-max)")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _soak(soak: dict[str, Any], runtimes: tuple[str, ...], path: Path) -> None:
    figure, axes = plt.subplots(
        2, len(runtimes), figsize=(6 * len(runtimes), 7), layout="constrained", squeeze=False
    )
    for column, runtime in enumerate(runtimes):
        run = soak.get(runtime, {})
        windows, memory = run.get("windows", []), run.get("memory", [])
        latency, rss = axes[0][column], axes[1][column]
        for key, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
            latency.plot(
                [w["t"] for w in windows], [w[key] for w in windows], marker=".", label=label
            )
        latency.set_ylabel("latency (ms)")
        latency.set_title(f"{runtime.capitalize()}: {run.get('invocations', 0)} invocations")
        latency.legend(fontsize=8)
        latency.grid(alpha=0.3)
        rss.plot(
            [m["t"] for m in memory], [m["server_rss_mib"] for m in memory], label="server RSS"
        )
        rss.plot(
            [m["t"] for m in memory], [m["tree_pss_mib"] for m in memory], label="whole tree PSS"
        )
        rss.set_ylim(bottom=0)
        rss.set_xlabel("seconds")
        rss.set_ylabel("MiB")
        rss.legend(fontsize=8)
        rss.grid(alpha=0.3)
    figure.suptitle("Soak at concurrency 8, Lamina default: latency and memory over time")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw_all(results: Results, directory: Path) -> None:
    """Every plot (PNG_NAMES), as PNG files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    concurrencies = list(results.raw["config"]["concurrencies"])
    bar_figures: dict[str, tuple[str, list[tuple[str, str]], str, bool]] = {
        "cold_start.png": (
            "Cold start, p50",
            [("no-op", "cold.noop.p50"), ("200 ms init", "cold.init200.p50")],
            "ms (log)",
            True,
        ),
        "warm_latency.png": (
            "Warm no-op latency",
            [("p50", "warm.noop.p50"), ("p99", "warm.noop.p99"), ("p99.9", "warm.noop.p999")],
            "ms (log)",
            True,
        ),
        "overhead.png": (
            "Platform overhead: latency minus handler time, p50",
            [("no-op", "overhead.noop.p50"), ("CPU-bound", "overhead.cpu1769.p50")],
            "ms",
            False,
        ),
        "server_cpu.png": (
            "Server CPU per invocation (whole process tree)",
            [("warm, sequential", "cpu_ms.noop"), ("concurrency 8", "cpu_ms.c8")],
            "CPU ms / invocation",
            False,
        ),
        "cpu_scaling.png": (
            "CPU-bound handler (50 MB of SHA-256): 1,769 MB vs 128 MB",
            [("1769 MB", "cpu1769.p50"), ("128 MB", "cpu128.p50")],
            "ms (log)",
            True,
        ),
        "echo.png": ("1 MB payload echo", [("p50", "echo.p50"), ("p99", "echo.p99")], "ms", False),
        "burst.png": (
            "Burst of concurrent first calls to a cold function",
            [("p50", "burst.p50"), ("p99", "burst.p99")],
            "ms",
            False,
        ),
        "idle_memory.png": (
            "Memory per idle warm environment (whole-tree PSS)",
            [("MiB", "idle.env_mib")],
            "MiB",
            False,
        ),
        "function_url.png": (
            "Function URL vs Invoke throughput at concurrency 8",
            [("URL", "url.throughput"), ("Invoke", "url.invoke_throughput")],
            "invocations / s",
            False,
        ),
    }
    for name, (title, series, ylabel, log) in bar_figures.items():
        _figure(results, directory / name, title, series, ylabel, log)
    _throughput(results, directory / "throughput.png", concurrencies)
    soak: dict[str, Any] = next(iter(results.raw.get("soak", {}).values()), {})
    _soak(soak, results.runtimes, directory / "soak.png")
