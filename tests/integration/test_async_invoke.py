"""Invoke with InvocationType=Event and InvokeAsync: accepted durably, delivered, reported.

Outcomes are observed where a user would see them: invocation records that the function's
OnSuccess/OnFailure destination (an SQS queue on a moto server) receives. The server and
fixtures are tests/support/asynchronous.py's, shared with the other test_async_* modules.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support import asynchronous
from tests.support.asynchronous import FAST, send
from tests.support.lambda_api import FUNCTION_ARN, error_of
from tests.support.queues import Queue
from tests.support.server import LaminaServer, metrics

# A server of this module's own, with the shared fixtures.
async_server = asynchronous.async_server
client = asynchronous.client
queue = asynchronous.queue
function = asynchronous.function


# --------------------------------------------------------------------------- tests


def test_event_is_accepted_with_202_and_runs_with_the_same_request_id(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    results = queue()
    name = function("echo", on_success=results.arn)
    response = client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 1}')
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    # As on AWS: no executed version for an event (the version runs later).
    assert "x-amz-executed-version" not in headers
    request_id = response["ResponseMetadata"]["RequestId"]
    (record,) = results.records(1)
    assert record["version"] == "1.0"
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": f"{FUNCTION_ARN}:{name}:$LATEST",
        "condition": "Success",
        "approximateInvokeCount": 1,
    }
    assert record["requestPayload"] == {"n": 1}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"n": 1}


def test_empty_payload_runs_as_an_empty_object(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    results = queue()
    name = function("echo", on_success=results.arn)
    send(client, name)
    (record,) = results.records(1)
    assert record["requestPayload"] == {} and record["responsePayload"] == {}


def test_legacy_invoke_async_is_accepted_and_delivered(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    results = queue()
    name = function("echo", on_success=results.arn)
    response = client.invoke_async(FunctionName=name, InvokeArgs=b'{"legacy": true}')
    assert response["Status"] == 202
    (record,) = results.records(1)
    assert record["requestPayload"] == {"legacy": True}
    assert record["requestContext"]["requestId"] == response["ResponseMetadata"]["RequestId"]


def test_missing_function_or_qualifier_is_404(client: Any, function: Callable[..., str]) -> None:
    with pytest.raises(ClientError) as error:
        client.invoke(FunctionName="no-such-fn", InvocationType="Event", Payload=b"{}")
    assert error_of(error)[0::2] == ("ResourceNotFoundException", 404)
    name = function("ok")
    with pytest.raises(ClientError) as error:
        client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}", Qualifier="9")
    assert error_of(error)[0::2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as error:
        client.invoke_async(FunctionName="no-such-fn", InvokeArgs=b"{}")
    assert error_of(error)[0::2] == ("ResourceNotFoundException", 404)


def test_event_payload_limit_is_one_megabyte(client: Any, function: Callable[..., str]) -> None:
    name = function("ok")
    limit = 1024 * 1024
    fits = b'"' + b"x" * (limit - 2) + b'"'
    response = client.invoke(FunctionName=name, InvocationType="Event", Payload=fits)
    assert response["StatusCode"] == 202
    response["Payload"].read()
    with pytest.raises(ClientError) as error:
        client.invoke(FunctionName=name, InvocationType="Event", Payload=fits + b" ")
    assert error_of(error)[0::2] == ("RequestTooLargeException", 413)
    with pytest.raises(ClientError) as error:
        client.invoke_async(FunctionName=name, InvokeArgs=fits + b" ")
    assert error_of(error)[0::2] == ("RequestTooLargeException", 413)


def test_malformed_payload_is_refused_before_queueing(
    client: Any, function: Callable[..., str]
) -> None:
    name = function("ok")
    with pytest.raises(ClientError) as error:
        client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{not json")
    assert error_of(error)[0::2] == ("InvalidRequestContentException", 400)


def test_alias_has_its_own_config_and_reports_the_version_it_ran(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    for_function, for_alias = queue(), queue()
    name = function("echo", on_success=for_function.arn)
    version = client.publish_version(FunctionName=name)["Version"]
    client.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    client.put_function_event_invoke_config(
        FunctionName=name,
        Qualifier="live",
        DestinationConfig={"OnSuccess": {"Destination": for_alias.arn}},
    )
    send(client, name, {"via": "alias"}, Qualifier="live")
    send(client, f"{name}:{version}", {"via": "version"})
    send(client, name, {"via": "function"})
    (alias_record,) = for_alias.records(1)
    assert alias_record["requestContext"]["functionArn"] == f"{FUNCTION_ARN}:{name}:live"
    assert alias_record["responseContext"]["executedVersion"] == version
    assert alias_record["requestPayload"] == {"via": "alias"}
    # The version has no config of its own, so its event has nowhere to report; the
    # function's ($LATEST) config applies to the unqualified call only.
    (function_record,) = for_function.records(1)
    assert function_record["requestPayload"] == {"via": "function"}
    assert for_alias.is_quiet() and for_function.is_quiet()


def test_accepted_events_are_counted(
    async_server: LaminaServer,
    client: Any,
    function: Callable[..., str],
    queue: Callable[[], Queue],
) -> None:
    results = queue()
    name = function("ok", on_success=results.arn)
    started = time.monotonic()
    for n in range(3):
        send(client, name, {"n": n})
    results.records(3)
    waited_ms = (time.monotonic() - started) * 1000
    snapshot = metrics(async_server)
    assert snapshot["AsyncEventsReceived"][name] == {"Sum": 3}
    age = snapshot["AsyncEventAge"][name]
    assert age["SampleCount"] == 3
    # Each event is some time old when it runs, and no older than the wait for its record.
    assert 0 < age["Minimum"] <= age["Maximum"] < waited_ms


def test_a_retried_event_is_older_by_the_retry_delay(
    async_server: LaminaServer,
    client: Any,
    function: Callable[..., str],
    queue: Callable[[], Queue],
) -> None:
    failures = queue()
    name = function("fail", on_failure=failures.arn, invoke_config={"MaximumRetryAttempts": 1})
    started = time.monotonic()
    send(client, name)
    failures.records(1)
    waited_ms = (time.monotonic() - started) * 1000
    age = metrics(async_server)["AsyncEventAge"][name]
    # Two attempts: the first at once, the retry after AWS's first delay (one minute, scaled).
    assert age["SampleCount"] == 2
    retry_delay_ms = 60_000 * float(FAST["LAMINA_ASYNC_RETRY_SCALE"])
    assert 0 < age["Minimum"] < age["Maximum"]
    assert retry_delay_ms <= age["Maximum"] < waited_ms
