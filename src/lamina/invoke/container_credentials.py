"""Container credentials for SnapStart: what a restored environment's SDK fetches, and refreshes.

A SnapStart version's init runs once and lives on in every environment restored from it, for
as long as the version is used: credentials read at init would expire under clients made
there. As on AWS, its snapshot and environments get no access-key variables but
`AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN`; every AWS SDK
then fetches the execution role's credentials from that address when it needs them, and
again before they expire.

The address is the Runtime API's, `http://127.0.0.1:9001/2021-04-23/credentials` (AWS's path),
inside each environment's own network namespace; where environments share the host's network
(the process backend, or network isolation off) it is one port on the host's loopback.
Requests without the version's token get a 404 with "cannot get credentials for the provided
token", the text of AWS's runtime interface emulator.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import cast

import httptools
import orjson

from lamina.model.iam import Session

log = logging.getLogger("lamina.invoke")

CREDENTIALS_PATH = "/2021-04-23/credentials"
FULL_URI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
AUTHORIZATION_TOKEN = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
# SDKs refresh credentials that expire within 15 minutes (botocore's advisory window): what
# is handed out always has longer left, so a refresh never gets the same ones back.
_FRESH_FOR_S = 30 * 60
# Without an IAM store (or a role) an environment's credentials are its own random ones,
# which nothing accepts; they still expire, as a session's would.
_UNSTORED_LIFETIME_S = 12 * 3600
_REFUSED = b"cannot get credentials for the provided token\n"
# What one version's code may hold of the endpoint: connections open at once, replies
# waiting on one connection (a client that pipelines requests without reading the answers
# is closed), and how long a connection may stay idle.
_CONNECTIONS_MAX = 64
_PENDING_MAX = 8
_IDLE_S = 60.0
_NOT_FOUND = b"404 page not found\n"


class ContainerCredentials:
    """The credentials endpoint of one SnapStart version: one token, its role's sessions."""

    def __init__(self, issue: Callable[[], Awaitable[Session | None]], address: str) -> None:
        self._issue = issue
        self._token = secrets.token_urlsafe(32).encode()
        self.variables = {
            FULL_URI: f"http://{address}{CREDENTIALS_PATH}",
            AUTHORIZATION_TOKEN: self._token.decode(),
        }
        self._current: tuple[bytes, float] | None = None  # the body handed out, its expiry
        self._issuing: asyncio.Task[tuple[bytes, float]] | None = None
        self._servers: set[asyncio.AbstractServer] = set()
        self.connections = 0

    async def serve(self, listener: socket.socket) -> Callable[[], None]:
        """Answer on `listener` (listening already) until the returned function is called."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _CredentialsProtocol(self), sock=listener)
        self._servers.add(server)

        def stop() -> None:
            if server in self._servers:
                self._servers.discard(server)
                server.close()

        return stop

    def close(self) -> None:
        for server in list(self._servers):
            server.close()
        self._servers.clear()
        if self._issuing is not None:
            self._issuing.cancel()

    def authorized(self, token: bytes | None) -> bool:
        return token is not None and secrets.compare_digest(token, self._token)

    async def body(self) -> bytes:
        """The credentials as SDKs read them, from a session with over 30 minutes left."""
        current = self._current
        if current is not None and current[1] - time.time() > _FRESH_FOR_S:
            return current[0]
        if self._issuing is None or self._issuing.done():
            self._issuing = asyncio.ensure_future(self._fresh())
        self._current = await asyncio.shield(self._issuing)
        return self._current[0]

    async def _fresh(self) -> tuple[bytes, float]:
        session = await self._issue()
        if session is None:
            expires = time.time() + _UNSTORED_LIFETIME_S
            key, secret = "LAMINAFUNCTION" + secrets.token_hex(3).upper(), secrets.token_urlsafe(30)
            token = secrets.token_urlsafe(60)
        else:
            expires = session.expires
            key, secret, token = session.access_key_id, session.secret, session.token
        body = {
            "AccessKeyId": key,
            "SecretAccessKey": secret,
            "Token": token,
            "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
        }
        return orjson.dumps(body), expires


class _CredentialsProtocol(asyncio.Protocol):
    """One connection: GET requests for the credentials, answered in order."""

    def __init__(self, endpoint: ContainerCredentials) -> None:
        self._endpoint = endpoint
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._token: bytes | None = None
        # Replies in request order; b"" closes the connection.
        self._replies: asyncio.Queue[asyncio.Future[bytes]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._endpoint.connections >= _CONNECTIONS_MAX:
            transport.close()
            return
        self._endpoint.connections += 1
        self._transport = cast(asyncio.Transport, transport)
        self._writer = asyncio.ensure_future(self._write_replies())
        self._idle = asyncio.get_running_loop().call_later(_IDLE_S, self._transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return  # refused in connection_made
        self._endpoint.connections -= 1
        self._transport = None
        if self._idle is not None:
            self._idle.cancel()
        if self._writer is not None:
            self._writer.cancel()
        while not self._replies.empty():
            self._replies.get_nowait().cancel()

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._reply(_response(400, b"Bad Request\n", b"text/plain; charset=utf-8"))
            self._reply(b"")

    def _reply(self, data: bytes) -> None:
        ready: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        ready.set_result(data)
        self._queue(ready)

    def _queue(self, reply: asyncio.Future[bytes]) -> None:
        if self._replies.qsize() >= _PENDING_MAX and self._transport is not None:
            reply.cancel()
            self._transport.abort()  # not close(): a client that does not read never drains
            return
        self._replies.put_nowait(reply)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._token = None
        if self._idle is not None:
            self._idle.cancel()
        if self._transport is not None:
            self._idle = asyncio.get_running_loop().call_later(_IDLE_S, self._transport.abort)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self._token = value

    def on_message_complete(self) -> None:
        path = self._url.split(b"?", 1)[0].decode("latin-1")
        if self._parser.get_method() != b"GET" or path != CREDENTIALS_PATH:
            self._reply(_response(404, _NOT_FOUND, b"text/plain; charset=utf-8"))
        elif not self._endpoint.authorized(self._token):
            self._reply(_response(404, _REFUSED, b"text/plain; charset=utf-8"))
        else:
            self._queue(asyncio.ensure_future(self._credentials()))
        if not self._parser.should_keep_alive():
            self._reply(b"")

    async def _credentials(self) -> bytes:
        try:
            return _response(200, await self._endpoint.body(), b"application/json")
        except Exception:
            log.exception("issuing container credentials failed")
            return _response(500, b"Internal Server Error\n", b"text/plain; charset=utf-8")

    async def _write_replies(self) -> None:
        while self._transport is not None:
            reply = await (await self._replies.get())
            if self._transport is None:
                return
            if not reply:
                self._transport.close()
                return
            self._transport.write(reply)


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 500: b"Internal Server Error"}


def _response(status: int, body: bytes, content_type: bytes) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
        status,
        _REASONS[status],
        content_type,
        len(body),
    )
    return head + body
