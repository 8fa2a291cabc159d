"""The one front door: every HTTP surface Lamina serves, routed from one table on one port.

A request goes to the first front that claims it:
1. a function URL: host `<url-id>.lambda-url.<region>.<anything>` or path `/lambda-url/<id>/`;
2. the service gateway, when the request is signed for a service Lamina does not serve (S3,
   DynamoDB, SQS…: `lamina.api.gateway`);
3. the web console under `/console`; Lamina's own endpoints under `/_lamina/`,
   `GET /metrics` (Prometheus) and the lifespan;
4. the AWS JSON protocol: `POST` with `X-Amz-Target: <prefix>.<Operation>`, by prefix
   (EventBridge, CloudWatch Logs, CloudWatch);
5. the AWS query protocol: a form `POST /`, by the service its signature names (CloudWatch);
6. Smithy RPC v2 CBOR: `POST /service/<name>/operation/<Operation>`, by name (CloudWatch);
7. otherwise Lambda's rest-json API.

The AWS fronts need no routing or middleware from a framework (they route by their service
model and turn every error into an AWS-shaped response themselves), so requests go straight
to them, and the checks above read the raw ASGI scope once. A call signed for Lambda (an
Invoke above all) is known for one at the cost of a substring test on the Authorization header
the JSON-front check reads anyway: the gateway costs the warm path nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from lamina.api.aws_query import FORM_CONTENT_TYPE
from lamina.api.rpcv2_cbor import PATH_PREFIX as CBOR_PREFIX
from lamina.constants import HEADER_TARGET, URL_PATH_PREFIX

if TYPE_CHECKING:
    from lamina.api.fast_invoke import InvokeFastPath
    from lamina.api.gateway import GatewaySetup

Endpoint = Callable[[Request], Awaitable[Response]]

INTERNAL_PREFIX = "/_lamina/"
# The web console's pages (no Lambda API path starts so: they start with a date).
CONSOLE_PREFIX = "/console"
# Prometheus' conventional scrape path, served by the internal front too.
METRICS_PATH = "/metrics"
URL_HOST_MARK = b".lambda-url."
_FORM = FORM_CONTENT_TYPE.encode()
_TARGET = HEADER_TARGET.lower().encode()
# The signing name in a SigV4 credential scope: `Credential=<key>/<date>/<region>/<name>/...`.
_SIGNING_NAME = re.compile(rb"Credential=[^/]*/\d{8}/[^/]*/([^/]+)/")
# What a Lambda-signed request's Authorization header holds (the end of its credential scope).
LAMBDA_SCOPE = b"/lambda/aws4_request,"


class Gateway(Protocol):
    """Where calls for services Lamina does not serve go (`lamina.api.gateway`)."""

    @property
    def setup(self) -> GatewaySetup: ...

    def destination(self, scope: Scope) -> tuple[str, str] | None: ...

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, destination: tuple[str, str]
    ) -> None: ...

    def closing(self, send: Send) -> Send: ...


@dataclass(frozen=True)
class Fronts:
    """Every front, each a thin adapter over a domain service."""

    lambda_api: Endpoint
    internal: ASGIApp
    json_targets: Mapping[str, Endpoint] = field(default_factory=dict)
    query_services: Mapping[str, Endpoint] = field(default_factory=dict)
    cbor_services: Mapping[str, Endpoint] = field(default_factory=dict)
    function_urls: ASGIApp | None = None
    console: ASGIApp | None = None  # the web console, under CONSOLE_PREFIX


def is_function_url(scope: Scope) -> bool:
    if scope["path"].startswith(URL_PATH_PREFIX):
        return True
    for name, value in scope["headers"]:
        if name == b"host":
            return URL_HOST_MARK in value
    return False


class FrontDoor:
    """The ASGI application: routes each request to its front (see the module's list)."""

    def __init__(
        self,
        fronts: Fronts,
        gateway: Gateway | None = None,
        fast_invoke: InvokeFastPath | None = None,
    ) -> None:
        """`fast_invoke` is for the HTTP protocol to offer requests to, before they become
        ASGI requests (see `lamina.api.http_protocol`)."""
        self.gateway = gateway
        self.fast_invoke = fast_invoke
        self._lambda = fronts.lambda_api
        self._internal = fronts.internal
        self._function_urls = fronts.function_urls
        self._console = fronts.console
        # Keyed by bytes, to match raw header values and path segments without decoding.
        self._json = {prefix.encode(): end for prefix, end in fronts.json_targets.items()}
        self._query = {name.encode(): end for name, end in fronts.query_services.items()}
        self._cbor = dict(fronts.cbor_services)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self.gateway
        if scope["type"] != "http":
            if gateway is not None and scope["type"] == "lifespan":
                send = gateway.closing(send)
            await self._internal(scope, receive, send)
            return
        if self._function_urls is not None and is_function_url(scope):
            # A function URL is the function's, whatever service its caller signed for.
            await self._function_urls(scope, receive, send)
            return
        path: str = scope["path"]
        endpoint = None
        if scope["method"] == "POST":
            endpoint, authorization = self._aws_front(scope, path)
        else:
            authorization = _authorization(scope)
        # Worth asking the gateway: presigned (in the query), or signed for another service.
        signed_elsewhere = (
            scope.get("query_string")
            if authorization is None
            else LAMBDA_SCOPE not in authorization
        )
        if gateway is not None and signed_elsewhere:
            destination = gateway.destination(scope)
            if destination is not None:
                await gateway.forward(scope, receive, send, destination)
                return
        if self._console is not None and path.startswith(CONSOLE_PREFIX):
            await self._console(scope, receive, send)
            return
        if path.startswith(INTERNAL_PREFIX) or (path == METRICS_PATH and scope["method"] == "GET"):
            await self._internal(scope, receive, send)
            return
        response = await (endpoint or self._lambda)(Request(scope, receive))
        await response(scope, receive, send)

    def _aws_front(self, scope: Scope, path: str) -> tuple[Endpoint | None, bytes | None]:
        """The JSON, query or CBOR front a POST is for (None for Lambda's rest-json API),
        and its Authorization header."""
        target = content_type = authorization = None
        for name, value in scope["headers"]:
            if name == _TARGET:
                target = value
            elif name == b"content-type":
                content_type = value
            elif name == b"authorization" and authorization is None:
                authorization = value  # the first, as for other methods (`_authorization`)
        if target is not None:
            return self._json.get(target.partition(b".")[0]), authorization
        if path == "/" and content_type is not None and content_type.startswith(_FORM):
            return self._query_front(authorization), authorization
        if path.startswith(CBOR_PREFIX):
            return self._cbor.get(path[len(CBOR_PREFIX) :].partition("/")[0]), authorization
        return None, authorization

    def _query_front(self, authorization: bytes | None) -> Endpoint | None:
        if authorization is not None and (found := _SIGNING_NAME.search(authorization)):
            return self._query.get(found.group(1))
        # An unsigned query call can only mean the one query service there is.
        return next(iter(self._query.values())) if len(self._query) == 1 else None


def _authorization(scope: Scope) -> bytes | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"authorization":
            return value
    return None
