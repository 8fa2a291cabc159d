"""The retry and age rules of asynchronous delivery, one rule at a time, without a queue."""

from __future__ import annotations

import pytest

from lamina.control.event_invoke import EventInvokeConfig
from lamina.invoke.asynchronous.policy import (
    BACKOFF_MAX_S,
    DELIVERY_ATTEMPTS,
    DELIVERY_FAILED,
    GiveUp,
    Retry,
    RetryPolicy,
    backoff,
)
from lamina.invoke.asynchronous.records import (
    EVENT_AGE_EXCEEDED,
    RETRIES_EXHAUSTED,
    ZERO_RESERVED_CONCURRENCY,
)
from lamina.model.functions import FunctionRecord
from lamina.store.protocols import AsyncEvent
from tests.support import async_builders
from tests.support.async_builders import ENQUEUED, event_config, function_record


def event(attempts: int = 0, requeues: int = 0) -> AsyncEvent:
    return async_builders.event(attempts=attempts, requeues=requeues)


def config(retries: int | None = None, max_age: int | None = None) -> EventInvokeConfig:
    return event_config(retries=retries, max_age=max_age)


def record(reserved: int | None = None) -> FunctionRecord:
    return function_record(reserved_concurrency=reserved)


# --------------------------------------------------------- function errors: MaximumRetryAttempts


def test_no_retries_gives_up_after_the_first_function_error() -> None:
    decision = RetryPolicy().after_function_error(event(), config(retries=0), ENQUEUED)
    assert decision == GiveUp(RETRIES_EXHAUSTED)


def test_one_retry_after_a_minute_then_gives_up() -> None:
    policy, now = RetryPolicy(), ENQUEUED + 5
    assert policy.after_function_error(event(), config(retries=1), now) == Retry(
        now + 60, attempts=1, requeues=0
    )
    assert policy.after_function_error(event(attempts=1), config(retries=1), now) == GiveUp(
        RETRIES_EXHAUSTED
    )


@pytest.mark.parametrize("retries", [2, None], ids=["two", "default"])
def test_two_retries_after_one_then_two_minutes(retries: int | None) -> None:
    policy, now = RetryPolicy(), ENQUEUED + 5
    first = policy.after_function_error(event(), config(retries=retries), now)
    second = policy.after_function_error(event(attempts=1), config(retries=retries), now)
    third = policy.after_function_error(event(attempts=2), config(retries=retries), now)
    assert first == Retry(now + 60, attempts=1, requeues=0)
    assert second == Retry(now + 120, attempts=2, requeues=0)
    assert third == GiveUp(RETRIES_EXHAUSTED)


def test_a_function_error_retry_starts_the_requeue_count_afresh() -> None:
    decision = RetryPolicy().after_function_error(event(requeues=5), config(), ENQUEUED)
    assert isinstance(decision, Retry) and decision.requeues == 0


def test_retry_delays_follow_the_time_scale() -> None:
    policy = RetryPolicy(time_scale=0.01)
    decision = policy.after_function_error(event(attempts=1), config(), ENQUEUED)
    assert isinstance(decision, Retry)
    assert (decision.attempts, decision.requeues) == (2, 0)
    assert decision.due == pytest.approx(ENQUEUED + 1.2)


# ------------------------------------------------------------- MaximumEventAgeInSeconds


def test_an_event_older_than_its_maximum_age_is_not_run() -> None:
    policy = RetryPolicy()
    assert policy.before_run(event(), record(), config(max_age=60), ENQUEUED + 60) is None
    assert policy.before_run(event(), record(), config(max_age=60), ENQUEUED + 60.5) == GiveUp(
        EVENT_AGE_EXCEEDED
    )


def test_the_default_maximum_age_is_six_hours() -> None:
    policy = RetryPolicy()
    assert policy.max_age(config()) == 21600
    assert policy.before_run(event(), record(), config(), ENQUEUED + 21600) is None
    assert policy.before_run(event(), record(), config(), ENQUEUED + 21601) == GiveUp(
        EVENT_AGE_EXCEEDED
    )


def test_the_maximum_age_follows_the_time_scale() -> None:
    policy = RetryPolicy(time_scale=0.01)
    assert policy.max_age(config(max_age=60)) == pytest.approx(0.6)
    assert policy.before_run(event(), record(), config(max_age=60), ENQUEUED + 0.7) == GiveUp(
        EVENT_AGE_EXCEEDED
    )


def test_zero_reserved_concurrency_refuses_to_run() -> None:
    policy = RetryPolicy()
    assert policy.before_run(event(), record(reserved=0), config(), ENQUEUED) == GiveUp(
        ZERO_RESERVED_CONCURRENCY
    )
    assert policy.before_run(event(), record(reserved=1), config(), ENQUEUED) is None


def test_age_is_checked_before_reserved_concurrency() -> None:
    refused = RetryPolicy().before_run(
        event(), record(reserved=0), config(max_age=60), ENQUEUED + 61
    )
    assert refused == GiveUp(EVENT_AGE_EXCEEDED)


# -------------------------------------------------------------------------------- backoff


def test_backoff_doubles_from_one_second_up_to_five_minutes() -> None:
    assert [backoff(n) for n in range(10)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert backoff(10_000) == BACKOFF_MAX_S


def test_platform_errors_back_off_without_using_an_attempt() -> None:
    policy, now = RetryPolicy(), ENQUEUED + 10
    decision = policy.after_platform_error(event(attempts=1, requeues=3), config(), now)
    assert decision == Retry(now + 8, attempts=1, requeues=4)


def test_platform_backoff_never_waits_past_the_maximum_age() -> None:
    policy, now = RetryPolicy(), ENQUEUED + 50
    decision = policy.after_platform_error(event(requeues=8), config(max_age=60), now)
    # Due just after the event expires, so that its next run takes the failure path.
    assert decision.due == pytest.approx(ENQUEUED + 60.001)
    assert RetryPolicy().before_run(event(), record(), config(max_age=60), decision.due) == (
        GiveUp(EVENT_AGE_EXCEEDED)
    )


def test_failed_sends_back_off_then_give_up() -> None:
    policy, now = RetryPolicy(), ENQUEUED
    assert policy.after_delivery_failure(event(attempts=2, requeues=0), now) == Retry(
        now + 1, attempts=2, requeues=1
    )
    last = DELIVERY_ATTEMPTS - 2
    assert policy.after_delivery_failure(event(requeues=last), now) == Retry(
        now + backoff(last), attempts=0, requeues=last + 1
    )
    assert policy.after_delivery_failure(event(requeues=last + 1), now) == GiveUp(DELIVERY_FAILED)


def test_internal_errors_back_off_and_keep_the_attempts() -> None:
    decision = RetryPolicy(time_scale=0.5).after_internal_error(
        event(attempts=1, requeues=2), ENQUEUED
    )
    assert decision == Retry(ENQUEUED + 2, attempts=1, requeues=3)
