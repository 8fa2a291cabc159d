"""A worker's side of routing: run a call here, or answer Busy so the caller tries the next
worker. For a call answered in one piece, the decision and the start it admits happen in one
step of the event loop, so two calls never count on the same idle environment or the same
free memory."""

from __future__ import annotations

import asyncio
import os

from lamina.invoke.service import InvokeRequest, InvokeResult, InvokeService, StreamStart
from lamina.model.functions import FunctionConfig


def machine_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20


def default_capacity_mb() -> int:
    """Three quarters of the machine: the rest is the platform's, the page cache's and the
    operating system's."""
    return machine_memory_mb() * 3 // 4


class WorkerGate:
    def __init__(self, engine: InvokeService, capacity_mb: int) -> None:
        self._engine = engine
        self.capacity_mb = capacity_mb
        self.in_flight = 0

    @property
    def memory_used_mb(self) -> int:
        return self._engine.pool.memory_mb + self._engine.provisioned_memory_mb()

    def fits(self, config: FunctionConfig) -> bool:
        """Whether `config` can run here now: on an idle warm environment, or on a new one
        within the memory lent to environments, after evicting idle environments of other
        functions (least recently used first) if that makes room."""
        pool = self._engine.pool
        key = (config.function_name, config.version, config.revision_id)
        if pool.has_idle(key):
            return True
        used = self.memory_used_mb
        if used == 0:
            # A function bigger than the memory lent runs where nothing else does, rather
            # than be Busy everywhere for good.
            return True
        over = used + config.memory_size - self.capacity_mb
        if over <= 0:
            return True
        return pool.evict_idle(over, keep=key)

    def catch_up(self, stamp: int) -> None:
        """See every change the node that sent a call had seen (`shared_stamp`): a function
        updated through that node runs here as updated."""
        self._engine.resolver.catch_up(stamp)

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        """Run `request` here; raises `WorkerBusy` when there is no room, or what admission
        raises (throttled, not found)."""
        # Admission and the start of `run` (which takes the idle environment or counts the
        # new one's memory) share one step of the loop: nothing awaits in between.
        admission = self._engine.admit(request, fits=self.fits)
        self.in_flight += 1
        try:
            return await self._engine.run(admission, request)
        finally:
            self.in_flight -= 1

    async def open_stream(
        self, request: InvokeRequest, chunks: asyncio.Queue[bytes | None]
    ) -> StreamStart:
        """Admit and start a streamed invocation here, or raise as `invoke` does.

        The run starts in a task of its own, one step of the loop after admission: a call
        admitted in that step could count on the same idle environment and start one more
        than the memory allows (by one environment, at most once per streamed call)."""
        started = await self._engine.open_stream(request, chunks, fits=self.fits)
        self.in_flight += 1
        started.result.add_done_callback(self._ended)
        return started

    def _ended(self, _: object) -> None:
        self.in_flight -= 1
