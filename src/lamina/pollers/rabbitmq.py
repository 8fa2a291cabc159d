"""Amazon MQ for RabbitMQ: consume a mapping's queue and invoke the function per batch.

The broker ARN's name finds the broker's AMQP address in the operator's LAMINA_MQ_BROKERS
(`PollerContext.mq_brokers`); the credentials come from the mapping's BASIC_AUTH secret in
Secrets Manager (a JSON SecretString with `username` and `password`), the virtual host from
VIRTUAL_HOST (default `/`). The poller consumes with manual acknowledgement and a prefetch
of twice the batch size, gathers up to BatchSize messages, the batching window
(MaximumBatchingWindowInSeconds, 0.5 s when unset) or 6 MB, and invokes once per batch, one
batch at a time (Lambda runs one environment per RabbitMQ mapping).

After a successful invocation the batch is acked. After a failed one every message the
poller holds is nacked and requeued, so the whole batch comes back, in order and marked
`redelivered`, and is retried after a back-off until it succeeds; dead-lettering is the
broker's business (a queue's `x-delivery-limit`, `x-message-ttl`, dead-letter exchange).
Messages that no filter matches are acked without an invocation. A message too large for
an invocation on its own is rejected without requeue (the broker dead-letters it).

Nothing is acked before its invocation returns, so a crash loses nothing: the broker
requeues whatever an AMQP connection held unacknowledged when it closes.

A missing broker address or secret, refused credentials, an unreachable broker or a
missing queue are recorded as the mapping's LastProcessingResult (`PROBLEM: ...`, Lamina's
wording: AWS's texts for these are not known) and retried with a doubling back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import quote, urlsplit

import aiormq
import orjson
from aiormq.abc import DeliveredMessage

from lamina.aws.clients import arn_region
from lamina.metrics import (
    DROPPED_EVENT_COUNT,
    FAILED_INVOKE_EVENT_COUNT,
    FILTERED_OUT_EVENT_COUNT,
    INVOKED_EVENT_COUNT,
    POLLED_EVENT_COUNT,
)
from lamina.model.mappings import (
    FUNCTION_CALL_FAILED,
    PROCESSING_OK,
    EventSourceMapping,
    broker_name,
)
from lamina.pollers.context import PollerContext
from lamina.pollers.filters import RecordFilter, json_base64, with_data
from lamina.pollers.invoking import (
    FUNCTION_NOT_FOUND,
    GONE,
    THROTTLED,
    THROTTLED_RESULT,
    BatchResult,
)
from lamina.pollers.protocol import PollerStatus
from lamina.pollers.rabbitmq_records import (
    EVENT_MAX_BYTES,
    envelope_bytes,
    event,
    queue_key,
    record,
    record_bytes,
)

log = logging.getLogger("lamina.pollers")

DEFAULT_WINDOW_S = 0.5
DEFAULT_VIRTUAL_HOST = "/"
_PREFETCH_MAX = 65535  # basic.qos prefetch-count is a short
_CONNECT_TIMEOUT_S = 10.0
_BACKOFF_MAX_S = 30.0
_LAG_INTERVAL_S = 1.0


class BrokerProblem(Exception):
    """What keeps the poller from consuming, as LastProcessingResult shows it."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _access(mapping: EventSourceMapping, kind: str) -> str | None:
    for access_type, uri in mapping.source_access:
        if access_type == kind:
            return uri
    return None


def virtual_host(mapping: EventSourceMapping) -> str:
    return _access(mapping, "VIRTUAL_HOST") or DEFAULT_VIRTUAL_HOST


