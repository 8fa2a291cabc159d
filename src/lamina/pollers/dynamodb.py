"""DynamoDB Streams as a stream source: shards, iterators and records as Lambda builds them
(the stream API's record with `eventVersion` "1.1" and `eventSourceARN`)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson

from lamina.aws.clients import ClientCache, arn_region
from lamina.model.mappings import EventSourceMapping
from lamina.pollers.context import PollerContext
from lamina.pollers.streams import (
    AFTER_SEQUENCE_NUMBER,
    Page,
    Position,
    ShardInfo,
    StreamPoller,
    StreamRecord,
)

EVENT_VERSION = "1.1"


class DynamoDBSource:
    """One DynamoDB table stream, through boto3 (blocking)."""

    batch_info_key = "DDBStreamBatchInfo"
    idle_s = 0.25  # Lambda reads each shard about 4 times a second
    page_limit = 1000  # GetRecords' most
    arrival_millis = False  # ApproximateCreationDateTime is to the second on AWS

    def __init__(self, arn: str, clients: ClientCache) -> None:
        self._arn = arn
        self._region = arn_region(arn)
        self._client = clients.client("dynamodbstreams", self._region)

    def shards(self) -> list[ShardInfo]:
        found: list[ShardInfo] = []
        params: dict[str, Any] = {"StreamArn": self._arn}
        while True:
            description = self._client.describe_stream(**params)["StreamDescription"]
            for shard in description.get("Shards", []):
                parent = shard.get("ParentShardId")
                found.append(
                    ShardInfo(
                        shard["ShardId"],
                        (parent,) if parent else (),
                        "EndingSequenceNumber" in shard.get("SequenceNumberRange", {}),
                    )
                )
            last = description.get("LastEvaluatedShardId")
            if not last:
                return found
            params["ExclusiveStartShardId"] = last

    def iterator(self, shard_id: str, position: Position) -> str:
        params: dict[str, Any] = {
            "StreamArn": self._arn,
            "ShardId": shard_id,
            "ShardIteratorType": position.kind,
        }
        if position.kind == AFTER_SEQUENCE_NUMBER:
            params["SequenceNumber"] = position.sequence
        iterator: str = self._client.get_shard_iterator(**params)["ShardIterator"]
        return iterator

    def read(self, shard_id: str, iterator: str, limit: int, role: str | None) -> Page:
        response = self._client.get_records(ShardIterator=iterator, Limit=limit)
        records = [self._record(raw) for raw in response.get("Records", [])]
        return Page(records, response.get("NextShardIterator"))

    def _record(self, raw: dict[str, Any]) -> StreamRecord:
        stream = {key: _wire(value) for key, value in raw.get("dynamodb", {}).items()}
        event: dict[str, Any] = {
            "eventID": raw.get("eventID"),
            "eventName": raw.get("eventName"),
            "eventVersion": EVENT_VERSION,
            "eventSource": "aws:dynamodb",
            "awsRegion": raw.get("awsRegion") or self._region,
            "dynamodb": stream,
            "eventSourceARN": self._arn,
        }
        if "userIdentity" in raw:  # TTL deletes say who removed the item
            event["userIdentity"] = raw["userIdentity"]
        created = stream.get("ApproximateCreationDateTime")
        size = len(orjson.dumps(event))
        return StreamRecord(
            stream["SequenceNumber"],
            float(created) if isinstance(created, (int, float)) else 0.0,
            orjson.dumps(stream.get("Keys", {}), option=orjson.OPT_SORT_KEYS).decode(),
            event,
            event,
            size=size,
        )


def _wire(value: Any) -> Any:
    """A value as the stream API sent it: timestamps as epoch seconds, binary attributes
    (`B`, `BS`, at any depth) as base64 text, as Lambda puts them in the event."""
    if isinstance(value, datetime):
        seconds = value.timestamp()
        return int(seconds) if seconds.is_integer() else seconds
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {key: _wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_wire(item) for item in value]
    return value


def dynamodb_poller(mapping: EventSourceMapping, context: PollerContext) -> StreamPoller:
    assert mapping.event_source_arn is not None
    return StreamPoller(mapping, context, DynamoDBSource(mapping.event_source_arn, context.clients))
