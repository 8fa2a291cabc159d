"""The functions list's figures: each function's invocations, errors and p99 duration over
the last hour, read from the metrics store in one query for every function at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from lamina import metrics as m
from lamina.observability.statistics import StatSet
from lamina.store.protocols.metrics import MetricsStore

WINDOW_S = 3600


@dataclass(frozen=True)
class Figures:
    """One function's last hour: counts, and the 99th percentile of Duration in ms (None
    without invocations)."""

    invocations: int = 0
    errors: int = 0
    p99_ms: float | None = None


class FunctionFigures:
    """Reads the last hour's figures of every function (blocking: call off the loop)."""

    def __init__(self, store: MetricsStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def last_hour(self, functions: Collection[str] | None = None) -> dict[str, Figures]:
        """Figures by function name, of the `functions` named (the page's: read by index)
        or of every function; those with no data in the hour are absent. The current
        minute counts as far as the metrics have been flushed."""
        last = int(self._clock() // 60)
        first = last - WINDOW_S // 60 + 1
        metrics = (m.INVOCATIONS, m.ERRORS, m.DURATION)
        totals: dict[str, dict[str, float]] = {}
        durations: dict[str, StatSet] = {}
        names = sorted(functions) if functions is not None else None
        for row in self._store.function_minutes(metrics, first, last, names):
            if row.metric == m.DURATION:
                stats = durations.setdefault(row.function, StatSet(buckets={}))
                stats.merge(StatSet(row.samples, row.total, row.minimum, row.maximum, row.buckets))
            else:
                by_metric = totals.setdefault(row.function, {})
                by_metric[row.metric] = by_metric.get(row.metric, 0.0) + row.total
        return {
            function: Figures(
                invocations=round(totals.get(function, {}).get(m.INVOCATIONS, 0.0)),
                errors=round(totals.get(function, {}).get(m.ERRORS, 0.0)),
                p99_ms=durations[function].percentile(99) if function in durations else None,
            )
            for function in sorted(totals.keys() | durations.keys())
        }
