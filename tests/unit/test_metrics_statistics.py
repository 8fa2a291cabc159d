"""Statistic sets: exact CloudWatch statistics, percentiles from the histogram."""

from __future__ import annotations

import math
import random

import pytest

from lamina.observability.statistics import (
    BUCKETS_PER_DOUBLING,
    StatSet,
    bucket_of,
    bucket_upper,
    percentile_of,
)


def test_statistics_of_a_few_samples_are_exact() -> None:
    stats = StatSet(buckets={})
    for value in (4.0, 1.0, 7.0):
        stats.add(value)
    assert stats.statistic("SampleCount") == 3
    assert stats.statistic("Sum") == 12
    assert stats.statistic("Average") == 4
    assert stats.statistic("Minimum") == 1
    assert stats.statistic("Maximum") == 7
    # The lowest and highest ranks are the minimum and maximum themselves.
    assert stats.statistic("p0") == 1
    assert stats.statistic("p100") == 7
    assert stats.statistic("p99") == 7


def test_an_empty_set_has_no_statistics() -> None:
    assert StatSet().statistic("Sum") is None
    assert StatSet().percentile(50) is None


def test_one_sample_or_equal_samples_give_exact_percentiles() -> None:
    one = StatSet(buckets={})
    one.add(123.456)
    assert one.percentile(50) == 123.456
    same = StatSet()  # no histogram at all: still exact, as CloudWatch promises
    for _ in range(5):
        same.add(2.5)
    assert same.percentile(90) == 2.5


def test_percentiles_of_many_samples_are_within_the_bucket_width() -> None:
    rng = random.Random(7)
    values = [rng.uniform(1, 5000) for _ in range(10_000)]
    stats = StatSet(buckets={})
    for value in values:
        stats.add(value)
    ordered = sorted(values)
    for p in (50, 90, 99, 99.9):
        exact = ordered[math.ceil(p / 100 * len(ordered)) - 1]
        estimate = stats.percentile(p)
        assert estimate is not None
        # Buckets are 2^(1/16) wide (4.4 %); the middle is within 2.2 % of any value in it.
        assert abs(estimate - exact) / exact < 0.023, (p, estimate, exact)


def test_merging_equals_adding_everything_to_one_set() -> None:
    left, right, whole = StatSet(buckets={}), StatSet(buckets={}), StatSet(buckets={})
    for index, value in enumerate([0.0, 3.0, 9.5, 100.0, 0.25, 42.0]):
        (left if index % 2 else right).add(value)
        whole.add(value)
    left.merge(right)
    assert left == whole


def test_a_set_without_histogram_gains_one_by_merging() -> None:
    plain = StatSet()
    plain.add(1.0)
    other = StatSet(buckets={})
    other.add(8.0)
    plain.merge(other)
    assert plain.buckets == {bucket_of(8.0): 1}


def test_powers_of_two_are_inclusive_bucket_edges() -> None:
    for exponent in (-2, 0, 3, 10):
        value = 2.0**exponent
        assert bucket_of(value) == exponent * BUCKETS_PER_DOUBLING
        assert bucket_upper(bucket_of(value)) == value
        assert bucket_of(value * 1.0001) == exponent * BUCKETS_PER_DOUBLING + 1
    assert bucket_of(0.0) == bucket_of(-1.0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("p99", 99.0), ("p99.9", 99.9), ("p0", 0.0), ("p100", 100.0), ("p50.55", 50.55)],
)
def test_percentile_names(name: str, expected: float) -> None:
    assert percentile_of(name) == expected


@pytest.mark.parametrize("name", ["p101", "p", "P99", "tm99", "Sum", "p-1", "p100.5"])
def test_names_that_are_not_percentiles(name: str) -> None:
    assert percentile_of(name) is None
