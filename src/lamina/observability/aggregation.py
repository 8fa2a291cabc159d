"""Folds observed invocations into CloudWatch's per-minute series, usage, Prometheus totals
and the last few minutes per second (for `lamina top`).

Everything here runs off the event loop, in whichever thread holds the telemetry lock, so
none of it is on an invocation's path. Items are the tuples `Telemetry` queues.

Each invocation is folded once, into a `Cell` of its minute, function, alias and version
(and one of its second, for `top`). Cells are spread over the dimension sets CloudWatch
publishes (account, function, resource, executed version) and into the Prometheus totals
when they are settled, once per cell and flush rather than once per invocation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from lamina import metrics as m
from lamina.constants import LATEST
from lamina.invoke.events import InvocationRecord
from lamina.model.mappings import EventSourceMapping
from lamina.observability.billing import gb_seconds
from lamina.observability.statistics import StatSet
from lamina.store.protocols.metrics import MetricDelta, UsageDelta

# How many seconds of per-second history `lamina top` can ask for.
RECENT_SECONDS = 300

# (record, function in flight, account in flight, unreserved in flight,
#  provisioned busy, provisioned allocated) read on the loop when the invocation finished.
InvocationItem = tuple[InvocationRecord, int, int, int, int, int]
# (epoch seconds, function, version, alias)
ThrottleItem = tuple[float, str, str, str | None]
# (epoch seconds, in flight per function, account in flight, unreserved in flight,
#  [(function, qualifier, provisioned busy, provisioned allocated)])
SampleItem = tuple[float, dict[str, int], int, int, list[tuple[str, str, int, int]]]
# (metric, function, value, epoch seconds) from the asynchronous dispatcher.
AsyncItem = tuple[str, str, float, float]
# (metric, mapping UUID, value, epoch seconds) from the event source mapping pollers.
MappingItem = tuple[str, str, float, float]

# The MetricsConfig group an event source mapping must name for AWS to publish its event
# counts (PolledEventCount ... DeletedEventCount); AWS publishes none without it.
EVENT_COUNT_GROUP = "EventCount"
MAPPING_DIMENSION = "EventSourceMappingUUID"


@dataclass(frozen=True, slots=True)
class MappingFacts:
    """What the fold needs to know of a mapping to publish its metrics as AWS does."""

    function: str  # the function's name
    # `name:qualifier` when the mapping invokes a version or alias (the Resource dimension).
    resource: str | None
    # Its MetricsConfig names the EventCount group (AWS's opt-in for the event counts).
    event_counts: bool

    @classmethod
    def of(cls, mapping: EventSourceMapping) -> MappingFacts:
        qualifier = mapping.qualifier
        config = mapping.extras.get("MetricsConfig") or {}
        return cls(
            function=mapping.function_name,
            resource=resource_of(mapping.function_name, None, qualifier or LATEST),
            event_counts=EVENT_COUNT_GROUP in (config.get("Metrics") or ()),
        )


def dims_key(dims: Iterable[tuple[str, str]]) -> str:
    """The canonical form of a dimension set: what a stored series is keyed by."""
    return orjson.dumps(sorted(dims)).decode()


ACCOUNT = dims_key(())


def resource_of(function: str, alias: str | None, version: str) -> str | None:
    """CloudWatch's `Resource` dimension: `name:alias` or `name:version`; none for $LATEST."""
    if alias is not None:
        return f"{function}:{alias}"
    if version != LATEST:
        return f"{function}:{version}"
    return None


@dataclass(slots=True)
class Cell:
    """Invocations of one function, alias and version in one minute (or one second)."""

    # Its count is the number of invocations.
    duration: StatSet = field(default_factory=lambda: StatSet(buckets={}))
    errors: int = 0
    throttles: int = 0
    provisioned: int = 0
    spillover: int = 0
    billed_ms: int = 0
    gb_seconds: float = 0.0

    def merge(self, other: Cell) -> None:
        self.duration.merge(other.duration)
        self.errors += other.errors
        self.throttles += other.throttles
        self.provisioned += other.provisioned
        self.spillover += other.spillover
        self.billed_ms += other.billed_ms
        self.gb_seconds += other.gb_seconds


# (minute or second, function, alias, executed version)
CellKey = tuple[int, str, str | None, str]


