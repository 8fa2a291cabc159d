"""Where asynchronous outcomes go: invocation records for destinations, events for DLQs.

`Delivery` is one send the success or failure path owes. Records to another Lamina function
travel through Lamina's own queue (the dispatcher handles those); SQS, SNS and EventBridge
are reached with boto3, which honours `AWS_ENDPOINT_URL_SQS` / `_SNS` / `_EVENTS`, so AWS
itself or any compatible server works. boto3 blocks: `Boto3Destinations.send` runs on its
own threads, never on the event loop.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from lamina.control.event_invoke import destination_kind

RECORD_VERSION = "1.0"
SUCCESS = "Success"
RETRIES_EXHAUSTED = "RetriesExhausted"
EVENT_AGE_EXCEEDED = "EventAgeExceeded"
# Conditions AWS documents no name for; these are Lamina's (LocalStack uses the first).
ZERO_RESERVED_CONCURRENCY = "ZeroReservedConcurrency"
RECURSIVE_LOOP_DETECTED = "RecursiveLoopDetected"

DESTINATION = "destination"
DEAD_LETTER = "dead-letter"
_DETAIL_TYPE = "Lambda Function Invocation Result - {}"
_ERROR_MESSAGE_MAX_BYTES = 1024


class DeliveryFailed(Exception):
    """A destination or DLQ could not be reached or refused the message."""


@dataclass(frozen=True)
class Delivery:
    """One message owed to a destination (`role` destination) or a DLQ (`role` dead-letter)."""

    target: str  # the destination's ARN
    role: str
    body: str
    success: bool = False
    # DLQ message attributes: name -> (SQS/SNS data type, value).
    attributes: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """sqs, sns, lambda, events or s3 (the ARN was checked when it was configured)."""
        return destination_kind(self.target) or "unknown"


def encode_deliveries(deliveries: list[Delivery]) -> bytes:
    return orjson.dumps([asdict(delivery) for delivery in deliveries])


def decode_deliveries(raw: bytes) -> list[Delivery]:
    deliveries = []
    for doc in orjson.loads(raw):
        doc["attributes"] = {name: tuple(value) for name, value in doc["attributes"].items()}
        deliveries.append(Delivery(**doc))
    return deliveries


@dataclass(frozen=True)
class Response:
    """What the last invocation returned, for a record's responseContext/responsePayload."""

    executed_version: str
    payload: bytes
    function_error: bool


def _json_or_text(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def _timestamp() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def invocation_record(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    invoke_count: int,
    request_payload: bytes,
    response: Response | None,
) -> str:
    """AWS's invocation record, the body every destination receives."""
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "timestamp": _timestamp(),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": _json_or_text(request_payload),
    }
    if response is not None:
        context: dict[str, Any] = {"statusCode": 200, "executedVersion": response.executed_version}
        if response.function_error:
            context["functionError"] = "Unhandled"
        record["responseContext"] = context
        record["responsePayload"] = _json_or_text(response.payload)
    return orjson.dumps(record).decode()


def error_message(response: Response | None, fallback: str) -> str:
    """The DLQ's ErrorMessage: the function's errorMessage when it has one, first 1 KB."""
    message = fallback
    if response is not None and response.function_error:
        body = _json_or_text(response.payload)
        if isinstance(body, dict) and isinstance(body.get("errorMessage"), str):
            message = body["errorMessage"]
    encoded = message.encode()[:_ERROR_MESSAGE_MAX_BYTES]
    return encoded.decode("utf-8", "ignore")


def dead_letter(target: str, request_id: str, payload: bytes, code: int, message: str) -> Delivery:
    """The original event for a DLQ, with the attributes AWS adds."""
    return Delivery(
        target=target,
        role=DEAD_LETTER,
        body=payload.decode(),
        attributes={
            "RequestID": ("String", request_id),
            "ErrorCode": ("Number", str(code)),
            "ErrorMessage": ("String", message or "-"),
        },
    )


