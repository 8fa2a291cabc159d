"""Which poller reads which source kind. Kafka has none: there is no broker to test one
against, so its mappings are kept and validated but not polled (see README)."""

from __future__ import annotations

from lamina.model.mappings import DYNAMODB, KINESIS, MQ, SQS
from lamina.pollers.dynamodb import dynamodb_poller
from lamina.pollers.kinesis import kinesis_poller
from lamina.pollers.rabbitmq import RabbitMqPoller
from lamina.pollers.sqs import SqsPoller
from lamina.pollers.supervisor import Factory


def factories() -> dict[str, Factory]:
    found: dict[str, Factory] = {}
    found[MQ] = RabbitMqPoller
    found[SQS] = SqsPoller
    found[KINESIS] = kinesis_poller
    found[DYNAMODB] = dynamodb_poller
    return found
