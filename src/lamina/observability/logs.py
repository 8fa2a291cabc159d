"""Function log streams: where environment output and platform lines go.

The engine writes through the `LogSink` seam; the observability issue gives it a queryable,
CloudWatch-Logs-compatible store. Until then `FileLogSink` keeps bounded files per stream.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Protocol

from lamina.constants import LATEST


def stream_name(version: str, environment_id: str) -> str:
    """`YYYY/MM/DD/[<version>]<32 hex>`, one stream per environment, as AWS names them."""
    return time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{version}]{environment_id}"


def group_name(function_name: str, configured: str | None = None) -> str:
    return configured or f"/aws/lambda/{function_name}"


def report_line(
    request_id: str,
    duration_ms: float,
    billed_ms: int,
    memory_mb: int,
    max_memory_mb: int,
    init_ms: float | None,
    status: str | None = None,
    error_type: str | None = None,
) -> str:
    line = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {billed_ms} ms\tMemory Size: {memory_mb} MB\t"
        f"Max Memory Used: {max_memory_mb} MB\t"
    )
    if init_ms is not None:
        line += f"Init Duration: {init_ms:.2f} ms\t"
    if status:
        line += f"Status: {status}\t"
    if error_type:
        line += f"Error Type: {error_type}\t"
    return line


def start_line(request_id: str, version: str = LATEST) -> str:
    return f"START RequestId: {request_id} Version: {version}"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}"


class LogSink(Protocol):
    def write_many(self, group: str, stream: str, entries: list[tuple[int, str]]) -> None:
        """Append `(timestamp_ms, message)` entries to one stream, in order."""
        ...


class FileLogSink:
    """Appends to `<root>/<group>/<stream>.log`, dropping output past a per-stream budget."""

    def __init__(self, root: Path, max_stream_bytes: int = 64 * 1024 * 1024) -> None:
        self._root = root
        self._max = max_stream_bytes
        self._sizes: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def write_many(self, group: str, stream: str, entries: list[tuple[int, str]]) -> None:
        key = (group, stream)
        data = "".join(f"{stamp}\t{message}\n" for stamp, message in entries).encode()
        with self._lock:
            size = self._sizes.get(key, 0)
            if size >= self._max:
                return
            path = self._root / group.strip("/") / (stream.replace("/", "_") + ".log")
            path.parent.mkdir(parents=True, exist_ok=True)
            if size + len(data) > self._max:
                data = b"[lamina] log stream truncated: output limit reached\n"
            with path.open("ab") as out:
                out.write(data)
            self._sizes[key] = size + len(data)


class MemoryLogSink:
    """Keeps the most recent lines; for tests and for callers that only need a tail."""

    def __init__(self, max_lines: int = 10_000) -> None:
        self.lines: deque[tuple[str, str, int, str]] = deque(maxlen=max_lines)

    def write_many(self, group: str, stream: str, entries: list[tuple[int, str]]) -> None:
        for stamp, message in entries:
            self.lines.append((group, stream, stamp, message))
