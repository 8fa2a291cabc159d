"""The SQS poller: long-polls a standard or FIFO queue and invokes the mapped function once per
batch, as Lambda's SQS event source mappings do.

Workers (one batch in flight each) receive, assemble a batch (up to BatchSize, closed at the
end of MaximumBatchingWindowInSeconds or at 6 MB of payload), invoke synchronously and delete
what succeeded. Failed messages are left alone: they come back after the queue's visibility
timeout with a higher ApproximateReceiveCount, and the queue's redrive policy dead-letters
them. Nothing is deleted before the invocation that consumed it returned, so a crash loses
nothing.

Concurrency: one worker while the queue is idle; a batch that fills, or whose last receive
did (a backlog), brings it to five, and each further one adds a worker, at most one per 0.2 s (AWS's
300 a minute), up to ScalingConfig.MaximumConcurrency (Lamina's own bound without it). Empty
long polls and throttles halve it; function errors take one away and pause the worker.

FIFO queues keep order by themselves: while messages of a group are in flight SQS hands out
no other message of that group, so concurrent workers never hold two batches of one group,
and a failed batch's messages are the first of their group to come back. The poller only has
to never let a later part of a group overtake a failed earlier part (a batch split at 6 MB
stops at the first part that failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from lamina.aws.clients import arn_account, arn_region, arn_resource
from lamina.metrics import (
    DELETED_EVENT_COUNT,
    FAILED_INVOKE_EVENT_COUNT,
    FILTERED_OUT_EVENT_COUNT,
    INVOKED_EVENT_COUNT,
    POLLED_EVENT_COUNT,
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
from lamina.pollers.protocol import PollerStatus
from lamina.pollers.responses import REPORT_BATCH_ITEM_FAILURES, WholeBatchFailed, failed_items
from lamina.pollers.sqs_records import SqsRecord, filter_view, payload, payload_size, sqs_record

log = logging.getLogger("lamina.pollers")

RECEIVE_MAX = 10  # messages per ReceiveMessage (SQS's limit)
LONG_POLL_S = 20  # SQS's longest WaitTimeSeconds
BATCH_PAYLOAD_MAX_BYTES = 6 * 1024 * 1024
INITIAL_CONCURRENCY = 5  # where AWS starts once there is a backlog
# Lamina's bound when ScalingConfig sets none (AWS goes to 1,250); each receive in flight
# holds a poller thread, so receives are bounded apart (LONG_POLLS_MAX, WINDOW_RECEIVES_MAX).
DEFAULT_MAX_CONCURRENCY = 50
# Receives in flight per mapping: long polls that open a batch, and the receives that fill
# one during its window (apart, so that a batch's window is never held up behind long polls
# waiting for the very messages it would take next).
LONG_POLLS_MAX = 10
WINDOW_RECEIVES_MAX = 32
SCALE_UP_INTERVAL_S = 0.2  # one more concurrent batch per 0.2 s: AWS's 300 a minute
LAG_REFRESH_S = 5.0
# After a throttle or an error, no scaling up for this many back-off units.
CALM_UNITS = 5
# The longest pause, in back-off units: after function errors, and after what needs someone
# to act (a deleted function or queue).
ERROR_PAUSE_MAX_UNITS = 8
PROBLEM_PAUSE_MAX_UNITS = 60
# A throttled batch is retried until this close to its messages' visibility timeout.
VISIBILITY_MARGIN_S = 1.0


class SqsPoller:
    """Polls one SQS mapping's queue until stopped."""

    def __init__(self, mapping: EventSourceMapping, context: PollerContext) -> None:
        assert mapping.event_source_arn is not None
        self._mapping = mapping
        self._ctx = context
        self._arn = mapping.event_source_arn
        self._region = arn_region(self._arn)
        self._filter = RecordFilter(mapping.filters)
        self._report_failures = REPORT_BATCH_ITEM_FAILURES in mapping.function_response_types
        self._cap = mapping.maximum_concurrency or DEFAULT_MAX_CONCURRENCY
        self._queue: _Queue | None = None
        self._visibility_s = 30.0
        self._stopping = False
        self._stopped = asyncio.Event()
        self._long_polls = asyncio.Semaphore(LONG_POLLS_MAX)
        self._window_receives = asyncio.Semaphore(WINDOW_RECEIVES_MAX)
        self._deleting = asyncio.Lock()
        self._group: asyncio.TaskGroup | None = None
        self._workers: set[asyncio.Task[None]] = set()
        self._target = 1
        self._ramped = False  # reached INITIAL_CONCURRENCY once
        self._last_scale_up = 0.0
        self._calm_until = 0.0
        self._failures_in_row = 0
        self._errors = 0
        self._last_error: str | None = None
        self._lag: float | None = None

    # ------------------------------------------------------------------ protocol

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            if await self._connect():
                group.create_task(self._watch_lag(), name=f"sqs-lag-{self._mapping.uuid}")
                self._spawn()

    def stop(self) -> None:
        self._stopping = True
        self._stopped.set()

    def status(self) -> PollerStatus:
        return PollerStatus(lag=self._lag, errors=self._errors, last_error=self._last_error)

    # ------------------------------------------------------------------ set-up

    async def _connect(self) -> bool:
        """Find the queue (retrying while it cannot be reached); False when stopped first."""
        name, owner = arn_resource(self._arn), arn_account(self._arn)
        while not self._stopping:
            try:
                client = await self._ctx.call(self._ctx.clients.client, "sqs", self._region)
                url = (
                    await self._ctx.call(
                        client.get_queue_url, QueueName=name, QueueOwnerAWSAccountId=owner
                    )
                )["QueueUrl"]
                attributes = await self._ctx.call(
                    client.get_queue_attributes, QueueUrl=url, AttributeNames=["VisibilityTimeout"]
                )
            except Exception as error:  # the queue is gone or SQS cannot be reached
                # Worded as AWS words a missing queue (its pollers only ReceiveMessage).
                await self._source_problem("ReceiveMessage", error)
                continue
            self._queue = _Queue(client, url)
            self._visibility_s = float(attributes["Attributes"].get("VisibilityTimeout", 30))
            self._failures_in_row = 0
            return True
        return False

    async def _watch_lag(self) -> None:
        """Messages visible in the queue, read every few seconds for `status()`."""
        assert self._queue is not None
        while not self._stopping:
            try:
                self._lag = float(await self._ctx.call(self._queue.visible))
            except Exception:  # shown as unknown until the next read
                self._lag = None
            await self._pause(LAG_REFRESH_S)

    # ------------------------------------------------------------------ scaling

    def _spawn(self) -> None:
        while not self._stopping and self._group and len(self._workers) < self._target:
            task = self._group.create_task(self._work())
            self._workers.add(task)

    def _scale_up(self) -> None:
        now = time.monotonic()
        if self._stopping or now < self._calm_until or self._target >= self._cap:
            return
        if not self._ramped:
            self._target = max(self._target, min(INITIAL_CONCURRENCY, self._cap))
            self._ramped = True
        elif now - self._last_scale_up >= SCALE_UP_INTERVAL_S:
            self._target += 1
        else:
            return
        self._last_scale_up = now
        self._spawn()

    def _scale_down(self, halve: bool) -> None:
        self._target = max(1, self._target // 2 if halve else self._target - 1)

    def _surplus(self) -> bool:
        """Whether this worker should end, the mapping having more workers than it wants."""
        return len(self._workers) > self._target

    # ------------------------------------------------------------------ a worker

    async def _work(self) -> None:
        me = asyncio.current_task()
        try:
            while not self._stopping and not self._surplus():
                try:
                    await self._round()
                except Exception as error:
                    await self._source_problem("ReceiveMessage", error)
        finally:
            self._workers.discard(me)

    async def _round(self) -> None:
        kept, dropped, received_at = await self._collect()
        chunks = list(_chunks(kept)) if kept else []
        done: list[SqsRecord] = list(dropped)
        pause = 0.0
        for number, chunk in enumerate(chunks):
            succeeded, whole, pause = await self._invoke(chunk, received_at)
            done += succeeded
            if not whole and self._mapping.fifo:
                # The rest of a FIFO batch must not overtake the part that failed: it stays
                # in flight and comes back after it.
                if number + 1 < len(chunks):
                    log.info(
                        "mapping %s: %d FIFO messages left for redelivery after a failure",
                        self._mapping.uuid,
                        sum(len(rest) for rest in chunks[number + 1 :]),
                    )
                break
        await self._delete(done)
        await self._pause(pause)

    async def _collect(self) -> tuple[list[SqsRecord], list[SqsRecord], float]:
        """One batch: (records for the function, records filtered out, when the first of
        them was received)."""
        assert self._queue is not None
        wanted = self._mapping.batch_size
        window = self._mapping.maximum_batching_window or 0
        kept: list[SqsRecord] = []
        dropped: list[SqsRecord] = []
        size = payload_size([])
        deadline: float | None = None
        received_at = 0.0
        last_full = False
        while len(kept) < wanted and size < BATCH_PAYLOAD_MAX_BYTES:
            if deadline is None:
                wait = LONG_POLL_S
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    break
                wait = min(LONG_POLL_S, int(remaining))
            ask = min(RECEIVE_MAX, wanted - len(kept))
            messages = await self._receive(ask, wait, opening=deadline is None)
            if messages is None:  # stopped while receiving
                break
            if not messages:
                if deadline is None:
                    if wait:
                        self._scale_down(halve=True)
                    return kept, dropped, 0.0
                if wait == 0:
                    await self._pause(min(deadline - time.monotonic(), 0.05))
                continue
            last_full = len(messages) == ask
            records = [sqs_record(message, self._arn, self._region) for message in messages]
            self._ctx.count(self._mapping, POLLED_EVENT_COUNT, len(records))
            passed, out = self._filter.split(records, filter_view)
            if out:
                self._ctx.count(self._mapping, FILTERED_OUT_EVENT_COUNT, len(out))
                dropped += out
            kept += passed
            size += sum(record.size for record in passed)
            if deadline is None:
                received_at = time.monotonic()
                if not window:
                    break
                deadline = received_at + window
        if len(kept) >= wanted or size >= BATCH_PAYLOAD_MAX_BYTES or last_full:
            # The batch filled, or its last receive did: there is a backlog. (Decided once
            # the batch is closed, so that new workers do not take its messages.)
            self._scale_up()
        return kept, dropped, received_at

    async def _receive(self, ask: int, wait: int, opening: bool) -> list[dict[str, Any]] | None:
        """One ReceiveMessage; None when the poller was stopped first (a long poll cut short
        hands back what it then receives)."""
        assert self._queue is not None
        async with self._long_polls if opening else self._window_receives:
            if self._stopping or (opening and self._surplus()):
                return None
            call = _Receive(self._queue, ask, wait)
            receiving = asyncio.ensure_future(self._ctx.call(call.run))
            stopped = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait({receiving, stopped}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                call.abandon()
                receiving.add_done_callback(_quietly)
                raise
            finally:
                stopped.cancel()
            if not receiving.done() and call.abandon():
                receiving.add_done_callback(_quietly)
                return None
            return await receiving

    async def _invoke(
        self, batch: Sequence[SqsRecord], received_at: float
    ) -> tuple[list[SqsRecord], bool, float]:
        """Invoke with one batch: (records to delete, whether the whole batch succeeded, how
        long to pause before the next)."""
        event = payload(batch)
        give_up_at = received_at + self._visibility_s - VISIBILITY_MARGIN_S
        while True:
            result = await self._ctx.invoker.invoke(self._mapping, event)
            if result.kind != THROTTLED:
                break
            self._throttled(result)
            pause = self._failure_pause(ERROR_PAUSE_MAX_UNITS)
            if self._stopping or time.monotonic() + pause >= give_up_at:
                # Held no longer: the messages come back after their visibility timeout.
                self._ctx.count(self._mapping, FAILED_INVOKE_EVENT_COUNT, len(batch))
                await self._ctx.record_result(self._mapping, THROTTLED_RESULT)
                return [], False, 0.0
            await self._pause(pause)
        if result.kind in (OK, FUNCTION_ERROR):
            self._ctx.count(self._mapping, INVOKED_EVENT_COUNT, len(batch))
        if result.kind == OK:
            return (*await self._returned(batch, result), 0.0)
        self._ctx.count(self._mapping, FAILED_INVOKE_EVENT_COUNT, len(batch))
        self._errors += 1
        self._last_error = result.error or result.kind
        if result.kind == GONE:
            await self._ctx.record_result(self._mapping, FUNCTION_NOT_FOUND)
            log.error(
                "mapping %s: %s; %d messages left in the queue",
                self._mapping.uuid,
                self._last_error,
                len(batch),
            )
            return [], False, self._failure_pause(PROBLEM_PAUSE_MAX_UNITS)
        await self._ctx.record_result(self._mapping, FUNCTION_CALL_FAILED)
        log.info(
            "mapping %s: batch of %d failed (%s); left to the visibility timeout",
            self._mapping.uuid,
            len(batch),
            self._last_error,
        )
        self._scale_down(halve=False)
        self._calm_until = time.monotonic() + CALM_UNITS * self._ctx.backoff_s
        return [], False, self._failure_pause(ERROR_PAUSE_MAX_UNITS)

    async def _returned(
        self, batch: Sequence[SqsRecord], result: BatchResult
    ) -> tuple[list[SqsRecord], bool]:
        if not self._report_failures:
            return await self._succeeded(list(batch))
        try:
            failed = set(failed_items(result.payload, {record.message_id for record in batch}))
        except WholeBatchFailed as why:
            self._ctx.count(self._mapping, FAILED_INVOKE_EVENT_COUNT, len(batch))
            self._errors += 1
            self._last_error = f"the whole batch failed: {why}"
            await self._ctx.record_result(self._mapping, FUNCTION_CALL_FAILED)
            log.info("mapping %s: batch of %d failed (%s)", self._mapping.uuid, len(batch), why)
            return [], False
        if not failed:
            return await self._succeeded(list(batch))
        self._ctx.count(self._mapping, FAILED_INVOKE_EVENT_COUNT, len(failed))
        await self._ctx.record_result(self._mapping, PROCESSING_OK)
        self._failures_in_row = 0
        return [record for record in batch if record.message_id not in failed], False

    async def _succeeded(self, batch: list[SqsRecord]) -> tuple[list[SqsRecord], bool]:
        self._failures_in_row = 0
        await self._ctx.record_result(self._mapping, PROCESSING_OK)
        return batch, True

    async def _delete(self, records: Sequence[SqsRecord]) -> None:
        if not records:
            return
        assert self._queue is not None
        # One DeleteMessageBatch at a time per mapping: moto's (the usual local SQS) rewrites
        # the queue's message list on each delete without a lock, so two at once can bring a
        # deleted message back.
        async with self._deleting:
            deleted = await self._ctx.call(self._queue.delete, records)
        self._ctx.count(self._mapping, DELETED_EVENT_COUNT, deleted)

    # ------------------------------------------------------------------ problems

    def _throttled(self, result: BatchResult) -> None:
        self._errors += 1
        self._last_error = result.error or THROTTLED
        self._scale_down(halve=True)
        self._calm_until = time.monotonic() + CALM_UNITS * self._ctx.backoff_s

    def _failure_pause(self, max_units: int) -> float:
        self._failures_in_row += 1
        units: int = min(2 ** min(self._failures_in_row - 1, 16), max_units)
        return units * self._ctx.backoff_s

    async def _source_problem(self, operation: str, error: Exception) -> None:
        text = _source_error(operation, error)
        if text != self._last_error:
            log.error("mapping %s: %s", self._mapping.uuid, text)
        self._last_error = text
        await self._ctx.record_result(self._mapping, f"PROBLEM: {text}")
        await self._pause(self._failure_pause(PROBLEM_PAUSE_MAX_UNITS))

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up when the poller is stopped."""
        if seconds <= 0 or self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)


class _Queue:
    """The blocking SQS calls, run on poller threads."""

    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url

    def receive(self, ask: int, wait: int) -> list[dict[str, Any]]:
        response = self.client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=ask,
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def release(self, messages: Sequence[dict[str, Any]]) -> None:
        """Make messages received for nobody visible again at once."""
        for start in range(0, len(messages), RECEIVE_MAX):
            self.client.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {
                        "Id": str(index),
                        "ReceiptHandle": message["ReceiptHandle"],
                        "VisibilityTimeout": 0,
                    }
                    for index, message in enumerate(messages[start : start + RECEIVE_MAX])
                ],
            )

    def delete(self, records: Sequence[SqsRecord]) -> int:
        """Delete messages, ten at a time; how many were (the rest come back: at least once)."""
        deleted = 0
        for start in range(0, len(records), RECEIVE_MAX):
            chunk = records[start : start + RECEIVE_MAX]
            try:
                response = self.client.delete_message_batch(
                    QueueUrl=self.url,
                    Entries=[
                        {"Id": str(index), "ReceiptHandle": record.receipt_handle}
                        for index, record in enumerate(chunk)
                    ],
                )
            except Exception:
                log.exception(
                    "SQS DeleteMessageBatch failed; %d messages will come back", len(chunk)
                )
                continue
            for entry in response.get("Failed") or []:
                log.warning("SQS could not delete a message: %s", entry.get("Message"))
            deleted += len(response.get("Successful") or [])
        return deleted

    def visible(self) -> int:
        response = self.client.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(response["Attributes"]["ApproximateNumberOfMessages"])


class _Receive:
    """One ReceiveMessage on a thread, which the poller may abandon while it long-polls: the
    messages it then gets are released for the next receive rather than left hidden."""

    def __init__(self, queue: _Queue, ask: int, wait: int) -> None:
        self._queue = queue
        self._ask = ask
        self._wait = wait
        self._lock = threading.Lock()
        self._delivered = False
        self._abandoned = False

    def run(self) -> list[dict[str, Any]]:
        messages = self._queue.receive(self._ask, self._wait)
        with self._lock:
            if not self._abandoned:
                self._delivered = True
                return messages
        if messages:
            try:
                self._queue.release(messages)
            except Exception:  # they come back after the visibility timeout instead
                log.warning("could not release %d SQS messages", len(messages), exc_info=True)
        return []

    def abandon(self) -> bool:
        """Give the receive up; False when it already handed its messages over."""
        with self._lock:
            if self._delivered:
                return False
            self._abandoned = True
            return True


def _chunks(records: Sequence[SqsRecord]) -> Iterator[list[SqsRecord]]:
    """The batch in order, in parts of at most 6 MB of payload."""
    chunk: list[SqsRecord] = []
    size = payload_size([])
    for record in records:
        if chunk and size + record.size > BATCH_PAYLOAD_MAX_BYTES:
            yield chunk
            chunk, size = [], payload_size([])
        chunk.append(record)
        size += record.size
    if chunk:
        yield chunk


def _source_error(operation: str, error: Exception) -> str:
    """AWS's wording for an SQS error met while polling."""
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = response["Error"].get("Code", "")
        if code in ("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"):
            code = "AWS.SimpleQueueService.NonExistentQueue"
        message = response["Error"].get("Message", "")
        return (
            f"Error occurred while {operation}. SQS Error Code: {code}. "
            f"SQS Error Message: {message}"
        )
    return f"Error occurred while {operation}: {error}"


def _quietly(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned receive's outcome, so that its error is not reported."""
    if not future.cancelled():
        future.exception()
