"""Smithy RPC v2 CBOR: `POST /service/<target prefix>/operation/<Op>`, CBOR both ways.

The newest protocol AWS models list first (CloudWatch's model offers it before JSON and
query; SDKs pick the first one they implement). Members keep their model names, timestamps
are CBOR tag 1 (epoch seconds), and errors carry `__type` in the body plus, for services
that used to speak `query`, the old code in `x-amzn-query-error`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import cbor2
from botocore.model import OperationModel, Shape, StructureShape
from starlette.requests import Request
from starlette.responses import Response

from lamina.api.pipeline import ModelService, query_error_code
from lamina.api.protocol import from_json
from lamina.errors import InvalidRequestContent, LaminaError, UnknownOperation

PATH_PREFIX = "/service/"
SMITHY_PROTOCOL = "smithy-protocol"
PROTOCOL = "rpc-v2-cbor"
_CBOR = "application/cbor"
QUERY_ERROR_HEADER = "x-amzn-query-error"


class CborService(ModelService):
    """Serves a service model's operations over Smithy RPC v2 CBOR."""

    def locate(self, request: Request, body: bytes) -> tuple[str, None]:
        # /service/<ServiceName>/operation/<OperationName>
        path = request.scope["path"]
        parts = path.split("/")
        if len(parts) != 5 or parts[3] != "operation":
            raise UnknownOperation(f"Not an RPC v2 operation path: {path}")
        if parts[2] != self.model.metadata.get("targetPrefix"):
            raise UnknownOperation(f"Unknown service {parts[2]!r}")
        return parts[4], None

    def decode(
        self, operation: OperationModel, request: Request, body: bytes, located: None
    ) -> dict[str, Any]:
        shape = operation.input_shape
        if shape is None or not body:
            return {}
        try:
            document = cbor2.loads(body)
        except (cbor2.CBORDecodeError, ValueError) as error:
            raise InvalidRequestContent(f"Could not parse request body as CBOR: {error}") from None
        if not isinstance(document, dict):
            raise InvalidRequestContent("Could not parse request body as CBOR: not a map")
        # CBOR carries the same types JSON does, plus timestamps and bytes, which the JSON
        # decoder passes through (timestamps) or we check here (none of CloudWatch's reads
        # take bytes).
        decoded: dict[str, Any] = from_json(shape, document, "")
        return decoded

    def encode(
        self, operation: OperationModel, result: dict[str, Any], request_id: str
    ) -> Response:
        shape = operation.output_shape
        document = _plain(shape, result) if shape is not None else {}
        return Response(
            cbor2.dumps(document, datetime_as_timestamp=True),
            media_type=_CBOR,
            headers={SMITHY_PROTOCOL: PROTOCOL},
        )

    def _error(self, error: LaminaError, request_id: str) -> Response:
        code, status, fault = query_error_code(error, self.model)
        body = {"__type": error.code, "message": error.message, **error.fields}
        return Response(
            cbor2.dumps(body),
            status_code=status,
            headers={
                SMITHY_PROTOCOL: PROTOCOL,
                QUERY_ERROR_HEADER: f"{code};{fault}",
                **error.headers,
            },
            media_type=_CBOR,
        )


def _plain(shape: Shape, value: Any) -> Any:
    """The result as CBOR-ready values: members the model knows, no nulls, UTC datetimes."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        return {
            name: _plain(shape.members[name], item)
            for name, item in value.items()
            if name in shape.members and item is not None
        }
    if kind == "list":
        return [_plain(shape.member, item) for item in value]
    if kind == "map":
        return {key: _plain(shape.value, item) for key, item in value.items()}
    if kind == "timestamp" and not isinstance(value, datetime):
        return datetime.fromtimestamp(float(value), UTC)
    return value
