"""One shard of a stream mapping: a reader and one lane per ParallelizationFactor.

The reader follows the shard's iterator in order and hands each record to the lane of its
key (`crc32(key) % factor`), so records of one partition key (DynamoDB: one item) stay in
order while up to `factor` batches of the shard run at once. Each lane makes batches of
its own records (BatchSize, MaximumBatchingWindowInSeconds, 6 MB) and settles them one at
a time.

The checkpoint moves only over records that are settled (processed, filtered out, sent to
the on-failure destination or dropped), in read order: it stays below the lowest record
still in a lane, so a restart redoes what was unsettled and nothing else. It is written
after every batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lamina.metrics import ITERATOR_AGE, POLLED_EVENT_COUNT
from lamina.model.mappings import EventSourceMapping, ShardCheckpoint
from lamina.pollers.context import PollerContext
from lamina.pollers.on_failure import OnFailureSender
from lamina.pollers.stream_batches import BatchRunner
from lamina.pollers.streams import (
    AFTER_SEQUENCE_NUMBER,
    Position,
    ShardInfo,
    ShardStatus,
    StreamRecord,
    StreamSource,
)
from lamina.pollers.windows import TumblingWindow

if TYPE_CHECKING:
    from lamina.pollers.streams import StreamPoller

log = logging.getLogger("lamina.pollers")

# Lambda's synchronous payload limit, less room for the event's envelope.
_PAYLOAD_LIMIT = 6 * 1024 * 1024 - 16 * 1024
_WAIT_MAX_S = 30.0


@dataclass
class _Entry:
    record: StreamRecord
    done: bool = False


class ShardWorker:
    """Reads one shard and settles its records until stopped or the shard ends."""

    def __init__(
        self,
        mapping: EventSourceMapping,
        context: PollerContext,
        source: StreamSource,
        shard: ShardInfo,
        checkpoint: ShardCheckpoint,
        position: Position,
        status: ShardStatus,
        poller: StreamPoller,
    ) -> None:
        self._mapping = mapping
        self._context = context
        self._source = source
        self._shard_id = shard.shard_id
        self._position = position
        self._status = status
        self._poller = poller
        self.closed = shard.closed
        self.finished = False
        self._stopping = False
        self._ended = False  # the reader reached the shard's end
        self._window = (
            TumblingWindow.from_doc(mapping.tumbling_window, checkpoint.state.get("window"))
            if mapping.tumbling_window
            else None
        )
        lanes = 1 if self._window else max(1, mapping.parallelization_factor or 1)
        self._lanes: list[deque[StreamRecord]] = [deque() for _ in range(lanes)]
        self._signals = [asyncio.Event() for _ in range(lanes)]
        self._progress = asyncio.Event()
        self._wake = asyncio.Event()
        self._entries: deque[_Entry] = deque()
        self._by_sequence: dict[str, _Entry] = {}
        self._sequence = checkpoint.sequence_number
        self._state = dict(checkpoint.state)
        self._saved: tuple[str | None, bool, Any] | None = None
        self._write = asyncio.Lock()
        self._runner = BatchRunner(
            mapping,
            context,
            source,
            shard.shard_id,
            status,
            self._done,
            lambda: self._stopping,
            OnFailureSender(context.clients),
        )
        # Reads take all a page holds (as Lambda's do), so that the next batches are read
        # while these are invoked; reading stops while twice that is unsettled.
        self._limit = source.page_limit
        self._capacity = max(2 * self._limit, 2 * mapping.batch_size * lanes)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._progress.set()
        for signal in self._signals:
            signal.set()

    async def run(self) -> None:
        lanes = [
            asyncio.create_task(self._lane(index), name=f"lamina-lane-{self._shard_id}-{index}")
            for index in range(len(self._lanes))
        ]
        for lane in lanes:
            lane.add_done_callback(self._lane_ended)
        try:
            await self._read()
        except asyncio.CancelledError:
            # Cancelled past the grace: batches in flight are abandoned unsettled, below the
            # checkpoint, and read again by the next poller.
            self.stop()
            for lane in lanes:
                lane.cancel()
            raise
        finally:
            self._ended = True
            for signal in self._signals:
                signal.set()
            outcomes = await asyncio.gather(*lanes, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome  # the poller restarts the shard from its checkpoint
        if not self._stopping and not self._entries and self._reached_end:
            self.finished = True
        await self._save()
        if self.finished:
            self._poller.shard_finished()

    def _lane_ended(self, lane: asyncio.Task[None]) -> None:
        if not lane.cancelled() and lane.exception() is not None:
            self.stop()  # what the lane held stays unsettled, below the checkpoint

    # ------------------------------------------------------------- reader

    _reached_end = False

    async def _read(self) -> None:
        context, source = self._context, self._source
        iterator: str | None = None
        last_read: str | None = None
        failures = 0
        while not self._stopping:
            if len(self._entries) >= self._capacity:
                self._progress.clear()
                await self._sleep(1.0, self._progress)
                continue
            try:
                if iterator is None:
                    position = (
                        Position(AFTER_SEQUENCE_NUMBER, sequence=last_read)
                        if last_read is not None
                        else self._position
                    )
                    iterator = await context.call(source.iterator, self._shard_id, position)
                page = await context.call(
                    source.read, self._shard_id, iterator, self._limit, self._poller.role
                )
            except Exception as error:  # expired iterator, throttled read, stream gone
                failures += 1
                iterator = None
                self._status.errors += 1
                self._status.last_error = f"{type(error).__name__}: {error}"
                log.warning(
                    "mapping %s: shard %s: cannot read: %s",
                    self._mapping.uuid,
                    self._shard_id,
                    error,
                )
                await self._sleep(min(context.backoff_s * 2 ** (failures - 1), _WAIT_MAX_S))
                continue
            failures = 0
            iterator = page.next_iterator
            if page.records:
                last_read = page.records[-1].sequence
                age_ms = max(0.0, (time.time() - page.records[-1].arrival) * 1000)
                self._status.iterator_age_ms = age_ms
                context.observe(self._mapping, ITERATOR_AGE, age_ms)
                context.count(self._mapping, POLLED_EVENT_COUNT, len(page.records))
                self._accept(page.records)
            else:
                self._status.iterator_age_ms = 0.0
            # An empty page of a closed shard is its end only when nothing lies beyond it
            # (Kinesis says how far behind the page is; a gap in time reads empty too).
            drained = not page.records and self.closed and not page.behind_ms
            if iterator is None or drained:
                self._reached_end = True
                await self._drain()
                return
            if not page.records:
                await self._sleep(source.idle_s)

    def _accept(self, records: list[StreamRecord]) -> None:
        count = len(self._lanes)
        for record in records:
            if record.sequence in self._by_sequence:
                continue  # read twice after an iterator was made again
            entry = _Entry(record)
            self._entries.append(entry)
            self._by_sequence[record.sequence] = entry
            lane = zlib.crc32(record.key.encode()) % count if count > 1 else 0
            self._lanes[lane].append(record)
            self._signals[lane].set()

    async def _drain(self) -> None:
        """The shard ended: wait until the lanes have settled everything read."""
        self._ended = True
        for signal in self._signals:
            signal.set()
        while self._entries and not self._stopping:
            self._progress.clear()
            await self._sleep(1.0, self._progress)

    # -------------------------------------------------------------- lanes

    async def _lane(self, index: int) -> None:
        queue, signal = self._lanes[index], self._signals[index]
        while not self._stopping:
            if self._window is not None and await self._window_due():
                if not await self._close_window():
                    return
                continue
            if not queue:
                if self._ended:
                    if self._window is not None and self._window.start is not None:
                        await self._close_window()
                    return
                signal.clear()
                await self._sleep(self._until_window_end(), signal)
                continue
            batch = await self._take(queue, signal)
            if not batch:
                continue
            if self._window is None:
                settled = await self._runner.process(batch)
            else:
                window = self._window
                settled = await self._runner.process(
                    batch,
                    window.fields(self._shard_id, self._mapping.event_source_arn, final=False),
                    window.take,
                )
            if not settled:
                return

    async def _take(self, queue: deque[StreamRecord], signal: asyncio.Event) -> list[StreamRecord]:
        size = self._mapping.batch_size
        window_s = self._mapping.maximum_batching_window or 0
        if window_s and len(queue) < size and not self._ended:
            deadline = time.monotonic() + window_s
            while len(queue) < size and not self._stopping and not self._ended:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                signal.clear()
                await self._sleep(remaining, signal)
        batch: list[StreamRecord] = []
        total = 0
        window = self._window
        if window is not None and queue:
            if window.start is None:
                window.open(queue[0].arrival)
            elif not window.holds(queue[0].arrival):
                return []  # the open window must close first (see _window_due)
        while queue and len(batch) < size:
            record = queue[0]
            if window is not None and not window.holds(record.arrival):
                break
            if batch and total + record.size > _PAYLOAD_LIMIT:
                break
            batch.append(queue.popleft())
            total += record.size
        return batch

    # ----------------------------------------------------- tumbling windows

    async def _window_due(self) -> bool:
        window = self._window
        if window is None or window.start is None:
            return False
        queue = self._lanes[0]
        if queue and not window.holds(queue[0].arrival):
            return True
        return time.time() >= (window.end or 0.0) and not queue

    def _until_window_end(self) -> float:
        window = self._window
        if window is None or window.end is None:
            return 1.0
        return max(0.05, min(1.0, window.end - time.time()))

    async def _close_window(self) -> bool:
        window = self._window
        assert window is not None
        fields = window.fields(self._shard_id, self._mapping.event_source_arn, final=True)
        if not await self._runner.invoke_alone(fields, window.take):
            return False
        window.close()
        await self._save()
        return True

    # --------------------------------------------------------- checkpoints

    async def _done(self, records: list[StreamRecord]) -> None:
        for record in records:
            entry = self._by_sequence.get(record.sequence)
            if entry is not None:
                entry.done = True
        while self._entries and self._entries[0].done:
            entry = self._entries.popleft()
            del self._by_sequence[entry.record.sequence]
            self._sequence = entry.record.sequence
        self._progress.set()
        await self._save()

    async def _save(self) -> None:
        async with self._write:
            # Read under the lock: a batch settled while an earlier write was in flight must
            # be written by this call, not mistaken for what that write saved.
            state = dict(self._state)
            state.pop("window", None)
            if self._window is not None and self._window.start is not None:
                state["window"] = self._window.to_doc()
            if self._sequence is not None:
                state.pop("position", None)
                state.pop("timestamp", None)
            key = (self._sequence, self.finished, state)
            if key == self._saved:
                return
            checkpoint = ShardCheckpoint(self._shard_id, self._sequence, self.finished, state)
            try:
                await self._context.call(
                    self._context.store.put_checkpoint, self._mapping.uuid, checkpoint
                )
            except Exception:  # the store is closing: the records are read again next time
                log.exception(
                    "mapping %s: shard %s: checkpoint not written",
                    self._mapping.uuid,
                    self._shard_id,
                )
                return
            self._saved = key

    async def _sleep(self, seconds: float, event: asyncio.Event | None = None) -> None:
        waiter = event or self._wake
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), max(0.0, seconds))
