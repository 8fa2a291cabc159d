"""An in-memory `Destinations` for asynchronous delivery: records what is sent, and refuses
sends on request, so tests see what a destination or DLQ would have received."""

from __future__ import annotations

import json
import threading
from typing import Any

from lamina.aws.destinations import Delivery, DeliveryFailed


class RecordingDestinations:
    """Keeps every delivery it accepts; refuses the next sends to a target when told to."""

    def __init__(self) -> None:
        self.sent: list[Delivery] = []
        self.refused: list[Delivery] = []
        self.closed = False
        self._refusals: dict[str, int] = {}
        # The dispatcher calls `send` from its own threads.
        self._lock = threading.Lock()

    def refuse(self, target: str, times: int = 1) -> None:
        """Make the next `times` sends to `target` fail as an unreachable destination would."""
        with self._lock:
            self._refusals[target] = times

    def send(self, delivery: Delivery) -> None:
        with self._lock:
            left = self._refusals.get(delivery.target, 0)
            if left:
                self._refusals[delivery.target] = left - 1
                self.refused.append(delivery)
                raise DeliveryFailed(f"{delivery.target} is unreachable (refused by the test)")
            self.sent.append(delivery)

    def to(self, target: str) -> list[Delivery]:
        """What `target` received, oldest first."""
        with self._lock:
            return [delivery for delivery in self.sent if delivery.target == target]

    def records(self, target: str) -> list[dict[str, Any]]:
        """The bodies `target` received, parsed (invocation records are JSON)."""
        return [json.loads(delivery.body) for delivery in self.to(target)]

    def close(self) -> None:
        self.closed = True
