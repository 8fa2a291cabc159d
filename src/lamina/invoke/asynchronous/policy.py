"""When an asynchronous event runs again, and when it is given up: the retry and age rules.

Pure: each decision is a function of the event, its function's settings and the time, so
the rules read (and are tested) apart from the queue and the engine that carry them out.
Two counters drive them. `attempts` counts invocations that ended in a function error;
AWS retries those MaximumRetryAttempts times, after about one and then two minutes.
`requeues` counts tries that never got an outcome (throttles, platform errors, failed
sends); those back off exponentially and use no attempt. Every delay is multiplied by the
time scale, which tests shrink.
"""

from __future__ import annotations

from dataclasses import dataclass

from lamina.control.event_invoke import EventInvokeConfig
from lamina.invoke.asynchronous import recursion
from lamina.invoke.asynchronous.records import (
    EVENT_AGE_EXCEEDED,
    RECURSIVE_LOOP_DETECTED,
    RETRIES_EXHAUSTED,
    ZERO_RESERVED_CONCURRENCY,
)
from lamina.model.functions import FunctionRecord
from lamina.store.protocols import AsyncEvent

# AWS retries a function error after about one minute, then after about two.
RETRY_DELAYS_S = (60.0, 120.0)
# Throttles and platform errors: exponential backoff between these bounds.
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 300.0
# Sends to one destination or DLQ before the event is parked as failed.
DELIVERY_ATTEMPTS = 8
DELIVERY_FAILED = "DeliveryFailed"
# A backed-off event is due just after its maximum age, so that its next run discards it.
_EXPIRY_MARGIN_S = 0.001


@dataclass(frozen=True)
class Retry:
    """Run the event again at `due`, with these counters."""

    due: float
    attempts: int
    requeues: int


@dataclass(frozen=True)
class GiveUp:
    """No more tries: the event takes the failure path for `condition`."""

    condition: str


def backoff(requeues: int) -> float:
    """Unscaled seconds before the next try after `requeues` fruitless ones: 1, 2, 4 ... 300."""
    exponent: int = min(requeues, 16)
    return min(BACKOFF_MAX_S, BACKOFF_MIN_S * float(2**exponent))


class RetryPolicy:
    """AWS's rules for asynchronous events, with every delay multiplied by `time_scale`."""

    def __init__(self, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale

    def max_age(self, config: EventInvokeConfig) -> float:
        """Seconds an event may wait for its run (MaximumEventAgeInSeconds, scaled)."""
        return config.event_age_seconds * self.time_scale

    def before_run(
        self, event: AsyncEvent, record: FunctionRecord, config: EventInvokeConfig, now: float
    ) -> GiveUp | None:
        """Why `event` must not run at all, if it must not; checked each time it comes up."""
        if now - event.enqueued_at > self.max_age(config):
            return GiveUp(EVENT_AGE_EXCEEDED)
        if record.reserved_concurrency == 0:
            return GiveUp(ZERO_RESERVED_CONCURRENCY)
        if recursion.loop_detected(event, record.recursive_loop):
            return GiveUp(RECURSIVE_LOOP_DETECTED)
        return None

    def after_function_error(
        self, event: AsyncEvent, config: EventInvokeConfig, now: float
    ) -> Retry | GiveUp:
        """The function ran and failed: retry while MaximumRetryAttempts allows.

        The retry is not held to the event's age: if it comes up too old, `before_run`
        discards it then, as AWS does."""
        if event.attempts >= config.retry_attempts:
            return GiveUp(RETRIES_EXHAUSTED)
        delay = RETRY_DELAYS_S[min(event.attempts, len(RETRY_DELAYS_S) - 1)]
        return Retry(now + delay * self.time_scale, attempts=event.attempts + 1, requeues=0)

    def after_platform_error(
        self, event: AsyncEvent, config: EventInvokeConfig, now: float
    ) -> Retry:
        """Throttled, or the platform failed: back off without using an attempt, but never
        past the event's maximum age (it is due for the failure path then)."""
        expiry = event.enqueued_at + self.max_age(config) + _EXPIRY_MARGIN_S
        due = min(now + backoff(event.requeues) * self.time_scale, expiry)
        return Retry(due, attempts=event.attempts, requeues=event.requeues + 1)

    def after_delivery_failure(self, event: AsyncEvent, now: float) -> Retry | GiveUp:
        """A destination or DLQ refused or could not be reached: back off, then give up."""
        requeues = event.requeues + 1
        if requeues >= DELIVERY_ATTEMPTS:
            return GiveUp(DELIVERY_FAILED)
        due = now + backoff(event.requeues) * self.time_scale
        return Retry(due, attempts=event.attempts, requeues=requeues)

    def after_internal_error(self, event: AsyncEvent, now: float) -> Retry:
        """Lamina itself failed on the event: back off and try again, whatever its phase."""
        due = now + backoff(event.requeues) * self.time_scale
        return Retry(due, attempts=event.attempts, requeues=event.requeues + 1)
