"""What every model-driven AWS endpoint does, whatever its wire protocol.

Read the body, check the SigV4 signature, find the operation and its handler, decode and
validate the input against the botocore model, call the handler (a blocking one in a
thread), encode the result. Subclasses supply the protocol: how the operation is named,
how members are decoded and encoded, and how errors look.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import anyio.to_thread
from botocore.model import OperationModel, ServiceModel
from starlette.requests import Request
from starlette.responses import Response

from lamina.api.auth import SigV4Verifier
from lamina.api.context import Handler, current_request_id
from lamina.api.dispatch import read_body
from lamina.api.validation import validate
from lamina.constants import HEADER_REQUEST_ID
from lamina.errors import LaminaError, ServiceError, UnknownOperation

log = logging.getLogger("lamina.api")


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


class ModelService:
    """The skeleton of one protocol front for one service model."""

    def __init__(
        self,
        model: ServiceModel,
        handlers: Mapping[str, Handler],
        verifier: SigV4Verifier | None,
    ) -> None:
        self.model = model
        self._handlers = dict(handlers)
        self._verifier = verifier

    async def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        current_request_id.set(request_id)
        try:
            body = await read_body(request)
            verify_signature(self._verifier, request, body)
            name = self.operation_name(request, body)
            handler = self._handlers.get(name)
            if handler is None:
                raise UnknownOperation(f"Operation {name!r} is not supported by Lamina")
            operation = self.model.operation_model(name)
            params = self.decode(operation, request, body)
            validate(operation.input_shape, params)
            if inspect.iscoroutinefunction(handler):
                result = await handler(params)
            else:
                result = await anyio.to_thread.run_sync(handler, params)
            response = self.encode(operation, result or {}, request_id)
        except LaminaError as error:
            return self.error(error, request_id)
        except Exception:
            log.exception("request %s failed", request_id)
            return self.error(
                ServiceError(f"An internal error occurred. Request id: {request_id}"), request_id
            )
        response.headers[HEADER_REQUEST_ID] = request_id
        return response

    def operation_name(self, request: Request, body: bytes) -> str:
        raise NotImplementedError

    def decode(self, operation: OperationModel, request: Request, body: bytes) -> dict[str, Any]:
        raise NotImplementedError

    def encode(
        self, operation: OperationModel, result: dict[str, Any], request_id: str
    ) -> Response:
        raise NotImplementedError

    def error(self, error: LaminaError, request_id: str) -> Response:
        raise NotImplementedError
