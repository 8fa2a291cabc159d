"""An in-memory registry of the metrics Lamina records, named as CloudWatch names them.

Counters add up; distributions keep count, sum, minimum and maximum (what CloudWatch's
statistics need). Each series is keyed by metric name and function name. Exposing them is
the observability layer's job; this module only records.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# Asynchronous invocation (AWS/Lambda namespace).
ASYNC_EVENTS_RECEIVED = "AsyncEventsReceived"
ASYNC_EVENT_AGE = "AsyncEventAge"  # milliseconds from enqueue to an invocation attempt
ASYNC_EVENTS_DROPPED = "AsyncEventsDropped"
DESTINATION_DELIVERY_FAILURES = "DestinationDeliveryFailures"
DEAD_LETTER_ERRORS = "DeadLetterErrors"
RECURSIVE_INVOCATIONS_DROPPED = "RecursiveInvocationsDropped"


@dataclass
class Distribution:
    count: int = 0
    total: float = 0.0
    minimum: float = 0.0
    maximum: float = 0.0

    def add(self, value: float) -> None:
        if self.count == 0 or value < self.minimum:
            self.minimum = value
        if self.count == 0 or value > self.maximum:
            self.maximum = value
        self.count += 1
        self.total += value


class MetricsRegistry:
    """Thread-safe counters and distributions per (metric, function)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], float] = {}
        self._distributions: dict[tuple[str, str], Distribution] = {}

    def count(self, metric: str, function: str, value: float = 1) -> None:
        key = (metric, function)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + value

    def observe(self, metric: str, function: str, value: float) -> None:
        key = (metric, function)
        with self._lock:
            distribution = self._distributions.get(key)
            if distribution is None:
                distribution = self._distributions[key] = Distribution()
            distribution.add(value)

    def counter(self, metric: str, function: str) -> float:
        with self._lock:
            return self._counters.get((metric, function), 0)

    def distribution(self, metric: str, function: str) -> Distribution:
        with self._lock:
            found = self._distributions.get((metric, function))
            return Distribution(**vars(found)) if found else Distribution()

    def snapshot(self) -> dict[str, dict[str, dict[str, float]]]:
        """metric -> function -> statistics ({"Sum": n} for counters)."""
        result: dict[str, dict[str, dict[str, float]]] = {}
        with self._lock:
            for (metric, function), value in self._counters.items():
                result.setdefault(metric, {})[function] = {"Sum": value}
            for (metric, function), dist in self._distributions.items():
                result.setdefault(metric, {})[function] = {
                    "SampleCount": dist.count,
                    "Sum": dist.total,
                    "Minimum": dist.minimum,
                    "Maximum": dist.maximum,
                }
        return result
