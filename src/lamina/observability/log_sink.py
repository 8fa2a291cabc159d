"""The engine's `LogSink` over the log store: bounded buffering and a batching writer thread.

Producers (the event loop draining environments' pipes) only append to per-stream lists
under a lock; one writer thread moves everything pending into the store in one transaction
at a time, so ingest is batched and never blocks the loop. Memory is bounded twice:

- the bytes waiting to be written are capped: `saturated` tells environments to stop reading
  their pipes for a moment, so a chatty function blocks on its own writes instead;
- one invocation may log at most `max_invocation_bytes`; what follows is dropped after a
  single marker line, until the next platform line (the next invocation) resets the budget.

If the disk fills up, a batch that cannot be stored is dropped and replaced, once space is
back, by a marker line saying how many lines were lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from lamina.store.errors import StorageError
from lamina.store.protocols.logs import Batch, LogStore

log = logging.getLogger("lamina.logs")

# Each pending line costs Python objects beyond its text; counted so the bound is real memory.
_LINE_OVERHEAD = 96
# Streams whose invocation budget is remembered; older ones start afresh if written again.
_TRACKED_STREAMS = 10_000
_RETENTION_EVERY_S = 60.0
# How long the writer lets lines gather once the first one arrives: one transaction for the
# platform lines of many invocations costs far less than one per invocation, and readers
# never wait for it (`flush` cuts it short).
_BATCH_WINDOW_S = 0.1


def truncation_marker(limit: int) -> str:
    return (
        f"[lamina] output truncated: this invocation logged more than {limit // (1024 * 1024)} "
        "MB; the rest of its output was dropped"
    )


class StoreLogSink:
    """Buffers environments' lines and writes them to a `LogStore` from one thread."""

    def __init__(
        self,
        store: LogStore,
        max_pending_bytes: int = 8 * 1024 * 1024,
        max_invocation_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.store = store
        self._max_pending = max_pending_bytes
        self._max_invocation = max_invocation_bytes
        self._lock = threading.Lock()
        # Lines waiting to be written, per stream, in order.
        self._pending: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self._pending_bytes = 0
        # Bytes logged by the running invocation of each stream; -1 once truncated.
        self._budget: dict[tuple[str, str], int] = {}
        self._dropped: dict[tuple[str, str], int] = {}
        # Lines handed over (`_queued`) and committed (`_stored`), for `flush`.
        self._queued = 0
        self._stored = 0
        self._progress = threading.Condition()
        self._wake = threading.Event()
        # Set to write at once: a reader is waiting, the buffer is filling up, or closing.
        self._urgent = threading.Event()
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._writer.start()

    @property
    def saturated(self) -> bool:
        return self._pending_bytes >= self._max_pending

    def write_many(self, group: str, stream: str, entries: list[tuple[int, str]]) -> None:
        key = (group, stream)
        with self._lock:
            used = self._budget.get(key, 0)
            if used < 0:
                return
            pending = self._pending.setdefault(key, [])
            size = sum(len(message) for _, message in entries) + len(entries) * _LINE_OVERHEAD
            if used + size <= self._max_invocation:
                pending.extend(entries)
                used += size
                added = len(entries)
            else:
                size = added = 0
                for stamp, message in entries:
                    cost = len(message) + _LINE_OVERHEAD
                    if used + cost > self._max_invocation:
                        pending.append((stamp, truncation_marker(self._max_invocation)))
                        used, added = -1, added + 1
                        break
                    pending.append((stamp, message))
                    used, size, added = used + cost, size + cost, added + 1
            self._remember(key, used)
            self._pending_bytes += size
            self._queued += added
        self._nudge()

    def write_platform(
        self, group: str, stream: str, timestamp: int, *messages: str | None
    ) -> None:
        key = (group, stream)
        kept = [(timestamp, message) for message in messages if message is not None]
        with self._lock:
            self._remember(key, 0)
            if kept:
                self._pending.setdefault(key, []).extend(kept)
                self._pending_bytes += sum(len(message) + _LINE_OVERHEAD for _, message in kept)
                self._queued += len(kept)
        if kept:
            self._nudge()

    def _nudge(self) -> None:
        if self._pending_bytes * 2 >= self._max_pending:
            self._urgent.set()
        if not self._wake.is_set():
            self._wake.set()

    def _remember(self, key: tuple[str, str], used: int) -> None:
        self._budget[key] = used
        if len(self._budget) > _TRACKED_STREAMS:
            # The oldest remembered stream forgets its budget: at worst it starts afresh.
            del self._budget[next(iter(self._budget))]

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line written before the call is in the store (read-your-writes
        for the Logs API); False if that took longer than `timeout`."""
        with self._lock:
            target = self._queued
        with self._progress:
            if self._stored >= target:
                return True
        self._urgent.set()
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(lambda: self._stored >= target, timeout)

    def close(self) -> None:
        self._closed = True
        self._urgent.set()
        self._wake.set()
        self._writer.join(10)

    # ---------------------------------------------------------------- writer thread

    def _run(self) -> None:
        next_retention = time.monotonic() + _RETENTION_EVERY_S
        while True:
            if self._wake.wait(1.0):
                self._urgent.wait(_BATCH_WINDOW_S)
            self._wake.clear()
            self._urgent.clear()
            self._write_pending()
            if time.monotonic() >= next_retention:
                next_retention = time.monotonic() + _RETENTION_EVERY_S
                self._housekeep(self.store.apply_retention)
            if self._closed:
                self._write_pending()
                return

    def _write_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._pending_bytes = 0
        if not pending and not self._dropped:
            return
        handed_over = sum(len(lines) for lines in pending.values())
        batches = self._drop_markers() + [(g, s, lines) for (g, s), lines in pending.items()]
        try:
            self.store.append(batches)
        except StorageError as error:
            # The disk is full, most likely. Keep serving; say what was lost once it is not.
            log.warning("could not store %d log lines: %s", handed_over, error)
            for key, lines in pending.items():
                self._dropped[key] = self._dropped.get(key, 0) + len(lines)
        except Exception:
            log.exception("could not store %d log lines", handed_over)
        else:
            self._dropped = {}
        with self._progress:
            self._stored += handed_over
            self._progress.notify_all()

    def _drop_markers(self) -> list[Batch]:
        """One line per stream that lost lines; the counts are cleared once it is stored."""
        now = int(time.time() * 1000)
        return [
            (group, stream, [(now, f"[lamina] {count} log lines were dropped: the disk was full")])
            for (group, stream), count in self._dropped.items()
        ]

    def _housekeep(self, task: Callable[[], object]) -> None:
        try:
            task()
        except Exception:
            log.exception("log store housekeeping failed")
