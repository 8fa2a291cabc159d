"""The floor of a platform that speaks Lambda's Runtime API: an invoke relayed to a warm
runtime over HTTP, and nothing else.

Where `server.py` hands each event to its child as one line on a pipe, this server keeps
what the Runtime API makes every Lambda-compatible platform do: each runtime is a process of
its own that asks for its next event with `GET /2018-06-01/runtime/invocation/next` over a
TCP connection and posts the answer back, and a `bootstrap` written for Lambda runs
unmodified. The rest is as bare as the transport allows: uvloop and httptools (the C
parsers Lamina's server uses), callbacks rather than tasks, one write per message, a counter
for request ids. No API model, no isolation, no logs, no limits, no metrics.

Usage: python runtime_api_server.py CONFIG_JSON PORT, where CONFIG_JSON maps each function
name to {"argv": [...], "env": {...}}: the runtime's command and its variables, to which
`AWS_LAMBDA_RUNTIME_API` is added. Each runtime gets a listener of its own, as each
environment does on Lambda. Prints "serving" once it listens.
Standalone on purpose: it imports nothing from Lamina or the suite.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import cast

import httptools
import uvloop

INVOKE_PREFIX = b"/2015-03-31/functions/"
RUNTIME_PREFIX = b"/2018-06-01/runtime/"
# Lambda's deadline header is absolute; a floor never times out, so any distant time will do.
DEADLINE_MS = b"%d" % ((time.time() + 86_400) * 1000)

ACCEPTED = (
    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n"
    + (b'{"status":"OK"}')
)

Answer = Callable[[bytes, bytes], None]


def message(status: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (
        status,
        extra,
        len(body),
        body,
    )


class Runtime(asyncio.Protocol):
    """One runtime process and the Runtime API connection it holds (one at a time)."""

    def __init__(self, function: Function) -> None:
        self.function = function
        self.listener: asyncio.AbstractServer | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._body: list[bytes] = []
        self._answer: Answer | None = None
        # A `next` waits for an event.
        self._waiting = False
        # Replies held while a batch of requests is parsed: a runtime that pipelines its
        # answer with its next `next` gets the 202 with that event, in one write and one
        # wake-up (as Lamina does); one that waits for the 202 gets it at the batch's end.
        self._held: list[bytes] = []

    # asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's.
        self._transport = cast(asyncio.Transport, transport)
        self._parser = httptools.HttpRequestParser(self)
        self._waiting = False
        self._held.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()
            return
        if self._held and not self._waiting:
            self._write(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        # A runtime that reconnected has a new transport already: only its own loss counts.
        if self._transport is not None and self._transport.is_closing():
            self._transport = None
            self._waiting = False

    # httptools
    def on_message_begin(self) -> None:
        self._url = b""
        self._body.clear()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        url = self._url[len(RUNTIME_PREFIX) :]
        body = b"".join(self._body)
        if url == b"invocation/next":
            self._waiting = True
            self.function.ready(self)
            return
        self._held.append(ACCEPTED)  # written by `data_received` or with the next event
        if url == b"init/error":
            self.function.failed(body)
            return
        answer, self._answer = self._answer, None
        if answer is not None:
            answer(body, b"" if url.endswith(b"/response") else b"Unhandled")

    def invoke(self, request_id: bytes, event: bytes, answer: Answer) -> None:
        """Hand `event` to the runtime's waiting `next`; `answer` gets its reply."""
        assert self._waiting
        self._waiting = False
        self._answer = answer
        self._write(
            message(
                b"200 OK",
                event,
                b"Lambda-Runtime-Aws-Request-Id: %s\r\nLambda-Runtime-Deadline-Ms: %s\r\n"
                b"Lambda-Runtime-Invoked-Function-Arn: %s\r\n"
                % (request_id, DEADLINE_MS, self.function.arn),
            )
        )

    def _write(self, data: bytes) -> None:
        """`data` after any held replies, in one write."""
        if self._held:
            data = b"".join(self._held) + data
            self._held.clear()
        if self._transport is not None and data:
            self._transport.write(data)


