"""Kinesis and DynamoDB Streams: the poller both kinds share, over a small `StreamSource`.

One `StreamPoller` runs per mapping. It lists the stream's shards, starts one
`ShardWorker` (`stream_shard`) per shard whose parents are finished, lists them again every
few seconds (a split or merge opens new shards, a shard read to its end starts its
children), and on `stop()` lets every worker settle its batches in flight.

Where each shard stands is the store's `ShardCheckpoint`: the last sequence number
processed (everything at or below it was invoked, filtered out or sent on), whether the
shard was read to its end, and a tumbling window's state. A new poller (a restart, an
enable, an update) resumes AFTER that sequence number.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from lamina.model.mappings import KINESIS, EventSourceMapping, ShardCheckpoint
from lamina.pollers.context import PollerContext
from lamina.pollers.protocol import PollerStatus

log = logging.getLogger("lamina.pollers")

TRIM_HORIZON = "TRIM_HORIZON"
LATEST = "LATEST"
AT_TIMESTAMP = "AT_TIMESTAMP"
AFTER_SEQUENCE_NUMBER = "AFTER_SEQUENCE_NUMBER"

# How often the shards are listed again (splits, merges, DynamoDB's shard roll-over).
RELIST_S = 3.0
_RESTART_PAUSE_S = 1.0
_RESTART_PAUSE_MAX_S = 60.0


@dataclass(frozen=True)
class StreamRecord:
    """One record as read from a shard, and as the function and the filters see it."""

    sequence: str
    arrival: float  # epoch seconds
    key: str  # what order is kept per (partition key; DynamoDB: the item's keys)
    event: dict[str, Any]  # the record in the function's event
    view: Mapping[str, Any]  # the record as FilterCriteria patterns see it
    size: int = 0  # about what the record adds to the event, in bytes


@dataclass(frozen=True)
class ShardInfo:
    shard_id: str
    parents: tuple[str, ...]
    closed: bool  # split or merged: it gets no more records (it may still hold some)


@dataclass(frozen=True)
class Position:
    """Where a shard iterator starts: an iterator type and its argument."""

    kind: str  # TRIM_HORIZON, LATEST, AT_TIMESTAMP or AFTER_SEQUENCE_NUMBER
    sequence: str | None = None
    timestamp: float | None = None


@dataclass(frozen=True)
class Page:
    records: list[StreamRecord]
    next_iterator: str | None  # None: the shard is closed and read to its end
    behind_ms: float | None = None


class StreamSource(Protocol):
    """One stream's API, blocking (pollers call it on their threads)."""

    # The on-failure record's batch-info key: KinesisBatchInfo or DDBStreamBatchInfo.
    batch_info_key: str
    # Pause between reads of a shard that had nothing new.
    idle_s: float
    # The most records one read may return.
    page_limit: int
    # Whether on-failure records give arrival times to the millisecond.
    arrival_millis: bool

    def shards(self) -> list[ShardInfo]: ...

    def iterator(self, shard_id: str, position: Position) -> str: ...

    def read(self, shard_id: str, iterator: str, limit: int, role: str | None) -> Page:
        """Up to `limit` records from `iterator`; `role` is the function's execution role
        (Kinesis records carry it)."""
        ...


@dataclass
class ShardStatus:
    """What one shard's worker reports, for the mapping's status."""

    iterator_age_ms: float | None = None
    errors: int = 0
    last_error: str | None = None


