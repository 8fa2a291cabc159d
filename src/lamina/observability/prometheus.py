"""The `/metrics` page: Lambda's metrics in Prometheus' text format.

Names are CloudWatch's, made Prometheus-shaped: `aws_lambda_` + the metric in snake case
(+ `_total` for counters, + the unit for durations), so `Invocations` is
`aws_lambda_invocations_total` and `Duration` (Milliseconds) the histogram
`aws_lambda_duration_milliseconds`. Invocation series carry `function_name`, `resource`
(the function, `name:alias` or `name:version`) and `executed_version` labels; each invocation
counts in exactly one series, so `sum by (function_name)` gives a function's totals.
Counters run from the server's start, as Prometheus expects. Lamina's own additions
(billing, warm environments) are prefixed `lamina_`. Event source mapping series carry
`event_source_mapping_uuid` instead, as CloudWatch publishes them by EventSourceMappingUUID.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import CollectorRegistry

from lamina import metrics as m
from lamina.observability.aggregation import Cell
from lamina.observability.statistics import BUCKETS_PER_DOUBLING, StatSet
from lamina.observability.telemetry import LiveLevels

PATH = "/metrics"
# Duration histogram bounds: powers of two from 1/4 ms to about 17 minutes. They are edges
# of the fine histogram kept for CloudWatch's percentiles, so the counts are exact.
_BOUND_EXPONENTS = range(-2, 21)
_LABELS = ["function_name", "resource", "executed_version"]
_ASYNC_COUNTERS = (
    m.ASYNC_EVENTS_RECEIVED,
    m.ASYNC_EVENTS_DROPPED,
    m.DESTINATION_DELIVERY_FAILURES,
    m.DEAD_LETTER_ERRORS,
    m.RECURSIVE_INVOCATIONS_DROPPED,
)


_MAPPING_COUNTERS = tuple(metric for metric in m.MAPPING_METRICS if metric != m.ITERATOR_AGE)
_MAPPING_LABELS = ["event_source_mapping_uuid"]


def prometheus_name(metric: str) -> str:
    """`AsyncEventsReceived` -> `aws_lambda_async_events_received`."""
    return "aws_lambda_" + re.sub(r"(?<!^)(?=[A-Z])", "_", metric).lower()


class _Families:
    """A collector over families built for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(
    totals: Mapping[tuple[str, str, str], Cell],
    levels: LiveLevels,
    async_snapshot: Mapping[str, Mapping[str, Mapping[str, float]]],
    accept: str,
) -> tuple[bytes, str]:
    """The page's body and content type (OpenMetrics when the scraper asks for it).

    `async_snapshot` holds the asynchronous dispatcher's counters by function and the event
    source mapping pollers' by mapping UUID (`MetricsRegistry.snapshot` shapes, merged)."""
    families = [
        *_invocation_families(totals),
        *_level_families(levels),
        *_async_families(async_snapshot),
        *_mapping_families(async_snapshot),
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def _invocation_families(totals: Mapping[tuple[str, str, str], Cell]) -> list[Metric]:
    def counter(metric: str, text: str) -> CounterMetricFamily:
        return CounterMetricFamily(
            prometheus_name(metric), f"{metric} (AWS/Lambda): {text}", labels=_LABELS
        )

    invocations = counter(m.INVOCATIONS, "invocations that ran, including function errors.")
    errors = counter(m.ERRORS, "invocations that ended in a function error.")
    throttles = counter(m.THROTTLES, "invocation requests refused for concurrency (429).")
    provisioned = counter(
        m.PROVISIONED_CONCURRENCY_INVOCATIONS, "invocations run on provisioned concurrency."
    )
    spillover = counter(
        m.PROVISIONED_CONCURRENCY_SPILLOVER_INVOCATIONS,
        "invocations run on demand while all provisioned environments were busy.",
    )
    billed = CounterMetricFamily(
        "lamina_billed_duration_milliseconds",
        "Billed duration (init included, rounded up to 1 ms), as AWS would bill it.",
        labels=_LABELS,
    )
    gb_seconds = CounterMetricFamily(
        "lamina_gb_seconds", "Compute billed: memory (GB) x billed duration (s).", labels=_LABELS
    )
    duration = HistogramMetricFamily(
        prometheus_name(m.DURATION) + "_milliseconds",
        "Duration (AWS/Lambda): time the function code ran per invocation, in milliseconds.",
        labels=_LABELS,
    )
    for key, cell in sorted(totals.items()):
        labels = list(key)
        count = cell.duration.count
        if count:
            invocations.add_metric(labels, count)
            errors.add_metric(labels, cell.errors)
            provisioned.add_metric(labels, cell.provisioned)
            spillover.add_metric(labels, cell.spillover)
            billed.add_metric(labels, cell.billed_ms)
            gb_seconds.add_metric(labels, cell.gb_seconds)
            duration.add_metric(labels, _histogram(cell.duration), cell.duration.total)
        throttles.add_metric(labels, cell.throttles)
    return [invocations, errors, throttles, duration, provisioned, spillover, billed, gb_seconds]


def _histogram(stats: StatSet) -> list[tuple[str, float]]:
    """Cumulative counts at each power-of-two bound, then +Inf."""
    counts = sorted((stats.buckets or {}).items())
    buckets: list[tuple[str, float]] = []
    seen = 0
    index = 0
    for exponent in _BOUND_EXPONENTS:
        edge = exponent * BUCKETS_PER_DOUBLING
        while index < len(counts) and counts[index][0] <= edge:
            seen += counts[index][1]
            index += 1
        buckets.append((repr(2.0**exponent), seen))
    buckets.append(("+Inf", stats.count))
    return buckets


def _level_families(levels: LiveLevels) -> list[Metric]:
    concurrency = GaugeMetricFamily(
        prometheus_name(m.CONCURRENT_EXECUTIONS),
        f"{m.CONCURRENT_EXECUTIONS} (AWS/Lambda): invocations in flight now.",
        labels=["function_name"],
    )
    for function, level in sorted(levels.in_flight.items()):
        concurrency.add_metric([function], level)
    unreserved = GaugeMetricFamily(
        prometheus_name(m.UNRESERVED_CONCURRENT_EXECUTIONS),
        f"{m.UNRESERVED_CONCURRENT_EXECUTIONS} (AWS/Lambda): in flight on unreserved concurrency.",
        value=levels.unreserved_in_flight,
    )
    limit = GaugeMetricFamily(
        "lamina_account_concurrency_limit",
        "The account's concurrency limit (LAMINA_ACCOUNT_CONCURRENCY).",
        value=levels.account_limit,
    )
    provisioned = GaugeMetricFamily(
        prometheus_name(m.PROVISIONED_CONCURRENT_EXECUTIONS),
        f"{m.PROVISIONED_CONCURRENT_EXECUTIONS} (AWS/Lambda): provisioned environments busy now.",
        labels=["function_name", "resource"],
    )
    utilization = GaugeMetricFamily(
        prometheus_name(m.PROVISIONED_CONCURRENCY_UTILIZATION),
        f"{m.PROVISIONED_CONCURRENCY_UTILIZATION} (AWS/Lambda): busy / allocated, 0 to 1.",
        labels=["function_name", "resource"],
    )
    warm = GaugeMetricFamily(
        "lamina_warm_environments",
        "Execution environments alive now (idle or busy, on-demand and provisioned).",
        labels=["function_name"],
    )
    environments = dict(levels.environments)
    for function, qualifier, busy, held in sorted(levels.provisioned):
        labels = [function, f"{function}:{qualifier}"]
        provisioned.add_metric(labels, busy)
        utilization.add_metric(labels, busy / held if held else 0.0)
        environments[function] = environments.get(function, 0) + held
    for function, count in sorted(environments.items()):
        warm.add_metric([function], count)
    return [concurrency, unreserved, limit, provisioned, utilization, warm]


def _async_families(snapshot: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[Metric]:
    families: list[Metric] = []
    for metric in _ASYNC_COUNTERS:
        family = CounterMetricFamily(
            prometheus_name(metric),
            f"{metric} (AWS/Lambda), asynchronous invocation.",
            labels=["function_name"],
        )
        for function, stats in sorted(snapshot.get(metric, {}).items()):
            family.add_metric([function], stats.get("Sum", 0.0))
        families.append(family)
    age = SummaryMetricFamily(
        prometheus_name(m.ASYNC_EVENT_AGE) + "_milliseconds",
        f"{m.ASYNC_EVENT_AGE} (AWS/Lambda): time from queueing an event to invoking it.",
        labels=["function_name"],
    )
    for function, stats in sorted(snapshot.get(m.ASYNC_EVENT_AGE, {}).items()):
        age.add_metric([function], int(stats.get("SampleCount", 0)), stats.get("Sum", 0.0))
    families.append(age)
    return families


def _mapping_families(snapshot: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[Metric]:
    """The pollers' counters per event source mapping, every mapping's (on AWS they reach
    CloudWatch only for mappings whose MetricsConfig names EventCount)."""
    families: list[Metric] = []
    for metric in _MAPPING_COUNTERS:
        family = CounterMetricFamily(
            prometheus_name(metric),
            f"{metric} (AWS/Lambda), event source mapping.",
            labels=_MAPPING_LABELS,
        )
        for uuid, stats in sorted(snapshot.get(metric, {}).items()):
            family.add_metric([uuid], stats.get("Sum", 0.0))
        families.append(family)
    age = SummaryMetricFamily(
        prometheus_name(m.ITERATOR_AGE) + "_milliseconds",
        f"{m.ITERATOR_AGE} (AWS/Lambda): age of a stream batch's last record when read.",
        labels=_MAPPING_LABELS,
    )
    for uuid, stats in sorted(snapshot.get(m.ITERATOR_AGE, {}).items()):
        age.add_metric([uuid], int(stats.get("SampleCount", 0)), stats.get("Sum", 0.0))
    families.append(age)
    return families
