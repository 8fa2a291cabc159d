"""`GET /_lamina/audit`: the audit log over HTTP, so `lamina audit` works with remote servers.

It is signed like the Lambda API when the server has credentials: the log names callers and
their addresses, so only holders of the key may read it.
"""

from __future__ import annotations

import uuid

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.api.errors import error_response
from lamina.api.pipeline import verify_signature
from lamina.audit.record import ENDPOINT_PATH
from lamina.audit.trail import AuditTrail
from lamina.errors import InvalidParameterValue, LaminaError
from lamina.identity.sigv4 import SigV4Verifier
from lamina.store.protocols.audit import AuditQuery, AuditStore


def audit_route(
    store: AuditStore, trail: AuditTrail | None, verifier: SigV4Verifier | None
) -> Route:
    async def read_audit_log(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            verify_signature(verifier, request, b"")
            try:
                query = AuditQuery.from_params(request.query_params)
            except ValueError as error:
                raise InvalidParameterValue(str(error)) from None
        except LaminaError as error:
            return error_response(error, request_id)
        if trail is not None:
            # Everything recorded before this request, including the caller's last call.
            await anyio.to_thread.run_sync(trail.flush)
        entries = await anyio.to_thread.run_sync(store.query, query)
        return Response(orjson.dumps({"Events": entries}), media_type="application/json")

    return Route(ENDPOINT_PATH, read_audit_log, methods=["GET"])