class Function:
    """The warm runtimes of one function; a runtime serves one request at a time."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.env = env
        self.arn = b"arn:aws:lambda:us-east-1:000000000000:function:" + name.encode()
        self.ids = itertools.count(1)
        # Runtimes waiting in `next`, and events waiting for a runtime.
        self.idle: list[Runtime] = []
        self.pending: deque[tuple[bytes, Answer]] = deque()
        self.all: list[Runtime] = []
        self._starting: set[asyncio.Future[None]] = set()

    def invoke(self, event: bytes, answer: Answer) -> None:
        """Hand `event` to an idle runtime, or start one more for it."""
        if self.idle:
            self.idle.pop().invoke(b"%d" % next(self.ids), event, answer)
            return
        self.pending.append((event, answer))
        task = asyncio.ensure_future(self._start())
        self._starting.add(task)
        task.add_done_callback(self._started)

    def _started(self, task: asyncio.Future[None]) -> None:
        self._starting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failed(str(task.exception()).encode())

    def ready(self, runtime: Runtime) -> None:
        """`runtime` asks for its next event: the oldest waiting one, or it idles."""
        if self.pending:
            event, answer = self.pending.popleft()
            runtime.invoke(b"%d" % next(self.ids), event, answer)
        else:
            self.idle.append(runtime)

    def failed(self, error: bytes) -> None:
        """A runtime's init failed: the event that started it will not run."""
        if self.pending:
            _, answer = self.pending.popleft()
            answer(error, b"Unhandled")

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        runtime = Runtime(self)
        runtime.listener = await loop.create_server(lambda: runtime, "127.0.0.1", 0)
        port = runtime.listener.sockets[0].getsockname()[1]
        env = {**os.environ, **self.env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}"}
        runtime.process = subprocess.Popen(self.argv, env=env, stdout=subprocess.DEVNULL)
        self.all.append(runtime)

    def stop(self) -> None:
        for runtime in self.all:
            if runtime.listener is not None:
                runtime.listener.close()
            if runtime.process is not None:
                runtime.process.kill()
                runtime.process.wait()
        self.idle.clear()
        self.all.clear()


class Front(asyncio.Protocol):
    """A client's keep-alive connection; its requests are answered in order."""

    def __init__(self, functions: dict[bytes, Function]) -> None:
        self._functions = functions
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._body: list[bytes] = []
        # Requests parsed while an earlier one on this connection is still in a runtime.
        self._queued: deque[tuple[bytes, bytes, bytes]] = deque()
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def on_message_begin(self) -> None:
        self._url = b""
        self._body.clear()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        self._queued.append((method, self._url, b"".join(self._body)))
        if not self._busy:
            self._next()

    def _next(self) -> None:
        while self._queued and self._transport is not None:
            method, url, body = self._queued.popleft()
            if method == b"DELETE" and url.startswith(b"/functions/"):
                function = self._functions.get(url[len(b"/functions/") :])
                if function is not None:
                    function.stop()
                self._write(message(b"204 No Content", b""))
                continue
            name, _, rest = url[len(INVOKE_PREFIX) :].partition(b"/")
            function = self._functions.get(name)
            if not url.startswith(INVOKE_PREFIX) or rest != b"invocations" or function is None:
                self._write(message(b"404 Not Found", b'{"message":"not found"}'))
                continue
            self._busy = True
            function.invoke(body, self._answer)
            return

    def _answer(self, payload: bytes, error: bytes) -> None:
        self._busy = False
        extra = b"X-Amz-Function-Error: %s\r\n" % error if error else b""
        self._write(message(b"200 OK", payload, extra))
        self._next()

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)


async def serve(config: dict[str, dict[str, object]], port: int) -> None:
    functions = {
        name.encode(): Function(name, list(spec["argv"]), dict(spec.get("env", {})))  # type: ignore[call-overload]
        for name, spec in config.items()
    }
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Front(functions), "127.0.0.1", port)
    print("serving", flush=True)
    try:
        await server.serve_forever()
    finally:
        for function in functions.values():
            function.stop()


def main() -> None:
    with open(sys.argv[1]) as file:
        config = json.load(file)
    uvloop.run(serve(config, int(sys.argv[2])))


if __name__ == "__main__":
    main()
