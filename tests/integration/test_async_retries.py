"""Retries, throttles, maximum event age and reserved concurrency 0 for async events.

The server runs with LAMINA_ASYNC_RETRY_SCALE=0.01, so AWS's one- and two-minute retry
delays take 0.6 and 1.2 seconds and a 60-second maximum event age lasts 0.6 seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support import asynchronous
from tests.support.asynchronous import send
from tests.support.lambda_api import FUNCTION_ARN
from tests.support.queues import Queue
from tests.support.server import LaminaServer, metrics

# A server of this module's own, with the shared fixtures.
async_server = asynchronous.async_server
client = asynchronous.client
queue = asynchronous.queue
function = asynchronous.function


def test_function_errors_are_retried_twice_by_default(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    failures = queue()
    name = function("fail", on_failure=failures.arn)
    request_id = send(client, name, {"order": 1})
    (record,) = failures.records(1)
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": f"{FUNCTION_ARN}:{name}:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert record["requestPayload"] == {"order": 1}
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["responsePayload"]["errorMessage"] == 'boom {"order": 1}'


def test_maximum_retry_attempts_is_honoured(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    failures = queue()
    for attempts in (0, 1):
        name = function(
            "fail", on_failure=failures.arn, invoke_config={"MaximumRetryAttempts": attempts}
        )
        send(client, name)
        (record,) = failures.records(1)
        assert record["requestContext"]["approximateInvokeCount"] == attempts + 1


def test_a_timeout_is_a_function_error(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    failures = queue()
    name = function(
        "slow", on_failure=failures.arn, invoke_config={"MaximumRetryAttempts": 0}, Timeout=1
    )
    send(client, name, {"seconds": 5})
    (record,) = failures.records(1)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["responsePayload"]["errorType"] == "Sandbox.Timedout"


def test_throttled_events_wait_without_using_attempts(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    results = queue()
    name = function(
        "slow",
        on_success=results.arn,
        on_failure=results.arn,
        invoke_config={"MaximumRetryAttempts": 0},
    )
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    sent = {send(client, name, {"seconds": 0.2}) for _ in range(5)}
    records = results.records(5)
    # One at a time fits the reservation; the others were throttled and re-queued, which
    # used none of their (zero) retries: every event succeeded on its first invocation.
    assert {record["requestContext"]["requestId"] for record in records} == sent
    assert {record["requestContext"]["condition"] for record in records} == {"Success"}
    assert {record["requestContext"]["approximateInvokeCount"] for record in records} == {1}


def test_events_older_than_the_maximum_age_go_to_the_failure_path(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    results = queue()
    name = function(
        "slow",
        on_success=results.arn,
        on_failure=results.arn,
        invoke_config={"MaximumEventAgeInSeconds": 60},  # 0.6 s here
    )
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    sent = {send(client, name, {"seconds": 1.5}) for _ in range(3)}
    records = results.records(3)
    assert {record["requestContext"]["requestId"] for record in records} == sent
    aged = [r for r in records if r["requestContext"]["condition"] == "EventAgeExceeded"]
    # At most one event can run before the others are older than 0.6 s.
    assert len(aged) >= 2
    for record in aged:
        assert record["requestContext"]["approximateInvokeCount"] == 0
        assert "responseContext" not in record and "responsePayload" not in record


def test_reserved_concurrency_zero_skips_retries(
    async_server: LaminaServer,
    client: Any,
    function: Callable[..., str],
    queue: Callable[[], Queue],
) -> None:
    failures = queue()
    name = function("ok", on_failure=failures.arn)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    request_id = send(client, name, {"x": 1})
    (record,) = failures.records(1)
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "ZeroReservedConcurrency"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["requestPayload"] == {"x": 1}
    assert metrics(async_server)["AsyncEventsDropped"][name] == {"Sum": 1}
