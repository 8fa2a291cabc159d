"""The Runtime API as a runtime sees it, over a real socket: /next, /response, /error,
/init/error, their headers and status codes (AWS's contract, see lambda-behaviour.md §3)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from lamina.constants import SYNC_PAYLOAD_MAX_BYTES
from lamina.sandbox.runtime_api import (
    Invocation,
    Outcome,
    RuntimeChannel,
    _body_error_type,
    serve_runtime_api,
)

PREFIX = "/2018-06-01/runtime"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:fn:live"
ACCEPTED = (202, b'{"status":"OK"}')
INVALID_ID = (400, b'{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}')
NOT_FOUND = (404, b'{"errorMessage":"Not found","errorType":"NotFound"}')

Response = tuple[int, dict[str, str], bytes]


class Runtime:
    """A runtime's side of one keep-alive connection, speaking raw HTTP/1.1."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @staticmethod
    def encode(
        method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> bytes:
        lines = [f"{method} {PREFIX}{path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if method == "POST" and "Transfer-Encoding" not in (headers or {}):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def send(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.writer.write(self.encode(method, path, body, headers))
        await self.writer.drain()

    async def response(self, timeout: float = 5) -> Response:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        assert status_line.startswith("HTTP/1.1 ")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(": ")
            headers[name.lower()] = value
        body = await self.reader.readexactly(int(headers["content-length"]))
        return int(status_line.split()[1]), headers, body

    async def call(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        await self.send(method, path, body, headers)
        status, _, answer = await self.response()
        return status, answer

    async def nothing_yet(self, wait: float = 0.2) -> bool:
        """True when no byte arrives within `wait` seconds (a request is being held)."""
        try:
            await asyncio.wait_for(self.reader.read(1), wait)
        except TimeoutError:
            return True
        return False


@contextlib.asynccontextmanager
async def runtime_api(
    channel: RuntimeChannel | None = None,
) -> AsyncIterator[tuple[RuntimeChannel, Runtime]]:
    channel = channel or RuntimeChannel()
    server = await serve_runtime_api(channel)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield channel, Runtime(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        server.close()
        await server.wait_closed()


def run(scenario: Callable[[RuntimeChannel, Runtime], Awaitable[None]]) -> None:
    async def main() -> None:
        async with runtime_api() as (channel, runtime):
            await scenario(channel, runtime)

    asyncio.run(main())


def invocation(request_id: str = "req-1", payload: bytes = b'{"n":1}', **extra: str) -> Invocation:
    return Invocation(
        request_id=request_id,
        payload=payload,
        deadline_ms=1_700_000_000_123,
        function_arn=ARN,
        **extra,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------------- /next


def test_next_waits_for_an_event_then_delivers_it_with_its_headers() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        await runtime.send("GET", "/invocation/next")
        assert await runtime.nothing_yet()
        # Asking for the first event is how a runtime says init is over.
        assert channel.initialized.done()
        assert channel.initialized.result() is None
        channel.deliver(
            invocation(
                trace_id="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=1;Sampled=1",
                client_context='{"custom":{"k":"v"}}',
                cognito_identity='{"cognitoIdentityId":"id"}',
            )
        )
        status, headers, body = await runtime.response()
        assert status == 200
        assert body == b'{"n":1}'
        assert headers == {
            "content-type": "application/json",
            "content-length": "7",
            "lambda-runtime-aws-request-id": "req-1",
            "lambda-runtime-deadline-ms": "1700000000123",
            "lambda-runtime-invoked-function-arn": ARN,
            "lambda-runtime-trace-id": (
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=1;Sampled=1"
            ),
            "lambda-runtime-client-context": '{"custom":{"k":"v"}}',
            "lambda-runtime-cognito-identity": '{"cognitoIdentityId":"id"}',
        }

    run(scenario)


def test_optional_event_headers_are_left_out() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        channel.deliver(invocation(payload=b""))
        await runtime.send("GET", "/invocation/next")
        status, headers, body = await runtime.response()
        assert (status, body) == (200, b"")
        assert set(headers) == {
            "content-type",
            "content-length",
            "lambda-runtime-aws-request-id",
            "lambda-runtime-deadline-ms",
            "lambda-runtime-invoked-function-arn",
        }

    run(scenario)


def test_an_event_delivered_first_waits_for_next() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        channel.deliver(invocation("early"))
        await runtime.send("GET", "/invocation/next?ignored=1")
        status, headers, _ = await runtime.response()
        assert (status, headers["lambda-runtime-aws-request-id"]) == (200, "early")

    run(scenario)


# ----------------------------------------------------------------------------- /response


def test_response_is_accepted_and_becomes_the_outcome() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        event = invocation()
        channel.deliver(event)
        await runtime.call("GET", "/invocation/next")
        assert await runtime.call("POST", "/invocation/req-1/response", b'{"ok":true}') == ACCEPTED
        assert event.outcome.result() == Outcome(b'{"ok":true}')
        assert not event.outcome.result().failed

    run(scenario)


def test_response_for_another_request_id_is_refused() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        event = invocation()
        channel.deliver(event)
        await runtime.call("GET", "/invocation/next")
        assert await runtime.call("POST", "/invocation/other/response", b"{}") == INVALID_ID
        assert not event.outcome.done()
        assert await runtime.call("POST", "/invocation/req-1/response", b"1") == ACCEPTED
        # The invocation is settled: a second answer is refused and changes nothing.
        assert await runtime.call("POST", "/invocation/req-1/response", b"2") == INVALID_ID
        assert event.outcome.result().body == b"1"

    run(scenario)


def test_response_with_no_invocation_in_flight_is_refused() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        assert await runtime.call("POST", "/invocation/req-1/response", b"{}") == INVALID_ID

    run(scenario)


def test_a_response_over_the_limit_is_refused_with_413() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        event = invocation()
        channel.deliver(event)
        await runtime.call("GET", "/invocation/next")
        size = SYNC_PAYLOAD_MAX_BYTES + 1
        status, body = await runtime.call("POST", "/invocation/req-1/response", b"x" * size)
        assert status == 413
        assert json.loads(body) == {
            "errorMessage": f"Exceeded maximum allowed payload size ({SYNC_PAYLOAD_MAX_BYTES} "
            "bytes).",
            "errorType": "RequestEntityTooLarge",
        }
        assert event.outcome.result() == Outcome(b"", oversize=size)
        assert event.outcome.result().failed

    run(scenario)


def test_a_response_at_the_limit_is_accepted() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        event = invocation()
        channel.deliver(event)
        await runtime.call("GET", "/invocation/next")
        body = b"x" * SYNC_PAYLOAD_MAX_BYTES
        assert await runtime.call("POST", "/invocation/req-1/response", body) == ACCEPTED
        assert event.outcome.result().body == body

    run(scenario)


# -------------------------------------------------------------------------------- /error


def test_error_takes_its_type_from_the_header() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        event = invocation()
        channel.deliver(event)
        await runtime.call("GET", "/invocation/next")
        body = b'{"errorMessage":"boom","errorType":"ValueError","stackTrace":[]}'
        headers = {"Lambda-Runtime-Function-Error-Type": "Function.Custom"}
        assert await runtime.call("POST", "/invocation/req-1/error", body, headers) == ACCEPTED
        assert event.outcome.result() == Outcome(body, error_type="Function.Custom")

    run(scenario)


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        (b'{"errorMessage":"boom","errorType":"KeyError"}', "KeyError"),
        (b"not json", "Unknown"),
        (b"", "Unknown"),
    ],
)
def test_error_without_the_header_reads_the_type_from_the_body(
    body: bytes, error_type: str
) -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        event = invocation()
        channel.deliver(event)
        await runtime.call("GET", "/invocation/next")
        assert await runtime.call("POST", "/invocation/req-1/error", body) == ACCEPTED
        assert event.outcome.result() == Outcome(body, error_type=error_type)

    run(scenario)


def test_error_for_an_unknown_request_is_refused() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        event = invocation()
        channel.deliver(event)
        await runtime.call("GET", "/invocation/next")
        assert await runtime.call("POST", "/invocation/nope/error", b"{}") == INVALID_ID
        assert not event.outcome.done()

    run(scenario)


def test_error_types_in_bodies() -> None:
    assert _body_error_type(b'{"errorType": "ValueError", "errorMessage": "x"}') == "ValueError"
    assert _body_error_type(b'["a list"]') == "Unknown"
    assert _body_error_type(b'{"errorType": ""}') == "Unknown"
    assert _body_error_type(b'{"errorType": 3}') == "Unknown"


# --------------------------------------------------------------------------- /init/error


def test_init_error_ends_init_with_the_runtimes_error() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        body = b'{"errorMessage":"no module","errorType":"Runtime.ImportModuleError"}'
        headers = {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"}
        assert await runtime.call("POST", "/init/error", body, headers) == ACCEPTED
        assert channel.initialized.result() == Outcome(body, "Runtime.ImportModuleError")
        # Init is over: a later report changes nothing.
        await runtime.call("POST", "/init/error", b"{}")
        assert channel.initialized.result() == Outcome(body, "Runtime.ImportModuleError")

    run(scenario)


def test_init_error_after_next_does_not_undo_a_finished_init() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        channel.deliver(invocation())
        await runtime.call("GET", "/invocation/next")
        await runtime.call("POST", "/init/error", b"{}")
        assert channel.initialized.result() is None

    run(scenario)


# ---------------------------------------------------------------------------- the wire


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/invocation/req-1/response"),
        ("POST", "/invocation/next"),
        ("POST", "/invocation/req-1/whatever"),
        ("GET", "/restore/next"),
        ("GET", "/unknown"),
    ],
)
def test_other_paths_are_not_found(method: str, path: str) -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        channel.deliver(invocation())
        assert await runtime.call(method, path) == NOT_FOUND

    run(scenario)


def test_a_response_pipelined_with_next_comes_back_with_the_next_event() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        first = invocation("req-1")
        channel.deliver(first)
        await runtime.call("GET", "/invocation/next")
        runtime.writer.write(
            Runtime.encode("POST", "/invocation/req-1/response", b'"done"')
            + Runtime.encode("GET", "/invocation/next")
        )
        await runtime.writer.drain()
        assert (await first.outcome).body == b'"done"'
        # The 202 is held until the next event, then both arrive in request order.
        assert await runtime.nothing_yet()
        channel.deliver(invocation("req-2"))
        status, _, body = await runtime.response()
        assert (status, body) == ACCEPTED
        status, headers, _ = await runtime.response()
        assert (status, headers["lambda-runtime-aws-request-id"]) == (200, "req-2")

    run(scenario)


def test_a_malformed_request_gets_400_and_the_connection_closes() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        runtime.writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await runtime.writer.drain()
        status, _, body = await runtime.response()
        assert status == 400
        assert json.loads(body)["errorType"] == "BadRequest"
        assert await asyncio.wait_for(runtime.reader.read(), 5) == b""

    run(scenario)


def test_a_streamed_response_reaches_the_stream_chunk_by_chunk() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        stream: asyncio.Queue[bytes | None] = asyncio.Queue()
        event = invocation(stream=stream)  # type: ignore[arg-type]
        channel.deliver(event)
        await runtime.call("GET", "/invocation/next")
        headers = {
            "Lambda-Runtime-Function-Response-Mode": "streaming",
            "Transfer-Encoding": "chunked",
        }
        await runtime.send("POST", "/invocation/req-1/response", b"5\r\nhello\r\n", headers)
        assert await asyncio.wait_for(stream.get(), 5) == b"hello"
        runtime.writer.write(b"6\r\n world\r\n0\r\n\r\n")
        status, _, body = await runtime.response()
        assert (status, body) == ACCEPTED
        assert await stream.get() == b" world"
        assert await stream.get() is None
        assert event.outcome.result() == Outcome(b"")

    run(scenario)


def test_a_stream_that_fails_midway_names_its_error_in_trailers() -> None:
    async def scenario(channel: RuntimeChannel, runtime: Runtime) -> None:
        stream: asyncio.Queue[bytes | None] = asyncio.Queue()
        event = invocation(stream=stream)  # type: ignore[arg-type]
        channel.deliver(event)
        await runtime.call("GET", "/invocation/next")
        error = b'{"errorMessage":"late","errorType":"RuntimeError"}'
        headers = {
            "Lambda-Runtime-Function-Response-Mode": "streaming",
            "Transfer-Encoding": "chunked",
            "Trailer": "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
        }
        trailers = (
            "Lambda-Runtime-Function-Error-Type: RuntimeError\r\n"
            f"Lambda-Runtime-Function-Error-Body: {base64.b64encode(error).decode()}\r\n"
        ).encode()
        body = b"3\r\nabc\r\n0\r\n" + trailers + b"\r\n"
        assert await runtime.call("POST", "/invocation/req-1/response", body, headers) == ACCEPTED
        assert event.outcome.result() == Outcome(error, error_type="RuntimeError")
        assert [await stream.get(), await stream.get()] == [b"abc", None]

    run(scenario)


def test_only_the_environments_uid_may_connect() -> None:
    async def scenario() -> tuple[int, bytes]:
        channel = RuntimeChannel()
        channel.peer_uid = os.getuid()
        channel.deliver(invocation())
        async with runtime_api(channel) as (_, runtime):
            await runtime.send("GET", "/invocation/next")
            status, _, _ = await runtime.response()
        # Another uid (another environment) is closed on without a byte: it cannot probe.
        channel.peer_uid = os.getuid() + 1
        async with runtime_api(channel) as (_, runtime):
            await runtime.send("GET", "/invocation/next")
            refused = await asyncio.wait_for(runtime.reader.read(), 5)
        return status, refused

    assert asyncio.run(scenario()) == (200, b"")
