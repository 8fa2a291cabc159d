"""Invocation records, DLQ attributes, persisted deliveries and the metrics registry."""

from __future__ import annotations

import json
import re

from lamina.aws.destinations import DEAD_LETTER, Delivery
from lamina.invoke.asynchronous.records import (
    Response,
    dead_letter,
    decode_deliveries,
    encode_deliveries,
    error_message,
    invocation_record,
)
from lamina.metrics import MetricsRegistry

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST"


def test_failure_record_has_aws_shape() -> None:
    record = json.loads(
        invocation_record(
            request_id="req-1",
            function_arn=ARN,
            condition="RetriesExhausted",
            invoke_count=3,
            request_payload=b'{"order": 7}',
            response=Response("$LATEST", b'{"errorMessage": "boom", "errorType": "E"}', True),
        )
    )
    assert record["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    assert record["requestContext"] == {
        "requestId": "req-1",
        "functionArn": ARN,
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert record["requestPayload"] == {"order": 7}
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"] == {"errorMessage": "boom", "errorType": "E"}


def test_success_record_has_no_function_error_and_age_record_no_response() -> None:
    success = json.loads(
        invocation_record(
            request_id="r",
            function_arn=ARN,
            condition="Success",
            invoke_count=1,
            request_payload=b"{}",
            response=Response("3", b'"done"', False),
        )
    )
    assert success["responseContext"] == {"statusCode": 200, "executedVersion": "3"}
    assert success["responsePayload"] == "done"
    aged = json.loads(
        invocation_record(
            request_id="r",
            function_arn=ARN,
            condition="EventAgeExceeded",
            invoke_count=0,
            request_payload=b"{}",
            response=None,
        )
    )
    assert "responseContext" not in aged and "responsePayload" not in aged


def test_dead_letter_carries_the_original_event_and_the_first_kilobyte_of_the_error() -> None:
    long = "é" * 2000
    response = Response("$LATEST", json.dumps({"errorMessage": long}).encode(), True)
    message = error_message(response, "fallback")
    assert len(message.encode()) <= 1024 and long.startswith(message)
    delivery = dead_letter("arn:aws:sqs:us-east-1:000000000000:dlq", "r", b'{"a":1}', 200, message)
    assert delivery.role == DEAD_LETTER and delivery.body == '{"a":1}'
    assert delivery.attributes["RequestID"] == ("String", "r")
    assert delivery.attributes["ErrorCode"] == ("Number", "200")
    assert error_message(None, "EventAgeExceeded") == "EventAgeExceeded"


def test_deliveries_round_trip_through_the_queue_encoding() -> None:
    deliveries = [
        Delivery("arn:aws:sns:us-east-1:000000000000:t", "destination", "{}", success=True),
        dead_letter("arn:aws:sqs:us-east-1:000000000000:q", "r", b"{}", 429, "throttled"),
    ]
    assert decode_deliveries(encode_deliveries(deliveries)) == deliveries
    assert [d.kind for d in deliveries] == ["sns", "sqs"]


def test_metrics_registry_counts_and_summarises() -> None:
    metrics = MetricsRegistry()
    metrics.count("AsyncEventsReceived", "f")
    metrics.count("AsyncEventsReceived", "f", 2)
    for value in (5.0, 1.0, 9.0):
        metrics.observe("AsyncEventAge", "f", value)
    assert metrics.counter("AsyncEventsReceived", "f") == 3
    assert metrics.counter("AsyncEventsReceived", "g") == 0
    age = metrics.distribution("AsyncEventAge", "f")
    assert (age.count, age.total, age.minimum, age.maximum) == (3, 15.0, 1.0, 9.0)
    snapshot = metrics.snapshot()
    assert snapshot["AsyncEventsReceived"]["f"] == {"Sum": 3}
    assert snapshot["AsyncEventAge"]["f"]["SampleCount"] == 3
