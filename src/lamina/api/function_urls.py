"""The ASGI app behind every function URL: find the URL, authorise, invoke, answer.

Lamina answers on its own account, with AWS's `{"Message": ...}` bodies: 403 for an unknown
URL, a missing permission or a bad signature; 413 for a request body over 6 MB; 429 when
the function is throttled; 502 when the function fails or returns something that is not a
response. The reason for each is logged (`lamina.function_urls`), never sent to the client.
Every response carries `x-amzn-RequestId`; invoked ones also `x-amzn-Trace-Id`.
"""

from __future__ import annotations

import logging
import time

from starlette.types import Receive, Scope, Send

from lamina.arns import Account, FunctionRef
from lamina.constants import HEADER_REQUEST_ID, HEADER_TRACE_ID, SYNC_PAYLOAD_MAX_BYTES
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.control.policies import PolicyService
from lamina.control.urls import FunctionUrlConfig
from lamina.errors import LaminaError, TooManyRequests
from lamina.function_urls.access import Forbidden, IamAuthenticator, IamCaller
from lamina.function_urls.addresses import UrlAddress, locate
from lamina.function_urls.cors import is_preflight
from lamina.function_urls.directory import UrlDirectory, UrlTarget
from lamina.function_urls.events import UrlRequest, build_event, join_headers
from lamina.function_urls.relay import failure_of, relay_stream
from lamina.function_urls.responses import (
    BAD_GATEWAY,
    FORBIDDEN,
    THROTTLED,
    TOO_LARGE,
    HttpResponse,
    MalformedResponse,
    map_response,
)
from lamina.function_urls.transport import ClientDisconnected, Exchange, read_body
from lamina.identity.sigv4 import SigV4Verifier
from lamina.invoke.engine import Engine
from lamina.invoke.service import InvokeRequest
from lamina.invoke.tracing import upstream_or_new
from lamina.request_ids import new_request_id

log = logging.getLogger("lamina.function_urls")

REQUEST_BODY_MAX_BYTES = 6 * 1024 * 1024
RESPONSE_STREAM = "RESPONSE_STREAM"
# As ASGI carries header names: lower-case bytes.
_REQUEST_ID = HEADER_REQUEST_ID.lower().encode()
_TRACE_ID = HEADER_TRACE_ID.lower().encode()


def _label(config: FunctionUrlConfig, request_id: str) -> str:
    qualifier = "" if config.alias is None else f":{config.alias}"
    return f"function URL {config.url_id} ({config.function_name}{qualifier}), request {request_id}"


def _public_access_hint(config: FunctionUrlConfig) -> str:
    target = config.function_name + (f" --qualifier {config.alias}" if config.alias else "")
    return (
        f"grant it with `aws lambda add-permission --function-name {target} --statement-id "
        "url-public --action lambda:InvokeFunctionUrl --principal '*' "
        "--function-url-auth-type NONE` and `aws lambda add-permission --function-name "
        f"{target} --statement-id url-invoke --action lambda:InvokeFunction --principal '*' "
        "--invoked-via-function-url`"
    )


