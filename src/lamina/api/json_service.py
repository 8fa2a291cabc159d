"""The AWS JSON protocol (1.0/1.1): `POST /` with `X-Amz-Target: <Prefix>.<Operation>`.

EventBridge and CloudWatch Logs speak it. Their requests are parsed, validated and
answered from the botocore model, the same way `RestJsonService` serves Lambda's API, so a
service family only writes handlers that take and return the model's members.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from botocore.model import OperationModel, ServiceModel
from starlette.requests import Request
from starlette.responses import Response

from lamina.api.auth import SigV4Verifier
from lamina.api.context import Handler
from lamina.api.dispatch import AuditedEndpoint, as_async, read_body
from lamina.api.model_service import verify_signature
from lamina.api.protocol import from_json, json_object, to_json
from lamina.api.validation import validate
from lamina.audit.record import ApiCall
from lamina.audit.trail import AuditTrail
from lamina.constants import HEADER_REQUEST_ID
from lamina.errors import LaminaError, UnknownOperation

log = logging.getLogger("lamina.api")


class JsonService(AuditedEndpoint):
    """Serves every operation of one JSON-protocol service model that has a handler."""

    def __init__(
        self,
        model: ServiceModel,
        handlers: Mapping[str, Handler],
        verifier: SigV4Verifier | None,
        audit: AuditTrail | None = None,
    ) -> None:
        self.model = model
        self.target_prefix: str = model.metadata["targetPrefix"]
        self._content_type = f"application/x-amz-json-{model.metadata.get('jsonVersion', '1.1')}"
        self._handlers = {name: as_async(handler) for name, handler in handlers.items()}
        self._verifier = verifier
        self._audit = audit

    async def _handle(self, request: Request, call: ApiCall) -> Response:
        target = request.headers.get("x-amz-target", "")
        prefix, _, name = target.partition(".")
        if request.method != "POST" or prefix != self.target_prefix:
            raise UnknownOperation(f"Unsupported operation target: {target!r}")
        body = await read_body(request)
        if self._verifier is not None:
            verify_signature(self._verifier, request, body)
            call.verified = True
        handler = self._handlers.get(name)
        if handler is None:
            raise UnknownOperation(f"Operation {name!r} is not supported by Lamina")
        call.operation = name
        operation = self.model.operation_model(name)
        params = self._parse(operation, body)
        call.params = params
        validate(operation.input_shape, params)
        result = await handler(params)
        if isinstance(result, Response):
            return result
        shape = operation.output_shape
        document = to_json(shape, result) if shape is not None and result else {}
        return Response(orjson.dumps(document), media_type=self._content_type)

    @staticmethod
    def _parse(operation: OperationModel, body: bytes) -> dict[str, Any]:
        shape = operation.input_shape
        if shape is None:
            return {}
        document = json_object(body) if body.strip() else {}
        parsed: dict[str, Any] = from_json(shape, document, "")
        return parsed

    def _error(self, error: LaminaError, request_id: str) -> Response:
        code = error.code
        status = error.status if error.status >= 500 else 400
        if code in self.model.shape_names:
            status = (
                self.model.shape_for(code).metadata.get("error", {}).get("httpStatusCode", status)
            )
        body: dict[str, Any] = {"__type": code, "message": error.message}
        body.update(error.fields)
        return Response(
            orjson.dumps(body),
            status_code=status,
            headers={HEADER_REQUEST_ID: request_id, **error.headers},
            media_type=self._content_type,
        )