def read_credentials(client: Any, secret_arn: str) -> tuple[str, str]:
    """(username, password) from a BASIC_AUTH secret; raises BrokerProblem. Blocking."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        found = client.get_secret_value(SecretId=secret_arn)
    except ClientError as error:
        info = error.response.get("Error", {})
        raise BrokerProblem(
            f"PROBLEM: Lamina could not read the BASIC_AUTH secret {secret_arn} from Secrets "
            f"Manager: {info.get('Code', '')}: {info.get('Message', '')}"
        ) from None
    except BotoCoreError as error:
        raise BrokerProblem(
            f"PROBLEM: Lamina could not reach Secrets Manager to read {secret_arn}: {error}"
        ) from None
    try:
        value = orjson.loads(found.get("SecretString") or "")
        username, password = value["username"], value["password"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise BrokerProblem(
            f"PROBLEM: The BASIC_AUTH secret {secret_arn} is not a JSON object with "
            '"username" and "password".'
        ) from None
    return str(username), str(password)


def broker_url(address: str, username: str, password: str, vhost: str) -> str:
    """The operator's `amqp://host:port` with the credentials and the virtual host in it."""
    parts = urlsplit(address)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = f"{quote(username, safe='')}:{quote(password, safe='')}"
    return f"{parts.scheme}://{user}@{netloc}/{quote(vhost, safe='')}"


