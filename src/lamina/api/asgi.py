"""The ASGI entry point: Lamina's own endpoints under `/_lamina/`, everything else to AWS's APIs.

The AWS endpoint needs no routing or middleware from a framework (it routes by the service
model and turns every error into an AWS-shaped response itself), so requests go straight to
it; the handful of Lamina endpoints and the lifespan go through a Starlette router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import Receive, Scope, Send

_INTERNAL_PREFIX = "/_lamina/"


class LaminaApp:
    def __init__(
        self, aws_endpoint: Callable[[Request], Awaitable[Response]], internal: Router
    ) -> None:
        self._aws = aws_endpoint
        self._internal = internal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_INTERNAL_PREFIX):
            await self._internal(scope, receive, send)
            return
        response = await self._aws(Request(scope, receive))
        await response(scope, receive, send)
