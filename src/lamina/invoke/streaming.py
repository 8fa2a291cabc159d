"""InvokeWithResponseStream: relaying a response as AWS event-stream messages while it is made.

The response body is `application/vnd.amazon.eventstream`: a sequence of binary messages, each

    total length (uint32) | headers length (uint32) | CRC32 of those 8 bytes
    headers: name length (uint8) | name | value type (7 = string) | value length (uint16) | value
    payload | CRC32 of everything before it

all big-endian. Lambda sends one `PayloadChunk` event per chunk the function produced (the
bytes are the message payload), then one `InvokeComplete` event whose JSON payload carries
`ErrorCode`, `ErrorDetails` and `LogResult`. Failures after the stream has begun (a function
error, a timeout) are reported in `InvokeComplete`; the HTTP status stays 200.

A function that does not stream is relayed too: its whole response is one `PayloadChunk`.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from lamina.constants import FUNCTION_ERROR_UNHANDLED
from lamina.errors import LaminaError
from lamina.sandbox.environment import InvokeOutcome

if TYPE_CHECKING:
    from lamina.invoke.engine import Engine
    from lamina.invoke.service import InvokeRequest, StreamStart

EVENT_STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7
_PRELUDE = struct.Struct(">II")


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string-valued headers."""
    encoded_headers = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded_headers += struct.pack(">B", len(raw_name)) + raw_name
        encoded_headers += struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    total = _PRELUDE.size + 4 + len(encoded_headers) + len(payload) + 4
    prelude = _PRELUDE.pack(total, len(encoded_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def payload_chunk(data: bytes) -> bytes:
    return encode_message(
        {
            ":event-type": "PayloadChunk",
            ":content-type": "application/octet-stream",
            ":message-type": "event",
        },
        data,
    )


def invoke_complete(
    error_code: str | None = None,
    error_details: str | None = None,
    log_result: str | None = None,
) -> bytes:
    members = {"ErrorCode": error_code, "ErrorDetails": error_details, "LogResult": log_result}
    return encode_message(
        {
            ":event-type": "InvokeComplete",
            ":content-type": "application/json",
            ":message-type": "event",
        },
        orjson.dumps({key: value for key, value in members.items() if value is not None}),
    )


def error_of(outcome: InvokeOutcome) -> tuple[str, str]:
    """`ErrorCode` and `ErrorDetails` for a failed invocation: its error type and message."""
    fallback = outcome.error_type or FUNCTION_ERROR_UNHANDLED
    try:
        error = orjson.loads(outcome.payload)
    except orjson.JSONDecodeError:
        error = None
    if not isinstance(error, dict):
        return fallback, outcome.payload.decode("utf-8", "replace")
    return str(error.get("errorType") or fallback), str(error.get("errorMessage", ""))


class ResponseStream:
    """One invocation, admitted by `open`, whose response is relayed as it is made.

    `open` raises what admission raises (not found, throttled), before any byte of the
    response is sent. The invocation then runs in its own task, so an abandoned stream (the
    client went away) still releases its environment and concurrency when the function ends.
    """

    def __init__(
        self,
        started: StreamStart,
        chunks: asyncio.Queue[bytes | None],
        tail: bool,
    ) -> None:
        self.executed_version = started.executed_version
        self._tail = tail
        self._chunks = chunks
        self._task = started.result

    @classmethod
    async def open(cls, engine: Engine, request: InvokeRequest, tail: bool) -> ResponseStream:
        """Admit `request` (raising what admission raises) and start it."""
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        return cls(await engine.open_stream(request, chunks), chunks, tail)

    async def messages(self) -> AsyncIterator[bytes]:
        """The encoded event-stream messages, each yielded as soon as it exists."""
        while (chunk := await self._next_chunk()) is not None:
            if chunk:
                yield payload_chunk(chunk)
        try:
            outcome = (await self._task).outcome
        except LaminaError as error:
            # The invocation was lost after the stream began (a cluster's worker died):
            # the stream still ends as AWS ends it, with the error in InvokeComplete.
            yield invoke_complete(error.code, error.message)
            return
        log_result = outcome.log_result if self._tail else None
        if outcome.function_error:
            code, details = error_of(outcome)
            yield invoke_complete(code, details, log_result)
            return
        if outcome.payload:
            # A function that answered in one piece (it did not stream).
            yield payload_chunk(outcome.payload)
        yield invoke_complete(log_result=log_result)

    async def _next_chunk(self) -> bytes | None:
        return await next_chunk(self._chunks, self._task)


async def next_chunk(
    chunks: asyncio.Queue[bytes | None], invocation: asyncio.Future[Any]
) -> bytes | None:
    """The next chunk a running invocation streamed, or None once its response (or the
    invocation itself, say by crashing before it ended the stream) is over."""
    if not chunks.empty():
        return chunks.get_nowait()
    if invocation.done():
        return None
    getter = asyncio.ensure_future(chunks.get())
    try:
        await asyncio.wait({getter, invocation}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
    if getter.done() and not getter.cancelled():
        return getter.result()
    return chunks.get_nowait() if not chunks.empty() else None
