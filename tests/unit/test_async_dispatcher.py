"""The dispatcher end to end, without a server: the real SQLite queue and function stores,
a stub engine that runs nothing, and in-memory destinations.

Every delay runs 1000 times faster (`SCALE`): a one-minute retry takes 60 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from lamina import metrics as m
from lamina.arns import FunctionRef
from lamina.constants import LATEST
from lamina.control.context import Domain
from lamina.control.event_invoke import KIND as EVENT_INVOKE_KIND
from lamina.control.event_invoke import EventInvokeConfig, EventInvokeConfigService
from lamina.control.functions import FunctionService, Resolved
from lamina.errors import TooManyRequests
from lamina.invoke.asynchronous.dispatcher import AsyncDispatcher
from lamina.invoke.asynchronous.policy import DELIVERY_ATTEMPTS
from lamina.invoke.asynchronous.records import (
    EVENT_AGE_EXCEEDED,
    RECURSIVE_LOOP_DETECTED,
    RETRIES_EXHAUSTED,
    ZERO_RESERVED_CONCURRENCY,
)
from lamina.invoke.asynchronous.recursion import MAX_HOPS
from lamina.invoke.service import InvokeRequest, InvokeResult
from lamina.model.functions import FunctionRecord
from lamina.store.protocols import AsyncEvent, AsyncQueue
from tests.support.async_builders import failed, function_config, succeeded
from tests.support.destinations import RecordingDestinations
from tests.support.domain import ACCOUNT, open_domain
from tests.support.waiting import wait_until

SCALE = 0.001
PAYLOAD = b'{"order": 7}'
ON_SUCCESS = "arn:aws:sqs:us-east-1:123456789012:on-success"
ON_FAILURE = "arn:aws:sns:us-east-1:123456789012:on-failure"
DLQ = "arn:aws:sqs:us-east-1:123456789012:dlq"

OK, FAIL, BLOCK = "ok", "fail", "block"
Step = str | Exception


class StubEngine:
    """Resolves names through the real function service; runs nothing. Each function follows
    a script of outcomes (the last one repeats), by default success."""

    def __init__(self, functions: FunctionService) -> None:
        self._functions = functions
        self._scripts: dict[str, list[Step]] = {}
        self.requests: list[InvokeRequest] = []
        self.times: list[float] = []

    def script(self, function: str, *steps: Step) -> None:
        self._scripts[function] = list(steps)

    def resolve(self, ref: FunctionRef, qualifier: str | None) -> Resolved:
        return self._functions.resolve(ref, qualifier)

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        self.requests.append(request)
        self.times.append(time.monotonic())
        script = self._scripts.get(request.ref.name, [OK])
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, Exception):
            raise step
        if step == BLOCK:
            await asyncio.Event().wait()
        if step == FAIL:
            return failed(request.request_id, message="boom")
        return succeeded(request.request_id)

    def calls(self, function: str) -> list[InvokeRequest]:
        return [request for request in self.requests if request.ref.name == function]


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    return open_domain(tmp_path / "data")


@pytest.fixture
def engine(domain: Domain) -> StubEngine:
    return StubEngine(FunctionService(domain))


@pytest.fixture
def destinations() -> RecordingDestinations:
    return RecordingDestinations()


def create(
    domain: Domain,
    name: str = "f",
    *,
    dlq: str | None = None,
    retries: int | None = None,
    max_age: int | None = None,
    on_success: str | None = None,
    on_failure: str | None = None,
    **record: Any,
) -> None:
    """A function in the real store, with its event-invoke config when one is given."""
    latest = function_config(name, dead_letter_target=dlq)
    domain.stores.functions.put(FunctionRecord(latest=latest, **record))
    if (retries, max_age, on_success, on_failure) != (None, None, None, None):
        # Straight into the store: the dispatcher must survive configs the API refuses, as
        # AWS does (a function that is its own destination).
        config = EventInvokeConfig(
            function_name=name,
            qualifier=LATEST,
            maximum_retry_attempts=retries,
            maximum_event_age_seconds=max_age,
            on_success=on_success,
            on_failure=on_failure,
        )
        domain.stores.functions.put_child(name, EVENT_INVOKE_KIND, LATEST, config.to_doc())


def dispatcher(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> AsyncDispatcher:
    return AsyncDispatcher(
        queue=domain.stores.queue,
        invoker=engine,
        configs=EventInvokeConfigService(domain, FunctionService(domain)),
        functions=domain.stores.functions,
        account=ACCOUNT,
        destinations=destinations,
        metrics=m.MetricsRegistry(),
        workers=4,
        time_scale=SCALE,
        lease_s=30.0,
    )


@contextlib.asynccontextmanager
async def running(instance: AsyncDispatcher) -> AsyncIterator[AsyncDispatcher]:
    instance.start()
    try:
        yield instance
    finally:
        await instance.close()


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Wait for `predicate` off the event loop, so that the dispatcher keeps running."""
    return await asyncio.to_thread(wait_until, predicate, timeout, 0.005)


def settled(queue: AsyncQueue, function: str = "f") -> bool:
    """Nothing of `function` is left in the queue, not even parked."""
    return function not in queue.counts(function)


