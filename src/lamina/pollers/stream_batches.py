"""What a stream poller does with one batch of one shard: filter, invoke, retry, bisect,
and give up to the on-failure destination.

A batch is retried whole until it succeeds, its retries (MaximumRetryAttempts, -1: no
limit) are used up, or its records are older than MaximumRecordAgeInSeconds; the shard
waits meanwhile. Throttles, platform errors and a missing function are not retries (the
batch waits for them, within the age limit). BisectBatchOnFunctionError splits a failed
batch in two and settles each half (a split is not a retry). With ReportBatchItemFailures,
the records before the lowest failed sequence number count as processed and the rest is
retried. Records given up on go to the on-failure destination (sending is retried until it
works: nothing is lost) or, without one, are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from lamina.metrics import (
    DROPPED_EVENT_COUNT,
    FAILED_INVOKE_EVENT_COUNT,
    FILTERED_OUT_EVENT_COUNT,
    INVOKED_EVENT_COUNT,
    ON_FAILURE_DESTINATION_DELIVERED_EVENT_COUNT,
)
from lamina.model.mappings import FUNCTION_CALL_FAILED, PROCESSING_OK, EventSourceMapping
from lamina.pollers.context import PollerContext
from lamina.pollers.filters import RecordFilter
from lamina.pollers.invoking import (
    FUNCTION_ERROR,
    FUNCTION_NOT_FOUND,
    GONE,
    OK,
    THROTTLED,
    THROTTLED_RESULT,
    BatchResult,
)
from lamina.pollers.on_failure import (
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    OnFailureSender,
    failure_record,
)
from lamina.pollers.responses import REPORT_BATCH_ITEM_FAILURES, WholeBatchFailed, failed_items
from lamina.pollers.streams import ShardStatus, StreamRecord, StreamSource

log = logging.getLogger("lamina.pollers")

_RETRY_BASE_S = 0.2
_RETRY_MAX_S = 10.0
_WAIT_MAX_S = 30.0

Done = Callable[[list[StreamRecord]], Awaitable[None]]
Respond = Callable[[Any], None]


class BatchRunner:
    """Settles batches of one shard; `done` is told of every record processed or given up."""

    def __init__(
        self,
        mapping: EventSourceMapping,
        context: PollerContext,
        source: StreamSource,
        shard_id: str,
        status: ShardStatus,
        done: Done,
        stopping: Callable[[], bool],
        sender: OnFailureSender,
    ) -> None:
        self._mapping = mapping
        self._context = context
        self._source = source
        self._shard_id = shard_id
        self._status = status
        self._done = done
        self._stopping = stopping
        self._sender = sender
        self._filter = RecordFilter(mapping.filters)
        self._report = REPORT_BATCH_ITEM_FAILURES in mapping.function_response_types

    async def process(
        self,
        records: list[StreamRecord],
        extra: dict[str, Any] | None = None,
        respond: Respond | None = None,
    ) -> bool:
        """Filter and settle `records`; False when stopped before they were all settled.
        `extra` joins the event's `Records`; `respond` is given a successful response
        (before the records count as done)."""
        kept, dropped = self._filter.split(records, lambda record: record.view)
        if dropped:
            self._context.count(self._mapping, FILTERED_OUT_EVENT_COUNT, len(dropped))
            await self._done(dropped)
        if not kept:
            return True
        return await self.settle(kept, extra, respond)

    async def settle(
        self,
        batch: list[StreamRecord],
        extra: dict[str, Any] | None = None,
        respond: Respond | None = None,
    ) -> bool:
        """Invoke until the batch is processed or given up on; False when stopped first."""
        mapping = self._mapping
        attempts = 0  # invocations of this batch that failed
        waits = 0  # throttles and platform errors in a row
        last: BatchResult | None = None
        while batch:
            expired, batch = self._split_expired(batch)
            if expired:
                if not await self._give_up(expired, RECORD_AGE_EXCEEDED, attempts, last):
                    return False
                if not batch:
                    return True
            if self._stopping():
                return False
            result = await self._invoke(batch, extra)
            if result.kind == OK:
                try:
                    failed_at = self._failed_at(batch, result.payload)
                except WholeBatchFailed as why:
                    log.info("mapping %s: whole batch failed: %s", mapping.uuid, why)
                    failed_at = 0
                if failed_at is None:
                    if respond is not None:
                        respond(_json(result.payload))
                    await self._done(batch)
                    await self._context.record_result(mapping, PROCESSING_OK)
                    return True
                self._context.count(mapping, FAILED_INVOKE_EVENT_COUNT, len(batch) - failed_at)
                if failed_at:
                    await self._done(batch[:failed_at])
                    batch = batch[failed_at:]
                attempts, last, waits = attempts + 1, result, 0
                await self._context.record_result(mapping, FUNCTION_CALL_FAILED)
            elif result.kind == FUNCTION_ERROR:
                self._context.count(mapping, FAILED_INVOKE_EVENT_COUNT, len(batch))
                self._note_error(result)
                attempts, last, waits = attempts + 1, result, 0
                await self._context.record_result(mapping, FUNCTION_CALL_FAILED)
                if mapping.bisect_batch_on_function_error and len(batch) > 1:
                    half = len(batch) // 2
                    return await self.settle(batch[:half], extra, respond) and await self.settle(
                        batch[half:], extra, respond
                    )
            else:
                self._note_error(result)
                await self._context.record_result(mapping, _problem(result))
                waits += 1
                await self._pause(min(self._context.backoff_s * 2 ** (waits - 1), _WAIT_MAX_S))
                continue
            limit = mapping.maximum_retry_attempts
            if limit is not None and limit >= 0 and attempts > limit:
                return await self._give_up(batch, RETRY_ATTEMPTS_EXHAUSTED, attempts, last)
            await self._pause(min(_RETRY_BASE_S * 2 ** (attempts - 1), _RETRY_MAX_S))
        return True

    async def invoke_alone(self, extra: dict[str, Any], respond: Respond) -> bool:
        """Invoke with no records (a tumbling window's final invoke) until it succeeds or
        its retries are used up; False when stopped first."""
        attempts = waits = 0
        while not self._stopping():
            result = await self._invoke([], extra)
            if result.kind == OK:
                respond(_json(result.payload))
                await self._context.record_result(self._mapping, PROCESSING_OK)
                return True
            self._note_error(result)
            if result.kind == FUNCTION_ERROR:
                attempts += 1
                await self._context.record_result(self._mapping, FUNCTION_CALL_FAILED)
                limit = self._mapping.maximum_retry_attempts
                if limit is not None and limit >= 0 and attempts > limit:
                    log.warning(
                        "mapping %s: shard %s: final invoke of a window failed; its state "
                        "is dropped",
                        self._mapping.uuid,
                        self._shard_id,
                    )
                    return True
                await self._pause(min(_RETRY_BASE_S * 2 ** (attempts - 1), _RETRY_MAX_S))
            else:
                waits += 1
                await self._context.record_result(self._mapping, _problem(result))
                await self._pause(min(self._context.backoff_s * 2 ** (waits - 1), _WAIT_MAX_S))
        return False

    # ------------------------------------------------------------ helpers

    async def _invoke(self, batch: list[StreamRecord], extra: dict[str, Any] | None) -> BatchResult:
        event: dict[str, Any] = {"Records": [record.event for record in batch]}
        if extra:
            event.update(extra)
        self._context.count(self._mapping, INVOKED_EVENT_COUNT, len(batch))
        return await self._context.invoker.invoke(self._mapping, orjson.dumps(event))

    def _failed_at(self, batch: list[StreamRecord], payload: bytes) -> int | None:
        """The index of the lowest failed record; None when the batch succeeded."""
        if not self._report:
            return None
        index = {record.sequence: i for i, record in enumerate(batch)}
        failed = failed_items(payload, index)
        if not failed:
            return None
        return min(index[sequence] for sequence in failed)

    def _split_expired(
        self, batch: list[StreamRecord]
    ) -> tuple[list[StreamRecord], list[StreamRecord]]:
        age = self._mapping.maximum_record_age
        if age is None or age < 0:
            return [], batch
        oldest = time.time() - age
        cut = 0
        while cut < len(batch) and batch[cut].arrival < oldest:
            cut += 1
        return batch[:cut], batch[cut:]

    async def _give_up(
        self, batch: list[StreamRecord], condition: str, attempts: int, last: BatchResult | None
    ) -> bool:
        mapping, context = self._mapping, self._context
        destination = mapping.on_failure
        if not destination:
            context.count(mapping, DROPPED_EVENT_COUNT, len(batch))
            log.warning(
                "mapping %s: shard %s: %d records dropped (%s), sequence numbers %s to %s",
                mapping.uuid,
                self._shard_id,
                len(batch),
                condition,
                batch[0].sequence,
                batch[-1].sequence,
            )
            await self._done(batch)
            return True
        now = time.time()
        record = failure_record(
            mapping,
            batch_info_key=self._source.batch_info_key,
            shard_id=self._shard_id,
            sequences=[r.sequence for r in batch],
            arrivals=[r.arrival for r in batch],
            condition=condition,
            invoke_count=attempts,
            result=last,
            millis=self._source.arrival_millis,
            now=now,
        )
        failures = 0
        while True:
            try:
                await context.call(
                    self._sender.send,
                    destination,
                    record,
                    mapping_uuid=mapping.uuid,
                    shard_id=self._shard_id,
                    records=[r.event for r in batch],
                    now=now,
                )
                break
            except Exception as error:
                failures += 1
                self._status.errors += 1
                self._status.last_error = f"on-failure destination: {error}"
                log.warning(
                    "mapping %s: shard %s: cannot send %d records to %s (%s); trying again",
                    mapping.uuid,
                    self._shard_id,
                    len(batch),
                    destination,
                    error,
                )
                if self._stopping():
                    return False
                await self._pause(min(context.backoff_s * 2 ** (failures - 1), _WAIT_MAX_S))
        context.count(mapping, ON_FAILURE_DESTINATION_DELIVERED_EVENT_COUNT, len(batch))
        log.warning(
            "mapping %s: shard %s: %d records sent to %s (%s), sequence numbers %s to %s",
            mapping.uuid,
            self._shard_id,
            len(batch),
            destination,
            condition,
            batch[0].sequence,
            batch[-1].sequence,
        )
        await self._done(batch)
        return True

    def _note_error(self, result: BatchResult) -> None:
        self._status.errors += 1
        self._status.last_error = result.error or result.kind

    async def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 0.1))


def _problem(result: BatchResult) -> str:
    if result.kind == THROTTLED:
        return THROTTLED_RESULT
    if result.kind == GONE:
        return FUNCTION_NOT_FOUND
    return FUNCTION_CALL_FAILED


def _json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload) if payload.strip() else None
    except orjson.JSONDecodeError:
        return None
