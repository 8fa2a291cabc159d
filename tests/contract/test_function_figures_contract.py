"""The functions list's figures (`FunctionFigures` over `MetricsStore.function_minutes`): every
function's invocations, errors and p99 duration of the last hour, from its own series only
(not its alias or version series, not account-wide ones), in one read."""

from __future__ import annotations

import pytest

from lamina import metrics as m
from lamina.observability.aggregation import dims_key
from lamina.observability.function_figures import Figures, FunctionFigures
from lamina.observability.statistics import StatSet
from lamina.store.protocols.metrics import MetricDelta, MetricsStore
from tests.support.backends import Backend

NOW_MINUTE = 30_000_000
NOW = NOW_MINUTE * 60 + 30.0


@pytest.fixture
def metrics(store_backend: Backend) -> MetricsStore:
    return store_backend.metrics()


def row(metric: str, function: str, minute: int, values: list[float], **extra: str) -> MetricDelta:
    dims = dims_key([("FunctionName", function), *extra.items()])
    stats = StatSet(buckets={} if metric == m.DURATION else None)
    for value in values:
        stats.add(value)
    return MetricDelta(
        metric,
        dims,
        minute,
        function,
        stats.count,
        stats.total,
        stats.minimum,
        stats.maximum,
        stats.buckets,
    )


def test_figures_of_every_function_over_the_last_hour(metrics: MetricsStore) -> None:
    durations = [float(value) for value in range(1, 101)]
    metrics.merge(
        [
            row(m.INVOCATIONS, "f", NOW_MINUTE, [1.0] * 60),
            row(m.INVOCATIONS, "f", NOW_MINUTE - 59, [1.0] * 40),
            row(m.ERRORS, "f", NOW_MINUTE, [1.0] * 3 + [0.0] * 57),
            row(m.DURATION, "f", NOW_MINUTE, durations[:60]),
            row(m.DURATION, "f", NOW_MINUTE - 59, durations[60:]),
            # Older than the hour: left out.
            row(m.INVOCATIONS, "f", NOW_MINUTE - 60, [1.0] * 1000),
            # The alias's series repeats the function's invocations: not counted twice.
            row(m.INVOCATIONS, "f", NOW_MINUTE, [1.0] * 60, Resource="f:live"),
            row(m.INVOCATIONS, "g", NOW_MINUTE - 10, [1.0] * 2),
            row(m.THROTTLES, "h", NOW_MINUTE, [1.0]),  # no figure this list shows
        ],
        [],
    )
    figures = FunctionFigures(metrics, clock=lambda: NOW).last_hour()
    assert set(figures) == {"f", "g"}
    assert figures["f"].invocations == 100
    assert figures["f"].errors == 3
    p99 = figures["f"].p99_ms
    assert p99 is not None and 95.0 <= p99 <= 100.0  # from the histogram's buckets
    assert figures["g"] == Figures(invocations=2, errors=0, p99_ms=None)


def test_figures_of_the_functions_named(metrics: MetricsStore) -> None:
    metrics.merge(
        [
            row(m.INVOCATIONS, "f", NOW_MINUTE, [1.0] * 4),
            row(m.INVOCATIONS, "f", NOW_MINUTE, [1.0] * 4, Resource="f:live"),
            row(m.INVOCATIONS, "g", NOW_MINUTE, [1.0] * 2),
            row(m.DURATION, "g", NOW_MINUTE - 60, [5.0]),  # before the hour
        ],
        [],
    )
    figures = FunctionFigures(metrics, clock=lambda: NOW)
    assert figures.last_hour(["f", "quiet"]) == {"f": Figures(invocations=4)}
    assert figures.last_hour(["g"]) == {"g": Figures(invocations=2)}
    assert figures.last_hour([]) == {}


def test_no_figures_without_metrics(metrics: MetricsStore) -> None:
    assert FunctionFigures(metrics, clock=lambda: NOW).last_hour() == {}


def test_function_minutes_reads_only_functions_own_series(metrics: MetricsStore) -> None:
    own = row(m.ERRORS, "f", NOW_MINUTE, [1.0])
    metrics.merge([own, row(m.ERRORS, "f", NOW_MINUTE, [1.0], ExecutedVersion="3")], [])
    assert metrics.function_minutes([m.ERRORS], NOW_MINUTE, NOW_MINUTE) == [own]
    assert metrics.function_minutes([m.INVOCATIONS], NOW_MINUTE, NOW_MINUTE) == []
    assert metrics.function_minutes([m.ERRORS], NOW_MINUTE + 1, NOW_MINUTE + 2) == []
