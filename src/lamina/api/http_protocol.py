"""uvicorn's httptools protocol, with a response's writes leaving the process together, and
synchronous Invokes handed to their fast path.

uvicorn writes a response's status line and headers when the app starts the response and
the body when it sends it: two `send` system calls, and for a keep-alive client two
wake-ups, per response. On the invoke hot path that second write costs as much as the rest
of the platform's HTTP handling, so writes made during one step of the event loop are held
and written once, at the end of that step. Nothing waits longer: the flush is the next
callback the loop runs.

A request a fast path claims once its headers are parsed (a synchronous Invoke:
`lamina.api.fast_invoke`; a buffered function URL request: `lamina.api.fast_urls`) never
becomes an ASGI request: its body is gathered here and its whole response written in one
piece. uvicorn's per-request state (`cycle`) holds a stand-in meanwhile, so that a lost
connection, a shutdown and a pipelined next request are handled as for any other request.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lamina.api.fast_invoke import InvokeFastPath, http_response
from lamina.api.fast_urls import UrlFastPath

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
_URL_HOST_MARK = b".lambda-url."
_URL_PATH_PREFIX = b"/lambda-url/"


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

    __slots__ = (
        "body",
        "disconnected",
        "keep_alive",
        "message_event",
        "response_complete",
        "serve",
    )

    def __init__(self, serve: Callable[[bytes], Awaitable[Answer]]) -> None:
        self.serve = serve  # the answer to the request, given its body
        self.body: list[bytes] = []
        self.response_complete = False
        self.disconnected = False
        self.keep_alive = True  # uvicorn clears it to close the connection after the response
        self.message_event = _UNWAITED


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        *args: Any,
        fast_invoke: InvokeFastPath | None = None,
        fast_urls: UrlFastPath | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self._fast_invoke = fast_invoke
        self._fast_urls = fast_urls
        self._exchange: _FastExchange | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        loop = asyncio.get_running_loop()
        super().connection_made(_CoalescingTransport(transport, loop))  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        self._exchange = None
        if (
            (self.cycle is None or self.cycle.response_complete)
            and not self.expect_100_continue
            and self.limit_concurrency is None
            and not self.access_log
            and self.parser.get_http_version() == "1.1"
            and self.parser.should_keep_alive()
            and not self.parser.should_upgrade()
        ):
            self._exchange = self._fast_exchange()
            if self._exchange is not None:
                self.cycle = self._exchange  # type: ignore[assignment]
                return
        super().on_headers_complete()

    def _fast_exchange(self) -> _FastExchange | None:
        """The exchange of a request a fast path claims, None for the ASGI path."""
        method = self.parser.get_method()
        fast_invoke = self._fast_invoke
        if fast_invoke is not None:
            call = fast_invoke.claim(method, self.url, self.headers)
            if call is not None:
                client = self.client[0] if self.client else None
                return _FastExchange(lambda body: fast_invoke.respond(call, body, client))
        fast_urls = self._fast_urls
        if fast_urls is not None and self._names_function_url():
            scope = self._complete_scope(method)
            if fast_urls.claim(scope):
                return _FastExchange(lambda body: fast_urls.respond(scope, body))
        return None

    def _names_function_url(self) -> bool:
        if self.url.startswith(_URL_PATH_PREFIX):
            return True
        for name, value in self.headers:
            if name == b"host":
                return _URL_HOST_MARK in value
        return False

    def _complete_scope(self, method: bytes) -> Any:
        """The request's ASGI scope, as uvicorn completes it once the headers are in."""
        scope = self.scope
        scope["method"] = method.decode("ascii")
        parsed = httptools.parse_url(self.url)
        raw_path: bytes = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = parsed.query or b""
        return scope

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
        status, headers, payload = await exchange.serve(b"".join(exchange.body))
        if exchange.disconnected or self.transport.is_closing():
            return
        headers = [*self.server_state.default_headers, *headers]
        self.transport.write(http_response(status, headers, payload, not exchange.keep_alive))
        exchange.response_complete = True
        if not exchange.keep_alive:
            self.transport.close()
        self.on_response_complete()
