"""The ASGI entry point: one port for everything Lamina serves.

A request is, in order of the checks below:
- a function URL: host `<url-id>.lambda-url.<region>.<anything>` or path `/lambda-url/<url-id>/`;
- one of Lamina's own endpoints under `/_lamina/`, `GET /metrics` (Prometheus) and the
  lifespan, through a Starlette router;
- an AWS JSON-protocol call (`X-Amz-Target: <prefix>.<Operation>`: EventBridge, CloudWatch Logs);
- otherwise Lambda's rest-json API.

The AWS endpoints need no routing or middleware from a framework (they route by their service
model and turn every error into an AWS-shaped response themselves), so requests go straight
to them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]

_INTERNAL_PREFIX = "/_lamina/"
# Prometheus' conventional scrape path, served by the internal router too.
_METRICS_PATH = "/metrics"
URL_PATH_PREFIX = "/lambda-url/"
_URL_HOST_MARK = b".lambda-url."


def is_function_url(scope: Scope) -> bool:
    if scope["path"].startswith(URL_PATH_PREFIX):
        return True
    for name, value in scope["headers"]:
        if name == b"host":
            return _URL_HOST_MARK in value
    return False


def _target(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"x-amz-target":
            target: bytes = value
            return target
    return None


class LaminaApp:
    def __init__(
        self,
        aws_endpoint: Endpoint,
        internal: Router,
        json_services: Mapping[str, Endpoint] | None = None,
        function_urls: ASGIApp | None = None,
    ) -> None:
        self._aws = aws_endpoint
        self._internal = internal
        # Keyed by the target prefix as bytes, to match raw header values without decoding.
        self._json = {
            prefix.encode(): endpoint for prefix, endpoint in (json_services or {}).items()
        }
        self._function_urls = function_urls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._internal(scope, receive, send)
            return
        if self._function_urls is not None and is_function_url(scope):
            await self._function_urls(scope, receive, send)
            return
        if scope["path"].startswith(_INTERNAL_PREFIX) or (
            scope["path"] == _METRICS_PATH and scope["method"] == "GET"
        ):
            await self._internal(scope, receive, send)
            return
        endpoint = self._aws
        if self._json and scope["method"] == "POST":
            target = _target(scope)
            if target is not None:
                endpoint = self._json.get(target.partition(b".")[0], endpoint)
        response = await endpoint(Request(scope, receive))
        await response(scope, receive, send)
