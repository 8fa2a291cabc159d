"""Sending asynchronous outcomes to SQS, SNS and EventBridge with boto3.

`Delivery` is one message the success or failure path owes (the records themselves are
built in `lamina.invoke.asynchronous.records`). `Boto3Destinations` fits the dispatcher's
`Destinations` protocol without importing it. boto3 honours `AWS_ENDPOINT_URL_SQS` /
`_SNS` / `_EVENTS`, so AWS itself or any compatible server works. boto3 blocks:
`Boto3Destinations.send` runs on the dispatcher's own threads, never on the event loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from lamina.control.event_invoke import destination_kind

DESTINATION = "destination"
DEAD_LETTER = "dead-letter"
_DETAIL_TYPE = "Lambda Function Invocation Result - {}"


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


def _arn_parts(arn: str) -> tuple[str, str, str]:
    """(region, account, resource) of an ARN."""
    parts = arn.split(":", 5)
    return parts[3], parts[4], parts[5]


class Boto3Destinations:
    """Sends deliveries to SQS, SNS and EventBridge. Blocking: call from a worker thread."""

    def __init__(self, region: str, events_endpoint: str | None) -> None:
        self._region = region
        # Given (Settings.events_endpoint): botocore itself reads only
        # AWS_ENDPOINT_URL_EVENTBRIDGE, not the AWS_ENDPOINT_URL_EVENTS people set.
        self._endpoints = {"events": events_endpoint}
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
