"""SQS messages as Lambda hands them to a function: `{"Records": [...]}` of `aws:sqs` records.

A record keeps what ReceiveMessage returned, renamed to Lambda's lower camel case:

    {"messageId", "receiptHandle", "body",
     "attributes": {"ApproximateReceiveCount", "SentTimestamp", "SenderId",
                    "ApproximateFirstReceiveTimestamp", ... FIFO: "SequenceNumber",
                    "MessageGroupId", "MessageDeduplicationId"; "AWSTraceHeader" if sent},
     "messageAttributes": {name: {"stringValue" | "binaryValue" (base64),
                                  "stringListValues": [], "binaryListValues": [], "dataType"}},
     "md5OfMessageAttributes" (null without attributes), "md5OfBody",
     "eventSource": "aws:sqs", "eventSourceARN", "awsRegion"}

Each record is encoded once, when it is received: a batch's payload is the encoded records
joined, and its size is known without encoding it again.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from lamina.pollers.filters import json_or_text

EVENT_SOURCE = "aws:sqs"

# The system attributes in the order Lambda's own examples show them; any other attribute
# SQS returns (DeadLetterQueueSourceArn, ...) follows.
_ATTRIBUTE_ORDER = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "SenderId",
    "MessageDeduplicationId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
)

_OPEN = b'{"Records":['
_CLOSE = b"]}"


@dataclass(frozen=True)
class SqsRecord:
    """One received message: its record, the record encoded, and what deleting it takes."""

    record: dict[str, Any]
    encoded: bytes

    @property
    def message_id(self) -> str:
        value: str = self.record["messageId"]
        return value

    @property
    def receipt_handle(self) -> str:
        value: str = self.record["receiptHandle"]
        return value

    @property
    def group(self) -> str | None:
        """The FIFO message group (None on standard queues)."""
        group: str | None = self.record["attributes"].get("MessageGroupId")
        return group

    @property
    def size(self) -> int:
        """Bytes this record adds to a batch's payload (its comma included)."""
        return len(self.encoded) + 1


def sqs_record(message: Mapping[str, Any], source_arn: str, region: str) -> SqsRecord:
    """The record for one message of a ReceiveMessage response (boto3's shape)."""
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": _attributes(message.get("Attributes") or {}),
        "messageAttributes": {
            name: _message_attribute(value)
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfMessageAttributes": message.get("MD5OfMessageAttributes"),
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": EVENT_SOURCE,
        "eventSourceARN": source_arn,
        "awsRegion": region,
    }
    return SqsRecord(record, orjson.dumps(record))


def payload(records: Sequence[SqsRecord]) -> bytes:
    """The event for a batch: `{"Records": [...]}`."""
    return _OPEN + b",".join(record.encoded for record in records) + _CLOSE


def payload_size(records: Sequence[SqsRecord]) -> int:
    """`len(payload(records))`, without building it."""
    commas = max(len(records) - 1, 0)
    return len(_OPEN) + len(_CLOSE) + sum(len(record.encoded) for record in records) + commas


def filter_view(record: SqsRecord) -> dict[str, Any]:
    """The record as FilterCriteria patterns see it: `body` decoded when it holds JSON (so a
    JSON pattern never matches a plain-text body)."""
    view = dict(record.record)
    view["body"] = json_or_text(record.record["body"])
    return view


def _attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    ordered = {name: attributes[name] for name in _ATTRIBUTE_ORDER if name in attributes}
    for name, value in attributes.items():
        ordered.setdefault(name, value)
    return ordered


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    if "StringValue" in value:
        shown["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        shown["binaryValue"] = _base64(value["BinaryValue"])
    shown["stringListValues"] = list(value.get("StringListValues") or [])
    shown["binaryListValues"] = [_base64(item) for item in value.get("BinaryListValues") or []]
    shown["dataType"] = value.get("DataType")
    return shown


def _base64(value: bytes | str) -> str:
    """boto3 hands binary values over decoded; a record carries them in base64."""
    if isinstance(value, str):
        return value
    return base64.b64encode(value).decode("ascii")
