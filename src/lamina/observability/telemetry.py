"""The invocation observer behind metrics, billing and `lamina top`.

On the event loop an invocation costs one tuple on a deque (plus a few counter reads that
must happen at that instant): no lock, no I/O. A background thread drains the deques every
couple of seconds, folds them (`Aggregator`) and merges what changed into the metrics
database. Readers that need up-to-date numbers (the CloudWatch API) flush first, so what was
invoked before a query is in its answer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from lamina.constants import ACCOUNT_CONCURRENCY_DEFAULT, LATEST
from lamina.invoke.events import InvocationRecord
from lamina.observability.aggregation import (
    RECENT_SECONDS,
    Aggregator,
    AsyncItem,
    Cell,
    InvocationItem,
    MappingFacts,
    MappingItem,
    SampleItem,
    ThrottleItem,
)
from lamina.store.protocols.mappings import EventSourceMappingStore
from lamina.store.protocols.metrics import MetricDelta, MetricsStore, UsageDelta

log = logging.getLogger("lamina.metrics")

FLUSH_INTERVAL_S = 2.0
SAMPLE_INTERVAL_S = 1.0
# CloudWatch keeps one-minute data for 15 days; so do we. Usage rows are kept for billing.
RETENTION_S = 15 * 24 * 3600
_PRUNE_INTERVAL_S = 3600.0

T = TypeVar("T")


@dataclass(frozen=True)
class LiveLevels:
    """Levels read at one instant on the loop, for a scrape or `lamina top`."""

    in_flight: dict[str, int]
    account_in_flight: int
    unreserved_in_flight: int
    account_limit: int
    environments: dict[str, int]
    # (function, qualifier, busy, held)
    provisioned: list[tuple[str, str, int, int]] = field(default_factory=list)


class Telemetry:
    """Implements `InvocationObserver` and `LevelObserver`: keeps the live levels from the
    engine's events, and owns the fold, its thread and the metrics database."""

    def __init__(
        self,
        store: MetricsStore,
        account_limit: int = ACCOUNT_CONCURRENCY_DEFAULT,
        clock: Callable[[], float] = time.time,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        mappings: EventSourceMappingStore | None = None,
    ) -> None:
        self.store = store
        # Where the fold looks up the mappings whose pollers report metrics (their function,
        # their MetricsConfig); what it last found, for mappings deleted since.
        self._mappings = mappings
        self._mapping_facts: dict[str, MappingFacts] = {}
        self._clock = clock
        self._flush_interval_s = flush_interval_s
        # Levels, changed only by the engine's events, on the event loop.
        self._account_limit = account_limit
        self._in_flight: Counter[str] = Counter()
        self._account_in_flight = 0
        self._unreserved_in_flight = 0
        self._environments: Counter[str] = Counter()
        self._provisioned: dict[tuple[str, str], tuple[int, int]] = {}
        # Appended on the loop, popped by whichever thread folds: deque operations are
        # atomic, so the invoke path takes no lock.
        self._invocations: deque[InvocationItem] = deque()
        self._throttles: deque[ThrottleItem] = deque()
        self._samples: deque[SampleItem] = deque()
        self._async: deque[AsyncItem] = deque()
        self._mapping_items: deque[MappingItem] = deque()
        self._lock = threading.Lock()
        self._aggregator = Aggregator()
        self._unsaved: tuple[list[MetricDelta], list[UsageDelta]] = ([], [])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._pruned_at = 0.0

    # ------------------------------------------------------- on the event loop

    def admitted(self, function_name: str, unreserved: bool) -> None:
        self._in_flight[function_name] += 1
        self._account_in_flight += 1
        if unreserved:
            self._unreserved_in_flight += 1

    def released(self, function_name: str, unreserved: bool) -> None:
        in_flight = self._in_flight
        in_flight[function_name] -= 1
        if in_flight[function_name] <= 0:
            del in_flight[function_name]
        self._account_in_flight -= 1
        if unreserved:
            self._unreserved_in_flight -= 1

    def environment_started(self, function_name: str) -> None:
        self._environments[function_name] += 1

    def environment_stopped(self, function_name: str) -> None:
        environments = self._environments
        environments[function_name] -= 1
        if environments[function_name] <= 0:
            del environments[function_name]

    def provisioned_changed(self, function_name: str, qualifier: str, busy: int, held: int) -> None:
        if busy or held:
            self._provisioned[(function_name, qualifier)] = (busy, held)
        else:
            self._provisioned.pop((function_name, qualifier), None)

    def invoked(self, record: InvocationRecord) -> None:
        busy = allocated = 0
        if record.alias or record.executed_version != LATEST:
            busy, allocated = self._provisioned.get(
                (record.function_name, record.alias or record.executed_version), (0, 0)
            )
        self._invocations.append(
            (
                record,
                self._in_flight[record.function_name],
                self._account_in_flight,
                self._unreserved_in_flight,
                busy,
                allocated,
            )
        )

    def throttled(self, function_name: str, version: str, alias: str | None) -> None:
        self._throttles.append((self._clock(), function_name, version, alias))

    def async_metric(self, metric: str, function: str, value: float, at: float) -> None:
        """A `MetricsRegistry` listener: the asynchronous dispatcher's metrics."""
        self._async.append((metric, function, value, at))

    def mapping_metric(self, metric: str, uuid: str, value: float, at: float) -> None:
        """A `MetricsRegistry` listener: the event source mapping pollers' metrics, keyed by
        the mapping's UUID."""
        self._mapping_items.append((metric, uuid, value, at))

    def levels(self) -> LiveLevels:
        """Current levels; call on the loop."""
        return LiveLevels(
            in_flight=dict(self._in_flight),
            account_in_flight=self._account_in_flight,
            unreserved_in_flight=self._unreserved_in_flight,
            account_limit=self._account_limit,
            environments=dict(self._environments),
            provisioned=[
                (function, qualifier, busy, held)
                for (function, qualifier), (busy, held) in self._provisioned.items()
            ],
        )

    def start(self) -> None:
        """Start the flushing thread and the level sampler; call with the loop running."""
        self._thread = threading.Thread(target=self._run, name="lamina-telemetry", daemon=True)
        self._thread.start()
        self._sampler = asyncio.ensure_future(self._sample_levels())

    async def _sample_levels(self) -> None:
        """Levels once a second, so long invocations show in minutes where none finishes."""
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            levels = self.levels()
            provisioned = [
                (function, qualifier, busy, held)
                for function, qualifier, busy, held in levels.provisioned
                if busy
            ]
            if levels.account_in_flight or provisioned:
                self._samples.append(
                    (
                        self._clock(),
                        levels.in_flight,
                        levels.account_in_flight,
                        levels.unreserved_in_flight,
                        provisioned,
                    )
                )

    def close(self) -> None:
        """Stop sampling and flushing; what was observed so far is saved."""
        if self._sampler is not None:
            self._sampler.cancel()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()
        self.store.close()

    # ------------------------------------------------------- off the event loop

    def _run(self) -> None:
        while not self._stop.wait(self._flush_interval_s):
            try:
                self.flush()
                if self._clock() - self._pruned_at > _PRUNE_INTERVAL_S:
                    self._pruned_at = self._clock()
                    self.store.prune(int((self._pruned_at - RETENTION_S) // 60))
            except Exception:
                log.exception("saving metrics failed; retrying")

    def flush(self) -> None:
        """Fold everything observed so far and save it; blocks, so not on the loop."""
        with self._lock:
            self._drain()
            self._aggregator.forget_before(int(self._clock()) - RECENT_SECONDS)
            metrics, usage = self._aggregator.take_deltas()
            metrics = self._unsaved[0] + metrics
            usage = self._unsaved[1] + usage
            self._unsaved = ([], [])
            if not metrics and not usage:
                return
            try:
                self.store.merge(metrics, usage)
            except Exception:
                # Kept for the next flush: a busy or failing disk delays numbers, never
                # loses them while the process lives.
                self._unsaved = (metrics, usage)
                raise

    def read(self, reader: Callable[[Aggregator], T]) -> T:
        """Run `reader` on up-to-date in-memory totals (Prometheus, `lamina top`)."""
        with self._lock:
            self._drain()
            self._aggregator.settle()
            return reader(self._aggregator)

    def prometheus_totals(self) -> dict[tuple[str, str, str], Cell]:
        """Totals since start per (function, resource, executed version): copies."""

        def copy(agg: Aggregator) -> dict[tuple[str, str, str], Cell]:
            copies = {}
            for key, total in agg.prometheus.items():
                copies[key] = Cell()
                copies[key].merge(total)
            return copies

        return self.read(copy)

    def recent(self, window_s: int) -> dict[str, Cell]:
        """Per function, the invocations that finished in the last `window_s` seconds."""
        window_s = max(1, min(window_s, RECENT_SECONDS))

        def collect(agg: Aggregator) -> dict[str, Cell]:
            now = int(self._clock())
            agg.forget_before(now - RECENT_SECONDS)
            totals: dict[str, Cell] = {}
            for (second, function), cell in agg.recent.items():
                if second > now - window_s:
                    totals.setdefault(function, Cell()).merge(cell)
            return totals

        return self.read(collect)

    def _drain(self) -> None:
        aggregator = self._aggregator
        _drain(self._invocations, aggregator.invocation)
        _drain(self._throttles, aggregator.throttle)
        _drain(self._samples, aggregator.sample)
        _drain(self._async, aggregator.async_metric)
        self._drain_mappings()

    def _drain_mappings(self) -> None:
        """Fold the pollers' metrics, looking each mapping up once per drain: its function or
        MetricsConfig may have changed since the last."""
        items: list[MappingItem] = []
        _drain(self._mapping_items, items.append)
        if not items:
            return
        facts = {uuid: self._facts(uuid) for uuid in {item[1] for item in items}}
        fold = self._aggregator.mapping_metric
        for item in items:
            try:
                fold(item, facts[item[1]])
            except Exception:
                log.exception("could not count %r", item)

    def _facts(self, uuid: str) -> MappingFacts | None:
        if self._mappings is not None:
            try:
                mapping = self._mappings.get(uuid)
            except Exception:  # the store is busy or closing: what was known last will do
                log.exception("could not look up event source mapping %s", uuid)
            else:
                if mapping is not None:
                    self._mapping_facts[uuid] = MappingFacts.of(mapping)
        return self._mapping_facts.get(uuid)


def _drain(queue: deque[T], fold: Callable[[T], None]) -> None:
    pop = queue.popleft
    while True:
        try:
            item = pop()
        except IndexError:
            return
        try:
            fold(item)
        except Exception:
            log.exception("could not count %r", item)
