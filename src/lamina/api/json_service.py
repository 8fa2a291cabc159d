"""The AWS JSON protocol (1.0/1.1): `POST /` with `X-Amz-Target: <Prefix>.<Operation>`.

EventBridge, CloudWatch Logs and CloudWatch speak it. Their requests run the same pipeline
as every other front (`lamina.api.pipeline`), so a service family only writes handlers that
take and return the model's members.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from botocore.model import OperationModel, ServiceModel
from starlette.requests import Request
from starlette.responses import Response

from lamina.api.context import Handler
from lamina.api.pipeline import ModelService
from lamina.api.protocol import from_json, json_object, to_json
from lamina.audit.trail import AuditTrail
from lamina.constants import HEADER_REQUEST_ID, HEADER_TARGET
from lamina.errors import LaminaError, UnknownOperation
from lamina.identity.sigv4 import SigV4Verifier


class JsonService(ModelService):
    """Serves every operation of one JSON-protocol service model that has a handler."""

    def __init__(
        self,
        model: ServiceModel,
        handlers: Mapping[str, Handler],
        verifier: SigV4Verifier | None,
        audit: AuditTrail | None = None,
    ) -> None:
        super().__init__(model, handlers, verifier, audit)
        self.target_prefix: str = model.metadata["targetPrefix"]
        self._content_type = f"application/x-amz-json-{model.metadata.get('jsonVersion', '1.1')}"

    def locate(self, request: Request, body: bytes) -> tuple[str, None]:
        target = request.headers.get(HEADER_TARGET, "")
        prefix, _, name = target.partition(".")
        if request.method != "POST" or prefix != self.target_prefix:
            raise UnknownOperation(f"Unsupported operation target: {target!r}")
        return name, None

    def decode(
        self, operation: OperationModel, request: Request, body: bytes, located: None
    ) -> dict[str, Any]:
        shape = operation.input_shape
        if shape is None:
            return {}
        document = json_object(body) if body.strip() else {}
        parsed: dict[str, Any] = from_json(shape, document, "")
        return parsed

    def encode(
        self, operation: OperationModel, result: dict[str, Any], request_id: str
    ) -> Response:
        shape = operation.output_shape
        document = to_json(shape, result) if shape is not None and result else {}
        return Response(orjson.dumps(document), media_type=self._content_type)

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
