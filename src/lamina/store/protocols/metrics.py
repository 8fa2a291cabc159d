"""Per-minute metric series and billable usage.

Writers hand in deltas (what happened since their last flush); rows merge additively, so a
delta for a minute that already has a row (a long invocation reporting late, or a restart
within the minute) adds to it instead of replacing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

import orjson


class MetricDelta(NamedTuple):
    """Samples of one metric series (metric + dimensions) in one minute."""

    metric: str
    dims: str  # canonical JSON of the sorted (name, value) pairs
    minute: int  # epoch seconds // 60
    function: str  # the FunctionName dimension, "" for account-wide series
    samples: int
    total: float
    minimum: float
    maximum: float
    buckets: dict[int, int] | None  # histogram bucket -> count, merged bucket by bucket


def own_series(function: str) -> str:
    """The `dims` of a function's own series: FunctionName its one dimension."""
    return orjson.dumps([["FunctionName", function]]).decode()


class UsageDelta(NamedTuple):
    """Billable use of one function version at one memory size in one minute."""

    minute: int
    function: str
    version: str
    architecture: str
    memory_mb: int
    requests: int
    billed_ms: int
    duration_ms: float
    init_ms: float


class UsageTotal(NamedTuple):
    function: str
    architecture: str
    memory_mb: int
    requests: int
    billed_ms: int
    duration_ms: float


class MetricsStore(Protocol):
    """Metric minutes and usage minutes; safe to use from several threads."""

    def merge(self, metrics: Iterable[MetricDelta], usage: Iterable[UsageDelta]) -> None:
        """Add both kinds of deltas in one transaction."""
        ...

    def series(self, metric: str, dims: str, first: int, last: int) -> list[MetricDelta]:
        """The rows of one series for minutes `first` to `last` inclusive, oldest first."""
        ...

    def function_minutes(
        self,
        metrics: Sequence[str],
        first: int,
        last: int,
        functions: Sequence[str] | None = None,
    ) -> list[MetricDelta]:
        """The rows of functions' own series (FunctionName the one dimension) of these
        metrics for minutes `first` to `last` inclusive, in one read: of the `functions`
        named (index lookups), else of every function with data in those minutes."""
        ...

    def series_names(self, since_minute: int) -> list[tuple[str, str]]:
        """(metric, dims) of every series with data since a minute, sorted."""
        ...

    def usage(self, since_minute: int, function: str | None = None) -> list[UsageTotal]:
        """Use since a minute per function, architecture and memory size; by function and size."""
        ...

    def prune(self, before_minute: int) -> int:
        """Forget metric minutes before a minute (usage is kept, for billing); how many."""
        ...

    def close(self) -> None: ...
