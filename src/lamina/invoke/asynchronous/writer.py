"""Group commit for the async queue: many writes, one transaction, one thread.

Every queue write of this process goes through one thread, so writers never contend for
SQLite's lock, and whatever arrives while a transaction commits is committed together in
the next one. Under load one fsync covers hundreds of accepted events; idle, a write
commits at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from lamina.store.protocols import AsyncQueue

log = logging.getLogger("lamina.async")

T = TypeVar("T")
_Result = tuple[bool, Any]  # (succeeded, value or exception)


class QueueWriter:
    """Runs queue operations in batches, each batch in a single transaction."""

    def __init__(self, queue: AsyncQueue) -> None:
        self.queue = queue
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lamina-queue")
        self._pending: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, operation: Callable[[], T]) -> T:
        """Run `operation` (a call on the queue) and return once its transaction committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((operation, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await future

    def run_now(self, operation: Callable[[], T]) -> T:
        """Run `operation` on the writer thread from synchronous code (start-up, shutdown)."""
        return self._executor.submit(operation).result()

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                operations = [operation for operation, _ in batch]
                try:
                    results = await loop.run_in_executor(self._executor, self._apply, operations)
                except asyncio.CancelledError:
                    for _, future in batch + self._pending:
                        future.cancel()
                    self._pending = []
                    raise
                except Exception as error:  # the executor itself failed, e.g. shut down
                    results = [(False, error)] * len(batch)
                for (_, future), (ok, value) in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flusher = None

    def _apply(self, operations: list[Callable[[], Any]]) -> list[_Result]:
        if len(operations) > 1:
            try:
                with self.queue.transaction():
                    return [(True, operation()) for operation in operations]
            except Exception:
                # One bad write must not fail its neighbours: redo each on its own.
                log.debug("group commit failed; retrying writes one by one", exc_info=True)
        results: list[_Result] = []
        for operation in operations:
            try:
                with self.queue.transaction():
                    results.append((True, operation()))
            except Exception as error:
                results.append((False, error))
        return results

    def close(self) -> None:
        self._executor.shutdown(wait=True)
