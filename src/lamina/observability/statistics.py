"""Statistic sets: what CloudWatch keeps per metric and period, plus a histogram for percentiles.

A set holds SampleCount, Sum, Minimum and Maximum, which merge exactly, and optionally a
histogram of logarithmic buckets (16 per doubling, so about 4.4 % wide), which merges
exactly too. Percentiles read from the histogram are within about 2 % of the true value and
are clamped to [Minimum, Maximum], so a set of one sample, or of equal samples, gives the
exact value (the cases where CloudWatch itself promises percentiles of a statistic set).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

BUCKETS_PER_DOUBLING = 16
# Zero and negative values share one bucket below every positive one.
ZERO_BUCKET = -(1 << 30)

STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100(?:\.0+)?)$")


def bucket_of(value: float) -> int:
    """Bucket b holds (2^((b-1)/16), 2^(b/16)]: upper edges are inclusive, as Prometheus'
    `le` bounds are, so every power of two is an exact histogram bound."""
    if value <= 0:
        return ZERO_BUCKET
    return math.ceil(math.log2(value) * BUCKETS_PER_DOUBLING)


def bucket_upper(bucket: int) -> float:
    if bucket == ZERO_BUCKET:
        return 0.0
    return float(2 ** (bucket / BUCKETS_PER_DOUBLING))


def bucket_value(bucket: int) -> float:
    """A representative value of a bucket: its geometric middle."""
    if bucket == ZERO_BUCKET:
        return 0.0
    return float(2 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING))


def percentile_of(name: str) -> float | None:
    """The percentile a statistic name such as `p99` or `p99.9` asks for, else None."""
    match = _PERCENTILE.match(name)
    return float(match.group(1)) if match else None


@dataclass(slots=True)
class StatSet:
    """SampleCount, Sum, Minimum, Maximum and (optionally) a histogram of the samples."""

    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    buckets: dict[int, int] | None = field(default=None)

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        if self.buckets is not None:
            bucket = bucket_of(value)
            self.buckets[bucket] = self.buckets.get(bucket, 0) + 1

    def merge(self, other: StatSet) -> None:
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        if other.buckets:
            if self.buckets is None:
                self.buckets = {}
            for bucket, count in other.buckets.items():
                self.buckets[bucket] = self.buckets.get(bucket, 0) + count

    def percentile(self, p: float) -> float | None:
        """The nearest-rank percentile, or None when no histogram was kept."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(p / 100 * self.count))
        # The extremes are known exactly; only ranks in between are read from buckets.
        if rank == 1 or self.minimum == self.maximum:
            return self.minimum
        if rank >= self.count:
            return self.maximum
        if not self.buckets:
            return None
        seen = 0
        value = self.maximum
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                value = bucket_value(bucket)
                break
        return min(self.maximum, max(self.minimum, value))

    def statistic(self, name: str) -> float | None:
        """One CloudWatch statistic (`Sum`, `Average`, ..., or a percentile `pNN.N`)."""
        if self.count == 0:
            return None
        if name == "SampleCount":
            return float(self.count)
        if name == "Sum":
            return self.total
        if name == "Average":
            return self.total / self.count
        if name == "Minimum":
            return self.minimum
        if name == "Maximum":
            return self.maximum
        p = percentile_of(name)
        return self.percentile(p) if p is not None else None