class StreamPoller:
    """Reads every shard of one stream for one mapping."""

    def __init__(
        self,
        mapping: EventSourceMapping,
        context: PollerContext,
        source: StreamSource,
        worker_factory: Callable[..., Any] | None = None,
    ) -> None:
        from lamina.pollers.stream_shard import ShardWorker  # the worker imports this module

        self._mapping = mapping
        self._context = context
        self._source = source
        self._worker_factory = worker_factory or ShardWorker
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._workers: dict[str, tuple[Any, asyncio.Task[None]]] = {}
        self._finished: set[str] = set()
        # Shard id -> (failures in a row, not before): a worker that failed restarts after a
        # pause that doubles, so a record that always breaks it does not spin the poller.
        self._restarts: dict[str, tuple[int, float]] = {}
        self._statuses: dict[str, ShardStatus] = {}
        self._last_error: str | None = None
        self.role: str | None = None

    # ------------------------------------------------------------ protocol

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for worker, _ in self._workers.values():
            worker.stop()

    def status(self) -> PollerStatus:
        ages = [s.iterator_age_ms for s in self._statuses.values() if s.iterator_age_ms is not None]
        errors = sum(s.errors for s in self._statuses.values())
        last = self._last_error
        for status in self._statuses.values():
            last = status.last_error or last
        return PollerStatus(
            lag=max(ages) if ages else None,
            lag_unit="milliseconds",
            errors=errors,
            last_error=last,
        )

    async def run(self) -> None:
        context, mapping = self._context, self._mapping
        try:
            self.role = await context.call(context.invoker.role, mapping)
            stored = await context.call(context.store.checkpoints, mapping.uuid)
            checkpoints = {checkpoint.shard_id: checkpoint for checkpoint in stored}
            initial = not checkpoints
            while not self._stopping.is_set():
                try:
                    shards = await context.call(self._source.shards)
                except Exception as error:  # the stream is gone or unreachable: try again
                    self._last_error = f"{type(error).__name__}: {error}"
                    log.warning("mapping %s: cannot list shards: %s", mapping.uuid, error)
                    await self._pause(max(context.backoff_s, 1.0))
                    continue
                if initial:
                    await self._start_positions(shards, checkpoints)
                    initial = False
                self._finished.update(s for s, c in checkpoints.items() if c.finished)
                self._reap()
                self._start_ready(shards, checkpoints)
                await self._pause(RELIST_S)
                if not self._stopping.is_set():
                    self.role = await context.call(context.invoker.role, mapping)
                    stored = await context.call(context.store.checkpoints, mapping.uuid)
                    checkpoints = {checkpoint.shard_id: checkpoint for checkpoint in stored}
        except asyncio.CancelledError:
            for _, task in self._workers.values():
                task.cancel()  # past the grace: what is unsettled stays below the checkpoint
            raise
        finally:
            for worker, _ in self._workers.values():
                worker.stop()
            tasks = [task for _, task in self._workers.values()]
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------- shards

    async def _start_positions(
        self, shards: list[ShardInfo], checkpoints: dict[str, ShardCheckpoint]
    ) -> None:
        """A new mapping: LATEST skips the closed shards (they get nothing new); the others
        start where the mapping says. Shards found later start at TRIM_HORIZON."""
        mapping = self._mapping
        for shard in shards:
            if mapping.starting_position == LATEST and shard.closed:
                checkpoint = ShardCheckpoint(shard.shard_id, finished=True)
            elif mapping.starting_position == LATEST and mapping.kind == KINESIS:
                # LATEST pinned to the moment the mapping took effect: a restart before the
                # first checkpoint must not skip what arrived meanwhile. (DynamoDB Streams
                # have no AT_TIMESTAMP; their LATEST is taken anew until a checkpoint.)
                checkpoint = ShardCheckpoint(
                    shard.shard_id,
                    state={"position": AT_TIMESTAMP, "timestamp": mapping.last_modified},
                )
            else:
                checkpoint = ShardCheckpoint(
                    shard.shard_id, state={"position": mapping.starting_position or TRIM_HORIZON}
                )
            checkpoints[shard.shard_id] = checkpoint
            await self._context.call(self._context.store.put_checkpoint, mapping.uuid, checkpoint)

    def _start_ready(
        self, shards: list[ShardInfo], checkpoints: dict[str, ShardCheckpoint]
    ) -> None:
        listed = {shard.shard_id for shard in shards}
        for shard in shards:
            if shard.shard_id in self._finished:
                continue
            running = self._workers.get(shard.shard_id)
            if running is not None:
                running[0].closed = shard.closed
                continue
            waiting = [p for p in shard.parents if p in listed and p not in self._finished]
            if waiting:
                continue
            if time.monotonic() < self._restarts.get(shard.shard_id, (0, 0.0))[1]:
                continue
            checkpoint = checkpoints.get(shard.shard_id) or ShardCheckpoint(shard.shard_id)
            status = self._statuses.setdefault(shard.shard_id, ShardStatus())
            worker = self._worker_factory(
                self._mapping,
                self._context,
                self._source,
                shard,
                checkpoint,
                self._position(checkpoint),
                status,
                self,
            )
            task = asyncio.create_task(worker.run(), name=f"lamina-shard-{shard.shard_id}")
            task.add_done_callback(lambda _: self._wake.set())
            self._workers[shard.shard_id] = (worker, task)

    def _position(self, checkpoint: ShardCheckpoint) -> Position:
        if checkpoint.sequence_number is not None:
            return Position(AFTER_SEQUENCE_NUMBER, sequence=checkpoint.sequence_number)
        kind = str(checkpoint.state.get("position") or TRIM_HORIZON)
        if kind == AT_TIMESTAMP:
            pinned = checkpoint.state.get("timestamp")
            moment = self._mapping.starting_position_timestamp if pinned is None else pinned
            return Position(AT_TIMESTAMP, timestamp=moment)
        return Position(kind)

    def _reap(self) -> None:
        for shard_id, (worker, task) in list(self._workers.items()):
            if not task.done():
                continue
            del self._workers[shard_id]
            error = None if task.cancelled() else task.exception()
            if error is not None:
                failures = self._restarts.get(shard_id, (0, 0.0))[0] + 1
                pause = min(_RESTART_PAUSE_S * 2 ** (failures - 1), _RESTART_PAUSE_MAX_S)
                self._restarts[shard_id] = (failures, time.monotonic() + pause)
                log.error(
                    "mapping %s: shard %s worker failed; restarting it in %.0f s",
                    self._mapping.uuid,
                    shard_id,
                    pause,
                    exc_info=(type(error), error, error.__traceback__),
                )
                continue
            self._restarts.pop(shard_id, None)
            if worker.finished:
                self._finished.add(shard_id)
                log.info("mapping %s: shard %s read to its end", self._mapping.uuid, shard_id)

    def shard_finished(self) -> None:
        """A worker read its shard to the end: list again now, to start its children."""
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return
            self._wake.clear()
            if any(task.done() for _, task in self._workers.values()):
                return
