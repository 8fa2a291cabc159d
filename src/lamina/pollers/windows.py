"""Tumbling windows (TumblingWindowInSeconds): state a function carries across the batches
of one shard within a fixed window of record arrival times.

Windows are aligned to the epoch (a 30 s window starts at :00 or :30). Each invocation's
event adds `window {start, end}`, the `state` the function returned last (`{}` at first),
`shardId`, `eventSourceARN`, `isFinalInvokeForWindow` and `isWindowTerminatedEarly`; the
function answers `{"state": {...}, "batchItemFailures": [...]}`. Once the window's end has
passed (or a record of a later window arrives), one final invocation with no records and
`isFinalInvokeForWindow: true` hands the function the window's state, which then resets.
The state is kept in the shard's checkpoint, so a restart carries it on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lamina.pollers.on_failure import iso_time


def window_start(arrival: float, seconds: int) -> float:
    return math.floor(arrival / seconds) * seconds


@dataclass
class TumblingWindow:
    """The open window of one shard (none open: `start` is None)."""

    seconds: int
    start: float | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float | None:
        return None if self.start is None else self.start + self.seconds

    def open(self, arrival: float) -> None:
        self.start = window_start(arrival, self.seconds)
        self.state = {}

    def close(self) -> None:
        self.start = None
        self.state = {}

    def holds(self, arrival: float) -> bool:
        return self.start is not None and window_start(arrival, self.seconds) == self.start

    def take(self, response: Any) -> None:
        """Keep the state a successful response returned (a non-object keeps the old one)."""
        if isinstance(response, dict) and isinstance(response.get("state"), dict):
            self.state = response["state"]

    def fields(self, shard_id: str, source_arn: str | None, final: bool) -> dict[str, Any]:
        """What the window adds to the event."""
        assert self.start is not None
        return {
            "window": {
                "start": iso_time(self.start, millis=False),
                "end": iso_time(self.start + self.seconds, millis=False),
            },
            "state": self.state,
            "shardId": shard_id,
            "eventSourceARN": source_arn,
            "isFinalInvokeForWindow": final,
            "isWindowTerminatedEarly": False,
        }

    def to_doc(self) -> dict[str, Any] | None:
        if self.start is None:
            return None
        return {"start": self.start, "state": self.state}

    @classmethod
    def from_doc(cls, seconds: int, doc: Any) -> TumblingWindow:
        if not isinstance(doc, dict) or doc.get("start") is None:
            return cls(seconds)
        return cls(seconds, float(doc["start"]), dict(doc.get("state") or {}))
