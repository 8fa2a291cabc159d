"""From per-round figures to what the report shows: medians with spread, and ratios taken
between two targets within each round (absolute numbers on a shared machine drift; ratios
from the same round much less)."""

from __future__ import annotations

from typing import Any

from bench.suite.stats import Spread

BASELINE = "lamina"
# A cell is a spread of numbers, or the reason there is none ("not supported: ...").
Cell = Spread | str


def workload_of(key: str) -> str:
    """The workload (see workloads.WORKLOADS) that produces a figure."""
    parts = key.split(".")
    if parts[0] in {"cpu_ms", "overhead"}:
        source = parts[1]
        if source == "noop":
            return "warm"
        if source == "cpu1769":
            return "cpu"
        if source[0] == "c" and source[1:].isdigit():
            return "throughput"
        return source  # cold, echo
    return {"cpu1769": "cpu"}.get(parts[0], parts[0])


class Results:
    """The suite's JSON output, with the look-ups the report needs."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.rounds: list[dict[str, dict[str, dict[str, Any]]]] = raw["rounds"]
        self.targets: dict[str, dict[str, Any]] = raw["targets"]
        self.runtimes: tuple[str, ...] = tuple(raw["config"]["runtimes"])

    def measured(self) -> list[str]:
        return [name for name, info in self.targets.items() if not info.get("skipped")]

    def ran(self, key: str) -> bool:
        """Whether the run had the workload behind `key` at all (older runs lack newer ones)."""
        prefix = f"{workload_of(key)}."
        return any(
            key in figures or any(name.startswith(prefix) for name in figures)
            for round_ in self.rounds
            for by_runtime in round_.values()
            for figures in by_runtime.values()
            if isinstance(figures, dict)
        )

    def _values(self, target: str, runtime: str, key: str) -> list[Any]:
        values = []
        for round_ in self.rounds:
            figures = round_.get(target, {}).get(runtime)
            if figures is not None and key in figures:
                values.append(figures[key])
        return values

    def _reason(self, target: str, runtime: str, key: str) -> str:
        """Why a figure is missing: the target, runtime or workload says."""
        info = self.targets[target]
        if info.get("skipped"):
            return f"skipped: {info['skipped']}"
        if runtime not in info["runtimes"]:
            return str(info["other_runtimes"])
        workload = workload_of(key)
        for round_ in self.rounds:
            figures = round_.get(target, {})
            if "error" in figures:
                return str(figures["error"]["failed"])
            for suffix in ("unsupported", "failed"):
                reason = figures.get(runtime, {}).get(f"{workload}.{suffix}")
                if reason:
                    return str(reason)
        return "not measured"

    def cell(self, target: str, runtime: str, key: str) -> Cell:
        values = [v for v in self._values(target, runtime, key) if isinstance(v, int | float)]
        if not values:
            return self._reason(target, runtime, key)
        return Spread.of(values)

    def ratio(self, target: str, runtime: str, key: str, baseline: str = BASELINE) -> Cell:
        """target's figure divided by baseline's, per round; the spread of those ratios."""
        ratios = []
        for round_ in self.rounds:
            mine = round_.get(target, {}).get(runtime, {}).get(key)
            theirs = round_.get(baseline, {}).get(runtime, {}).get(key)
            if isinstance(mine, int | float) and isinstance(theirs, int | float) and theirs:
                ratios.append(mine / theirs)
        if not ratios:
            cell = self.cell(target, runtime, key)
            return cell if isinstance(cell, str) else self._reason(baseline, runtime, key)
        return Spread.of(ratios)