def _arn_parts(arn: str) -> tuple[str, str, str]:
    """(region, account, resource) of an ARN."""
    parts = arn.split(":", 5)
    return parts[3], parts[4], parts[5]


class Boto3Destinations:
    """Sends deliveries to SQS, SNS and EventBridge. Blocking: call from a worker thread."""

    def __init__(self, region: str, environ: Mapping[str, str] = os.environ) -> None:
        self._region = region
        # botocore reads AWS_ENDPOINT_URL_<SERVICE ID>, which is ..._EVENTBRIDGE for
        # EventBridge; the endpoint name people set is ..._EVENTS, so honour both.
        self._endpoints = {
            "events": environ.get("AWS_ENDPOINT_URL_EVENTBRIDGE")
            or environ.get("AWS_ENDPOINT_URL_EVENTS")
        }
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._queue_urls: dict[str, str] = {}

    def _client(self, service: str, region: str) -> Any:
        key = (service, region or self._region)
        with self._lock:  # boto3 sessions are not thread-safe; clients are.
            client = self._clients.get(key)
            if client is None:
                import boto3  # Lazy: only deployments with destinations pay for it.
                from botocore.config import Config

                client = boto3.session.Session().client(
                    service,
                    region_name=key[1],
                    endpoint_url=self._endpoints.get(service),
                    config=Config(
                        connect_timeout=5,
                        read_timeout=15,
                        retries={"max_attempts": 2, "mode": "standard"},
                    ),
                )
                self._clients[key] = client
        return client

    def send(self, delivery: Delivery) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        kind = delivery.kind
        try:
            if kind == "sqs":
                self._send_sqs(delivery)
            elif kind == "sns":
                self._send_sns(delivery)
            elif kind == "events":
                self._send_events(delivery)
            else:
                raise DeliveryFailed(f"Lamina cannot send to {delivery.target} yet")
        except ClientError as error:
            info = error.response.get("Error", {})
            raise DeliveryFailed(
                f"{delivery.target} refused the message: {info.get('Code')}: {info.get('Message')}"
            ) from None
        except BotoCoreError as error:
            raise DeliveryFailed(f"{delivery.target} is unreachable: {error}") from None

    def _send_sqs(self, delivery: Delivery) -> None:
        region, account, name = _arn_parts(delivery.target)
        client = self._client("sqs", region)
        url = self._queue_urls.get(delivery.target)
        if url is None:
            found = client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
            url = self._queue_urls[delivery.target] = found["QueueUrl"]
        attributes = {
            name: {"DataType": kind, "StringValue": value}
            for name, (kind, value) in delivery.attributes.items()
        }
        client.send_message(
            QueueUrl=url,
            MessageBody=delivery.body,
            **({"MessageAttributes": attributes} if attributes else {}),
        )

    def _send_sns(self, delivery: Delivery) -> None:
        region, _, _ = _arn_parts(delivery.target)
        attributes = {
            name: {"DataType": kind, "StringValue": value}
            for name, (kind, value) in delivery.attributes.items()
        }
        self._client("sns", region).publish(
            TopicArn=delivery.target,
            Message=delivery.body,
            **({"MessageAttributes": attributes} if attributes else {}),
        )

    def _send_events(self, delivery: Delivery) -> None:
        region, _, _ = _arn_parts(delivery.target)
        outcome = "Success" if delivery.success else "Failure"
        response = self._client("events", region).put_events(
            Entries=[
                {
                    "Source": "lambda",
                    "DetailType": _DETAIL_TYPE.format(outcome),
                    "Detail": delivery.body,
                    "EventBusName": delivery.target,
                }
            ]
        )
        if response.get("FailedEntryCount"):
            entry = response["Entries"][0]
            raise DeliveryFailed(
                f"{delivery.target} refused the event: {entry.get('ErrorCode')}: "
                f"{entry.get('ErrorMessage')}"
            )

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
