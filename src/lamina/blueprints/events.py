"""Sample events in exactly the shapes Lamina sends functions, for testing them by hand.

Each template is built by the code that builds the real event (the function URL front door,
the SQS and stream pollers, the EventBridge scheduler and bus), fed with made-up input, so
a template stays true when that code changes.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from lamina.arns import Account
from lamina.aws.clients import ClientCache
from lamina.control.urls import new_url_id
from lamina.function_urls.addresses import UrlAddress
from lamina.function_urls.events import UrlRequest, build_event
from lamina.invoke.tracing import new_root_header
from lamina.model.rules import rule_arn
from lamina.pollers import sqs_records
from lamina.pollers.dynamodb import DynamoDBSource
from lamina.pollers.kinesis import KinesisSource
from lamina.schedules.events import bus_event, scheduled_event

TEMPLATES: dict[str, str] = {
    "function-url": "Function URL: an HTTP POST with a JSON body (payload format 2.0)",
    "sqs": "SQS: a batch of two messages",
    "kinesis": "Kinesis: a batch of two records",
    "dynamodb": "DynamoDB Streams: an INSERT and a MODIFY",
    "eventbridge": "EventBridge: a custom event put on the default bus",
    "schedule": "Schedule: an EventBridge scheduled event",
}


class _NoClients(ClientCache):
    """The stream pollers' sources, used here only for their record builders, get no AWS
    client: making one costs hundreds of milliseconds, and none is ever called."""

    def client(self, service: str, region: str | None = None) -> Any:
        return None


_QUEUE = "my-queue"
_STREAM = "my-stream"
_TABLE = "my-table"


def template(
    name: str, account: Account, function_name: str = "my-function", now: float | None = None
) -> Any:
    """The sample event `name` (a key of TEMPLATES); KeyError for an unknown name."""
    moment = datetime.now(UTC).timestamp() if now is None else now
    builders = {
        "function-url": _function_url,
        "sqs": _sqs,
        "kinesis": _kinesis,
        "dynamodb": _dynamodb,
        "eventbridge": _eventbridge,
        "schedule": _schedule,
    }
    return builders[name](account, function_name, moment)


def _function_url(account: Account, function_name: str, now: float) -> Any:
    url_id = new_url_id()
    host = f"{url_id}.lambda-url.{account.region}.on.aws"
    body = orjson.dumps({"hello": "world"})
    request = UrlRequest(
        method="POST",
        address=UrlAddress(url_id, "/items", host, by_host=True),
        query="verbose=true",
        headers={
            "host": host,
            "content-type": "application/json",
            "content-length": str(len(body)),
            "user-agent": "curl/8.5.0",
            "accept": "*/*",
        },
        body=body,
        source_ip="198.51.100.7",
        protocol="HTTP/1.1",
        scheme="https",
        port=443,
    )
    event = build_event(
        request,
        request_id=str(uuid.uuid4()),
        trace_id=new_root_header(),
        epoch_ms=int(now * 1000),
        region=account.region,
        account_id="anonymous",
        authorizer=None,
        strip_authorization=False,
    )
    return orjson.loads(event)


def _sqs(account: Account, function_name: str, now: float) -> Any:
    arn = f"arn:aws:sqs:{account.region}:{account.account_id}:{_QUEUE}"
    sent = str(int(now * 1000))
    bodies = [orjson.dumps({"orderId": number, "quantity": number * 2}) for number in (1, 2)]
    records = [
        sqs_records.sqs_record(
            {
                "MessageId": str(uuid.uuid4()),
                "ReceiptHandle": base64.b64encode(uuid.uuid4().bytes * 4).decode(),
                "Body": body.decode(),
                "Attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": sent,
                    "SenderId": account.account_id,
                    "ApproximateFirstReceiveTimestamp": sent,
                },
                "MD5OfBody": hashlib.md5(body, usedforsecurity=False).hexdigest(),
            },
            arn,
            account.region,
        )
        for body in bodies
    ]
    return orjson.loads(sqs_records.payload(records))


def _kinesis(account: Account, function_name: str, now: float) -> Any:
    arn = f"arn:aws:kinesis:{account.region}:{account.account_id}:stream/{_STREAM}"
    source = KinesisSource(arn, _NoClients(account.region))
    role = f"arn:aws:iam::{account.account_id}:role/{function_name}-role"
    base = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
    records = [
        source._record(
            "shardId-000000000000",
            {
                "SequenceNumber": str(base + index),
                "ApproximateArrivalTimestamp": datetime.fromtimestamp(now, UTC),
                "Data": orjson.dumps({"sensor": f"s-{index}", "reading": 20 + index}),
                "PartitionKey": f"s-{index}",
            },
            role,
        ).event
        for index in (1, 2)
    ]
    return {"Records": records}


def _dynamodb(account: Account, function_name: str, now: float) -> Any:
    created = datetime.fromtimestamp(int(now), UTC)
    label = created.strftime("%Y-%m-%dT%H:%M:%S.000")
    arn = f"arn:aws:dynamodb:{account.region}:{account.account_id}:table/{_TABLE}/stream/{label}"
    source = DynamoDBSource(arn, _NoClients(account.region))
    key = {"id": {"S": "item-1"}}
    changes = [
        ("INSERT", None, {"id": {"S": "item-1"}, "count": {"N": "1"}}),
        ("MODIFY", {"id": {"S": "item-1"}, "count": {"N": "1"}}, {**key, "count": {"N": "2"}}),
    ]
    records = []
    for index, (event_name, old, new) in enumerate(changes, start=1):
        change: dict[str, Any] = {
            "ApproximateCreationDateTime": created,
            "Keys": key,
            "NewImage": new,
            "SequenceNumber": f"{index}00000000000000000000{index}",
            "SizeBytes": 26 * index,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if old is not None:
            change["OldImage"] = old
        raw = {
            "eventID": uuid.uuid4().hex,
            "eventName": event_name,
            "awsRegion": account.region,
            "dynamodb": change,
        }
        records.append(source._record(raw).event)
    return {"Records": records}


def _eventbridge(account: Account, function_name: str, now: float) -> Any:
    detail = {"orderId": "1234", "total": 42.5}
    return bus_event(str(uuid.uuid4()), account, "my.application", "Order Placed", detail, [], now)


def _schedule(account: Account, function_name: str, now: float) -> Any:
    arn = rule_arn(account, f"{function_name}-schedule")
    return scheduled_event(str(uuid.uuid4()), account, arn, int(now) // 60 * 60)
