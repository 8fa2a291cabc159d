"""Lambda's rest-json protocol: the operation is named by method, path and query."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from botocore.model import OperationModel, ServiceModel
from starlette.requests import Request
from starlette.responses import Response

from lamina.api.context import Handler, current_trace_header
from lamina.api.errors import error_response
from lamina.api.pipeline import ModelService
from lamina.api.protocol import parse_request, serialize_response
from lamina.api.routing import RestJsonRouter
from lamina.audit.trail import AuditTrail
from lamina.constants import HEADER_TRACE_ID
from lamina.errors import LaminaError
from lamina.identity.sigv4 import SigV4Verifier

_TRACE_HEADER = HEADER_TRACE_ID.lower()
# What `locate` read from the request line and headers, reused to decode the input.
_Located = tuple[dict[str, str], dict[str, list[str]], dict[str, str]]


class RestJsonService(ModelService):
    """Serves every operation of one rest-json service model that has a handler."""

    def __init__(
        self,
        model: ServiceModel,
        handlers: Mapping[str, Handler],
        verifier: SigV4Verifier | None,
        audit: AuditTrail | None = None,
    ) -> None:
        super().__init__(model, handlers, verifier, audit)
        self._router = RestJsonRouter(model, set(self._handlers))

    def locate(self, request: Request, body: bytes) -> tuple[str, _Located]:
        scope = request.scope
        raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        headers = {key.lower(): value for key, value in request.headers.items()}
        current_trace_header.set(headers.get(_TRACE_HEADER))
        operation, path_params = self._router.match(request.method, raw_path, query)
        return operation.name, (path_params, query, headers)

    def params_so_far(self, located: _Located) -> dict[str, Any]:
        return dict(located[0])

    def decode(
        self, operation: OperationModel, request: Request, body: bytes, located: _Located
    ) -> dict[str, Any]:
        path_params, query, headers = located
        return parse_request(operation, path_params, query, headers, body)

    def encode(
        self, operation: OperationModel, result: dict[str, Any], request_id: str
    ) -> Response:
        status, response_headers, payload = serialize_response(operation, result)
        return Response(payload, status_code=status, headers=response_headers)

    def _error(self, error: LaminaError, request_id: str) -> Response:
        return error_response(error, request_id, self.model)
