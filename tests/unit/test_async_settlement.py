"""What an outcome owes: the OnSuccess destination, the OnFailure destination, the DLQ."""

from __future__ import annotations

import json

from lamina.aws.destinations import DEAD_LETTER, DESTINATION
from lamina.invoke.asynchronous.outcomes import failure_reason, owed_on_failure, owed_on_success
from lamina.invoke.asynchronous.records import (
    EVENT_AGE_EXCEEDED,
    RECURSIVE_LOOP_DETECTED,
    RETRIES_EXHAUSTED,
)
from tests.support.async_builders import event, event_config, failed, succeeded

ARN = "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST"
QUEUE = "arn:aws:sqs:us-east-1:123456789012:on-failure"
TOPIC = "arn:aws:sns:us-east-1:123456789012:on-success"
DLQ = "arn:aws:sqs:us-east-1:123456789012:dlq"


def test_success_owes_nothing_without_an_on_success_destination() -> None:
    assert owed_on_success(event(), ARN, event_config(on_failure=QUEUE), succeeded()) == []


def test_success_owes_a_success_record_to_the_on_success_destination() -> None:
    (delivery,) = owed_on_success(event(), ARN, event_config(on_success=TOPIC), succeeded())
    assert (delivery.target, delivery.role, delivery.success) == (TOPIC, DESTINATION, True)
    record = json.loads(delivery.body)
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["responsePayload"] == "ok"


def test_failure_owes_nothing_without_destination_or_dlq() -> None:
    config = event_config(on_success=TOPIC)
    assert owed_on_failure(event(), ARN, config, None, RETRIES_EXHAUSTED, failed()) == []


def test_failure_owes_a_failure_record_to_the_on_failure_destination() -> None:
    tried_twice = event(attempts=2)
    config = event_config(on_failure=QUEUE)
    (delivery,) = owed_on_failure(tried_twice, ARN, config, None, RETRIES_EXHAUSTED, failed())
    assert (delivery.target, delivery.role, delivery.success) == (QUEUE, DESTINATION, False)
    record = json.loads(delivery.body)
    assert record["requestContext"]["condition"] == RETRIES_EXHAUSTED
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["requestPayload"] == {"order": 7}


def test_failure_owes_the_original_event_to_the_dlq() -> None:
    (delivery,) = owed_on_failure(
        event(attempts=2), ARN, event_config(), DLQ, RETRIES_EXHAUSTED, failed(message="no stock")
    )
    assert (delivery.target, delivery.role) == (DLQ, DEAD_LETTER)
    assert delivery.body == '{"order": 7}'
    assert delivery.attributes == {
        "RequestID": ("String", "req-1"),
        "ErrorCode": ("Number", "200"),
        "ErrorMessage": ("String", "no stock"),
    }


def test_failure_owes_both_when_both_are_configured() -> None:
    deliveries = owed_on_failure(
        event(), ARN, event_config(on_failure=QUEUE), DLQ, RETRIES_EXHAUSTED, failed()
    )
    assert [(d.target, d.role) for d in deliveries] == [(QUEUE, DESTINATION), (DLQ, DEAD_LETTER)]


def test_an_event_that_never_ran_sends_a_record_without_a_response() -> None:
    throttled = event(requeues=4, last_error="TooManyRequestsException: ReservedFunction")
    deliveries = owed_on_failure(
        throttled, ARN, event_config(on_failure=QUEUE), DLQ, EVENT_AGE_EXCEEDED, None
    )
    record = json.loads(deliveries[0].body)
    assert record["requestContext"]["condition"] == EVENT_AGE_EXCEEDED
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert "responseContext" not in record and "responsePayload" not in record
    # Throttled until it expired: the DLQ hears 429 and the last throttle.
    assert deliveries[1].attributes["ErrorCode"] == ("Number", "429")
    assert deliveries[1].attributes["ErrorMessage"] == (
        "String",
        "TooManyRequestsException: ReservedFunction",
    )


def test_a_recursive_loop_reaches_the_dlq_as_a_bad_request() -> None:
    (delivery,) = owed_on_failure(
        event(hops=16), ARN, event_config(), DLQ, RECURSIVE_LOOP_DETECTED, None
    )
    assert delivery.attributes["ErrorCode"] == ("Number", "400")
    assert delivery.attributes["ErrorMessage"] == ("String", RECURSIVE_LOOP_DETECTED)


def test_the_failure_reason_is_the_function_error_else_the_last_one_recorded() -> None:
    assert failure_reason(event(last_error="earlier"), failed(message="boom")) == (
        "ValueError: boom"
    )
    assert failure_reason(event(last_error="earlier"), None) == "earlier"
    assert failure_reason(event(), None) is None
