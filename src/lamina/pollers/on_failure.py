"""On-failure records of stream mappings, and sending them to SQS, SNS or S3.

When a batch's retries are used up (or its records grew older than
MaximumRecordAgeInSeconds), Lambda sends a JSON document describing the batch to the
mapping's on-failure destination, then moves past the batch. SQS and SNS get the metadata
only; S3 also gets the batch itself under `payload`, at
`aws/lambda/<mapping-uuid>/<shardId>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from lamina.aws.clients import ClientCache, arn_account, arn_region, arn_resource
from lamina.control.event_invoke import destination_kind
from lamina.model.mappings import EventSourceMapping
from lamina.pollers.invoking import BatchResult

RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"
VERSION = "1.0"


class SendFailed(Exception):
    """The destination could not be reached or refused the record."""


def iso_time(epoch: float, millis: bool = True) -> str:
    """`2019-11-14T00:38:04.835Z` (or to the second, as DynamoDB's arrival times are)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def failure_record(
    mapping: EventSourceMapping,
    *,
    batch_info_key: str,
    shard_id: str,
    sequences: Sequence[str],
    arrivals: Sequence[float],
    condition: str,
    invoke_count: int,
    result: BatchResult | None,
    millis: bool = True,
    now: float,
) -> dict[str, Any]:
    """The document Lambda sends for a batch it gives up on."""
    record: dict[str, Any] = {
        "requestContext": {
            "requestId": result.request_id if result is not None else str(uuid.uuid4()),
            "functionArn": mapping.function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
    }
    if condition == RETRY_ATTEMPTS_EXHAUSTED and result is not None:
        response: dict[str, Any] = {
            "statusCode": result.status_code,
            "executedVersion": result.executed_version or "$LATEST",
        }
        if result.function_error:
            response["functionError"] = result.function_error
        record["responseContext"] = response
    record["version"] = VERSION
    record["timestamp"] = iso_time(now)
    record[batch_info_key] = {
        "shardId": shard_id,
        "startSequenceNumber": sequences[0],
        "endSequenceNumber": sequences[-1],
        "approximateArrivalOfFirstRecord": iso_time(arrivals[0], millis),
        "approximateArrivalOfLastRecord": iso_time(arrivals[-1], millis),
        "batchSize": len(sequences),
        "streamArn": mapping.event_source_arn,
    }
    return record


def s3_key(mapping_uuid: str, shard_id: str, now: float) -> str:
    moment = datetime.fromtimestamp(now, UTC)
    return (
        f"aws/lambda/{mapping_uuid}/{shard_id}/{moment:%Y/%m/%d}/"
        f"{moment:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"
    )


class OnFailureSender:
    """Sends on-failure records through the pollers' boto3 clients. Blocking."""

    def __init__(self, clients: ClientCache) -> None:
        self._clients = clients
        self._queue_urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def send(
        self,
        destination: str,
        record: dict[str, Any],
        *,
        mapping_uuid: str,
        shard_id: str,
        records: Sequence[dict[str, Any]],
        now: float,
    ) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        service = destination_kind(destination)
        try:
            if service == "sqs":
                self._send_sqs(destination, orjson.dumps(record).decode())
            elif service == "sns":
                self._clients.client("sns", arn_region(destination)).publish(
                    TopicArn=destination, Message=orjson.dumps(record).decode()
                )
            elif service == "s3":
                body = orjson.dumps({**record, "payload": {"Records": list(records)}})
                self._clients.client("s3").put_object(
                    Bucket=arn_resource(destination).split("/", 1)[0],
                    Key=s3_key(mapping_uuid, shard_id, now),
                    Body=body,
                    ContentType="application/json",
                )
            else:
                raise SendFailed(f"Lamina cannot send on-failure records to {destination}")
        except ClientError as error:
            info = error.response.get("Error", {})
            raise SendFailed(
                f"{destination} refused the record: {info.get('Code')}: {info.get('Message')}"
            ) from None
        except BotoCoreError as error:
            raise SendFailed(f"{destination} is unreachable: {error}") from None

    def _send_sqs(self, destination: str, body: str) -> None:
        client = self._clients.client("sqs", arn_region(destination))
        with self._lock:
            url = self._queue_urls.get(destination)
        if url is None:
            found = client.get_queue_url(
                QueueName=arn_resource(destination),
                QueueOwnerAWSAccountId=arn_account(destination),
            )
            url = found["QueueUrl"]
            with self._lock:
                self._queue_urls[destination] = url
        client.send_message(QueueUrl=url, MessageBody=body)