class RabbitMqPoller:
    """Consumes one queue of one broker for one mapping, a batch at a time."""

    def __init__(self, mapping: EventSourceMapping, context: PollerContext) -> None:
        self._mapping = mapping
        self._ctx = context
        self._arn = mapping.event_source_arn or ""
        self._queue = mapping.queues[0] if mapping.queues else ""
        self._vhost = virtual_host(mapping)
        self._key = queue_key(self._queue, self._vhost)
        self._batch_size = mapping.batch_size
        window = mapping.maximum_batching_window
        self._window = DEFAULT_WINDOW_S if window is None else float(window)
        self._filter = RecordFilter(mapping.filters)
        self._stop = asyncio.Event()
        self._lag: float | None = None
        self._errors = 0
        self._last_error: str | None = None
        self._failures = 0  # failed invocations of the current batch in a row
        self._address = "the broker"

    # ----------------------------------------------------------------- protocol

    def stop(self) -> None:
        self._stop.set()

    def status(self) -> PollerStatus:
        return PollerStatus(
            lag=self._lag, lag_unit="messages", errors=self._errors, last_error=self._last_error
        )

    async def run(self) -> None:
        problems = 0
        reported: str | None = None
        while not self._stop.is_set():
            try:
                await self._session()
                problems = 0
                continue
            except BrokerProblem as problem:
                text = problem.text
            except (
                aiormq.exceptions.AMQPError,
                aiormq.exceptions.ChannelInvalidStateError,
                OSError,
                TimeoutError,
            ) as error:
                text = self._describe(error)
            problems += 1
            self._last_error = text
            await self._ctx.record_result(self._mapping, text)
            if text != reported:
                log.warning("mapping %s: %s", self._mapping.uuid, text)
                reported = text
            pause = min(self._ctx.backoff_s * 2 ** (problems - 1), _BACKOFF_MAX_S)
            await self._pause(pause)

    # ---------------------------------------------------------------- sessions

    async def _session(self) -> None:
        """One connection: consume until stopped; raises what ends it otherwise."""
        address = self._ctx.mq_brokers.get(broker_name(self._arn))
        if address is None:
            raise BrokerProblem(
                f"PROBLEM: Connection error. Lamina has no address for the broker "
                f"'{broker_name(self._arn)}' (add it to LAMINA_MQ_BROKERS)."
            )
        self._address = address
        username, password = await self._credentials()
        url = broker_url(address, username, password, self._vhost)
        connection = await asyncio.wait_for(aiormq.connect(url), _CONNECT_TIMEOUT_S)
        lag_task: asyncio.Task[None] | None = None
        try:
            channel = await connection.channel()
            declared = await channel.queue_declare(self._queue, passive=True)
            self._lag = float(declared.message_count or 0)
            prefetch = min(max(self._batch_size * 2, 1), _PREFETCH_MAX)
            await channel.basic_qos(prefetch_count=prefetch)
            inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue()

            async def deliver(message: DeliveredMessage) -> None:
                inbox.put_nowait(message)

            await channel.basic_consume(self._queue, deliver, no_ack=False)
            lag_task = asyncio.create_task(self._watch_lag(connection))
            if self._last_error is not None:
                log.info("mapping %s: consuming %s again", self._mapping.uuid, self._key)
            self._last_error = None
            closing = connection.closing
            try:
                await self._consume(channel, inbox, closing)
            finally:
                closing.cancel()
        finally:
            if lag_task is not None:
                lag_task.cancel()
                await asyncio.gather(lag_task, return_exceptions=True)
            # Whatever was delivered and not acked goes back to the queue now.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    async def _credentials(self) -> tuple[str, str]:
        secret = _access(self._mapping, "BASIC_AUTH")
        if secret is None:
            raise BrokerProblem("PROBLEM: The mapping has no BASIC_AUTH secret.")
        region = arn_region(secret) if secret.count(":") >= 5 else None
        client = await self._ctx.call(self._ctx.clients.client, "secretsmanager", region)
        return await self._ctx.call(read_credentials, client, secret)

    def _describe(self, error: BaseException) -> str:
        where = self._address
        if isinstance(
            error,
            aiormq.exceptions.ProbableAuthenticationError | aiormq.exceptions.AuthenticationError,
        ):
            return (
                f"PROBLEM: Authentication error. The broker at {where} refused the credentials "
                f"of the BASIC_AUTH secret for virtual host {self._vhost}."
            )
        if isinstance(error, aiormq.exceptions.ChannelNotFoundEntity):
            return f"PROBLEM: Queue {self._queue} not found on virtual host {self._vhost}."
        if isinstance(error, aiormq.exceptions.ChannelAccessRefused):
            return f"PROBLEM: Access to queue {self._queue} refused: {error}"
        if isinstance(error, TimeoutError):
            return f"PROBLEM: Connection error. The broker at {where} did not answer in time."
        detail = str(error) or type(error).__name__
        return f"PROBLEM: Connection error. The broker at {where} could not be reached: {detail}"

    async def _watch_lag(self, connection: Any) -> None:
        """Keep `status().lag` (messages ready in the queue) fresh, on a channel of its own
        so that a failed check cannot close the consumer's."""
        while True:
            await asyncio.sleep(_LAG_INTERVAL_S)
            try:
                channel = await connection.channel()
                try:
                    declared = await channel.queue_declare(self._queue, passive=True)
                    self._lag = float(declared.message_count or 0)
                finally:
                    if not channel.is_closed:
                        await channel.close()
            except aiormq.exceptions.ChannelNotFoundEntity as error:
                # The queue was deleted: end the session, which reports and retries.
                await connection.close(error)
                return
            except aiormq.exceptions.AMQPError:
                return

    # ---------------------------------------------------------------- batches

    async def _consume(
        self, channel: Any, inbox: asyncio.Queue[DeliveredMessage], closing: asyncio.Future[Any]
    ) -> None:
        held: DeliveredMessage | None = None  # a message the last batch had no room for
        while not self._stop.is_set():
            first = held or await self._next(inbox, closing, None)
            held = None
            if first is None:
                continue
            batch, held = await self._collect(first, inbox, closing, channel)
            if self._stop.is_set() and not batch:
                return
            if batch:
                await self._process(channel, batch, inbox)

    async def _next(
        self,
        inbox: asyncio.Queue[DeliveredMessage],
        closing: asyncio.Future[Any],
        timeout: float | None,
    ) -> DeliveredMessage | None:
        """The next delivery, or None on stop or timeout; raises when the connection ends."""
        if not inbox.empty():
            return inbox.get_nowait()
        if closing.done():
            raise closing.exception() or aiormq.exceptions.ConnectionClosed(0, "closed")
        getter = asyncio.ensure_future(inbox.get())
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait(
                {getter, stopper, closing}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        if closing.done() and not self._stop.is_set():
            raise closing.exception() or aiormq.exceptions.ConnectionClosed(0, "closed")
        return None

    async def _collect(
        self,
        first: DeliveredMessage,
        inbox: asyncio.Queue[DeliveredMessage],
        closing: asyncio.Future[Any],
        channel: Any,
    ) -> tuple[list[tuple[DeliveredMessage, dict[str, Any]]], DeliveredMessage | None]:
        """Up to BatchSize messages within the window and 6 MB; (batch, held over)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._window
        room = EVENT_MAX_BYTES - envelope_bytes(self._arn, self._key)
        batch: list[tuple[DeliveredMessage, dict[str, Any]]] = []
        message: DeliveredMessage | None = first
        while message is not None:
            item = record(message.header.properties, message.body, bool(message.redelivered))
            size = record_bytes(item)
            if size > EVENT_MAX_BYTES - envelope_bytes(self._arn, self._key):
                await self._drop(channel, message, size)
            elif size > room:
                return batch, message
            else:
                batch.append((message, item))
                room -= size
            if len(batch) >= self._batch_size or self._stop.is_set():
                break
            remaining = deadline - loop.time()
            if remaining <= 0 and inbox.empty():
                break
            message = await self._next(inbox, closing, max(remaining, 0))
        if self._stop.is_set():
            return [], None  # not acked: the broker requeues them when the connection closes
        return batch, None

    async def _drop(self, channel: Any, message: DeliveredMessage, size: int) -> None:
        log.warning(
            "mapping %s: a message of %d bytes is too large for an invocation; rejected "
            "without requeue (the broker dead-letters it if the queue says so)",
            self._mapping.uuid,
            size,
        )
        self._ctx.count(self._mapping, POLLED_EVENT_COUNT)
        self._ctx.count(self._mapping, DROPPED_EVENT_COUNT)
        await channel.basic_reject(message.delivery_tag, requeue=False)

    async def _process(
        self,
        channel: Any,
        batch: list[tuple[DeliveredMessage, dict[str, Any]]],
        inbox: asyncio.Queue[DeliveredMessage],
    ) -> None:
        mapping, ctx = self._mapping, self._ctx
        ctx.count(mapping, POLLED_EVENT_COUNT, len(batch))
        kept, dropped = self._filter.split(
            batch, lambda pair: with_data(pair[1], "data", json_base64(pair[1]["data"]))
        )
        for message, _ in dropped:
            await channel.basic_ack(message.delivery_tag)
        ctx.count(mapping, FILTERED_OUT_EVENT_COUNT, len(dropped))
        if not kept:
            return
        payload = event(self._arn, self._key, [item for _, item in kept])
        ctx.count(mapping, INVOKED_EVENT_COUNT, len(kept))
        result = await ctx.invoker.invoke(mapping, payload)
        last_tag = max(message.delivery_tag or 0 for message, _ in kept)
        if result.returned:
            await channel.basic_ack(last_tag, multiple=True)
            self._failures = 0
            await ctx.record_result(mapping, PROCESSING_OK)
            return
        await self._failed(channel, result, len(kept), last_tag, inbox)

    async def _failed(
        self,
        channel: Any,
        result: BatchResult,
        count: int,
        last_tag: int,
        inbox: asyncio.Queue[DeliveredMessage],
    ) -> None:
        """Requeue the batch and everything behind it (so it comes back first), then wait."""
        mapping, ctx = self._mapping, self._ctx
        self._errors += 1
        self._failures += 1
        ctx.count(mapping, FAILED_INVOKE_EVENT_COUNT, count)
        while not inbox.empty():
            last_tag = max(last_tag, inbox.get_nowait().delivery_tag or 0)
        await channel.basic_nack(last_tag, multiple=True, requeue=True)
        if result.kind == GONE:
            text = FUNCTION_NOT_FOUND
        elif result.kind == THROTTLED:
            text = THROTTLED_RESULT
        else:
            text = FUNCTION_CALL_FAILED
        self._last_error = result.error or text
        await ctx.record_result(mapping, text)
        log.warning(
            "mapping %s: invocation %s failed (%s); %d messages requeued",
            mapping.uuid,
            result.request_id,
            result.error or result.kind,
            count,
        )
        pause = min(ctx.backoff_s * 2 ** (self._failures - 1), _BACKOFF_MAX_S)
        await self._pause(pause)

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short by `stop()`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
