"""The `aws:rmq` event as Lambda builds it from RabbitMQ deliveries.

Lambda's RabbitMQ poller is a Java consumer and its event is that client's view of each
message, serialised to JSON: every basic property is present (null when the publisher left
it out), AMQP long strings in headers appear as `{"bytes": [...]}` (Java's signed bytes),
dates as `Jan 1, 1970, 12:33:41 AM` (UTC), and the body as base64 under `data`. Messages are
grouped under `<queue>::<virtual host>`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

EVENT_SOURCE = "aws:rmq"
# An invocation's payload may not exceed 6 MB; a batch holds what fits.
EVENT_MAX_BYTES = 6 * 1024 * 1024
# `{"eventSource":"aws:rmq","eventSourceArn":"...","rmqMessagesByQueue":{"...":[...]}}`
# around the records, beyond the ARN's and the key's own length.
_ENVELOPE_BYTES = 80


def queue_key(queue: str, virtual_host: str) -> str:
    return f"{queue}::{virtual_host}"


def java_date(moment: datetime) -> str:
    """A date as Lambda's JSON shows it: `Jan 1, 1970, 12:33:41 AM`, in UTC."""
    moment = moment.astimezone(UTC)
    hour = moment.hour % 12 or 12
    noon = "AM" if moment.hour < 12 else "PM"
    return (
        f"{moment.strftime('%b')} {moment.day}, {moment.year}, "
        f"{hour}:{moment.minute:02d}:{moment.second:02d} {noon}"
    )


def _signed(data: bytes) -> list[int]:
    """Bytes as Java's `byte[]` serialises them (-128..127)."""
    return [value - 256 if value > 127 else value for value in data]


def header_value(value: Any) -> Any:
    """One header value as the Java client presents it: long strings (and raw byte strings)
    as `{"bytes": [...]}`, numbers and booleans as they are, dates formatted, tables and
    arrays member by member."""
    if isinstance(value, str):
        return {"bytes": _signed(value.encode())}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": _signed(bytes(value))}
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return java_date(value)
    if isinstance(value, Mapping):
        return {str(key): header_value(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [header_value(item) for item in value]
    return str(value)


def record(properties: Any, body: bytes, redelivered: bool) -> dict[str, Any]:
    """One message of the event, from pamqp's `Basic.Properties` and the body."""
    headers = properties.headers
    timestamp = properties.timestamp
    return {
        "basicProperties": {
            "contentType": properties.content_type,
            "contentEncoding": properties.content_encoding,
            "headers": None if headers is None else header_value(headers),
            "deliveryMode": properties.delivery_mode,
            "priority": properties.priority,
            "correlationId": properties.correlation_id,
            "replyTo": properties.reply_to,
            "expiration": properties.expiration,
            "messageId": properties.message_id,
            "timestamp": None if timestamp is None else java_date(timestamp),
            "type": properties.message_type,
            "userId": properties.user_id,
            "appId": properties.app_id,
            "clusterId": properties.cluster_id or None,
            "bodySize": len(body),
        },
        "redelivered": bool(redelivered),
        "data": base64.b64encode(body).decode("ascii"),
    }


def record_bytes(item: Mapping[str, Any]) -> int:
    """What a record adds to the event's JSON (with its separating comma)."""
    return len(orjson.dumps(item)) + 1


def envelope_bytes(broker_arn: str, key: str) -> int:
    return _ENVELOPE_BYTES + len(broker_arn) + len(key)


def event(broker_arn: str, key: str, records: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {
            "eventSource": EVENT_SOURCE,
            "eventSourceArn": broker_arn,
            "rmqMessagesByQueue": {key: records},
        }
    )
