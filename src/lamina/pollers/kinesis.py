"""Kinesis Data Streams as a stream source: shards, iterators and records as Lambda builds
them (`{"kinesis": {...}, "eventSource": "aws:kinesis", ...}`)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from lamina.aws.clients import ClientCache, arn_region
from lamina.model.mappings import EventSourceMapping
from lamina.pollers.context import PollerContext
from lamina.pollers.filters import json_base64, with_data
from lamina.pollers.streams import (
    AFTER_SEQUENCE_NUMBER,
    AT_TIMESTAMP,
    Page,
    Position,
    ShardInfo,
    StreamPoller,
    StreamRecord,
)

# What a record's envelope adds to its data and partition key in the event, about.
_ENVELOPE_BYTES = 512


class KinesisSource:
    """One Kinesis stream, through boto3 (blocking)."""

    batch_info_key = "KinesisBatchInfo"
    idle_s = 1.0  # Lambda reads each shard about once a second
    page_limit = 10_000  # GetRecords' most
    arrival_millis = True

    def __init__(self, arn: str, clients: ClientCache) -> None:
        self._arn = arn
        self._region = arn_region(arn)
        self._client = clients.client("kinesis", self._region)

    def shards(self) -> list[ShardInfo]:
        found: list[ShardInfo] = []
        token: str | None = None
        while True:
            response = (
                self._client.list_shards(NextToken=token)
                if token
                else self._client.list_shards(StreamARN=self._arn)
            )
            for shard in response["Shards"]:
                parents = (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
                found.append(
                    ShardInfo(
                        shard["ShardId"],
                        tuple(parent for parent in parents if parent),
                        "EndingSequenceNumber" in shard.get("SequenceNumberRange", {}),
                    )
                )
            token = response.get("NextToken")
            if not token:
                return found

    def iterator(self, shard_id: str, position: Position) -> str:
        params: dict[str, Any] = {
            "StreamARN": self._arn,
            "ShardId": shard_id,
            "ShardIteratorType": position.kind,
        }
        if position.kind == AFTER_SEQUENCE_NUMBER:
            params["StartingSequenceNumber"] = position.sequence
        elif position.kind == AT_TIMESTAMP:
            params["Timestamp"] = datetime.fromtimestamp(position.timestamp or 0.0, UTC)
        iterator: str = self._client.get_shard_iterator(**params)["ShardIterator"]
        return iterator

    def read(self, shard_id: str, iterator: str, limit: int, role: str | None) -> Page:
        response = self._client.get_records(
            ShardIterator=iterator, Limit=limit, StreamARN=self._arn
        )
        records = [self._record(shard_id, raw, role) for raw in response.get("Records", [])]
        return Page(records, response.get("NextShardIterator"), response.get("MillisBehindLatest"))

    def _record(self, shard_id: str, raw: dict[str, Any], role: str | None) -> StreamRecord:
        sequence = raw["SequenceNumber"]
        arrival = raw["ApproximateArrivalTimestamp"].timestamp()
        data = base64.b64encode(raw["Data"]).decode()
        kinesis = {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": raw["PartitionKey"],
            "sequenceNumber": sequence,
            "data": data,
            "approximateArrivalTimestamp": arrival,
        }
        event = {
            "kinesis": kinesis,
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{sequence}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": role,
            "awsRegion": self._region,
            "eventSourceARN": self._arn,
        }
        # Patterns see the record's fields with `data` decoded (Lambda filters Kinesis on
        # `data`; the metadata beside it is there as on the record).
        view = with_data({**kinesis, **event}, "data", json_base64(data))
        view.pop("kinesis", None)
        return StreamRecord(
            sequence,
            arrival,
            raw["PartitionKey"],
            event,
            view,
            size=len(data) + len(raw["PartitionKey"]) + _ENVELOPE_BYTES,
        )


def kinesis_poller(mapping: EventSourceMapping, context: PollerContext) -> StreamPoller:
    assert mapping.event_source_arn is not None
    return StreamPoller(mapping, context, KinesisSource(mapping.event_source_arn, context.clients))
