"""The one request pipeline every AWS front runs, whatever its wire protocol.

Frame: a request id, errors in the service's own shape, one audit record. Inside it:
read the body, check the SigV4 signature, find the operation and its handler, decode and
validate the input against the botocore model, call the handler (a blocking one in a
worker thread), encode the result. A protocol subclass supplies only what differs: where
the operation is named (`locate`), how members are decoded and encoded, and how errors
look (`_error`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import anyio.to_thread
from botocore.model import OperationModel, ServiceModel
from starlette.requests import Request
from starlette.responses import Response

from lamina.api.context import Handler, current_caller, current_operation, current_request_id
from lamina.api.validation import validate
from lamina.audit.record import ApiCall
from lamina.audit.trail import AuditTrail
from lamina.constants import (
    HEADER_REQUEST_ID,
    MAX_REQUEST_BODY_BYTES,
    OPERATION_REQUEST_MAX_BYTES,
)
from lamina.errors import (
    IncompleteSignature,
    LaminaError,
    RequestEntityTooLarge,
    ServiceError,
    UnknownOperation,
)
from lamina.identity.sigv4 import Signer, SigV4Verifier
from lamina.request_ids import new_request_id

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


def operation_too_large(operation: str, limit: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(
        f"Request must be smaller than {limit} bytes for the {operation} operation"
    )


_SIGNED_ONCE = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")


def verify_signature(
    verifier: SigV4Verifier | None, request: Request, body: bytes
) -> Signer | None:
    """The request's verified signer (None in development mode, where nothing is checked)."""
    if verifier is None:
        return None
    # One of each: a second Authorization header would let a handler that reads the first
    # act for a key other than the one whose signature was checked.
    for name in _SIGNED_ONCE:
        if len(request.headers.getlist(name)) > 1:
            raise IncompleteSignature(f"The request carries more than one {name} header")
    scope = request.scope
    headers = {key.lower(): value for key, value in request.headers.items()}
    return verifier.authenticate(
        request.method,
        headers.get("host", ""),
        scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
        scope.get("query_string", b"").decode("latin-1"),
        headers,
        body,
    )


# The query protocol's names for the front door's refusals (IAM, STS, CloudWatch query),
# answered 403 like AWS, whatever a model lists under the same name (STS models an
# ExpiredTokenException of its own, for another case).
_QUERY_REFUSALS = {
    "UnrecognizedClientException": "InvalidClientTokenId",
    "InvalidSignatureException": "SignatureDoesNotMatch",
    "ExpiredTokenException": "ExpiredToken",
    "AccessDeniedException": "AccessDenied",
}


def query_error_code(error: LaminaError, model: ServiceModel) -> tuple[str, int, str]:
    """(code, HTTP status, fault) as the `query` protocol names an error: the model's
    `error.code` for a modelled shape (`InvalidParameterValueException` is
    `InvalidParameterValue`), else the name without its `Exception` suffix."""
    renamed = _QUERY_REFUSALS.get(error.code)
    if renamed is not None:
        return renamed, 403, "Sender"
    status = error.status if error.status >= 500 else 400
    fault = "Receiver" if status >= 500 else "Sender"
    if error.code in model.shape_names:
        meta = model.shape_for(error.code).metadata.get("error", {})
        return meta.get("code", error.code), meta.get("httpStatusCode", status), fault
    if error.code == "ValidationException":
        return "ValidationError", 400, fault
    return error.code.removesuffix("Exception"), status, fault


class ModelService:
    """One protocol front for one service model: the pipeline, with protocol hooks."""

    def __init__(
        self,
        model: ServiceModel,
        handlers: Mapping[str, Handler],
        verifier: SigV4Verifier | None,
        audit: AuditTrail | None = None,
    ) -> None:
        self.model = model
        self._handlers = {name: as_async(handler) for name, handler in handlers.items()}
        self._verifier = verifier
        self._audit = audit

    async def handle(self, request: Request) -> Response:
        request_id = new_request_id()
        current_request_id.set(request_id)
        call = ApiCall(self.model.endpoint_prefix)
        try:
            response = await self._serve(request, call)
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

    async def _serve(self, request: Request, call: ApiCall) -> Response:
        try:
            body = await read_body(request)
        except RequestEntityTooLarge as error:
            raise self._too_large(request, error) from None
        # The operation is found before the signature is checked, so that a refused call is
        # still audited with what it tried to do.
        name, located = self.locate(request, body)
        current_operation.set(name)
        limit = OPERATION_REQUEST_MAX_BYTES.get(name)
        if limit is not None and len(body) > limit:
            raise operation_too_large(name, limit)
        call.operation, call.params = name, self.params_so_far(located)
        signer = verify_signature(self._verifier, request, body)
        if signer is not None:
            call.verified = True
            call.caller = signer.caller.access_key_id
            current_caller.set(signer.caller)
        handler = self._handlers.get(name)
        if handler is None:
            call.operation = None
            raise UnknownOperation(f"Operation {name!r} is not supported by Lamina")
        operation = self.model.operation_model(name)
        params = self.decode(operation, request, body, located)
        call.params = params
        validate(operation.input_shape, params)
        authorizer = self._verifier.authorizer if self._verifier is not None else None
        if signer is not None and authorizer is not None:
            client = request.client
            authorizer.authorize(
                self.model.signing_name, name, params, signer, client.host if client else None
            )
        result = await handler(params)
        if isinstance(result, Response):
            # A handler that streams its answer (InvokeWithResponseStream) builds it itself.
            return result
        return self.encode(operation, result or {}, current_request_id.get())

    def _too_large(self, request: Request, error: RequestEntityTooLarge) -> LaminaError:
        """A body over the read limit, refused in the operation's own words when the
        operation can be found without the body (it can in rest-json, not in query)."""
        try:
            name, _ = self.locate(request, b"")
        except LaminaError:
            return error
        limit = OPERATION_REQUEST_MAX_BYTES.get(name)
        return operation_too_large(name, limit) if limit is not None else error

    # ------------------------------------------------------------ protocol hooks

    def locate(self, request: Request, body: bytes) -> tuple[str, Any]:
        """The operation's name, and whatever else the protocol read finding it."""
        raise NotImplementedError

    def params_so_far(self, located: Any) -> dict[str, Any]:
        """The input members known from finding the operation (for the audit record)."""
        return {}

    def decode(
        self, operation: OperationModel, request: Request, body: bytes, located: Any
    ) -> dict[str, Any]:
        raise NotImplementedError

    def encode(
        self, operation: OperationModel, result: dict[str, Any], request_id: str
    ) -> Response:
        raise NotImplementedError

    def error_response(self, error: LaminaError, request_id: str) -> Response:
        """The front's answer to `error`, as `handle` gives it."""
        return self._error(error, request_id)

    def _error(self, error: LaminaError, request_id: str) -> Response:
        raise NotImplementedError
