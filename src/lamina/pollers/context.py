"""What every poller is given: the invoker, the mapping store, per-mapping metrics, boto3
clients and the threads that blocking calls run on."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lamina.arns import Account
from lamina.aws.clients import ClientCache
from lamina.metrics import MetricsRegistry
from lamina.model.mappings import EventSourceMapping
from lamina.pollers.invoking import BatchInvoker
from lamina.store.protocols.mappings import EventSourceMappingStore

T = TypeVar("T")

log = logging.getLogger("lamina.pollers")


@dataclass
class PollerContext:
    invoker: BatchInvoker
    store: EventSourceMappingStore
    # Per-mapping metrics (PolledEventCount, ...), keyed by the mapping's UUID where other
    # registries key by function name.
    metrics: MetricsRegistry
    clients: ClientCache
    # Blocking calls (boto3, the store) run here, never on the event loop. Long polls hold
    # a thread each, so the pool is the pollers' own rather than the loop's default.
    threads: ThreadPoolExecutor
    account: Account
    # Amazon MQ broker name -> amqp:// URL (Settings.mq_brokers).
    mq_brokers: Mapping[str, str] = field(default_factory=dict)
    # Base of every back-off pause, in seconds (tests shorten it).
    backoff_s: float = 1.0
    # The LastProcessingResult last written per mapping, so that unchanged ones are not.
    _last_results: dict[str, str] = field(default_factory=dict, init=False)

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` on a poller thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.threads, functools.partial(function, *args, **kwargs)
        )

    def count(self, mapping: EventSourceMapping, metric: str, value: float = 1) -> None:
        if value:
            self.metrics.count(metric, mapping.uuid, value)

    def observe(self, mapping: EventSourceMapping, metric: str, value: float) -> None:
        self.metrics.observe(metric, mapping.uuid, value)

    async def record_result(self, mapping: EventSourceMapping, result: str) -> None:
        """Set the mapping's LastProcessingResult, writing only when it changes."""
        if self._last_results.get(mapping.uuid) == result:
            return
        self._last_results[mapping.uuid] = result
        try:
            await self.call(self.store.record_result, mapping.uuid, result)
        except Exception:  # the store is busy or closing: the next batch writes it again
            self._last_results.pop(mapping.uuid, None)
            log.exception("mapping %s: could not record its last processing result", mapping.uuid)
