"""InvokeWithResponseStream over HTTP with boto3: chunks arrive while the function runs."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.waiting import wait_until

HANDLERS = """
import json, time

def chunks(event, context):
    yield "first "
    time.sleep(event.get("pause", 1))
    yield json.dumps({"produced": time.time()})

def items(event, context):
    yield b"bytes,"
    yield ""
    yield "text,"
    yield {"json": [1, 2]}

def many(event, context):
    return ("%d," % i for i in range(event["n"]))

def buffered(event, context):
    return {"whole": event}

def fails_midway(event, context):
    yield b"partial"
    raise RuntimeError("broke after one chunk")

def fails_first(event, context):
    raise ValueError("nothing streamed")
    yield "never"

def slow(event, context):
    yield "start"
    time.sleep(1)
    yield "end"

def stalls(event, context):
    yield "start"
    time.sleep(10)
    yield "never"
"""


@pytest.fixture
def function(create_function: Callable[..., Any]) -> Callable[..., str]:
    def make(handler: str, **overrides: Any) -> str:
        config = create_function(
            Handler=f"app.{handler}", Code={"ZipFile": make_zip({"app.py": HANDLERS})}, **overrides
        )
        return str(config["FunctionName"])

    return make


def stream(client: Any, name: str, event: Any = None, **kwargs: Any) -> Iterator[Any]:
    """Each event as boto3 parses it, as it arrives; the response metadata comes first."""
    response = client.invoke_with_response_stream(
        FunctionName=name, Payload=json.dumps(event or {}), **kwargs
    )
    events = response.pop("EventStream")
    try:
        yield response
        yield from events
    finally:
        events.close()


def collect(client: Any, name: str, event: Any = None, **kwargs: Any) -> tuple[Any, list[Any]]:
    response, *events = stream(client, name, event, **kwargs)
    return response, events


def test_chunks_arrive_before_the_function_finishes(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function("chunks")
    events = stream(lambda_client, name, {"pause": 1})
    response = next(events)
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert response["ResponseStreamContentType"] == "application/vnd.amazon.eventstream"
    assert next(events) == {"PayloadChunk": {"Payload": b"first "}}
    first_received = time.time()
    second = next(events)
    # The client held chunk 1 before the function had even produced chunk 2.
    assert first_received < json.loads(second["PayloadChunk"]["Payload"])["produced"]
    assert next(events) == {"InvokeComplete": {}}
    assert list(events) == []


def test_items_of_any_kind_become_chunks(lambda_client: Any, function: Callable[..., str]) -> None:
    _, events = collect(lambda_client, function("items"))
    assert events == [
        {"PayloadChunk": {"Payload": b"bytes,"}},
        {"PayloadChunk": {"Payload": b"text,"}},
        {"PayloadChunk": {"Payload": b'{"json":[1,2]}'}},
        {"InvokeComplete": {}},
    ]


def test_many_chunks_arrive_complete_and_in_order(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function("many")
    for _ in range(2):  # the second call runs in the same, warm environment
        _, events = collect(lambda_client, name, {"n": 500})
        *chunks, complete = events
        assert complete == {"InvokeComplete": {}}
        body = b"".join(event["PayloadChunk"]["Payload"] for event in chunks)
        assert body == "".join(f"{i}," for i in range(500)).encode()


def test_a_buffered_function_answers_in_one_chunk(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    _, events = collect(lambda_client, function("buffered"), {"a": 1}, LogType="Tail")
    chunk, complete = events
    assert json.loads(chunk["PayloadChunk"]["Payload"]) == {"whole": {"a": 1}}
    assert "ErrorCode" not in complete["InvokeComplete"]
    log = base64.b64decode(complete["InvokeComplete"]["LogResult"]).decode()
    assert "START RequestId: " in log and "REPORT RequestId: " in log


def test_an_error_midway_ends_the_stream_with_its_details(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function("fails_midway")
    response, events = collect(lambda_client, name, LogType="Tail")
    assert response["StatusCode"] == 200
    chunk, complete = events
    assert chunk == {"PayloadChunk": {"Payload": b"partial"}}
    complete = complete["InvokeComplete"]
    assert complete["ErrorCode"] == "RuntimeError"
    assert complete["ErrorDetails"] == "broke after one chunk"
    assert "[ERROR] RuntimeError: broke after one chunk" in base64.b64decode(
        complete["LogResult"]
    ).decode("utf-8", "replace")
    # The environment survived a handled error: the function streams again.
    assert collect(lambda_client, name)[1][0] == chunk


def test_an_error_before_the_first_chunk_is_a_plain_function_error(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    _, events = collect(lambda_client, function("fails_first"))
    assert events == [
        {"InvokeComplete": {"ErrorCode": "ValueError", "ErrorDetails": "nothing streamed"}}
    ]


def test_a_timeout_midway_is_reported_and_the_function_recovers(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function("stalls", Timeout=1)
    _, events = collect(lambda_client, name)
    chunk, complete = events
    assert chunk == {"PayloadChunk": {"Payload": b"start"}}
    assert complete["InvokeComplete"]["ErrorCode"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in complete["InvokeComplete"]["ErrorDetails"]
    assert collect(lambda_client, name)[1][0] == chunk


def test_plain_invoke_of_a_streaming_function_concatenates_its_chunks(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    response = lambda_client.invoke(FunctionName=function("items"), Payload=b"{}")
    assert response["Payload"].read() == b'bytes,text,{"json":[1,2]}'
    assert "FunctionError" not in response


def test_errors_before_the_stream_are_plain_aws_errors(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke_with_response_stream(FunctionName="no-such-function")
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
    name = function("chunks")
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke_with_response_stream(FunctionName=name)
    error = excinfo.value.response
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"


def test_dry_run_and_qualifiers(lambda_client: Any, function: Callable[..., str]) -> None:
    name = function("buffered", Publish=True)
    response = lambda_client.invoke_with_response_stream(FunctionName=name, InvocationType="DryRun")
    response["EventStream"].close()
    assert response["StatusCode"] == 204
    response, events = collect(lambda_client, f"{name}:1")
    assert response["ExecutedVersion"] == "1"
    assert json.loads(events[0]["PayloadChunk"]["Payload"]) == {"whole": {}}


def test_an_abandoned_stream_still_releases_its_concurrency(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function("slow")
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    events = stream(lambda_client, name)
    next(events)
    assert next(events) == {"PayloadChunk": {"Payload": b"start"}}
    events.close()  # the client goes away mid-stream

    def completed() -> Any:
        """The last two events of a new stream, or None while the slot is still taken."""
        try:
            return collect(lambda_client, name)[1][-2:]
        except ClientError as error:
            assert error.response["Error"]["Code"] == "TooManyRequestsException"
            return None

    _, complete = wait_until(
        completed, timeout=15, message="the abandoned invocation kept its slot"
    )
    assert complete == {"InvokeComplete": {}}
