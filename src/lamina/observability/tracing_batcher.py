"""Finished spans queued on the event loop and exported in batches from a thread of their own.

Not the SDK's `BatchSpanProcessor`: that one registers an at-fork hook which starts a thread
in every forked child. The namespace sandbox forks each new environment with a preexec
function, which runs those hooks, so every cold start of every function, traced or not,
would start (and lose) a thread before entering its sandbox. This batcher does the same job
(the `OTEL_BSP_*` variables mean the same here) with no fork hook.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from lamina.settings import SpanBatching

log = logging.getLogger("lamina.tracing")

_DEFAULTS = SpanBatching()


class SpanBatcher(SpanProcessor):
    """Exports every `delay_s`, or as soon as a full batch is queued; drops past `max_queue`."""

    def __init__(
        self,
        exporter: SpanExporter,
        delay_s: float = _DEFAULTS.delay_ms / 1000,
        max_queue: int = _DEFAULTS.max_queue,
        max_batch: int = _DEFAULTS.max_batch,
        close_timeout_s: float = 2.0,
    ) -> None:
        self._exporter = exporter
        self._delay_s = delay_s
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._close_timeout_s = close_timeout_s
        # Appended on the event loop, popped by the thread: deque operations are atomic.
        self._queue: deque[ReadableSpan] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="lamina-spans", daemon=True)
        self._thread.start()

    @classmethod
    def configured(cls, exporter: SpanExporter, batching: SpanBatching) -> SpanBatcher:
        return cls(
            exporter,
            delay_s=batching.delay_ms / 1000,
            max_queue=batching.max_queue,
            max_batch=batching.max_batch,
        )

    def on_end(self, span: ReadableSpan) -> None:
        if len(self._queue) >= self._max_queue:
            # A collector that cannot keep up must not grow the platform's memory.
            self._dropped += 1
            return
        self._queue.append(span)
        if len(self._queue) >= self._max_batch:
            self._wake.set()

    def shutdown(self) -> None:
        """Export what is queued, waiting `close_timeout_s` at most: an unreachable
        collector would otherwise hold up stopping Lamina for the exporter's retries."""
        self._stopping = True
        self._wake.set()
        self._thread.join(self._close_timeout_s)
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._wake.set()
        return True

    def _run(self) -> None:
        while True:
            self._wake.wait(self._delay_s)
            self._wake.clear()
            self._export_queued()
            if self._stopping:
                return

    def _export_queued(self) -> None:
        while self._queue:
            count = min(self._max_batch, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            try:
                self._exporter.export(batch)
            except Exception:
                log.exception("exporting %d spans failed", count)
        if self._dropped:
            # Read and reset without a lock: a count off by one in a warning is harmless.
            dropped, self._dropped = self._dropped, 0
            log.warning("dropped %d spans: the export queue was full", dropped)
