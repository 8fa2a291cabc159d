"""What every model-driven AWS endpoint does, whatever its wire protocol.

Read the body, check the SigV4 signature, find the operation and its handler, decode and
validate the input against the botocore model, call the handler (a blocking one in a
thread), encode the result; `AuditedEndpoint` adds the request id, the catch-all error and
the audit record. Subclasses supply the protocol: how the operation is named, how members
are decoded and encoded, and how errors look (`_error`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.model import OperationModel, ServiceModel
from starlette.requests import Request
from starlette.responses import Response

from lamina.api.auth import SigV4Verifier
from lamina.api.context import Handler, current_request_id
from lamina.api.dispatch import AuditedEndpoint, as_async, read_body
from lamina.api.validation import validate
from lamina.audit.record import ApiCall
from lamina.audit.trail import AuditTrail
from lamina.errors import LaminaError, UnknownOperation


def verify_signature(verifier: SigV4Verifier | None, request: Request, body: bytes) -> None:
    if verifier is None:
        return
    scope = request.scope
    headers = {key.lower(): value for key, value in request.headers.items()}
    verifier.verify(
        request.method,
        headers.get("host", ""),
        scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
        scope.get("query_string", b"").decode("latin-1"),
        headers,
        body,
    )


def query_error_code(error: LaminaError, model: ServiceModel) -> tuple[str, int, str]:
    """(code, HTTP status, fault) as the `query` protocol names an error: the model's
    `error.code` for a modelled shape (`InvalidParameterValueException` is
    `InvalidParameterValue`), else the name without its `Exception` suffix."""
    status = error.status if error.status >= 500 else 400
    fault = "Receiver" if status >= 500 else "Sender"
    if error.code in model.shape_names:
        meta = model.shape_for(error.code).metadata.get("error", {})
        return meta.get("code", error.code), meta.get("httpStatusCode", status), fault
    if error.code == "ValidationException":
        return "ValidationError", 400, fault
    return error.code.removesuffix("Exception"), status, fault


class ModelService(AuditedEndpoint):
    """The skeleton of one protocol front for one service model."""

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

    async def _handle(self, request: Request, call: ApiCall) -> Response:
        body = await read_body(request)
        if self._verifier is not None:
            verify_signature(self._verifier, request, body)
            call.verified = True
        name = self.operation_name(request, body)
        handler = self._handlers.get(name)
        if handler is None:
            raise UnknownOperation(f"Operation {name!r} is not supported by Lamina")
        call.operation = name
        operation = self.model.operation_model(name)
        params = self.decode(operation, request, body)
        call.params = params
        validate(operation.input_shape, params)
        result = await handler(params)
        if isinstance(result, Response):
            return result
        return self.encode(operation, result or {}, current_request_id.get())

    def operation_name(self, request: Request, body: bytes) -> str:
        raise NotImplementedError

    def decode(self, operation: OperationModel, request: Request, body: bytes) -> dict[str, Any]:
        raise NotImplementedError

    def encode(
        self, operation: OperationModel, result: dict[str, Any], request_id: str
    ) -> Response:
        raise NotImplementedError
