"""The metrics Lamina records, named as CloudWatch names them in `AWS/Lambda`, and the
in-memory registry the asynchronous dispatcher records into.

Counters add up; distributions keep count, sum, minimum and maximum (what CloudWatch's
statistics need). Each series is keyed by metric name and function name. A listener (the
telemetry pipeline) also receives every recorded value with its time, so that the same
numbers reach CloudWatch's per-minute series and Prometheus.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

NAMESPACE = "AWS/Lambda"

# Invocation metrics: one sample per invocation (Errors is 0 or 1, so Average is a rate).
INVOCATIONS = "Invocations"
ERRORS = "Errors"
THROTTLES = "Throttles"
DURATION = "Duration"
PROVISIONED_CONCURRENCY_INVOCATIONS = "ProvisionedConcurrencyInvocations"
PROVISIONED_CONCURRENCY_SPILLOVER_INVOCATIONS = "ProvisionedConcurrencySpilloverInvocations"
# Concurrency metrics: samples of a level, read with Maximum.
CONCURRENT_EXECUTIONS = "ConcurrentExecutions"
UNRESERVED_CONCURRENT_EXECUTIONS = "UnreservedConcurrentExecutions"
PROVISIONED_CONCURRENT_EXECUTIONS = "ProvisionedConcurrentExecutions"
PROVISIONED_CONCURRENCY_UTILIZATION = "ProvisionedConcurrencyUtilization"

# Asynchronous invocation (AWS/Lambda namespace).
ASYNC_EVENTS_RECEIVED = "AsyncEventsReceived"
ASYNC_EVENT_AGE = "AsyncEventAge"  # milliseconds from enqueue to an invocation attempt
ASYNC_EVENTS_DROPPED = "AsyncEventsDropped"
DESTINATION_DELIVERY_FAILURES = "DestinationDeliveryFailures"
DEAD_LETTER_ERRORS = "DeadLetterErrors"
RECURSIVE_INVOCATIONS_DROPPED = "RecursiveInvocationsDropped"

# Event source mappings (AWS/Lambda, by EventSourceMappingUUID).
POLLED_EVENT_COUNT = "PolledEventCount"
FILTERED_OUT_EVENT_COUNT = "FilteredOutEventCount"
INVOKED_EVENT_COUNT = "InvokedEventCount"
FAILED_INVOKE_EVENT_COUNT = "FailedInvokeEventCount"
DROPPED_EVENT_COUNT = "DroppedEventCount"
ON_FAILURE_DESTINATION_DELIVERED_EVENT_COUNT = "OnFailureDestinationDeliveredEventCount"
DELETED_EVENT_COUNT = "DeletedEventCount"
ITERATOR_AGE = "IteratorAge"  # milliseconds: the age of a batch's last record when read
MAPPING_METRICS = (
    POLLED_EVENT_COUNT,
    FILTERED_OUT_EVENT_COUNT,
    INVOKED_EVENT_COUNT,
    FAILED_INVOKE_EVENT_COUNT,
    DROPPED_EVENT_COUNT,
    ON_FAILURE_DESTINATION_DELIVERED_EVENT_COUNT,
    DELETED_EVENT_COUNT,
    ITERATOR_AGE,
)

COUNT = "Count"
MILLISECONDS = "Milliseconds"
NONE = "None"
UNITS: dict[str, str] = {
    INVOCATIONS: COUNT,
    ERRORS: COUNT,
    THROTTLES: COUNT,
    DURATION: MILLISECONDS,
    PROVISIONED_CONCURRENCY_INVOCATIONS: COUNT,
    PROVISIONED_CONCURRENCY_SPILLOVER_INVOCATIONS: COUNT,
    CONCURRENT_EXECUTIONS: COUNT,
    UNRESERVED_CONCURRENT_EXECUTIONS: COUNT,
    PROVISIONED_CONCURRENT_EXECUTIONS: COUNT,
    # A fraction of the allocated environments, 0 to 1.
    PROVISIONED_CONCURRENCY_UTILIZATION: NONE,
    ASYNC_EVENTS_RECEIVED: COUNT,
    ASYNC_EVENT_AGE: MILLISECONDS,
    ASYNC_EVENTS_DROPPED: COUNT,
    DESTINATION_DELIVERY_FAILURES: COUNT,
    DEAD_LETTER_ERRORS: COUNT,
    RECURSIVE_INVOCATIONS_DROPPED: COUNT,
    **dict.fromkeys(MAPPING_METRICS, COUNT),
    ITERATOR_AGE: MILLISECONDS,  # the one mapping metric that is not a count
}

# (metric, function, value, epoch seconds)
Listener = Callable[[str, str, float, float], None]


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
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Also hand every recorded value to `listener`; it must not block."""
        self._listeners.append(listener)

    def count(self, metric: str, function: str, value: float = 1) -> None:
        key = (metric, function)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + value
        self._notify(metric, function, value)

    def observe(self, metric: str, function: str, value: float) -> None:
        key = (metric, function)
        with self._lock:
            distribution = self._distributions.get(key)
            if distribution is None:
                distribution = self._distributions[key] = Distribution()
            distribution.add(value)
        self._notify(metric, function, value)

    def _notify(self, metric: str, function: str, value: float) -> None:
        if self._listeners:
            now = time.time()
            for listener in self._listeners:
                listener(metric, function, value, now)

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
