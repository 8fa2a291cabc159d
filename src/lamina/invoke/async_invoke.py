"""Asynchronous invocation: accept events durably, then run them until each ends somewhere.

`accept` returns once the event is committed to the queue. A pool of worker tasks leases due
events and runs them through the same `InvokeService` as synchronous calls, so reserved and
account concurrency apply. Each event ends in exactly one of: success (and its OnSuccess
destination), the failure path (OnFailure destination and/or DLQ), or the queue's `failed`
state when nothing could take it, where `lamina events` shows it. Nothing is dropped
silently. Leases are renewed while events run; after a crash they expire and the events
run again (at-least-once, as on AWS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial

import orjson

from lamina.arns import Account, FunctionRef, parse_function_ref
from lamina.aws.destinations import (
    DEAD_LETTER,
    DESTINATION,
    EVENT_AGE_EXCEEDED,
    RECURSIVE_LOOP_DETECTED,
    RETRIES_EXHAUSTED,
    SUCCESS,
    ZERO_RESERVED_CONCURRENCY,
    Boto3Destinations,
    Delivery,
    DeliveryFailed,
    Response,
    dead_letter,
    decode_deliveries,
    encode_deliveries,
    error_message,
    invocation_record,
)
from lamina.constants import INIT_TIMEOUT_S, LATEST
from lamina.control.context import Domain
from lamina.control.event_invoke import EventInvokeConfig, EventInvokeConfigService
from lamina.control.functions import FunctionService, Resolved
from lamina.errors import LaminaError, ResourceNotFound, TooManyRequests
from lamina.invoke.queue_writer import QueueWriter
from lamina.invoke.service import InvokeRequest, InvokeResult, InvokeService
from lamina.observability import metrics as m
from lamina.settings import Settings
from lamina.store.protocols import AsyncEvent, AsyncQueue, FunctionStore

log = logging.getLogger("lamina.async")

# AWS retries a function error after about one minute, then after about two.
RETRY_DELAYS_S = (60.0, 120.0)
# Throttles and platform errors: exponential backoff between these bounds.
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 300.0
# Sends to one destination or DLQ before the event is parked as failed.
DELIVERY_ATTEMPTS = 8
# RecursiveLoop=Terminate stops a chain of destination invocations after this many.
MAX_HOPS = 16
# How often the queue is polled when nothing wakes the dispatcher (peers' events, clocks).
POLL_S = 1.0
_ERROR_MAX_CHARS = 1024
_WAKE_MARGIN_S = 0.01
_WATCHDOG_MARGIN_S = 30.0
# Callers' trace headers held for queued events (see `accept`); beyond this many, new
# events start traces of their own.
_MAX_HELD_TRACES = 100_000


class AsyncDispatcher:
    """Accepts asynchronous events and runs them, with retries, destinations and a DLQ."""

    def __init__(
        self,
        *,
        queue: AsyncQueue,
        invoker: InvokeService,
        configs: EventInvokeConfigService,
        functions: FunctionStore,
        account: Account,
        destinations: Boto3Destinations,
        metrics: m.MetricsRegistry,
        workers: int,
        time_scale: float = 1.0,
        lease_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self._writer = QueueWriter(queue)
        self._queue = queue
        self._invoker = invoker
        self._configs = configs
        self._functions = functions
        self._account = account
        self._destinations = destinations
        self._workers = workers
        self._scale = time_scale
        self._lease_s = lease_s
        self._clock = clock
        self._owner = uuid.uuid4().hex
        self._config_cache: dict[tuple[str, str | None], EventInvokeConfig] = {}
        self._config_stamp = -1
        # boto3 blocks; a few threads of our own keep slow destinations off shared pools.
        self._senders = ThreadPoolExecutor(8, thread_name_prefix="lamina-destinations")
        self._running: set[asyncio.Task[None]] = set()
        # Claimed (leased) events waiting for a free worker.
        self._backlog: deque[AsyncEvent] = deque()
        self._prefetch = workers // 2
        # Settlements in flight: a finished event need not wait for its commit.
        self._settling: set[asyncio.Future[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._traces: dict[str, str] = {}

    # ------------------------------------------------------------------ accepting

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
                self._traces.pop(request_id, None)
            raise
        self.metrics.count(m.ASYNC_EVENTS_RECEIVED, function)
        self._wake.set()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Take back leases of crashed holders, then start delivering; needs a running loop."""
        self._recovered(self._writer.run_now(partial(self._queue.recover, self._clock())))
        self._tasks = [
            asyncio.ensure_future(self._feed()),
            asyncio.ensure_future(self._keep_leases()),
        ]

    async def close(self) -> None:
        tasks = [*self._tasks, *self._running]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._settling, return_exceptions=True)
        # Whatever was running or waiting goes back to the queue for the next start.
        try:
            await self._writer.submit(partial(self._queue.release, self._owner))
        except Exception:
            log.exception("could not hand back in-flight asynchronous events")
        self._writer.close()
        self._senders.shutdown(wait=False, cancel_futures=True)
        self._destinations.close()

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
                    partial(self._queue.claim, self._owner, self._clock(), wanted, self._lease_s)
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
        """Renew our leases; take back those of holders that stopped renewing."""
        while True:
            await asyncio.sleep(self._lease_s / 3)
            now = self._clock()
            try:
                await self._writer.submit(
                    partial(self._queue.renew, self._owner, now + self._lease_s)
                )
                self._recovered(await self._writer.submit(partial(self._queue.recover, now)))
            except Exception:
                log.exception("renewing asynchronous event leases failed")

    def _recovered(self, count: int) -> None:
        if count:
            log.warning("%d asynchronous events were in flight at a crash; retrying them", count)
            self._wake.set()

    def _wake_at(self, when: float) -> None:
        # A little late rather than early: the loop's clock is not the wall clock.
        delay = max(0.0, when - self._clock()) + _WAKE_MARGIN_S
        asyncio.get_running_loop().call_later(delay, self._wake.set)

    # ------------------------------------------------------------------ running

    async def _run(self, event: AsyncEvent) -> None:
        try:
            if event.deliveries is not None:
                await self._deliver(event, decode_deliveries(event.deliveries))
            else:
                await self._invoke(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("asynchronous event %s failed unexpectedly", event.event_id)
            # Back to the queue, later; if even that fails, the lease lapses at the next
            # start and the event runs again. Never lost, at worst repeated.
            delay = _backoff(event.requeues) * self._scale
            with contextlib.suppress(Exception):
                await self._retry(
                    event,
                    self._clock() + delay,
                    event.attempts,
                    event.requeues + 1,
                    "Lamina internal error (see the server log)",
                    event.deliveries,
                )

    def _config(self, function: str, qualifier: str | None) -> EventInvokeConfig:
        stamp = self._functions.change_stamp()
        if stamp != self._config_stamp:
            self._config_cache.clear()
            self._config_stamp = stamp
        key = (function, qualifier)
        config = self._config_cache.get(key)
        if config is None:
            config = self._config_cache[key] = self._configs.effective(function, qualifier)
        return config

    async def _invoke(self, event: AsyncEvent) -> None:
        now = self._clock()
        try:
            resolved = self._invoker.resolve(FunctionRef(event.function, None), event.qualifier)
        except ResourceNotFound as error:
            # Deleted since: its destinations went with it, so park the event for people.
            self.metrics.count(m.ASYNC_EVENTS_DROPPED, event.function)
            await self._settle(event, fail=f"{error.code}: {error.message}")
            return
        config = self._config(event.function, event.qualifier)
        record = resolved.record
        max_age = config.event_age_seconds * self._scale
        if now - event.enqueued_at > max_age:
            await self._discard(event, resolved, config, EVENT_AGE_EXCEEDED, None)
            return
        if record.reserved_concurrency == 0:
            await self._discard(event, resolved, config, ZERO_RESERVED_CONCURRENCY, None)
            return
        if event.hops >= MAX_HOPS and record.recursive_loop == "Terminate":
            self.metrics.count(m.RECURSIVE_INVOCATIONS_DROPPED, event.function)
            await self._discard(event, resolved, config, RECURSIVE_LOOP_DETECTED, None)
            return
        self.metrics.observe(m.ASYNC_EVENT_AGE, event.function, (now - event.enqueued_at) * 1000)
        request = InvokeRequest(
            ref=FunctionRef(event.function, None),
            qualifier=event.qualifier,
            payload=event.payload,
            trace_id=self._traces.get(event.event_id),
            request_id=event.event_id,
            received_at=event.enqueued_at,
        )
        # However the engine fails, the event must come back: a stuck start or a lost
        # reply would otherwise hold it in flight (with a renewed lease) until a restart.
        limit = resolved.config.timeout + INIT_TIMEOUT_S + _WATCHDOG_MARGIN_S
        try:
            result = await asyncio.wait_for(self._invoker.invoke(request), limit)
        except TimeoutError:
            log.error("event %s: invocation did not end within %.0f s", event.event_id, limit)
            await self._back_off(event, max_age, f"Lamina: no outcome within {limit:.0f} s")
            return
        except TooManyRequests as error:
            reason = error.fields.get("Reason", error.message)
            await self._back_off(event, max_age, f"{error.code}: {reason}")
            return
        except ResourceNotFound as error:
            self.metrics.count(m.ASYNC_EVENTS_DROPPED, event.function)
            await self._settle(event, fail=f"{error.code}: {error.message}")
            return
        except LaminaError as error:
            await self._back_off(event, max_age, f"{error.code}: {error.message}")
            return
        if not result.outcome.function_error:
            await self._succeed(event, config, result)
        elif event.attempts < config.retry_attempts:
            delay = RETRY_DELAYS_S[min(event.attempts, len(RETRY_DELAYS_S) - 1)] * self._scale
            await self._retry(
                event,
                self._clock() + delay,
                attempts=event.attempts + 1,
                requeues=0,
                error=_function_error(result),
            )
        else:
            await self._discard(event, resolved, config, RETRIES_EXHAUSTED, result)

    async def _back_off(self, event: AsyncEvent, max_age: float, error: str) -> None:
        """Throttled or a platform error: back to the queue without using an attempt."""
        delay = _backoff(event.requeues) * self._scale
        # Never wait past the event's maximum age: it is due for the failure path then.
        expiry = event.enqueued_at + max_age + 0.001
        due = min(self._clock() + delay, expiry)
        await self._retry(event, due, event.attempts, event.requeues + 1, error)

    async def _retry(
        self,
        event: AsyncEvent,
        due: float,
        attempts: int,
        requeues: int,
        error: str,
        deliveries: bytes | None = None,
    ) -> None:
        await self._writer.submit(
            partial(
                self._queue.retry,
                event.event_id,
                self._owner,
                due,
                attempts,
                requeues,
                error,
                deliveries,
            )
        )
        self._wake_at(due)

    # ----------------------------------------------------------- outcomes

    def _function_arn(self, event: AsyncEvent) -> str:
        return self._account.function_arn(event.function, event.qualifier or LATEST)

    def _record(
        self, event: AsyncEvent, condition: str, result: InvokeResult | None
    ) -> tuple[str, Response | None]:
        response = (
            Response(result.executed_version, result.outcome.payload, result.outcome.function_error)
            if result is not None
            else None
        )
        invoke_count = event.attempts + (1 if result is not None else 0)
        body = invocation_record(
            request_id=event.event_id,
            function_arn=self._function_arn(event),
            condition=condition,
            invoke_count=invoke_count,
            request_payload=event.payload,
            response=response,
        )
        return body, response

    async def _succeed(
        self, event: AsyncEvent, config: EventInvokeConfig, result: InvokeResult
    ) -> None:
        if config.on_success is None:
            await self._settle(event)
            return
        body, _ = self._record(event, SUCCESS, result)
        delivery = Delivery(config.on_success, DESTINATION, body, success=True)
        await self._deliver(replace(event, requeues=0, deliveries=None), [delivery])

    async def _discard(
        self,
        event: AsyncEvent,
        resolved: Resolved,
        config: EventInvokeConfig,
        condition: str,
        result: InvokeResult | None,
    ) -> None:
        """The failure path: OnFailure destination and DLQ, or parked as failed."""
        self.metrics.count(m.ASYNC_EVENTS_DROPPED, event.function)
        body, response = self._record(event, condition, result)
        deliveries = []
        if config.on_failure:
            deliveries.append(Delivery(config.on_failure, DESTINATION, body))
        version = resolved.config
        if result is not None and result.executed_version != version.version:
            version = self._invoker.resolve(
                FunctionRef(event.function, result.executed_version), None
            ).config
        reason = _function_error(result) if result is not None else event.last_error
        if version.dead_letter_target:
            message = error_message(response, reason or condition)
            deliveries.append(
                dead_letter(
                    version.dead_letter_target,
                    event.event_id,
                    event.payload,
                    _error_code(event, condition, result),
                    message,
                )
            )
        if not deliveries:
            log.warning(
                "asynchronous event %s of %s discarded (%s) with no destination or DLQ",
                event.event_id,
                event.function,
                condition,
            )
            await self._settle(event, fail=f"{condition}: {reason or 'no retries left'}")
            return
        await self._deliver(replace(event, requeues=0, deliveries=None), deliveries)

    async def _deliver(self, event: AsyncEvent, deliveries: list[Delivery]) -> None:
        """Send what the outcome owes; what fails is retried from the queue, then parked."""
        remaining: list[Delivery] = []
        follow_ups: list[AsyncEvent] = []
        errors: list[str] = []
        loop = asyncio.get_running_loop()
        for delivery in deliveries:
            try:
                if delivery.kind == "lambda":
                    follow_ups.append(self._follow_up(event, delivery))
                else:
                    await loop.run_in_executor(self._senders, self._destinations.send, delivery)
            except DeliveryFailed as error:
                metric = (
                    m.DEAD_LETTER_ERRORS
                    if delivery.role == DEAD_LETTER
                    else m.DESTINATION_DELIVERY_FAILURES
                )
                self.metrics.count(metric, event.function)
                log.warning("event %s: delivery failed: %s", event.event_id, error)
                remaining.append(delivery)
                errors.append(str(error))
        if not remaining:
            await self._settle(event, follow_ups=follow_ups)
            return
        requeues = event.requeues + 1
        summary = "; ".join(errors)
        if requeues >= DELIVERY_ATTEMPTS:
            log.error(
                "event %s of %s: giving up on %s after %d attempts: %s",
                event.event_id,
                event.function,
                ", ".join(delivery.target for delivery in remaining),
                requeues,
                summary,
            )
            await self._settle(event, fail=f"Delivery failed: {summary}", follow_ups=follow_ups)
            return
        due = self._clock() + _backoff(event.requeues) * self._scale
        queue, owner, pending = self._queue, self._owner, encode_deliveries(remaining)

        def retry_with_follow_ups() -> None:
            # One commit: a crash between the two would run the event again with its
            # original deliveries and queue the follow-ups a second time.
            with queue.transaction():
                if follow_ups:
                    queue.enqueue(follow_ups)
                queue.retry(event.event_id, owner, due, event.attempts, requeues, summary, pending)

        await self._writer.submit(retry_with_follow_ups)
        self._wake_at(due)
        self._received(follow_ups)

    def _received(self, follow_ups: Sequence[AsyncEvent]) -> None:
        """Count newly queued follow-up events and wake the feeder for them."""
        for follow_up in follow_ups:
            self.metrics.count(m.ASYNC_EVENTS_RECEIVED, follow_up.function)
        if follow_ups:
            self._wake.set()

    def _follow_up(self, event: AsyncEvent, delivery: Delivery) -> AsyncEvent:
        """A record sent to a Lamina function: a new event on our own queue, one hop further."""
        try:
            ref = parse_function_ref(delivery.target, self._account)
            resolved = self._invoker.resolve(ref, None)
        except LaminaError as error:
            raise DeliveryFailed(f"{delivery.target}: {error.message}") from None
        now = self._clock()
        return AsyncEvent(
            event_id=str(uuid.uuid4()),
            function=resolved.record.name,
            qualifier=resolved.qualifier,
            payload=delivery.body.encode(),
            enqueued_at=now,
            next_attempt_at=now,
            hops=event.hops + 1,
        )

    async def _settle(
        self, event: AsyncEvent, fail: str | None = None, follow_ups: Sequence[AsyncEvent] = ()
    ) -> None:
        """End the event (forget it, or park it as failed) and queue its follow-ups, atomically.

        The worker does not wait for the commit: until it lands the event stays leased, and
        if the process dies first the event simply runs again (at-least-once).
        """
        queue, owner = self._queue, self._owner
        self._traces.pop(event.event_id, None)

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


def _backoff(requeues: int) -> float:
    """Seconds before the next try: 1, 2, 4 ... up to 5 minutes."""
    exponent: int = min(requeues, 16)
    return min(BACKOFF_MAX_S, BACKOFF_MIN_S * float(2**exponent))


def _function_error(result: InvokeResult) -> str:
    """`errorType: errorMessage` of a failed invocation, for people reading `lamina events`."""
    outcome = result.outcome
    kind, message = outcome.error_type or "Unhandled", ""
    with contextlib.suppress(ValueError):
        body = orjson.loads(outcome.payload)
        if isinstance(body, dict):
            kind = str(body.get("errorType") or kind)
            message = str(body.get("errorMessage") or "")
    return f"{kind}: {message}"[:_ERROR_MAX_CHARS] if message else kind


def _error_code(event: AsyncEvent, condition: str, result: InvokeResult | None) -> int:
    """The DLQ's ErrorCode, an HTTP status: 200 when the function ran and failed,
    429 when it never got to run for throttling, 400 for a recursive loop."""
    if result is not None or (event.attempts and not event.requeues):
        return 200
    return 400 if condition == RECURSIVE_LOOP_DETECTED else 429


def build_dispatcher(
    settings: Settings, domain: Domain, functions: FunctionService, engine: InvokeService
) -> AsyncDispatcher:
    """The dispatcher for one Lamina process, on the domain's queue and the given engine."""
    return AsyncDispatcher(
        queue=domain.stores.queue,
        invoker=engine,
        configs=EventInvokeConfigService(domain, functions),
        functions=domain.stores.functions,
        account=domain.account,
        destinations=Boto3Destinations(settings.region),
        metrics=m.MetricsRegistry(),
        workers=settings.async_workers,
        time_scale=settings.async_retry_scale,
        lease_s=settings.async_lease_s,
    )
