"""Percentiles of one run, and medians with their spread over rotated rounds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: with n samples, p99.9 is the maximum until n reaches 1,000."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def latency_figures(samples: Sequence[float], prefix: str, tail: bool = True) -> dict[str, float]:
    figures = {
        f"{prefix}.p50": percentile(samples, 0.5),
        f"{prefix}.p99": percentile(samples, 0.99),
    }
    if tail:
        figures[f"{prefix}.p999"] = percentile(samples, 0.999)
    return figures


@dataclass(frozen=True)
class Spread:
    """The median of one figure over rounds, with the lowest and highest round."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values), len(values))
