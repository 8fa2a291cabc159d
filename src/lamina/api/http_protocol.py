"""uvicorn's httptools protocol, with a response's writes leaving the process together, and
synchronous Invokes handed to their fast path.

uvicorn writes a response's status line and headers when the app starts the response and
the body when it sends it: two `send` system calls, and for a keep-alive client two
wake-ups, per response. On the invoke hot path that second write costs as much as the rest
of the platform's HTTP handling, so writes made during one step of the event loop are held
and written once, at the end of that step. Nothing waits longer: the flush is the next
callback the loop runs.

A request `lamina.api.fast_invoke` claims once its headers are parsed never becomes an ASGI
request: its body is gathered here and its whole response written in one piece. uvicorn's
per-request state (`cycle`) holds a stand-in meanwhile, so that a lost connection, a
shutdown and a pipelined next request are handled as for any other request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from lamina.api.fast_invoke import FastCall, InvokeFastPath
from lamina.sandbox.after_answer import AfterAnswer


class _CoalescingTransport:
    """Delegates to a transport, joining the writes of one loop step into one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data)

    def write_now(self, data: bytes) -> None:
        """Write `data` at once, behind anything held: an answer that work left until after
        it must not wait for (see `AfterAnswer`)."""
        if self._held:
            self._held.append(data)
            data = b"".join(self._held)
            self._held.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def _flush(self) -> None:
        if self._held:
            data = b"".join(self._held) if len(self._held) > 1 else self._held[0]
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Unwaited:
    """uvicorn sets a cycle's message event on disconnect; nothing waits on this one."""

    def set(self) -> None:
        pass


_UNWAITED = _Unwaited()


class _FastExchange:
    """What uvicorn's protocol reads of a request cycle, for a request the fast path serves."""

    __slots__ = ("body", "call", "disconnected", "keep_alive", "message_event", "response_complete")

    def __init__(self, call: FastCall) -> None:
        self.call = call
        self.body: list[bytes] = []
        self.response_complete = False
        self.disconnected = False
        self.keep_alive = True  # uvicorn clears it to close the connection after the response
        self.message_event = _UNWAITED


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, fast_invoke: InvokeFastPath | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._fast_invoke = fast_invoke
        self._exchange: _FastExchange | None = None
        self._coalescing: _CoalescingTransport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._coalescing = _CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(self._coalescing)  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        self._exchange = None
        fast = self._fast_invoke
        if (
            fast is not None
            and (self.cycle is None or self.cycle.response_complete)
            and not self.expect_100_continue
            and self.limit_concurrency is None
            and not self.access_log
            and self.parser.get_http_version() == "1.1"
            and self.parser.should_keep_alive()
            and not self.parser.should_upgrade()
        ):
            call = fast.claim(self.parser.get_method(), self.url, self.headers)
            if call is not None:
                self._exchange = _FastExchange(call)
                self.cycle = self._exchange  # type: ignore[assignment]
                return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._exchange is not None:
            self._exchange.body.append(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        exchange = self._exchange
        if exchange is None:
            super().on_message_complete()
            return
        task = self.loop.create_task(self._answer(exchange))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer(self, exchange: _FastExchange) -> None:
        try:
            await self._answer_now(exchange)
        except BaseException:
            # As uvicorn does for an app that fails: no half answer on a kept-alive connection.
            self.transport.close()
            raise

    async def _answer_now(self, exchange: _FastExchange) -> None:
        after = AfterAnswer(self.loop)
        try:
            await self._write_answer(exchange, after)
        finally:
            # In the step that wrote the answer: no other request's work comes first.
            after.run()

    async def _write_answer(self, exchange: _FastExchange, after: AfterAnswer) -> None:
        assert self._fast_invoke is not None
        body = b"".join(exchange.body)
        client = self.client[0] if self.client else None
        status, headers, payload = await self._fast_invoke.respond(
            exchange.call, body, client, after
        )
        if self.flow.write_paused and not exchange.disconnected:
            # A client not reading its answers holds up the next, as on the ASGI path; not
            # the invocation's own bookkeeping, which other requests may be waiting on (its
            # environment and concurrency slot): that goes first, before the wait.
            after.run()
            await self.flow.drain()
        if exchange.disconnected or self.transport.is_closing():
            return
        headers = [*self.server_state.default_headers, *headers]
        assert self._coalescing is not None
        self._coalescing.write_now(http_response(status, headers, payload, not exchange.keep_alive))
        exchange.response_complete = True
        if not exchange.keep_alive:
            self.transport.close()
        self.on_response_complete()


def http_response(
    status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes, closing: bool
) -> bytes:
    """The response's bytes, as uvicorn writes a response with a Content-Length."""
    parts = [STATUS_LINE[status]]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if closing:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    return b"".join(parts)
