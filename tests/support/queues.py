"""An SQS queue on the moto server, for tests that watch what a function's destinations get."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any


class Queue:
    """An SQS queue on the moto server, and what arrived on it."""

    def __init__(self, sqs: Any) -> None:
        self.name = f"q-{uuid.uuid4().hex[:12]}"
        self.url = sqs.create_queue(QueueName=self.name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        self.arn = attributes["Attributes"]["QueueArn"]
        self._sqs = sqs

    def receive(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait for `count` messages (deleting them); returns what came, maybe fewer."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            got = self._sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
            )
            for message in got.get("Messages", []):
                messages.append(message)
                self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return messages

    def records(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        messages = self.receive(count, timeout)
        assert len(messages) == count, f"expected {count} messages, got {len(messages)}"
        return [json.loads(message["Body"]) for message in messages]

    def is_quiet(self, seconds: float = 1.5) -> bool:
        """Nothing more arrives for a while (used after everything expected came)."""
        return not self.receive(1, timeout=seconds)
