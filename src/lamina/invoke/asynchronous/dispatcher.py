"""The dispatcher: the front of asynchronous delivery, and the place its parts are wired.

`accept` commits an event to the queue. From then on the `Feeder` leases it to a worker,
the `EventRunner` runs it, the `RetryPolicy` decides what the outcome means and the
`Settlement` carries that out, sending through `Destinations`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial

from lamina import metrics as m
from lamina.arns import Account
from lamina.control.access import Authority
from lamina.control.context import Domain
from lamina.control.event_invoke import EventInvokeConfigService
from lamina.control.functions import FunctionService
from lamina.control.role_permissions import RolePermissions
from lamina.invoke.asynchronous.destinations import Deliverer, Destinations
from lamina.invoke.asynchronous.feeder import Feeder
from lamina.invoke.asynchronous.policy import RetryPolicy
from lamina.invoke.asynchronous.redrive import redrive
from lamina.invoke.asynchronous.runner import EventRunner, Invoker
from lamina.invoke.asynchronous.settlement import Settlement
from lamina.invoke.asynchronous.writer import QueueWriter
from lamina.settings import Settings
from lamina.store.protocols import AsyncEvent, AsyncQueue, FunctionStore

# Callers' trace headers held for queued events (see `accept`); beyond this many, new
# events start traces of their own.
_MAX_HELD_TRACES = 100_000


class AsyncDispatcher:
    """Accepts asynchronous events and runs them, with retries, destinations and a DLQ."""

    def __init__(
        self,
        *,
        queue: AsyncQueue,
        invoker: Invoker,
        configs: EventInvokeConfigService,
        functions: FunctionStore,
        account: Account,
        destinations: Destinations,
        metrics: m.MetricsRegistry,
        workers: int,
        time_scale: float = 1.0,
        lease_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        role_permissions: RolePermissions | None = None,
    ) -> None:
        self.metrics = metrics
        self._queue = queue
        self._clock = clock
        self._traces: dict[str, str] = {}
        self._writer = QueueWriter(queue)
        policy = RetryPolicy(time_scale)
        self._feeder = Feeder(
            self._writer, self._run, workers=workers, lease_s=lease_s, clock=clock
        )
        self._deliverer = Deliverer(
            destinations, invoker.resolve, account, metrics, clock, role_permissions
        )
        self._settlement = Settlement(
            writer=self._writer,
            feeder=self._feeder,
            deliverer=self._deliverer,
            policy=policy,
            resolve=invoker.resolve,
            account=account,
            metrics=metrics,
            forget=self._forget_trace,
            clock=clock,
        )
        self._runner = EventRunner(
            invoker=invoker,
            configs=configs,
            functions=functions,
            policy=policy,
            settlement=self._settlement,
            metrics=metrics,
            trace_of=self._traces.get,
            clock=clock,
        )

    async def accept(
        self,
        function: str,
        qualifier: str | None,
        payload: bytes,
        request_id: str,
        trace_header: str | None = None,
    ) -> None:
        """Queue an event; returns once it is committed (durable).

        The caller's trace header, which the invocation continues as on AWS, is held in
        memory only: the queue has no place for it, so an event that outlives this process
        starts a new trace when it runs.
        """
        now = self._clock()
        event = AsyncEvent(request_id, function, qualifier, payload, now, now)
        # Held before the commit, so that a worker claiming the event at once finds it.
        held = trace_header if len(self._traces) < _MAX_HELD_TRACES else None
        if held:
            self._traces[request_id] = held
        try:
            await self._writer.submit(partial(self._queue.enqueue, [event]))
        except BaseException:
            if held:
                self._forget_trace(request_id)
            raise
        self.metrics.count(m.ASYNC_EVENTS_RECEIVED, function)
        self._feeder.wake()

    async def accept_batch(self, events: Sequence[AsyncEvent]) -> None:
        """Queue several events in one commit (the invocations one EventBridge PutEvents
        causes); returns once they are durable."""
        if not events:
            return
        await self._writer.submit(partial(self._queue.enqueue, list(events)))
        for event in events:
            self.metrics.count(m.ASYNC_EVENTS_RECEIVED, event.function)
        self._feeder.wake()

    async def redrive(self, function: str, event_id: str | None = None) -> list[str]:
        """Send the function's failed events (or the one named) back for a fresh cycle of
        attempts (see `lamina.invoke.asynchronous.redrive`); returns their ids."""
        moved = await redrive(self._writer, self._clock, function, event_id)
        if moved:
            self._feeder.wake()
        return moved

    def start(self) -> None:
        """Take back leases of crashed holders, then start delivering; needs a running loop."""
        self._feeder.start()

    async def close(self) -> None:
        await self._feeder.stop()
        await self._settlement.drain()
        # Whatever was running or waiting goes back to the queue for the next start.
        await self._feeder.release()
        self._writer.close()
        self._deliverer.close()

    async def _run(self, event: AsyncEvent) -> None:
        await self._runner.run(event)

    def _forget_trace(self, event_id: str) -> None:
        self._traces.pop(event_id, None)


def build_dispatcher(
    settings: Settings,
    domain: Domain,
    functions: FunctionService,
    engine: Invoker,
    destinations: Destinations,
    authority: Authority | None = None,
) -> AsyncDispatcher:
    """The dispatcher for one Lamina process, on the domain's queue and the given engine.
    With an `authority` (enforced mode), function destinations are sent as the source
    function's role."""
    return AsyncDispatcher(
        queue=domain.stores.queue,
        invoker=engine,
        configs=EventInvokeConfigService(domain, functions),
        functions=domain.stores.functions,
        account=domain.account,
        destinations=destinations,
        metrics=m.MetricsRegistry(),
        workers=settings.async_workers,
        time_scale=settings.async_retry_scale,
        lease_s=settings.async_lease_s,
        role_permissions=(
            RolePermissions(authority, domain.account) if authority is not None else None
        ),
    )
