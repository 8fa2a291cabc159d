"""Leasing: claim due events from the queue for the workers, and hold on to them.

Every event a process works on is leased to it (its `owner` id) and stays leased until it
is settled or given back. Leases are renewed while events run; a holder that stops renewing
(it crashed) loses them, and the events become due again for whoever recovers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from lamina.invoke.asynchronous.writer import QueueWriter
from lamina.store.protocols import AsyncEvent

log = logging.getLogger("lamina.async")

# How often the queue is polled when nothing wakes the feeder (peers' events, clocks).
POLL_S = 1.0
_WAKE_MARGIN_S = 0.01


class Feeder:
    """Keeps `workers` tasks running `run` on leased events, and keeps the leases alive."""

    def __init__(
        self,
        writer: QueueWriter,
        run: Callable[[AsyncEvent], Coroutine[Any, Any, None]],
        *,
        workers: int,
        lease_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.owner = uuid.uuid4().hex
        self._writer = writer
        self._queue = writer.queue
        self._run = run
        self._workers = workers
        self._lease_s = lease_s
        self._clock = clock
        self._running: set[asyncio.Task[None]] = set()
        # Claimed (leased) events waiting for a free worker.
        self._backlog: deque[AsyncEvent] = deque()
        self._prefetch = workers // 2
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()

    def start(self) -> None:
        """Take back leases of crashed holders, then start feeding; needs a running loop."""
        self._recovered(self._writer.run_now(partial(self._queue.recover, self._clock())))
        self._tasks = [
            asyncio.ensure_future(self._feed()),
            asyncio.ensure_future(self._keep_leases()),
        ]

    async def stop(self) -> None:
        """Stop claiming and cancel the running events; their leases are still ours."""
        tasks = [*self._tasks, *self._running]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def release(self) -> None:
        """Hand every event still leased to us back to the queue, for the next start."""
        try:
            await self._writer.submit(partial(self._queue.release, self.owner))
        except Exception:
            log.exception("could not hand back in-flight asynchronous events")

    def wake(self) -> None:
        """New events are due now: claim without waiting for the next poll."""
        self._wake.set()

    def wake_at(self, when: float) -> None:
        # A little late rather than early: the loop's clock is not the wall clock.
        delay = max(0.0, when - self._clock()) + _WAKE_MARGIN_S
        asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def _feed(self) -> None:
        """Keep every worker busy, plus a backlog of half as many again, so that a worker
        finishing one event starts the next at once instead of waiting for a claim to
        commit. Backlog events are leased: `lamina events` counts them as in flight."""
        while True:
            wanted = self._workers + self._prefetch - len(self._running) - len(self._backlog)
            if wanted <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            self._wake.clear()
            try:
                events = await self._writer.submit(
                    partial(self._queue.claim, self.owner, self._clock(), wanted, self._lease_s)
                )
            except Exception:
                log.exception("claiming asynchronous events failed")
                events = []
            self._backlog.extend(events)
            while self._backlog and len(self._running) < self._workers:
                self._start(self._backlog.popleft())
            if len(events) < wanted:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)

    def _start(self, event: AsyncEvent) -> None:
        task = asyncio.get_running_loop().create_task(self._run(event))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._backlog and len(self._running) < self._workers:
            self._start(self._backlog.popleft())
        if len(self._backlog) <= self._prefetch // 2:
            self._slot_free.set()

    async def _keep_leases(self) -> None:
        """Renew our leases every third of a lease; every poll, take back those of holders
        that stopped renewing, so a dead holder's events run again within a poll of their
        lease lapsing (not a third of a lease later)."""
        tick = min(POLL_S, self._lease_s / 3)
        renewed = self._clock()
        while True:
            await asyncio.sleep(tick)
            now = self._clock()
            try:
                if now - renewed >= self._lease_s / 3 - tick / 2:
                    renewed = now
                    await self._writer.submit(
                        partial(self._queue.renew, self.owner, now + self._lease_s)
                    )
                self._recovered(await self._writer.submit(partial(self._queue.recover, now)))
            except Exception:
                log.exception("renewing asynchronous event leases failed")

    def _recovered(self, count: int) -> None:
        if count:
            log.warning("%d asynchronous events were in flight at a crash; retrying them", count)
            self._wake.set()
