"""Asking the sources of event source mappings about themselves, with boto3.

`Boto3EventSources` fits the control plane's `EventSources` protocol: does the SQS queue
exist and how long does it hide a message, does the Kinesis or DynamoDB stream exist, does an
Amazon MQ mapping's BASIC_AUTH secret exist. Each question goes to the source's own API at the
endpoint the operator configured (`Settings`: botocore's AWS_ENDPOINT_URL_SQS, _KINESIS,
_DYNAMODB_STREAMS, _SECRETS_MANAGER or AWS_ENDPOINT_URL), so AWS itself or any compatible
server answers. Amazon MQ brokers are known by name from LAMINA_MQ_BROKERS. Blocking: called
from the API's worker threads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lamina.aws.clients import ClientCache, arn_account, arn_region, arn_resource
from lamina.control.event_sources import (
    QueueFacts,
    SourceNotFound,
    SourceRefused,
    SourceUnreachable,
)

SQS = "sqs"
KINESIS = "kinesis"
DYNAMODB_STREAMS = "dynamodbstreams"
SECRETS_MANAGER = "secretsmanager"
_NAMES = {
    SQS: "SQS",
    KINESIS: "Kinesis",
    DYNAMODB_STREAMS: "DynamoDB Streams",
    SECRETS_MANAGER: "Secrets Manager",
}
# What each API answers for a queue or stream that is not there.
_MISSING = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "ResourceNotFoundException",
    }
)


def _arn_parts(arn: str) -> tuple[str, str, str]:
    """(region, account, resource) of an ARN."""
    return arn_region(arn), arn_account(arn), arn_resource(arn)


class Boto3EventSources:
    """The sources' APIs through boto3, one client per service and region."""

    def __init__(
        self,
        region: str,
        *,
        sqs_endpoint: str | None = None,
        kinesis_endpoint: str | None = None,
        dynamodb_streams_endpoint: str | None = None,
        mq_brokers: Iterable[str] = (),
    ) -> None:
        # The Amazon MQ broker names the operator gave an address for.
        self._mq_brokers = frozenset(mq_brokers)
        # A create waits for these answers: short reads, one retry.
        self._clients = ClientCache(
            region,
            {
                SQS: sqs_endpoint,
                KINESIS: kinesis_endpoint,
                DYNAMODB_STREAMS: dynamodb_streams_endpoint,
            },
            read_timeout=10,
            max_attempts=2,
        )

    def _ask(self, service: str, region: str, operation: str, **params: Any) -> Any:
        """One call, its failures turned into the control plane's three answers."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._clients.client(service, region or None), operation)(**params)
        except ClientError as error:
            info = error.response.get("Error", {})
            code, message = str(info.get("Code", "")), str(info.get("Message", ""))
            if code in _MISSING:
                raise SourceNotFound(message) from None
            raise SourceRefused(code, message) from None
        except BotoCoreError as error:
            raise SourceUnreachable(_NAMES[service], str(error)) from None

    def queue(self, arn: str) -> QueueFacts:
        region, account, name = _arn_parts(arn)
        found = self._ask(
            SQS, region, "get_queue_url", QueueName=name, QueueOwnerAWSAccountId=account
        )
        attributes = self._ask(
            SQS,
            region,
            "get_queue_attributes",
            QueueUrl=found["QueueUrl"],
            AttributeNames=["VisibilityTimeout", "FifoQueue"],
        ).get("Attributes", {})
        return QueueFacts(
            visibility_timeout=int(attributes.get("VisibilityTimeout", 30)),
            fifo=str(attributes.get("FifoQueue", "false")).lower() == "true",
        )

    def kinesis_stream(self, arn: str) -> None:
        region, _, resource = _arn_parts(arn)
        # stream/<name>, or stream/<name>/consumer/<consumer>:<created> for a consumer.
        name = resource.split("/")[1]
        self._ask(KINESIS, region, "describe_stream_summary", StreamName=name)

    def dynamodb_stream(self, arn: str) -> None:
        region, _, _ = _arn_parts(arn)
        self._ask(DYNAMODB_STREAMS, region, "describe_stream", StreamArn=arn, Limit=1)

    def mq_broker(self, name: str) -> None:
        if name not in self._mq_brokers:
            raise SourceNotFound(name)

    def secret(self, arn: str) -> None:
        region, _, _ = _arn_parts(arn)
        # Secrets Manager's endpoint is left to botocore (AWS_ENDPOINT_URL_SECRETS_MANAGER).
        self._ask(SECRETS_MANAGER, region, "describe_secret", SecretId=arn)

    def close(self) -> None:
        self._clients.close()
