"""One environment's Runtime API endpoint: AWS's contract over a lean asyncio HTTP server.

It sits on the invoke hot path, so it parses HTTP with httptools directly rather than going
through an ASGI stack, and hands payload bytes through without decoding them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import httptools
import orjson

from lamina.constants import (
    RUNTIME_API_PREFIX,
    RUNTIME_HEADER_CLIENT_CONTEXT,
    RUNTIME_HEADER_COGNITO_IDENTITY,
    RUNTIME_HEADER_DEADLINE,
    RUNTIME_HEADER_ERROR_BODY,
    RUNTIME_HEADER_ERROR_TYPE,
    RUNTIME_HEADER_FUNCTION_ARN,
    RUNTIME_HEADER_REQUEST_ID,
    RUNTIME_HEADER_RESPONSE_MODE,
    RUNTIME_HEADER_TRACE_ID,
    STREAM_RESPONSE_MAX_BYTES,
    SYNC_PAYLOAD_MAX_BYTES,
)
from lamina.sandbox.peercred import peer_uid

log = logging.getLogger("lamina.sandbox")

_NEXT = f"{RUNTIME_API_PREFIX}/invocation/next".encode()
_INVOCATION = f"{RUNTIME_API_PREFIX}/invocation/".encode()
_INIT_ERROR = f"{RUNTIME_API_PREFIX}/init/error".encode()
_ACCEPTED = b'{"status":"OK"}'
_REASONS = {202: b"Accepted", 400: b"Bad Request", 404: b"Not Found", 413: b"Payload Too Large"}
# Header names as `on_header` stores them (lower-cased), looked up on every request.
_RESPONSE_MODE = RUNTIME_HEADER_RESPONSE_MODE.lower().encode()
_ERROR_TYPE = RUNTIME_HEADER_ERROR_TYPE.lower().encode()
_ERROR_BODY = RUNTIME_HEADER_ERROR_BODY.lower().encode()


@dataclass
class Invocation:
    """One event handed to the runtime, and what it answered."""

    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str | None = None
    client_context: str | None = None
    cognito_identity: str | None = None
    outcome: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    # Streaming responses are delivered chunk by chunk when a consumer is attached.
    stream: asyncio.Queue[bytes | None] | None = None

    def event_headers(self) -> bytes:
        lines = [
            b"HTTP/1.1 200 OK",
            b"Content-Type: application/json",
            f"Content-Length: {len(self.payload)}".encode(),
            f"{RUNTIME_HEADER_REQUEST_ID}: {self.request_id}".encode(),
            f"{RUNTIME_HEADER_DEADLINE}: {self.deadline_ms}".encode(),
            f"{RUNTIME_HEADER_FUNCTION_ARN}: {self.function_arn}".encode(),
        ]
        if self.trace_id:
            lines.append(f"{RUNTIME_HEADER_TRACE_ID}: {self.trace_id}".encode())
        if self.client_context:
            lines.append(f"{RUNTIME_HEADER_CLIENT_CONTEXT}: {self.client_context}".encode())
        if self.cognito_identity:
            lines.append(f"{RUNTIME_HEADER_COGNITO_IDENTITY}: {self.cognito_identity}".encode())
        return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass(frozen=True)
class Outcome:
    """What the runtime reported for an invocation."""

    body: bytes
    error_type: str | None = None
    # Set when the runtime tried to return more than the synchronous limit.
    oversize: int | None = None

    @property
    def failed(self) -> bool:
        return self.error_type is not None or self.oversize is not None


def _run_first_event_hook(hook: Callable[[], None]) -> None:
    try:
        hook()
    except Exception:
        log.exception("a hook on a runtime's first event failed")


class RuntimeChannel:
    """The state one environment's Runtime API shares between HTTP requests and the platform."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.initialized: asyncio.Future[Outcome | None] = loop.create_future()
        self._waiting: Callable[[Invocation], None] | None = None
        self._queued: Invocation | None = None
        self.current: Invocation | None = None
        # Set by sandboxes that run the environment as a uid of its own: connections from
        # any other uid (another environment) are refused.
        self.peer_uid: int | None = None
        # Run once the runtime has its first event (None once they have run).
        self._first_event_hooks: list[Callable[[], None]] | None = []

    # -- platform side ---------------------------------------------------------------

    def deliver(self, invocation: Invocation) -> None:
        """Hand `invocation` to the runtime: now if it is waiting on /next, else when it asks."""
        self.current = invocation
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting(invocation)
            if self._first_event_hooks is not None:  # every invocation passes here
                self._handed_over()
        else:
            self._queued = invocation

    def on_first_event(self, hook: Callable[[], None]) -> None:
        """Run `hook` once the runtime has been handed its first event, right after the
        event was written: in the same step of the event loop when the runtime was waiting
        for it, else in the next one, once the request it answers has been read (at once
        if the event went out already). A hook that fails is logged; the event stands."""
        if self._first_event_hooks is None:
            _run_first_event_hook(hook)
        else:
            self._first_event_hooks.append(hook)

    def _handed_over(self) -> None:
        hooks, self._first_event_hooks = self._first_event_hooks, None
        for hook in hooks or ():
            _run_first_event_hook(hook)

    # -- runtime side ----------------------------------------------------------------

    def want_next(self, send: Callable[[Invocation], None]) -> None:
        if not self.initialized.done():
            self.initialized.set_result(None)
        if self._queued is not None:
            invocation, self._queued = self._queued, None
            send(invocation)
            if self._first_event_hooks is not None:
                # Called while the runtime's request is parsed: its event goes out at the
                # end of that (see `RuntimeApiProtocol.data_received`), before the hooks.
                asyncio.get_running_loop().call_soon(self._handed_over)
        else:
            self._waiting = send

    def init_failed(self, outcome: Outcome) -> None:
        if not self.initialized.done():
            self.initialized.set_result(outcome)

    def finish(self, request_id: str, outcome: Outcome) -> bool:
        current = self.current
        if current is None or current.request_id != request_id or current.outcome.done():
            return False
        current.outcome.set_result(outcome)
        return True


