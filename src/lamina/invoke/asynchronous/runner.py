"""Running one leased event: check it may run, invoke it, and hand the outcome on.

Events run through the same engine as synchronous calls, so reserved and account
concurrency apply. What each outcome means is the policy's to decide; carrying it out is
the settlement's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from lamina import metrics as m
from lamina.arns import FunctionRef
from lamina.constants import INIT_TIMEOUT_S
from lamina.control.event_invoke import EventInvokeConfig, EventInvokeConfigService
from lamina.control.functions import Resolved
from lamina.errors import LaminaError, ResourceNotFound, TooManyRequests
from lamina.invoke.asynchronous.policy import GiveUp, RetryPolicy
from lamina.invoke.asynchronous.records import (
    RECURSIVE_LOOP_DETECTED,
    decode_deliveries,
    function_error,
)
from lamina.invoke.asynchronous.settlement import Settlement
from lamina.invoke.service import InvokeRequest, InvokeResult
from lamina.store.protocols import AsyncEvent, FunctionStore
from lamina.store.stamped import StampedCache

log = logging.getLogger("lamina.async")

_WATCHDOG_MARGIN_S = 30.0
_INTERNAL_ERROR = "Lamina internal error (see the server log)"


class Invoker(Protocol):
    """What asynchronous delivery needs of the engine (`InvokeService` fits)."""

    def resolve(self, ref: FunctionRef, qualifier: str | None) -> Resolved: ...

    async def invoke(self, request: InvokeRequest) -> InvokeResult: ...


class EventRunner:
    """Takes one leased event one step further: an invocation, or its pending sends."""

    def __init__(
        self,
        *,
        invoker: Invoker,
        configs: EventInvokeConfigService,
        functions: FunctionStore,
        policy: RetryPolicy,
        settlement: Settlement,
        metrics: m.MetricsRegistry,
        trace_of: Callable[[str], str | None],
        clock: Callable[[], float],
    ) -> None:
        self._invoker = invoker
        self._configs = configs
        self._functions = functions
        self._policy = policy
        self._settlement = settlement
        self._metrics = metrics
        self._trace_of = trace_of
        self._clock = clock
        # Effective configs by (function, qualifier), dropped whenever the store changes.
        self._config_cache: StampedCache[dict[tuple[str, str | None], EventInvokeConfig]] = (
            StampedCache(functions.change_stamp, dict)
        )

    async def run(self, event: AsyncEvent) -> None:
        try:
            if event.deliveries is not None:
                await self._settlement.deliver(event, decode_deliveries(event.deliveries))
            else:
                await self._invoke(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("asynchronous event %s failed unexpectedly", event.event_id)
            # Back to the queue, later; if even that fails, the lease lapses at the next
            # start and the event runs again. Never lost, at worst repeated.
            retry = self._policy.after_internal_error(event, self._clock())
            with contextlib.suppress(Exception):
                await self._settlement.requeue(event, retry, _INTERNAL_ERROR, event.deliveries)

    def _config(self, function: str, qualifier: str | None) -> EventInvokeConfig:
        configs = self._config_cache.get()
        key = (function, qualifier)
        config = configs.get(key)
        if config is None:
            config = configs[key] = self._configs.effective(function, qualifier)
        return config

    async def _invoke(self, event: AsyncEvent) -> None:
        now = self._clock()
        try:
            resolved = self._invoker.resolve(FunctionRef(event.function, None), event.qualifier)
        except ResourceNotFound as error:
            # Deleted since: its destinations went with it, so park the event for people.
            await self._gone(event, error)
            return
        config = self._config(event.function, event.qualifier)
        refused = self._policy.before_run(event, resolved.record, config, now)
        if refused is not None:
            if refused.condition == RECURSIVE_LOOP_DETECTED:
                self._metrics.count(m.RECURSIVE_INVOCATIONS_DROPPED, event.function)
            await self._settlement.discard(event, resolved, config, refused.condition, None)
            return
        self._metrics.observe(m.ASYNC_EVENT_AGE, event.function, (now - event.enqueued_at) * 1000)
        request = InvokeRequest(
            ref=FunctionRef(event.function, None),
            qualifier=event.qualifier,
            payload=event.payload,
            trace_id=self._trace_of(event.event_id),
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
            await self._back_off(event, config, f"Lamina: no outcome within {limit:.0f} s")
            return
        except TooManyRequests as error:
            reason = error.fields.get("Reason", error.message)
            await self._back_off(event, config, f"{error.code}: {reason}")
            return
        except ResourceNotFound as error:
            await self._gone(event, error)
            return
        except LaminaError as error:
            await self._back_off(event, config, f"{error.code}: {error.message}")
            return
        if not result.outcome.function_error:
            await self._settlement.succeed(event, config, result)
            return
        decision = self._policy.after_function_error(event, config, self._clock())
        if isinstance(decision, GiveUp):
            await self._settlement.discard(event, resolved, config, decision.condition, result)
        else:
            await self._settlement.requeue(event, decision, function_error(result))

    async def _back_off(self, event: AsyncEvent, config: EventInvokeConfig, error: str) -> None:
        """Throttled or a platform error: back to the queue without using an attempt."""
        retry = self._policy.after_platform_error(event, config, self._clock())
        await self._settlement.requeue(event, retry, error)

    async def _gone(self, event: AsyncEvent, error: ResourceNotFound) -> None:
        """The function or qualifier no longer exists: nothing to run, nowhere to send."""
        self._metrics.count(m.ASYNC_EVENTS_DROPPED, event.function)
        await self._settlement.settle(event, fail=f"{error.code}: {error.message}")
