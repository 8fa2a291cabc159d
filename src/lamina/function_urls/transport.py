"""The ASGI side: reading a size-limited request body; sending whole or streamed responses."""

from __future__ import annotations

import logging

from starlette.types import Receive, Send

from lamina.function_urls.responses import Headers, HttpResponse, merge

log = logging.getLogger("lamina.function_urls")


class ClientDisconnected(Exception):
    """The client went away before its request body arrived."""


async def read_body(receive: Receive, declared_length: str | None, limit: int) -> bytes | None:
    """The whole request body, or None when it is larger than `limit` bytes.

    A declared Content-Length over the limit is refused before reading anything.
    """
    if declared_length and declared_length.isdigit() and int(declared_length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Exchange:
    """One request's answer: where it goes, the headers Lamina adds, and how it is logged.

    `platform_headers` (request id, trace id, CORS) replace same-named headers from the
    function. `label` names the URL and request in log lines.
    """

    def __init__(self, send: Send, platform_headers: Headers, label: str) -> None:
        self._send = send
        self.platform_headers = platform_headers
        self.label = label

    async def respond(self, response: HttpResponse) -> None:
        """Send a whole response, with a Content-Length."""
        if response.dropped:
            self.dropped(response.dropped)
        body = response.body
        headers = merge(response.headers, self.platform_headers)
        headers.append((b"content-length", str(len(body)).encode()))
        await self._send(
            {"type": "http.response.start", "status": response.status, "headers": headers}
        )
        await self._send({"type": "http.response.body", "body": body})

    async def refuse(self, response: HttpResponse, reason: str) -> None:
        """Answer with one of Lamina's own error responses; the reason goes to the log only."""
        log.warning("%s: %d: %s", self.label, response.status, reason)
        await self.respond(response)

    async def start(self, status: int, headers: Headers) -> None:
        """Begin a response of unknown length (sent with chunked transfer encoding)."""
        headers = merge(headers, self.platform_headers)
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def chunk(self, body: bytes, *, last: bool = False) -> None:
        await self._send({"type": "http.response.body", "body": body, "more_body": not last})

    def dropped(self, names: list[str]) -> None:
        log.info(
            "%s: headers dropped (not representable in HTTP): %s", self.label, ", ".join(names)
        )