def parked(queue: AsyncQueue, function: str = "f") -> list[AsyncEvent]:
    return [event for event in queue.events(function) if event.state == "failed"]


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(scenario())


# ------------------------------------------------------------------------------ success


def test_an_event_runs_once_with_the_callers_request_id_and_is_forgotten(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    create(domain)
    queue = domain.stores.queue
    subject = dispatcher(domain, engine, destinations)

    async def scenario() -> None:
        async with running(subject):
            await subject.accept(
                "f", None, PAYLOAD, "req-1", "Root=1-5759e988-bd862e3fe1be46a994272793"
            )
            await until(lambda: engine.requests and settled(queue))

    run(scenario)
    (request,) = engine.requests
    assert (request.request_id, request.payload, request.qualifier) == ("req-1", PAYLOAD, None)
    assert request.trace_id == "Root=1-5759e988-bd862e3fe1be46a994272793"
    assert request.received_at is not None and request.received_at <= time.time()
    assert destinations.sent == [] and destinations.closed
    assert subject.metrics.counter(m.ASYNC_EVENTS_RECEIVED, "f") == 1
    assert subject.metrics.distribution(m.ASYNC_EVENT_AGE, "f").count == 1


def test_success_sends_a_record_to_the_on_success_destination(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    create(domain, on_success=ON_SUCCESS, on_failure=ON_FAILURE)
    subject = dispatcher(domain, engine, destinations)

    async def scenario() -> None:
        async with running(subject):
            await subject.accept("f", None, PAYLOAD, "req-1")
            await until(lambda: settled(domain.stores.queue))

    run(scenario)
    (record,) = destinations.records(ON_SUCCESS)
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["requestId"] == "req-1"
    assert record["requestContext"]["functionArn"] == ACCOUNT.function_arn("f", "$LATEST")
    assert record["requestPayload"] == {"order": 7}
    assert destinations.to(ON_FAILURE) == []


# ------------------------------------------------------------------------------ failure


def test_a_function_error_is_retried_then_sent_to_on_failure_and_the_dlq(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    create(domain, retries=1, on_failure=ON_FAILURE, dlq=DLQ)
    engine.script("f", FAIL)
    subject = dispatcher(domain, engine, destinations)

    async def scenario() -> None:
        async with running(subject):
            await subject.accept("f", None, PAYLOAD, "req-1")
            await until(lambda: settled(domain.stores.queue))

    run(scenario)
    assert [request.request_id for request in engine.requests] == ["req-1", "req-1"]
    # The retry waits about a minute, scaled.
    assert engine.times[1] - engine.times[0] >= 60 * SCALE * 0.9
    (record,) = destinations.records(ON_FAILURE)
    assert record["requestContext"]["condition"] == RETRIES_EXHAUSTED
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["responsePayload"] == {"errorType": "ValueError", "errorMessage": "boom"}
    (dead,) = destinations.to(DLQ)
    assert dead.body == PAYLOAD.decode()
    assert dead.attributes["ErrorCode"] == ("Number", "200")
    assert subject.metrics.counter(m.ASYNC_EVENTS_DROPPED, "f") == 1


def test_with_nowhere_to_send_it_a_failed_event_is_parked_for_people(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    create(domain, retries=0)
    engine.script("f", FAIL)
    subject = dispatcher(domain, engine, destinations)

    async def scenario() -> None:
        async with running(subject):
            await subject.accept("f", None, PAYLOAD, "req-1")
            await until(lambda: parked(domain.stores.queue))

    run(scenario)
    (event,) = parked(domain.stores.queue)
    assert event.last_error == f"{RETRIES_EXHAUSTED}: ValueError: boom"
    assert len(engine.requests) == 1 and destinations.sent == []


def test_throttles_back_off_without_using_a_retry_attempt(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    create(domain, retries=0, on_success=ON_SUCCESS)
    throttle = TooManyRequests(
        "Rate exceeded.", Reason="ReservedFunctionConcurrentInvocationLimitExceeded"
    )
    engine.script("f", throttle, throttle, OK)
    subject = dispatcher(domain, engine, destinations)

    async def scenario() -> None:
        async with running(subject):
            await subject.accept("f", None, PAYLOAD, "req-1")
            await until(lambda: settled(domain.stores.queue))

    run(scenario)
    assert len(engine.requests) == 3
    (record,) = destinations.records(ON_SUCCESS)
    assert record["requestContext"]["approximateInvokeCount"] == 1


def test_an_event_older_than_its_maximum_age_is_not_run(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    create(domain, max_age=60, on_failure=ON_FAILURE)
    subject = dispatcher(domain, engine, destinations)

    async def scenario() -> None:
        await subject.accept("f", None, PAYLOAD, "req-1")
        await asyncio.sleep(61 * SCALE)  # a minute and a second, scaled, before it comes up
        async with running(subject):
            await until(lambda: settled(domain.stores.queue))

    run(scenario)
    assert engine.requests == []
    (record,) = destinations.records(ON_FAILURE)
    assert record["requestContext"]["condition"] == EVENT_AGE_EXCEEDED
    assert record["requestContext"]["approximateInvokeCount"] == 0


def test_zero_reserved_concurrency_sends_the_event_down_the_failure_path(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    create(domain, on_failure=ON_FAILURE, reserved_concurrency=0)
    subject = dispatcher(domain, engine, destinations)

    async def scenario() -> None:
        async with running(subject):
            await subject.accept("f", None, PAYLOAD, "req-1")
            await until(lambda: settled(domain.stores.queue))

    run(scenario)
    assert engine.requests == []
    (record,) = destinations.records(ON_FAILURE)
    assert record["requestContext"]["condition"] == ZERO_RESERVED_CONCURRENCY


def test_an_event_of_a_deleted_function_is_parked(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    subject = dispatcher(domain, engine, destinations)

    async def scenario() -> None:
        async with running(subject):
            await subject.accept("gone", None, PAYLOAD, "req-1")
            await until(lambda: parked(domain.stores.queue, "gone"))

    run(scenario)
    (event,) = parked(domain.stores.queue, "gone")
    assert event.last_error is not None
    assert event.last_error.startswith("ResourceNotFoundException: ")
    assert engine.requests == []


# ------------------------------------------------------------------------------ destinations


def test_a_refused_send_is_tried_again_without_running_the_function_again(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    create(domain, on_success=ON_SUCCESS)
    destinations.refuse(ON_SUCCESS, times=2)
    subject = dispatcher(domain, engine, destinations)

    async def scenario() -> None:
        async with running(subject):
            await subject.accept("f", None, PAYLOAD, "req-1")
            await until(lambda: settled(domain.stores.queue))

    run(scenario)
    assert len(engine.requests) == 1
    assert len(destinations.refused) == 2 and len(destinations.to(ON_SUCCESS)) == 1
    assert subject.metrics.counter(m.DESTINATION_DELIVERY_FAILURES, "f") == 2


def test_a_destination_that_never_accepts_parks_the_event_after_the_last_attempt(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    create(domain, retries=0, dlq=DLQ)
    engine.script("f", FAIL)
    destinations.refuse(DLQ, times=1000)
    subject = dispatcher(domain, engine, destinations)

    async def scenario() -> None:
        async with running(subject):
            await subject.accept("f", None, PAYLOAD, "req-1")
            await until(lambda: parked(domain.stores.queue))

    run(scenario)
    (event,) = parked(domain.stores.queue)
    assert event.last_error is not None and event.last_error.startswith("Delivery failed: ")
    assert len(destinations.refused) == DELIVERY_ATTEMPTS
    assert subject.metrics.counter(m.DEAD_LETTER_ERRORS, "f") == DELIVERY_ATTEMPTS
    assert len(engine.requests) == 1


def test_a_record_for_a_lamina_function_becomes_an_event_of_its_own(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    create(domain, "g")
    create(domain, "f", on_success=ACCOUNT.function_arn("g"))
    subject = dispatcher(domain, engine, destinations)

    async def scenario() -> None:
        async with running(subject):
            await subject.accept("f", None, PAYLOAD, "req-1")
            await until(lambda: engine.calls("g") and settled(domain.stores.queue, "g"))

    run(scenario)
    (follow_up,) = engine.calls("g")
    assert follow_up.request_id != "req-1"
    record = json.loads(follow_up.payload)
    assert record["requestContext"]["requestId"] == "req-1"
    assert record["requestPayload"] == {"order": 7}
    assert destinations.sent == []
    assert subject.metrics.counter(m.ASYNC_EVENTS_RECEIVED, "g") == 1


def test_a_function_that_is_its_own_destination_stops_at_the_hop_limit(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    create(domain, on_success=ACCOUNT.function_arn("f"))
    subject = dispatcher(domain, engine, destinations)

    async def scenario() -> None:
        async with running(subject):
            await subject.accept("f", None, PAYLOAD, "req-1")
            await until(lambda: parked(domain.stores.queue))

    run(scenario)
    assert len(engine.calls("f")) == MAX_HOPS
    (event,) = parked(domain.stores.queue)
    assert event.hops == MAX_HOPS
    assert event.last_error is not None
    assert event.last_error.startswith(f"{RECURSIVE_LOOP_DETECTED}: ")
    assert subject.metrics.counter(m.RECURSIVE_INVOCATIONS_DROPPED, "f") == 1


# ------------------------------------------------------------------------------ shutdown


def test_closing_hands_running_events_back_for_the_next_start(
    domain: Domain, engine: StubEngine, destinations: RecordingDestinations
) -> None:
    create(domain)
    engine.script("f", BLOCK, OK)
    queue = domain.stores.queue
    first = dispatcher(domain, engine, destinations)

    async def interrupted() -> None:
        async with running(first):
            await first.accept("f", None, PAYLOAD, "req-1")
            await until(lambda: engine.requests)

    run(interrupted)
    assert queue.counts("f")["f"]["queued"] == 1
    assert destinations.closed
    second = dispatcher(domain, engine, RecordingDestinations())

    async def resumed() -> None:
        async with running(second):
            await until(lambda: settled(queue))

    run(resumed)
    assert [request.request_id for request in engine.requests] == ["req-1", "req-1"]
