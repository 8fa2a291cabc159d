"""One environment's output: its log stream in the sink, and the tail Invoke returns.

Runtime output arrives in chunks, is cut into lines (a line longer than `MAX_LINE_BYTES`
is split, so one line cannot hold unbounded memory) and is written to the environment's
stream. Platform lines written by lifecycle listeners join the same stream and the same
tail, so `LogResult` shows them in AWS's order.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import time
from collections import deque

from lamina.constants import LOG_TAIL_BYTES
from lamina.sandbox.log_sink import LogSink

MAX_LINE_BYTES = 256 * 1024
READ_CHUNK = 64 * 1024
# The most of a runtime's output one wake-up of the event loop reads. A function writing
# faster than the loop parses (one print of 100 MB) would otherwise hold the loop for the
# whole write; the rest is read on the next turns, after other work.
READ_PER_WAKE = 16 * READ_CHUNK


def read_output(fd: int, output: EnvironmentOutput, limit: int | None = None) -> bool:
    """Take what is in the non-blocking pipe `fd` into `output`: at most about `limit`
    bytes, or without one what the pipe held as this began (a function that goes on
    writing meanwhile, from a thread of its own, cannot keep the caller reading). True
    once the pipe has ended (every writer gone: stop watching it)."""
    taken = 0
    while limit is None or taken < limit:
        try:
            chunk = os.read(fd, READ_CHUNK)
        except OSError:  # EAGAIN (nothing left) included
            return False
        if not chunk:
            return True
        output.take(chunk)
        taken += len(chunk)
        if len(chunk) < READ_CHUNK:
            # A short read from a pipe emptied it: skip the read that would only fail with
            # EAGAIN. Anything written since wakes the reader again.
            return False
        if limit is None:
            # More than one chunk: asked once, so the common short read costs no more.
            limit = taken + _unread(fd)
    return False


def _unread(fd: int) -> int:
    """Bytes waiting in pipe `fd`."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])
    except OSError:
        return 0


class EnvironmentOutput:
    """The log stream `group`/`stream` of one environment, and its last-invocation tail."""

    def __init__(self, sink: LogSink, group: str, stream: str) -> None:
        self.group = group
        self.stream = stream
        self._sink = sink
        self._partial = bytearray()
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._keeping_tail = True

    @property
    def saturated(self) -> bool:
        """True while the sink asks producers to pause."""
        return self._sink.saturated

    def take(self, chunk: bytes) -> None:
        """Runtime output: complete lines go to the stream, a trailing partial line waits."""
        self._partial += chunk
        lines: list[bytes] = [bytes(line) for line in self._partial.split(b"\n")]
        self._partial = bytearray(lines.pop())
        if len(self._partial) > MAX_LINE_BYTES:
            lines.append(bytes(self._partial))
            self._partial.clear()
        if not lines:
            return
        now = int(time.time() * 1000)
        entries = []
        keeping_tail = self._keeping_tail
        for line in lines:
            if keeping_tail:
                self._append_tail(line + b"\n")
            entries.append((now, line.decode("utf-8", "replace")))
        self._sink.write_many(self.group, self.stream, entries)

    def platform(self, *messages: str | None) -> None:
        """Platform lines, in order; None for one the system log level filters (JSON
        format) while the invocation boundary it marks still counts for the sink."""
        if self._keeping_tail:
            for message in messages:
                if message is not None:
                    self._append_tail(message.encode() + b"\n")
        self._sink.write_platform(self.group, self.stream, int(time.time() * 1000), *messages)

    def reset_tail(self, keep: bool = True) -> None:
        """Start the tail afresh. `keep` False: nobody reads this one (the invocation's
        caller asked for no log), so nothing is kept in it until the next reset."""
        self._tail.clear()
        self._tail_size = 0
        self._keeping_tail = keep

    def tail(self) -> bytes:
        """The last `LOG_TAIL_BYTES` of output since the last reset (Invoke's `LogResult`)."""
        return b"".join(self._tail)[-LOG_TAIL_BYTES:]

    def _append_tail(self, data: bytes) -> None:
        self._tail.append(data[-LOG_TAIL_BYTES:])
        self._tail_size += len(self._tail[-1])
        while self._tail_size - len(self._tail[0]) >= LOG_TAIL_BYTES:
            self._tail_size -= len(self._tail.popleft())
