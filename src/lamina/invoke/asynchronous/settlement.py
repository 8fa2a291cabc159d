"""Settlement: an event ends acknowledged, sent on to a destination or DLQ, or parked.

`outcomes` decides which deliveries an outcome owes; `Settlement` sends them and commits
the event's end. A send that fails puts the event back on the queue with what is still
owed; when nothing can take the event, it is parked in the queue's `failed` state for
people to see. Nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial

from lamina import metrics as m
from lamina.arns import Account, FunctionRef
from lamina.aws.destinations import Delivery
from lamina.constants import LATEST
from lamina.control.event_invoke import EventInvokeConfig
from lamina.control.functions import Resolved
from lamina.invoke.asynchronous.destinations import Deliverer, Resolve
from lamina.invoke.asynchronous.feeder import Feeder
from lamina.invoke.asynchronous.outcomes import failure_reason, owed_on_failure, owed_on_success
from lamina.invoke.asynchronous.policy import GiveUp, Retry, RetryPolicy
from lamina.invoke.asynchronous.records import encode_deliveries
from lamina.invoke.asynchronous.writer import QueueWriter
from lamina.invoke.service import InvokeResult
from lamina.store.protocols import AsyncEvent

log = logging.getLogger("lamina.async")


class Settlement:
    """Ends events: back to the queue, on to destinations, acknowledged or parked."""

    def __init__(
        self,
        *,
        writer: QueueWriter,
        feeder: Feeder,
        deliverer: Deliverer,
        policy: RetryPolicy,
        resolve: Resolve,
        account: Account,
        metrics: m.MetricsRegistry,
        forget: Callable[[str], None],
        clock: Callable[[], float],
    ) -> None:
        self._writer = writer
        self._queue = writer.queue
        self._feeder = feeder
        self._deliverer = deliverer
        self._policy = policy
        self._resolve = resolve
        self._account = account
        self._metrics = metrics
        self._forget = forget
        self._clock = clock
        # Settlements in flight: a finished event need not wait for its commit.
        self._settling: set[asyncio.Future[None]] = set()

    async def requeue(
        self, event: AsyncEvent, retry: Retry, error: str, deliveries: bytes | None = None
    ) -> None:
        """Give the event back to the queue, due again when `retry` says."""
        await self._writer.submit(self._give_back(event, retry, error, deliveries))
        self._feeder.wake_at(retry.due)

    async def succeed(
        self, event: AsyncEvent, config: EventInvokeConfig, result: InvokeResult
    ) -> None:
        """The success path: the OnSuccess destination, else simply acknowledged."""
        deliveries = owed_on_success(event, self._function_arn(event), config, result)
        if not deliveries:
            await self.settle(event)
            return
        await self.deliver(replace(event, requeues=0, deliveries=None), deliveries)

    async def discard(
        self,
        event: AsyncEvent,
        resolved: Resolved,
        config: EventInvokeConfig,
        condition: str,
        result: InvokeResult | None,
    ) -> None:
        """The failure path: OnFailure destination and DLQ, or parked as failed."""
        self._metrics.count(m.ASYNC_EVENTS_DROPPED, event.function)
        # The DLQ is a setting of the version that ran, which an alias may have picked.
        version = resolved.config
        if result is not None and result.executed_version != version.version:
            ran = FunctionRef(event.function, result.executed_version)
            version = self._resolve(ran, None).config
        deliveries = owed_on_failure(
            event, self._function_arn(event), config, version.dead_letter_target, condition, result
        )
        if not deliveries:
            log.warning(
                "asynchronous event %s of %s discarded (%s) with no destination or DLQ",
                event.event_id,
                event.function,
                condition,
            )
            reason = failure_reason(event, result)
            await self.settle(event, fail=f"{condition}: {reason or 'no retries left'}")
            return
        await self.deliver(replace(event, requeues=0, deliveries=None), deliveries)

    async def deliver(self, event: AsyncEvent, deliveries: list[Delivery]) -> None:
        """Send what the outcome owes; what fails is retried from the queue, then parked."""
        sent = await self._deliverer.send(event, deliveries)
        if not sent.remaining:
            await self.settle(event, follow_ups=sent.follow_ups)
            return
        summary = "; ".join(sent.errors)
        retry = self._policy.after_delivery_failure(event, self._clock())
        if isinstance(retry, GiveUp):
            log.error(
                "event %s of %s: giving up on %s after %d attempts: %s",
                event.event_id,
                event.function,
                ", ".join(delivery.target for delivery in sent.remaining),
                event.requeues + 1,
                summary,
            )
            await self.settle(event, fail=f"Delivery failed: {summary}", follow_ups=sent.follow_ups)
            return
        queue, follow_ups = self._queue, sent.follow_ups
        give_back = self._give_back(event, retry, summary, encode_deliveries(sent.remaining))

        def retry_with_follow_ups() -> None:
            # One commit: a crash between the two would run the event again with its
            # original deliveries and queue the follow-ups a second time.
            with queue.transaction():
                if follow_ups:
                    queue.enqueue(follow_ups)
                give_back()

        await self._writer.submit(retry_with_follow_ups)
        self._feeder.wake_at(retry.due)
        self._received(follow_ups)

    async def settle(
        self, event: AsyncEvent, fail: str | None = None, follow_ups: Sequence[AsyncEvent] = ()
    ) -> None:
        """End the event (forget it, or park it as failed) and queue its follow-ups, atomically.

        The worker does not wait for the commit: until it lands the event stays leased, and
        if the process dies first the event simply runs again (at-least-once).
        """
        queue, owner = self._queue, self._feeder.owner
        self._forget(event.event_id)

        def settle() -> None:
            with queue.transaction():
                if follow_ups:
                    queue.enqueue(follow_ups)
                if fail is None:
                    queue.complete(event.event_id, owner)
                else:
                    queue.fail(event.event_id, owner, fail)

        def settled(done: asyncio.Future[None]) -> None:
            self._settling.discard(done)
            if done.cancelled():
                return
            if done.exception() is not None:
                log.error("could not settle event %s", event.event_id, exc_info=done.exception())
                return
            self._received(follow_ups)

        settling = asyncio.ensure_future(self._writer.submit(settle))
        self._settling.add(settling)
        settling.add_done_callback(settled)

    async def drain(self) -> None:
        """Wait for the settlements still committing."""
        await asyncio.gather(*self._settling, return_exceptions=True)

    def _give_back(
        self, event: AsyncEvent, retry: Retry, error: str, deliveries: bytes | None
    ) -> Callable[[], None]:
        """The queue write that returns the event, due again when `retry` says."""
        return partial(
            self._queue.retry,
            event.event_id,
            self._feeder.owner,
            retry.due,
            retry.attempts,
            retry.requeues,
            error,
            deliveries,
        )

    def _received(self, follow_ups: Sequence[AsyncEvent]) -> None:
        """Count newly queued follow-up events and wake the feeder for them."""
        for follow_up in follow_ups:
            self._metrics.count(m.ASYNC_EVENTS_RECEIVED, follow_up.function)
        if follow_ups:
            self._feeder.wake()

    def _function_arn(self, event: AsyncEvent) -> str:
        return self._account.function_arn(event.function, event.qualifier or LATEST)