class RuntimeApiProtocol(asyncio.Protocol):
    """One runtime connection (the runtime keeps it alive across invocations)."""

    def __init__(self, channel: RuntimeChannel) -> None:
        self._channel = channel
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._streaming: Invocation | None = None
        # Replies written while a batch of requests is parsed, and whether that batch ended
        # with a GET /next still waiting for an event (see `data_received`).
        self._feeding = False
        self._held: list[bytes] = []
        self._parked = False
        # Replies to requests that arrived behind a waiting GET /next go out after its event.
        self._behind: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        expected = self._channel.peer_uid
        if (
            expected is not None
            and peer_uid(transport.get_extra_info("peername"), transport.get_extra_info("sockname"))
            != expected
        ):
            transport.close()
            return
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Parse a batch of requests; replies go out together at the end of the batch.

        A runtime that pipelines its response with the next GET /next (Lamina's Python
        runtime does) does not need the 202 before its next event: the reply is held and
        written with that event, one write and one wake-up of the runtime instead of two.
        A runtime that waits for the 202 before asking again gets it at once, as before.
        """
        if self._transport is None:
            return
        self._feeding = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reply(400, b'{"errorMessage":"Upgrade not supported","errorType":"BadRequest"}')
        except httptools.HttpParserError:
            self._parked = False
            self._reply(400, b'{"errorMessage":"Malformed request","errorType":"BadRequest"}')
            self._flush()
            if self._transport is not None:
                self._transport.close()
        finally:
            self._feeding = False
        if self._held and not self._parked:
            self._flush()

    def _write(self, data: bytes) -> None:
        if self._parked:
            self._behind.append(data)
        elif self._feeding:
            self._held.append(data)
        elif self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _flush(self) -> None:
        held, self._held = b"".join(self._held), []
        if held and self._transport is not None and not self._transport.is_closing():
            self._transport.write(held)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._size = 0
        self._streaming = None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        mode = self._headers.get(_RESPONSE_MODE)
        if mode == b"streaming" and self._url.endswith(b"/response"):
            request_id = self._url[len(_INVOCATION) : -len(b"/response")].decode()
            current = self._channel.current
            if current is not None and current.request_id == request_id and current.stream:
                self._streaming = current

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._streaming is not None and self._streaming.stream is not None:
            if self._size <= STREAM_RESPONSE_MAX_BYTES:
                self._streaming.stream.put_nowait(body)
            return
        if self._size <= SYNC_PAYLOAD_MAX_BYTES:
            self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        url = self._url.split(b"?", 1)[0]
        if method == b"GET" and url == _NEXT:
            self._parked = True
            self._channel.want_next(self._send_event)
        elif method == b"POST" and url.startswith(_INVOCATION):
            self._invocation_result(url[len(_INVOCATION) :])
        elif method == b"POST" and url == _INIT_ERROR:
            self._channel.init_failed(self._error_outcome())
            self._reply(202, _ACCEPTED)
        else:
            self._reply(404, b'{"errorMessage":"Not found","errorType":"NotFound"}')

    # request handling
    def _invocation_result(self, rest: bytes) -> None:
        request_id, _, action = rest.decode("latin-1").partition("/")
        if action == "response":
            failed_midway = self._stream_error()
            if self._streaming is not None:
                assert self._streaming.stream is not None
                self._streaming.stream.put_nowait(None)
                outcome = failed_midway or Outcome(b"")
            elif failed_midway is not None:
                outcome = failed_midway
            elif self._size > SYNC_PAYLOAD_MAX_BYTES:
                outcome = Outcome(b"", oversize=self._size)
            else:
                outcome = Outcome(b"".join(self._body))
        elif action == "error":
            outcome = self._error_outcome()
        else:
            self._reply(404, b'{"errorMessage":"Not found","errorType":"NotFound"}')
            return
        if not self._channel.finish(request_id, outcome):
            self._reply(
                400,
                b'{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}',
            )
        elif outcome.oversize is not None:
            self._reply(
                413,
                orjson.dumps(
                    {
                        "errorMessage": "Exceeded maximum allowed payload size "
                        f"({SYNC_PAYLOAD_MAX_BYTES} bytes).",
                        "errorType": "RequestEntityTooLarge",
                    }
                ),
            )
        else:
            self._reply(202, _ACCEPTED)

    def _stream_error(self) -> Outcome | None:
        """A streamed response that failed after it began names the error in its trailers."""
        if self._headers.get(_RESPONSE_MODE) != b"streaming":
            return None
        error_type = self._headers.get(_ERROR_TYPE)
        if not error_type:
            return None
        try:
            body = base64.b64decode(self._headers.get(_ERROR_BODY, b""))
        except binascii.Error:
            body = b""
        return Outcome(body, error_type=error_type.decode("latin-1"))

    def _error_outcome(self) -> Outcome:
        body = b"".join(self._body)
        header = self._headers.get(_ERROR_TYPE, b"")
        # AWS's own runtime clients leave the header out on invocation errors; the body's
        # errorType is then the only word on what went wrong.
        return Outcome(body, error_type=header.decode("latin-1") or _body_error_type(body))

    def _send_event(self, invocation: Invocation) -> None:
        self._parked = False
        self._held += (invocation.event_headers(), invocation.payload, *self._behind)
        self._behind.clear()
        if not self._feeding:
            self._flush()

    def _reply(self, status: int, body: bytes) -> None:
        self._write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, _REASONS.get(status, b"OK"), len(body), body)
        )


def _body_error_type(body: bytes) -> str:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "Unknown"
    error_type = document.get("errorType") if isinstance(document, dict) else None
    return error_type if isinstance(error_type, str) and error_type else "Unknown"


async def serve_runtime_api(channel: RuntimeChannel, host: str = "127.0.0.1") -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: RuntimeApiProtocol(channel), host, 0)
