"""Function log streams: their names and the `LogSink` seam.

The engine writes through `LogSink`; `lamina.observability.log_sink.StoreLogSink` is the real
one, feeding the queryable store behind the CloudWatch Logs API.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol


def stream_name(version: str, environment_id: str) -> str:
    """`YYYY/MM/DD/[<version>]<32 hex>`, one stream per environment, as AWS names them."""
    return time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{version}]{environment_id}"


def group_name(function_name: str, configured: str | None = None) -> str:
    return configured or f"/aws/lambda/{function_name}"


class LogSink(Protocol):
    """Where execution environments write their log streams."""

    def write_many(self, group: str, stream: str, entries: list[tuple[int, str]]) -> None:
        """Append the function's own output, `(timestamp_ms, message)` entries, in order."""
        ...

    def write_platform(
        self, group: str, stream: str, timestamp: int, *messages: str | None
    ) -> None:
        """Append platform lines (INIT_START, START, END, REPORT or their JSON records),
        in order: an invocation's END and REPORT come in one call.

        A platform line also marks an invocation boundary, which resets the per-invocation
        output budget; a message is None when the function's system log level filters the
        line out but the boundary still counts.
        """
        ...

    @property
    def saturated(self) -> bool:
        """True while the sink wants producers to pause (bounded buffering)."""
        ...

    def close(self) -> None: ...


class MemoryLogSink:
    """Keeps the most recent lines; for tests and for callers that only need a tail."""

    def __init__(self, max_lines: int = 10_000) -> None:
        self.lines: deque[tuple[str, str, int, str]] = deque(maxlen=max_lines)

    saturated = False

    def write_many(self, group: str, stream: str, entries: list[tuple[int, str]]) -> None:
        for stamp, message in entries:
            self.lines.append((group, stream, stamp, message))

    def write_platform(
        self, group: str, stream: str, timestamp: int, *messages: str | None
    ) -> None:
        for message in messages:
            if message is not None:
                self.lines.append((group, stream, timestamp, message))

    def close(self) -> None:
        self.lines.clear()