class FunctionUrlEndpoint:
    """Serves every function URL on Lamina's one port."""

    def __init__(
        self,
        directory: UrlDirectory,
        authenticator: IamAuthenticator,
        engine: Engine,
        account: Account,
    ) -> None:
        self._directory = directory
        self._authenticator = authenticator
        self._engine = engine
        self._account = account

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        ids = [(_REQUEST_ID, request_id.encode())]
        address = locate(scope)
        target = self._directory.find(address.url_id) if address is not None else None
        if address is None or target is None:
            unknown = Exchange(send, ids, f"function URL request {request_id}")
            await unknown.refuse(FORBIDDEN, "no function URL config has this URL id")
            return
        headers = join_headers(scope["headers"])
        origin = headers.get("origin")
        cors = target.cors
        if cors is not None and is_preflight(scope["method"], headers):
            preflight = Exchange(send, cors.preflight(origin) + ids, "")
            await preflight.respond(HttpResponse(200, [], b""))
            return
        # With an allowed origin, browsers may read even Lamina's own error responses.
        exchange = Exchange(
            send,
            (cors.response(origin) if cors is not None else []) + ids,
            _label(target.config, request_id),
        )
        try:
            body = await read_body(receive, headers.get("content-length"), REQUEST_BODY_MAX_BYTES)
        except ClientDisconnected:
            return
        if body is None:
            await exchange.refuse(TOO_LARGE, f"the body is over {REQUEST_BODY_MAX_BYTES} bytes")
            return
        try:
            caller = self._authorize(target, scope, address, headers, body)
        except Forbidden as refusal:
            await exchange.refuse(FORBIDDEN, str(refusal))
            return
        # As a front door does: the caller's header, else a new root with no sampling
        # decision, so that a function with Active tracing makes its own.
        trace_id = upstream_or_new(headers.get(HEADER_TRACE_ID.lower()))
        event = self._event(scope, address, headers, body, request_id, trace_id, caller)
        if len(event) > SYNC_PAYLOAD_MAX_BYTES:
            await exchange.refuse(
                TOO_LARGE,
                f"the event the request makes ({len(event)} bytes; binary bodies grow by a "
                f"third in base64) is over the {SYNC_PAYLOAD_MAX_BYTES}-byte payload limit",
            )
            return
        config = target.config
        request = InvokeRequest(
            ref=FunctionRef(config.function_name, None),
            qualifier=config.alias,
            payload=event,
            trace_id=trace_id,
            request_id=request_id,
        )
        exchange.platform_headers.append((_TRACE_ID, trace_id.encode()))
        if config.invoke_mode == RESPONSE_STREAM:
            await relay_stream(self._engine, request, exchange)
        else:
            await self._buffered(request, exchange)

    def _authorize(
        self,
        target: UrlTarget,
        scope: Scope,
        address: UrlAddress,
        headers: dict[str, str],
        body: bytes,
    ) -> IamCaller | None:
        """The IAM identity of a signed request (AWS_IAM), None for a public one (NONE)."""
        config = target.config
        if config.auth_type == "AWS_IAM":
            # What the client signed: the path as sent, prefix included for path-based URLs.
            raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
            client = scope.get("client") or ("", 0)
            return self._authenticator.authenticate(
                scope["method"],
                address.host,
                raw_path.decode("latin-1"),
                scope["query_string"].decode("latin-1"),
                headers,
                body,
                function=(config.function_name, config.qualifier),
                source_ip=client[0] or None,
            )
        if not target.public:
            raise Forbidden(f"AuthType is NONE but {target.refusal}; {_public_access_hint(config)}")
        return None

    def _event(
        self,
        scope: Scope,
        address: UrlAddress,
        headers: dict[str, str],
        body: bytes,
        request_id: str,
        trace_id: str,
        caller: IamCaller | None,
    ) -> bytes:
        client = scope.get("client") or ("", 0)
        server = scope.get("server") or ("", 0)
        request = UrlRequest(
            method=scope["method"],
            address=address,
            query=scope["query_string"].decode("utf-8", "replace"),
            headers=headers,
            body=body,
            source_ip=client[0],
            protocol=f"HTTP/{scope.get('http_version', '1.1')}",
            scheme=scope.get("scheme", "http"),
            port=server[1] or 0,
        )
        return build_event(
            request,
            request_id=request_id,
            trace_id=trace_id,
            epoch_ms=int(time.time() * 1000),
            region=self._account.region,
            account_id=caller.account_id if caller is not None else "anonymous",
            authorizer=caller.authorizer() if caller is not None else None,
            strip_authorization=caller is not None,
        )

    async def _buffered(self, request: InvokeRequest, exchange: Exchange) -> None:
        try:
            result = await self._engine.invoke(request)
        except TooManyRequests as error:
            await exchange.refuse(THROTTLED, error.message)
            return
        except LaminaError as error:
            await exchange.refuse(BAD_GATEWAY, error.message)
            return
        outcome = result.outcome
        if outcome.function_error:
            await exchange.refuse(BAD_GATEWAY, f"the function failed: {failure_of(outcome)}")
            return
        try:
            response = map_response(outcome.payload)
        except MalformedResponse as why:
            await exchange.refuse(BAD_GATEWAY, f"the function's response is invalid: {why}")
            return
        await exchange.respond(response)


def function_url_endpoint(
    domain: Domain,
    functions: FunctionService,
    engine: Engine,
    verifier: SigV4Verifier | None,
) -> FunctionUrlEndpoint:
    """The endpoint for one Lamina process; `verifier` is the API's (None without credentials)."""
    directory = UrlDirectory(domain.stores.functions, PolicyService(domain, functions))
    authenticator = IamAuthenticator(verifier, domain.account.account_id)
    return FunctionUrlEndpoint(directory, authenticator, engine, domain.account)
