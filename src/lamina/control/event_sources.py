"""How the control plane asks an event source about itself: does the queue or stream exist,
and what is the queue's visibility timeout; for Amazon MQ, does Lamina know where the broker
listens and does the BASIC_AUTH secret exist.

Each check goes to the source's own API (`lamina.aws.event_sources` with boto3, at the
endpoint the operator configured); the control plane only reads the answers and words the
refusals as AWS does (`lamina.control.mappings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class SourceNotFound(Exception):
    """The source's API says there is no such queue or stream."""


class SourceRefused(Exception):
    """The source's API answered the check with an error other than "not found"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SourceUnreachable(Exception):
    """The source's API could not be reached at all (nothing listens at its endpoint)."""

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(detail)
        self.service = service  # "SQS", "Kinesis", "DynamoDB Streams", "Secrets Manager"
        self.detail = detail


@dataclass(frozen=True)
class QueueFacts:
    visibility_timeout: int  # seconds
    fifo: bool


class EventSources(Protocol):
    """The sources' APIs, as far as creating and updating a mapping needs them. Blocking."""

    def queue(self, arn: str) -> QueueFacts:
        """The SQS queue's settings; raises SourceNotFound, SourceRefused, SourceUnreachable."""
        ...

    def kinesis_stream(self, arn: str) -> None:
        """Raises SourceNotFound, SourceRefused or SourceUnreachable unless the stream exists."""
        ...

    def dynamodb_stream(self, arn: str) -> None:
        """Raises SourceNotFound, SourceRefused or SourceUnreachable unless the stream exists."""
        ...

    def mq_broker(self, name: str) -> None:
        """Raises SourceNotFound unless the operator said where the Amazon MQ broker `name`
        listens (LAMINA_MQ_BROKERS)."""
        ...

    def secret(self, arn: str) -> None:
        """Raises SourceNotFound, SourceRefused or SourceUnreachable unless the Secrets
        Manager secret exists."""
        ...


class UncheckedSources:
    """For a control plane without peers (unit tests): every source exists, queues hide a
    message for SQS's default 30 seconds."""

    def queue(self, arn: str) -> QueueFacts:
        return QueueFacts(visibility_timeout=30, fifo=arn.endswith(".fifo"))

    def kinesis_stream(self, arn: str) -> None:
        return None

    def dynamodb_stream(self, arn: str) -> None:
        return None

    def mq_broker(self, name: str) -> None:
        return None

    def secret(self, arn: str) -> None:
        return None
