"""Function log streams: where environment output and platform lines go.

The engine writes through the `LogSink` seam; the observability issue gives it a queryable,
CloudWatch-Logs-compatible store. Until then `FileLogSink` keeps bounded files per stream.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Protocol

from lamina.constants import LATEST

# File handles kept open at once; older streams are closed and reopened when written again.
_OPEN_STREAMS = 256


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

    @property
    def saturated(self) -> bool:
        """True while the sink wants producers to pause (bounded buffering)."""
        ...

    def close(self) -> None: ...


class FileLogSink:
    """Appends to `<root>/<group>/<stream>.log` from a writer thread, off the event loop.

    Entries are buffered per stream and written in batches through cached file handles. Each
    stream has a disk budget (output past it is dropped after one marker line), and the bytes
    waiting to be written are bounded: `saturated` tells producers to stop reading for a moment,
    which pushes back on the function (its writes block) instead of growing memory.
    """

    def __init__(
        self,
        root: Path,
        max_stream_bytes: int = 64 * 1024 * 1024,
        max_pending_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self._root = root
        self._max = max_stream_bytes
        self._max_pending = max_pending_bytes
        self._sizes: dict[tuple[str, str], int] = {}
        self._pending: dict[tuple[str, str], list[str]] = {}
        self._pending_bytes = 0
        self._handles: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._writer: threading.Thread | None = None

    @property
    def saturated(self) -> bool:
        return self._pending_bytes >= self._max_pending

    def write_many(self, group: str, stream: str, entries: list[tuple[int, str]]) -> None:
        key = (group, stream)
        with self._lock:
            size = self._sizes.get(key, 0)
            if size >= self._max:
                return
            lines = [f"{stamp}\t{message}\n" for stamp, message in entries]
            added = sum(len(line) for line in lines)
            if size + added > self._max:
                lines = ["0\t[lamina] log stream truncated: output limit reached\n"]
                added = self._max - size
            self._sizes[key] = size + added
            self._pending.setdefault(key, []).extend(lines)
            self._pending_bytes += added
            if self._writer is None:
                self._writer = threading.Thread(target=self._run, name="log-writer", daemon=True)
                self._writer.start()
        self._wake.set()

    def flush(self) -> None:
        """Write everything buffered so far (called by the writer, and on close)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._pending_bytes = 0
        for key, lines in pending.items():
            handle = self._handle(key)
            handle.write("".join(lines))
            handle.flush()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            self._writer.join(5)
        self.flush()
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(0.5)
            self._wake.clear()
            self.flush()

    def _handle(self, key: tuple[str, str]) -> Any:
        handle = self._handles.get(key)
        if handle is not None:
            self._handles.move_to_end(key)
            return handle
        group, stream = key
        path = self._root / group.strip("/") / (stream.replace("/", "_") + ".log")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a", encoding="utf-8", errors="replace")
        self._handles[key] = handle
        if len(self._handles) > _OPEN_STREAMS:
            _, oldest = self._handles.popitem(last=False)
            oldest.close()
        return handle


class MemoryLogSink:
    """Keeps the most recent lines; for tests and for callers that only need a tail."""

    def __init__(self, max_lines: int = 10_000) -> None:
        self.lines: deque[tuple[str, str, int, str]] = deque(maxlen=max_lines)

    saturated = False

    def write_many(self, group: str, stream: str, entries: list[tuple[int, str]]) -> None:
        for stamp, message in entries:
            self.lines.append((group, stream, stamp, message))

    def close(self) -> None:
        self.lines.clear()
