"""SQS records as Lambda builds them from ReceiveMessage responses, batch payloads, the filter
view of a body, and how a batch is split at 6 MB."""

from __future__ import annotations

import json

import orjson

from lamina.pollers.filters import RecordFilter
from lamina.pollers.sqs import BATCH_PAYLOAD_MAX_BYTES, _chunks
from lamina.pollers.sqs_records import filter_view, payload, payload_size, sqs_record

ARN = "arn:aws:sqs:eu-west-1:123456789012:orders.fifo"


def message(body: str = "hello", **fields: object) -> dict[str, object]:
    return {
        "MessageId": "m-1",
        "ReceiptHandle": "rh-1",
        "MD5OfBody": "5d41402abc4b2a76b9719d911017c592",
        "Body": body,
        "Attributes": {
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000100",
            "SentTimestamp": "1700000000000",
            "ApproximateReceiveCount": "1",
        },
        **fields,
    }


def test_a_message_becomes_an_aws_sqs_record() -> None:
    record = sqs_record(message(), ARN, "eu-west-1").record
    assert record == {
        "messageId": "m-1",
        "receiptHandle": "rh-1",
        "body": "hello",
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000100",
        },
        "messageAttributes": {},
        "md5OfMessageAttributes": None,
        "md5OfBody": "5d41402abc4b2a76b9719d911017c592",
        "eventSource": "aws:sqs",
        "eventSourceARN": ARN,
        "awsRegion": "eu-west-1",
    }
    # The attributes come in the order of Lambda's examples, whatever order SQS used.
    assert list(record["attributes"]) == [
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    ]


def test_fifo_and_trace_attributes_are_kept() -> None:
    fifo = message()
    fifo["Attributes"] = {
        **fifo["Attributes"],  # type: ignore[dict-item]
        "MessageDeduplicationId": "d-1",
        "MessageGroupId": "g-1",
        "SequenceNumber": "18849496460467696128",
        "AWSTraceHeader": "Root=1-abc",
    }
    built = sqs_record(fifo, ARN, "eu-west-1")
    assert list(built.record["attributes"]) == [
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SequenceNumber",
        "MessageGroupId",
        "SenderId",
        "MessageDeduplicationId",
        "ApproximateFirstReceiveTimestamp",
        "AWSTraceHeader",
    ]
    assert built.group == "g-1"


def test_message_attributes_take_lambdas_shape() -> None:
    record = sqs_record(
        message(
            MessageAttributes={
                "s": {"StringValue": "v", "DataType": "String"},
                "n": {"StringValue": "1.5", "DataType": "Number.float"},
                "b": {"BinaryValue": b"\x00\xff", "DataType": "Binary"},
            },
            MD5OfMessageAttributes="0123456789abcdef0123456789abcdef",
        ),
        ARN,
        "eu-west-1",
    ).record
    assert record["messageAttributes"] == {
        "s": {
            "stringValue": "v",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "n": {
            "stringValue": "1.5",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Number.float",
        },
        "b": {
            "binaryValue": "AP8=",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    assert record["md5OfMessageAttributes"] == "0123456789abcdef0123456789abcdef"


def test_a_batch_payload_is_the_records_under_records() -> None:
    records = [sqs_record(message(body=str(n)), ARN, "eu-west-1") for n in range(3)]
    event = payload(records)
    assert json.loads(event) == {"Records": [record.record for record in records]}
    assert payload_size(records) == len(event)
    assert payload([]) == b'{"Records":[]}' and payload_size([]) == len(b'{"Records":[]}')


def test_filters_see_a_json_body_decoded_and_a_text_body_as_text() -> None:
    wants_order = RecordFilter(['{"body": {"kind": ["order"]}}'])
    wants_text = RecordFilter(['{"body": ["kind order"]}'])
    json_body = sqs_record(message(body='{"kind": "order"}'), ARN, "eu-west-1")
    text_body = sqs_record(message(body="kind order"), ARN, "eu-west-1")
    broken = sqs_record(message(body='{"kind": "order"'), ARN, "eu-west-1")
    assert filter_view(json_body)["body"] == {"kind": "order"}
    assert wants_order.split([json_body, text_body, broken], filter_view) == (
        [json_body],
        [text_body, broken],
    )
    assert wants_text.split([json_body, text_body], filter_view) == ([text_body], [json_body])
    # Metadata is filterable too.
    by_source = RecordFilter(
        ['{"eventSource": ["aws:sqs"], "attributes": {"SenderId": [{"exists": true}]}}']
    )
    assert by_source.matches(filter_view(text_body))


def test_a_batch_over_6_mb_is_split_in_order() -> None:
    big = "x" * (1024 * 1024)
    records = [
        sqs_record({**message(body=big), "MessageId": f"m-{n}"}, ARN, "eu-west-1")
        for n in range(13)
    ]
    chunks = list(_chunks(records))
    assert [record for chunk in chunks for record in chunk] == records
    assert all(payload_size(chunk) <= BATCH_PAYLOAD_MAX_BYTES for chunk in chunks)
    assert [len(chunk) for chunk in chunks] == [5, 5, 3]
    assert len(orjson.loads(payload(chunks[0]))["Records"]) == 5
