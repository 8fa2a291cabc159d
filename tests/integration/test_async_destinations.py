"""Destinations (SQS, SNS, EventBridge, another function), dead-letter queues, recursion.

Every peer is a real moto server process reached through AWS_ENDPOINT_URL_SQS / _SNS /
_EVENTS; SNS topics and EventBridge buses are observed through SQS queues subscribed to them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import asynchronous
from tests.support.asynchronous import send, wait_for_events
from tests.support.lambda_api import FUNCTION_ARN
from tests.support.peers import MotoServer
from tests.support.queues import Queue
from tests.support.server import LaminaServer, metrics

async_server = asynchronous.async_server
client = asynchronous.client
queue = asynchronous.queue
function = asynchronous.function


@pytest.fixture(scope="module")
def sns(moto: MotoServer) -> Iterator[Any]:
    sns_client = moto.client("sns")
    yield sns_client
    sns_client.close()


@pytest.fixture(scope="module")
def events(moto: MotoServer) -> Iterator[Any]:
    events_client = moto.client("events")
    yield events_client
    events_client.close()


def topic_into(sns: Any, target: Queue) -> str:
    """A new SNS topic whose messages land (wrapped in SNS's envelope) on `target`."""
    arn = str(sns.create_topic(Name=f"t-{uuid.uuid4().hex[:12]}")["TopicArn"])
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=target.arn)
    return arn


def dlq_attributes(message: dict[str, Any]) -> dict[str, str]:
    return {
        name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()
    }


def test_failure_goes_to_both_the_on_failure_destination_and_the_sqs_dlq(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    failures, dlq = queue(), queue()
    name = function(
        "fail",
        on_failure=failures.arn,
        invoke_config={"MaximumRetryAttempts": 0},
        DeadLetterConfig={"TargetArn": dlq.arn},
    )
    request_id = send(client, name, {"original": True})
    (record,) = failures.records(1)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    (message,) = dlq.receive(1)
    # The DLQ receives the event itself, not a record, with AWS's three attributes.
    assert json.loads(message["Body"]) == {"original": True}
    assert dlq_attributes(message) == {
        "RequestID": request_id,
        "ErrorCode": "200",
        "ErrorMessage": 'boom {"original": true}',
    }
    assert message["MessageAttributes"]["ErrorCode"]["DataType"] == "Number"


def test_dlq_is_per_version(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    first, second = queue(), queue()
    name = function(
        "fail",
        invoke_config={"MaximumRetryAttempts": 0},
        DeadLetterConfig={"TargetArn": first.arn},
    )
    version = client.publish_version(FunctionName=name)["Version"]
    client.update_function_configuration(
        FunctionName=name, DeadLetterConfig={"TargetArn": second.arn}
    )
    client.get_waiter("function_updated_v2").wait(FunctionName=name)
    client.put_function_event_invoke_config(
        FunctionName=name, Qualifier=version, MaximumRetryAttempts=0
    )
    send(client, name, {"to": "second"})
    send(client, name, {"to": "first"}, Qualifier=version)
    assert json.loads(first.receive(1)[0]["Body"]) == {"to": "first"}
    assert json.loads(second.receive(1)[0]["Body"]) == {"to": "second"}


def test_sns_destination_and_sns_dlq(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue], sns: Any
) -> None:
    successes, dead = queue(), queue()
    ok = function("echo", on_success=topic_into(sns, successes))
    failing = function(
        "fail",
        invoke_config={"MaximumRetryAttempts": 0},
        DeadLetterConfig={"TargetArn": topic_into(sns, dead)},
    )
    send(client, ok, {"via": "sns"})
    request_id = send(client, failing, {"lost": 1})
    (envelope,) = (json.loads(m["Body"]) for m in successes.receive(1))
    record = json.loads(envelope["Message"])
    assert record["requestContext"]["condition"] == "Success"
    assert record["responsePayload"] == {"via": "sns"}
    (envelope,) = (json.loads(m["Body"]) for m in dead.receive(1))
    assert json.loads(envelope["Message"]) == {"lost": 1}
    attributes = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
    assert attributes["RequestID"] == request_id
    assert attributes["ErrorCode"] == "200"


def test_eventbridge_destination(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue], events: Any
) -> None:
    landed = queue()
    bus = f"bus-{uuid.uuid4().hex[:12]}"
    bus_arn = events.create_event_bus(Name=bus)["EventBusArn"]
    events.put_rule(Name="results", EventBusName=bus, EventPattern='{"source": ["lambda"]}')
    events.put_targets(
        Rule="results", EventBusName=bus, Targets=[{"Id": "queue", "Arn": landed.arn}]
    )
    name = function("fail", on_failure=bus_arn, invoke_config={"MaximumRetryAttempts": 0})
    request_id = send(client, name, {"bus": True})
    (event,) = landed.records(1)
    assert event["source"] == "lambda"
    assert event["detail-type"] == "Lambda Function Invocation Result - Failure"
    assert event["detail"]["requestContext"]["requestId"] == request_id
    assert event["detail"]["requestContext"]["condition"] == "RetriesExhausted"