class Aggregator:
    """The fold; not thread-safe (its owner serialises calls)."""

    def __init__(self) -> None:
        self._cells: dict[CellKey, Cell] = {}
        self._minutes: dict[tuple[str, str, int], StatSet] = {}
        self._function_of: dict[str, str] = {}
        self._usage: dict[tuple[int, str, str, str, int], list[float]] = {}
        self._dims_cache: dict[tuple[str, str | None, str], list[str]] = {}
        self._function_dims: dict[str, str] = {}
        self._mapping_dims: dict[str, str] = {}
        # Totals since start per (function, resource, executed version), for Prometheus.
        self.prometheus: dict[tuple[str, str, str], Cell] = {}
        # Per second, per function, for `lamina top`.
        self.recent: dict[tuple[int, str], Cell] = {}

    # ------------------------------------------------------------------ folding

    def invocation(self, item: InvocationItem) -> None:
        record, concurrency, account, unreserved, busy, allocated = item
        function = record.function_name
        started = int(record.started_at // 60)
        key = (started, function, record.alias, record.executed_version)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = Cell()
        cell.duration.add(record.duration_ms)
        cell.errors += record.function_error
        if record.provisioned:
            cell.provisioned += 1
        elif allocated:
            cell.spillover += 1
        cell.billed_ms += record.billed_ms
        cell.gb_seconds += gb_seconds(record.memory_mb, record.billed_ms)
        ended_at = record.started_at + record.duration_ms / 1000
        ended = int(ended_at // 60)
        # Levels read when the invocation finished: the first of a set of overlapping
        # invocations to finish sees all of them in flight, so the maxima are exact.
        if concurrency:  # zero only when no live sources are attached (unit tests)
            self._add(m.CONCURRENT_EXECUTIONS, self._dims(function), ended, concurrency)
            self._add(m.CONCURRENT_EXECUTIONS, ACCOUNT, ended, account)
        if unreserved:
            self._add(m.UNRESERVED_CONCURRENT_EXECUTIONS, ACCOUNT, ended, unreserved)
        if record.provisioned and allocated:
            qualifier = record.alias or record.executed_version
            self._provisioned_level(function, qualifier, ended, busy, allocated)
        self._bill(record, started)
        recent = self._recent(int(ended_at), function)
        recent.duration.add(record.duration_ms)
        recent.errors += record.function_error

    def throttle(self, item: ThrottleItem) -> None:
        at, function, version, alias = item
        key = (int(at // 60), function, alias, version)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = Cell()
        cell.throttles += 1
        self._recent(int(at), function).throttles += 1

    def sample(self, item: SampleItem) -> None:
        at, in_flight, account, unreserved, provisioned = item
        minute = int(at // 60)
        for function, level in in_flight.items():
            if level:
                self._add(m.CONCURRENT_EXECUTIONS, self._dims(function), minute, level)
        if account:
            self._add(m.CONCURRENT_EXECUTIONS, ACCOUNT, minute, account)
        if unreserved:
            self._add(m.UNRESERVED_CONCURRENT_EXECUTIONS, ACCOUNT, minute, unreserved)
        for function, qualifier, busy, allocated in provisioned:
            if busy and allocated:
                self._provisioned_level(function, qualifier, minute, busy, allocated)

    def async_metric(self, item: AsyncItem) -> None:
        metric, function, value, at = item
        minute = int(at // 60)
        self._add(metric, self._dims(function), minute, value)
        self._add(metric, ACCOUNT, minute, value)

    def mapping_metric(self, item: MappingItem, facts: MappingFacts | None) -> None:
        """A poller's metric, as AWS publishes it: IteratorAge is a function metric (by
        FunctionName, by Resource for a qualified mapping, and across functions); the event
        counts go by EventSourceMappingUUID alone, and only for mappings whose MetricsConfig
        opted in. `facts` is None when the mapping is unknown (deleted before it was seen)."""
        metric, uuid, value, at = item
        if facts is None:
            return
        minute = int(at // 60)
        if metric == m.ITERATOR_AGE:
            self._add(metric, self._dims(facts.function), minute, value)
            if facts.resource is not None:
                self._add(
                    metric, self._dims(facts.function, ("Resource", facts.resource)), minute, value
                )
            self._add(metric, ACCOUNT, minute, value)
        elif facts.event_counts:
            dims = self._mapping_dims.get(uuid)
            if dims is None:
                dims = self._mapping_dims[uuid] = dims_key(((MAPPING_DIMENSION, uuid),))
            self._add(metric, dims, minute, value)

    def settle(self) -> None:
        """Spread the cells folded since the last call over their series and totals."""
        cells, self._cells = self._cells, {}
        for (minute, function, alias, version), cell in cells.items():
            resource = resource_of(function, alias, version) or function
            total = self.prometheus.get((function, resource, version))
            if total is None:
                total = self.prometheus[(function, resource, version)] = Cell()
            total.merge(cell)
            invocations = cell.duration.count
            for dims in self._dims_for(function, alias, version):
                if invocations:
                    self._merge(m.INVOCATIONS, dims, minute, _counted(invocations, invocations))
                    self._merge(m.ERRORS, dims, minute, _counted(invocations, cell.errors))
                    self._merge(m.DURATION, dims, minute, cell.duration)
                if cell.throttles:
                    self._merge(m.THROTTLES, dims, minute, _counted(cell.throttles, cell.throttles))
                if cell.provisioned:
                    counted = _counted(cell.provisioned, cell.provisioned)
                    self._merge(m.PROVISIONED_CONCURRENCY_INVOCATIONS, dims, minute, counted)
                if cell.spillover:
                    counted = _counted(cell.spillover, cell.spillover)
                    self._merge(
                        m.PROVISIONED_CONCURRENCY_SPILLOVER_INVOCATIONS, dims, minute, counted
                    )

    # ----------------------------------------------------------------- reading

    def take_deltas(self) -> tuple[list[MetricDelta], list[UsageDelta]]:
        """What was folded since the last call, as rows to merge into the store."""
        self.settle()
        metrics = [
            MetricDelta(
                metric,
                dims,
                minute,
                self._function_of.get(dims, ""),
                stats.count,
                stats.total,
                stats.minimum,
                stats.maximum,
                stats.buckets,
            )
            for (metric, dims, minute), stats in self._minutes.items()
        ]
        usage = [
            UsageDelta(*key, int(values[0]), int(values[1]), values[2], values[3])
            for key, values in self._usage.items()
        ]
        self._minutes = {}
        self._usage = {}
        return metrics, usage

    def forget_before(self, second: int) -> None:
        for old in [key for key in self.recent if key[0] < second]:
            del self.recent[old]

    # ----------------------------------------------------------------- helpers

    def _add(self, metric: str, dims: str, minute: int, value: float) -> None:
        key = (metric, dims, minute)
        stats = self._minutes.get(key)
        if stats is None:
            stats = self._minutes[key] = StatSet()
        stats.add(value)

    def _merge(self, metric: str, dims: str, minute: int, stats: StatSet) -> None:
        key = (metric, dims, minute)
        found = self._minutes.get(key)
        if found is None:
            found = self._minutes[key] = StatSet(buckets={} if stats.buckets is not None else None)
        found.merge(stats)

    def _dims_for(self, function: str, alias: str | None, version: str) -> list[str]:
        """Every dimension set an invocation counts in, as AWS publishes them."""
        cache_key = (function, alias, version)
        found = self._dims_cache.get(cache_key)
        if found is not None:
            return found
        sets = [ACCOUNT, self._dims(function)]
        resource = resource_of(function, alias, version)
        if resource is not None:
            sets.append(self._dims(function, ("Resource", resource)))
            if alias is not None:
                sets.append(
                    self._dims(function, ("Resource", resource), ("ExecutedVersion", version))
                )
        self._dims_cache[cache_key] = sets
        return sets

    def _dims(self, function: str, *extra: tuple[str, str]) -> str:
        if not extra:
            # The hot case (every invocation's level): skip building the key each time.
            cached = self._function_dims.get(function)
            if cached is not None:
                return cached
        key = dims_key((("FunctionName", function), *extra))
        self._function_of[key] = function
        if not extra:
            self._function_dims[function] = key
        return key

    def _provisioned_level(
        self, function: str, qualifier: str, minute: int, busy: int, allocated: int
    ) -> None:
        dims = self._dims(function, ("Resource", f"{function}:{qualifier}"))
        self._add(m.PROVISIONED_CONCURRENT_EXECUTIONS, dims, minute, busy)
        self._add(m.PROVISIONED_CONCURRENCY_UTILIZATION, dims, minute, busy / allocated)

    def _bill(self, record: InvocationRecord, minute: int) -> None:
        key = (
            minute,
            record.function_name,
            record.executed_version,
            record.architecture,
            record.memory_mb,
        )
        usage = self._usage.get(key)
        if usage is None:
            usage = self._usage[key] = [0.0, 0.0, 0.0, 0.0]
        usage[0] += 1
        usage[1] += record.billed_ms
        usage[2] += record.duration_ms
        usage[3] += record.init_ms or 0.0

    def _recent(self, second: int, function: str) -> Cell:
        key = (second, function)
        cell = self.recent.get(key)
        if cell is None:
            cell = self.recent[key] = Cell()
        return cell


def _counted(samples: int, ones: int) -> StatSet:
    """`samples` samples of a 0-or-1 metric, `ones` of them 1 (Invocations, Errors...)."""
    return StatSet(
        samples,
        float(ones),
        0.0 if ones < samples else 1.0,
        1.0 if ones else 0.0,
    )
