"""The ASGI endpoint that turns a signed AWS request into one handler call."""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast
from urllib.parse import parse_qs

import anyio.to_thread
from botocore.model import ServiceModel
from starlette.requests import Request
from starlette.responses import Response

from lamina.api.auth import SigV4Verifier
from lamina.api.context import Handler, current_request_id, current_trace_header
from lamina.api.errors import error_response
from lamina.api.protocol import parse_request, serialize_response
from lamina.api.routing import RestJsonRouter
from lamina.api.validation import validate
from lamina.audit.record import ApiCall
from lamina.audit.trail import AuditTrail
from lamina.constants import HEADER_REQUEST_ID, MAX_REQUEST_BODY_BYTES
from lamina.errors import LaminaError, RequestEntityTooLarge, ServiceError

log = logging.getLogger("lamina.api")

AsyncHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | Response | None]]


def as_async(handler: Handler) -> AsyncHandler:
    """The handler as a coroutine, decided once rather than inspected on every request
    (that showed up on the invoke path): async handlers (the invoke path) run on the event
    loop; control-plane handlers do blocking storage work, so they run in a worker thread."""
    if inspect.iscoroutinefunction(handler):
        return handler
    blocking = cast(Callable[[dict[str, Any]], dict[str, Any] | None], handler)

    async def in_thread(params: dict[str, Any]) -> dict[str, Any] | None:
        return await anyio.to_thread.run_sync(blocking, params)

    return in_thread


async def read_body(request: Request, limit: int = MAX_REQUEST_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestEntityTooLarge(f"Request must be smaller than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge(f"Request must be smaller than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class AuditedEndpoint:
    """The frame every AWS front puts around an operation: a request id, errors in the
    service's own shape, and one audit record. Subclasses serve the operation (`_handle`)
    and shape errors (`_error`) for their protocol."""

    model: ServiceModel
    _audit: AuditTrail | None

    async def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        current_request_id.set(request_id)
        call = ApiCall(self.model.endpoint_prefix)
        try:
            response = await self._handle(request, call)
        except LaminaError as error:
            call.error = error.code
            response = self._error(error, request_id)
        except Exception:
            log.exception("request %s failed", request_id)
            failure = ServiceError(f"An internal error occurred. Request id: {request_id}")
            call.error = failure.code
            response = self._error(failure, request_id)
        else:
            response.headers[HEADER_REQUEST_ID] = request_id
        if self._audit is not None:
            self._audit.record(call, request, request_id, response.status_code)
        return response

    async def _handle(self, request: Request, call: ApiCall) -> Response:
        raise NotImplementedError

    def _error(self, error: LaminaError, request_id: str) -> Response:
        raise NotImplementedError


class RestJsonService(AuditedEndpoint):
    """Serves every operation of one rest-json service model that has a handler."""

    def __init__(
        self,
        model: ServiceModel,
        handlers: Mapping[str, Handler],
        verifier: SigV4Verifier | None,
        audit: AuditTrail | None = None,
    ) -> None:
        self.model = model
        self._handlers = {name: as_async(handler) for name, handler in handlers.items()}
        self._router = RestJsonRouter(model, set(self._handlers))
        self._verifier = verifier
        self._audit = audit

    def _error(self, error: LaminaError, request_id: str) -> Response:
        return error_response(error, request_id, self.model)

    async def _handle(self, request: Request, call: ApiCall) -> Response:
        scope = request.scope
        raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        raw_query = scope.get("query_string", b"").decode("latin-1")
        query = parse_qs(raw_query, keep_blank_values=True)
        headers = {key.lower(): value for key, value in request.headers.items()}
        current_trace_header.set(headers.get("x-amzn-trace-id"))
        operation, path_params = self._router.match(request.method, raw_path, query)
        call.operation, call.params = operation.name, path_params
        body = await read_body(request)
        if self._verifier is not None:
            self._verifier.verify(
                request.method, headers.get("host", ""), raw_path, raw_query, headers, body
            )
            call.verified = True
        params = parse_request(operation, path_params, query, headers, body)
        call.params = params
        validate(operation.input_shape, params)
        result = await self._handlers[operation.name](params)
        if isinstance(result, Response):
            # A handler that streams its answer (InvokeWithResponseStream) builds it itself.
            return result
        status, response_headers, payload = serialize_response(operation, result)
        return Response(payload, status_code=status, headers=response_headers)