def test_function_destination_runs_the_other_function_with_the_record(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    results = queue()
    downstream = function("echo", on_success=results.arn)
    upstream = function("ok", on_success=f"{FUNCTION_ARN}:{downstream}")
    request_id = send(client, upstream, {"start": 1})
    (record,) = results.records(1)
    assert record["requestContext"]["functionArn"] == f"{FUNCTION_ARN}:{downstream}:$LATEST"
    # Downstream ran with upstream's record as its event, and echoed it.
    inner = record["requestPayload"]
    assert inner == record["responsePayload"]
    assert inner["requestContext"]["requestId"] == request_id
    assert inner["requestContext"]["functionArn"] == f"{FUNCTION_ARN}:{upstream}:$LATEST"
    assert inner["requestPayload"] == {"start": 1}
    assert inner["responsePayload"] == "ok"


def depth(record: Any) -> int:
    levels = 0
    while isinstance(record, dict) and "requestPayload" in record:
        levels += 1
        record = record["requestPayload"]
    return levels


def test_recursive_loop_is_cut_after_16_invocations(
    async_server: LaminaServer,
    client: Any,
    function: Callable[..., str],
    queue: Callable[[], Queue],
) -> None:
    stopped = queue()
    # Two functions, each the other's destination: AWS refuses a function as its own.
    name = function("ok", on_failure=stopped.arn)
    other = function("ok", on_success=f"{FUNCTION_ARN}:{name}", on_failure=stopped.arn)
    client.put_function_event_invoke_config(
        FunctionName=name,
        DestinationConfig={
            "OnSuccess": {"Destination": f"{FUNCTION_ARN}:{other}"},
            "OnFailure": {"Destination": stopped.arn},
        },
    )
    send(client, name, {"origin": True})
    (record,) = stopped.records(1)
    assert record["requestContext"]["condition"] == "RecursiveLoopDetected"
    # The stopped event is the record of the 16th invocation; 16 records wrap the origin.
    assert depth(record["requestPayload"]) == 16
    # The 17th invocation, the one dropped, is the first function's again.
    assert metrics(async_server)["RecursiveInvocationsDropped"][name] == {"Sum": 1}


def test_recursive_loop_allowed_runs_past_16(
    client: Any, function: Callable[..., str], queue: Callable[[], Queue]
) -> None:
    stopped = queue()
    # Two functions, each the other's destination: AWS refuses a function as its own.
    name, other = function("chain"), function("chain")
    for this, that in ((name, other), (other, name)):
        client.put_function_recursion_config(FunctionName=this, RecursiveLoop="Allow")
        client.put_function_event_invoke_config(
            FunctionName=this,
            MaximumRetryAttempts=0,
            DestinationConfig={
                "OnSuccess": {"Destination": f"{FUNCTION_ARN}:{that}"},
                "OnFailure": {"Destination": stopped.arn},
            },
        )
    send(client, name, {"origin": True})
    # `chain` itself stops by failing once its event is 20 records deep.
    (record,) = stopped.records(1)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert depth(record["requestPayload"]) == 20


def test_unreachable_destination_is_retried_then_kept_as_failed(
    async_server: LaminaServer, client: Any, function: Callable[..., str]
) -> None:
    missing = f"arn:aws:sqs:us-east-1:000000000000:missing-{uuid.uuid4().hex[:8]}"
    name = function(
        "fail",
        on_failure=missing,
        invoke_config={"MaximumRetryAttempts": 0},
        DeadLetterConfig={"TargetArn": missing},
    )
    request_id = send(client, name)
    (event,) = wait_for_events(async_server.data_dir, name, failed=1)["Events"]
    assert event["RequestId"] == request_id and event["State"] == "failed"
    assert event["LastError"].startswith("Delivery failed: ")
    assert missing in event["LastError"]
    snapshot = metrics(async_server)
    # Eight attempts at each target, each failure counted where AWS counts it.
    assert snapshot["DestinationDeliveryFailures"][name] == {"Sum": 8}
    assert snapshot["DeadLetterErrors"][name] == {"Sum": 8}
    assert snapshot["AsyncEventsDropped"][name] == {"Sum": 1}
