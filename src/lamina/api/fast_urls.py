"""Function URLs' fast path: a buffered function URL request answered without an ASGI cycle.

The function URL endpoint (`lamina.api.function_urls`) already does its own routing and
encoding; what it pays on top is uvicorn's per-request machinery (a task and a request cycle,
the proxy-headers middleware, header validation on the way out) and the front door's routing.
The HTTP protocol (`lamina.api.http_protocol`) offers a function URL request here once its
headers are parsed; a claimed one runs the same endpoint, with the body handed over whole and
the response gathered and written in one piece.

Claimed is a request to a URL that answers buffered (streaming URLs write as they go, and
stay on the ASGI path), over keep-alive HTTP/1.1, not HEAD, without `Expect`, a chunked body
or the forwarding headers uvicorn's middleware would apply.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Scope

from lamina.api.function_urls import REQUEST_BODY_MAX_BYTES, RESPONSE_STREAM, FunctionUrlEndpoint
from lamina.function_urls.addresses import locate

_GENERIC_ONLY = {b"x-forwarded-for", b"x-forwarded-proto", b"forwarded", b"expect"}
_DISCONNECT: Message = {"type": "http.disconnect"}


class UrlFastPath:
    def __init__(self, endpoint: FunctionUrlEndpoint) -> None:
        self._endpoint = endpoint

    def claim(self, scope: Scope) -> bool:
        """Whether this path serves a function URL request (its scope as uvicorn makes it)."""
        if scope["method"] == "HEAD":
            return False  # uvicorn sends a HEAD answer's headers without its body
        for name, value in scope["headers"]:
            if name in _GENERIC_ONLY or name == b"transfer-encoding":
                return False
            if name == b"content-length" and not (
                value.isdigit() and int(value) <= REQUEST_BODY_MAX_BYTES
            ):
                return False  # refused 413 there, with the rest of the body left unread
        address = locate(scope)
        if address is None:
            return True  # answered 403 at once
        target = self._endpoint.target(address.url_id)
        return target is None or target.config.invoke_mode != RESPONSE_STREAM

    async def respond(
        self, scope: Scope, body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """(status, headers, body) of the endpoint's answer to a claimed request."""
        messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        answer: dict[str, Any] = {"status": 500, "headers": [], "body": []}

        async def receive() -> Message:
            return messages.pop() if messages else _DISCONNECT

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = [(name.lower(), value) for name, value in message["headers"]]
            else:
                answer["body"].append(message.get("body", b""))

        await self._endpoint(scope, receive, send)
        return answer["status"], answer["headers"], b"".join(answer["body"])
