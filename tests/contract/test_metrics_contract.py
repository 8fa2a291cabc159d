"""The MetricsStore contract: additive merges (histograms bucket by bucket), series reads,
usage totals, pruning, concurrent writers and reopening."""

from __future__ import annotations

import threading

import pytest

from lamina.store.protocols.metrics import MetricDelta, MetricsStore, UsageDelta, UsageTotal
from tests.support.backends import Backend

FN = '[["FunctionName","f"]]'
ACCOUNT = "[]"


@pytest.fixture
def metrics(store_backend: Backend) -> MetricsStore:
    return store_backend.metrics()


def delta(
    minute: int,
    samples: int = 1,
    value: float = 10.0,
    metric: str = "Duration",
    dims: str = FN,
    buckets: dict[int, int] | None = None,
) -> MetricDelta:
    function = "f" if dims == FN else ""
    return MetricDelta(
        metric, dims, minute, function, samples, value * samples, value, value, buckets
    )


def usage(
    minute: int, function: str = "f", version: str = "$LATEST", memory: int = 128
) -> UsageDelta:
    return UsageDelta(minute, function, version, "x86_64", memory, 2, 200, 150.5, 20.0)


def test_a_delta_round_trips(metrics: MetricsStore) -> None:
    sent = MetricDelta("Duration", FN, 100, "f", 3, 30.5, 1.5, 20.0, {7: 2, 12: 1})
    metrics.merge([sent], [])
    assert metrics.series("Duration", FN, 100, 100) == [sent]
    assert metrics.series("Duration", FN, 101, 200) == []
    assert metrics.series("Duration", ACCOUNT, 100, 100) == []
    assert metrics.series("Errors", FN, 100, 100) == []


def test_merges_add_up_and_keep_the_extremes(metrics: MetricsStore) -> None:
    metrics.merge([MetricDelta("Duration", FN, 100, "f", 2, 30.0, 10.0, 20.0, {1: 1, 2: 1})], [])
    metrics.merge([MetricDelta("Duration", FN, 100, "f", 1, 5.0, 5.0, 5.0, {1: 3, 9: 1})], [])
    (row,) = metrics.series("Duration", FN, 100, 100)
    assert (row.samples, row.total, row.minimum, row.maximum) == (3, 35.0, 5.0, 20.0)
    assert row.buckets == {1: 4, 2: 1, 9: 1}


def test_a_series_without_histogram_stays_without(metrics: MetricsStore) -> None:
    metrics.merge([delta(100, metric="Errors")], [])
    metrics.merge([delta(100, metric="Errors", samples=2)], [])
    (row,) = metrics.series("Errors", FN, 0, 1000)
    assert (row.samples, row.buckets) == (3, None)


def test_series_read_a_range_of_minutes_oldest_first(metrics: MetricsStore) -> None:
    metrics.merge([delta(minute) for minute in (105, 101, 103, 110)], [])
    assert [row.minute for row in metrics.series("Duration", FN, 101, 105)] == [101, 103, 105]


def test_series_names_since_a_minute(metrics: MetricsStore) -> None:
    metrics.merge(
        [
            delta(100, metric="Invocations"),
            delta(100, metric="Duration"),
            delta(200, metric="Duration"),
            delta(200, metric="Duration", dims=ACCOUNT),
            delta(50, metric="Errors"),
        ],
        [],
    )
    # In code point order, as Python sorts strings.
    assert metrics.series_names(100) == [
        ("Duration", FN),
        ("Duration", ACCOUNT),
        ("Invocations", FN),
    ]
    assert metrics.series_names(150) == [("Duration", FN), ("Duration", ACCOUNT)]
    assert metrics.series_names(300) == []


def test_usage_totals_per_function_architecture_and_memory(metrics: MetricsStore) -> None:
    metrics.merge(
        [],
        [
            usage(100),
            usage(100, version="1"),  # another version: same totals row
            usage(101),
            usage(101, memory=1024),
            usage(100, function="a"),
            usage(50, function="old"),
        ],
    )
    metrics.merge([], [usage(101)])  # merged into the existing minute
    assert metrics.usage(100) == [
        UsageTotal("a", "x86_64", 128, 2, 200, 150.5),
        UsageTotal("f", "x86_64", 128, 8, 800, 602.0),
        UsageTotal("f", "x86_64", 1024, 2, 200, 150.5),
    ]
    assert metrics.usage(100, "a") == [UsageTotal("a", "x86_64", 128, 2, 200, 150.5)]
    assert metrics.usage(0, "old") == [UsageTotal("old", "x86_64", 128, 2, 200, 150.5)]
    assert metrics.usage(1000) == []


def test_prune_forgets_old_metric_minutes_but_keeps_usage(metrics: MetricsStore) -> None:
    metrics.merge([delta(minute) for minute in (10, 20, 30)], [usage(10)])
    assert metrics.prune(25) == 2
    assert [row.minute for row in metrics.series("Duration", FN, 0, 100)] == [30]
    assert metrics.prune(25) == 0
    assert metrics.usage(0) == [UsageTotal("f", "x86_64", 128, 2, 200, 150.5)]


def test_concurrent_merges_add_up(metrics: MetricsStore) -> None:
    start = threading.Barrier(4)

    def writer() -> None:
        start.wait()
        for _ in range(50):
            metrics.merge([delta(100, buckets={3: 1})], [usage(100)])

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    (row,) = metrics.series("Duration", FN, 100, 100)
    assert (row.samples, row.buckets) == (200, {3: 200})
    assert metrics.usage(100)[0].requests == 400


def test_metrics_survive_reopening_the_store(store_backend: Backend) -> None:
    store_backend.metrics().merge([delta(100)], [usage(100)])
    again = store_backend.metrics()
    assert [row.samples for row in again.series("Duration", FN, 100, 100)] == [1]
    assert again.usage(100)[0].requests == 2
