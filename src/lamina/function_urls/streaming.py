"""InvokeMode RESPONSE_STREAM: the body goes to the client chunk by chunk as it is written.

As on AWS, the function's output is the body itself (there is no response mapping), unless
it begins with an HTTP prelude: a JSON object with `statusCode`, `headers` and `cookies`,
then eight NUL bytes, then the body. Node writes one with `awslambda.HttpResponseStream.from`
(under the content type `application/vnd.awslambda.http-integration-response`). Lamina's
Runtime API does not hand that content type on to stream consumers, so the prelude is
recognised by its shape instead: only a stream whose first byte is `{` is held back, and only
until that first JSON object is complete (or 64 KiB have arrived) and the bytes after it
show whether the NUL separator follows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from lamina.function_urls.responses import (
    CONTENT_TYPE,
    Headers,
    MalformedResponse,
    cookie_headers,
    header_pairs,
)
from lamina.invoke.engine import Engine
from lamina.invoke.service import InvokeRequest, InvokeResult, StreamStart
from lamina.invoke.streaming import next_chunk

log = logging.getLogger("lamina.function_urls")

SEPARATOR = b"\x00" * 8
PRELUDE_MAX_BYTES = 64 * 1024
STREAM_CONTENT_TYPE = b"application/octet-stream"


class PreludeSplitter:
    """Splits an optional prelude off the start of a stream, whatever the chunk boundaries."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._object_end: int | None = None
        self.decided = False
        self.prelude: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Body bytes that may be sent now (empty while the start is still undecided)."""
        if self.decided:
            return chunk
        self._buffer += chunk
        if not self._buffer:
            return b""
        if self._buffer[:1] != b"{":
            return self._decide(None, 0)
        if self._object_end is None:
            self._scan()
        end = self._object_end
        if end is not None:
            after = bytes(self._buffer[end : end + len(SEPARATOR)])
            if after == SEPARATOR:
                return self._decide(self._parse(end), end + len(SEPARATOR))
            if after != SEPARATOR[: len(after)]:
                return self._decide(None, 0)
        if len(self._buffer) > PRELUDE_MAX_BYTES:
            return self._decide(None, 0)
        return b""

    def finish(self) -> bytes:
        """At the end of the stream: whatever is still held back is body."""
        return b"" if self.decided else self._decide(None, 0)

    def _decide(self, prelude: dict[str, Any] | None, body_start: int) -> bytes:
        self.decided = True
        self.prelude = prelude
        body = bytes(self._buffer[body_start:]) if prelude is not None else bytes(self._buffer)
        self._buffer = bytearray()
        return body

    def _parse(self, end: int) -> dict[str, Any] | None:
        try:
            value = orjson.loads(bytes(self._buffer[:end]))
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def _scan(self) -> None:
        """Find where the leading JSON object ends, resuming where the last chunk stopped."""
        buffer = self._buffer
        for index in range(self._scanned, len(buffer)):
            byte = buffer[index]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif byte == 0x5C:  # backslash
                    self._escaped = True
                elif byte == 0x22:  # quote
                    self._in_string = False
            elif byte == 0x22:
                self._in_string = True
            elif byte in (0x7B, 0x5B):  # { [
                self._depth += 1
            elif byte in (0x7D, 0x5D):  # } ]
                self._depth -= 1
                if self._depth == 0:
                    self._object_end = index + 1
                    return
        self._scanned = len(buffer)


def prelude_response(
    prelude: dict[str, Any] | None, dropped: list[str], content_type: bytes = STREAM_CONTENT_TYPE
) -> tuple[int, Headers]:
    """Status and headers a prelude sets; without one, 200 and `content_type`."""
    if prelude is None:
        return 200, [(CONTENT_TYPE, content_type)]
    status = prelude.get("statusCode", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedResponse(
            f"the stream's prelude has 'statusCode' {status!r}, not an integer from 100 to 599"
        )
    headers = header_pairs(prelude.get("headers"), dropped)
    if not any(name == CONTENT_TYPE for name, _ in headers):
        headers.append((CONTENT_TYPE, content_type))
    return status, headers + cookie_headers(prelude.get("cookies"), dropped)


def _log_crash(task: asyncio.Task[InvokeResult]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("an abandoned streamed invocation failed", exc_info=task.exception())


class LiveInvocation:
    """An invocation admitted by `open` whose streamed chunks are read as they come.

    `open` raises what admission raises (throttled, not found) before any byte is
    sent. The invocation runs in a task of its own, so a client that goes away does not cut
    it short: it still ends, and releases its environment, as it would have.
    """

    def __init__(self, started: StreamStart, chunks: asyncio.Queue[bytes | None]) -> None:
        self._chunks = chunks
        self._task = started.result

    @classmethod
    async def open(cls, engine: Engine, request: InvokeRequest) -> LiveInvocation:
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        return cls(await engine.open_stream(request, chunks), chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Each non-empty chunk the function streamed, as soon as it arrives."""
        while (chunk := await self._next()) is not None:
            if chunk:
                yield chunk

    async def result(self) -> InvokeResult:
        return await self._task

    def abandon(self) -> None:
        """Stop reading: the invocation still runs to its end, and a crash in it is logged
        rather than lost with the unread task."""
        self._task.add_done_callback(_log_crash)

    async def _next(self) -> bytes | None:
        return await next_chunk(self._chunks, self._task)
