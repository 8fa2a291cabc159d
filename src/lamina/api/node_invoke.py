"""`POST /_lamina/internal/invoke` and `/_lamina/internal/stream`: where a cluster's nodes
hand a worker the invocations routing chose it for (see `lamina.cluster.router`). Only nodes
of the cluster may call them: every call carries the HMAC of the cluster's shared secret
(`lamina.cluster.auth`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from lamina.cluster import wire
from lamina.cluster.auth import HEADER as AUTH_HEADER
from lamina.cluster.auth import NodeAuth
from lamina.cluster.gate import WorkerGate
from lamina.constants import SYNC_PAYLOAD_MAX_BYTES
from lamina.errors import LaminaError, ServiceError
from lamina.invoke.service import InvokeRequest, WorkerBusy
from lamina.invoke.streaming import next_chunk

log = logging.getLogger("lamina.cluster")


def node_routes(gate: WorkerGate | None, auth: NodeAuth) -> list[Route]:
    """The worker's endpoints: calls answered in one piece, and streamed ones."""

    async def admitted(request: Request, path: str) -> InvokeRequest | Response:
        """The call a node sent, or the refusal to answer with."""
        description = request.headers.get(wire.INVOCATION, "")
        signature = request.headers.get(AUTH_HEADER)
        # Nothing unsigned or oversized is read: the body is only buffered for a caller
        # that claims to be a node, within what an invocation may carry (no node forwards
        # more than the synchronous limit).
        length = request.headers.get("content-length", "")
        if not signature or not length.isdigit() or int(length) > SYNC_PAYLOAD_MAX_BYTES:
            return Response(status_code=401 if not signature else 413)
        payload = await request.body()
        if not auth.verify(signature, path, description.encode(), payload):
            return Response(status_code=401)
        if gate is None:  # an API-only node runs nothing: routing never picks it
            return _busy()
        try:
            call, stamp = wire.request_of(description, payload)
        except (ValueError, KeyError, TypeError):
            return Response(status_code=400)
        gate.catch_up(stamp)
        return call

    async def invoke(request: Request) -> Response:
        call = await admitted(request, wire.INVOKE_PATH)
        if isinstance(call, Response):
            return call
        assert gate is not None
        try:
            result = await gate.invoke(call)
        except WorkerBusy:
            return _busy()
        except LaminaError as error:
            return _refused(error)
        except Exception:
            log.exception("routed invocation %s failed", call.request_id)
            return _refused(_internal(call))
        return Response(
            result.outcome.payload,
            headers={wire.RESULT: wire.describe_result(result)},
            media_type="application/octet-stream",
        )

    async def stream(request: Request) -> Response:
        call = await admitted(request, wire.STREAM_PATH)
        if isinstance(call, Response):
            return call
        assert gate is not None
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        try:
            started = await gate.open_stream(call, chunks)
        except WorkerBusy:
            return _busy()
        except LaminaError as error:
            return _refused(error)

        async def frames() -> AsyncIterator[bytes]:
            while (chunk := await next_chunk(chunks, started.result)) is not None:
                if chunk:
                    yield wire.frame(wire.CHUNK, chunk)
            # A crash of the invocation ends the body without its last frame: the caller
            # reports the call lost.
            yield wire.end_frame(await started.result)

        return StreamingResponse(
            frames(),
            headers={wire.EXECUTED_VERSION: started.executed_version},
            media_type="application/octet-stream",
        )

    return [
        Route(wire.INVOKE_PATH, invoke, methods=["POST"]),
        Route(wire.STREAM_PATH, stream, methods=["POST"]),
    ]


def _busy() -> Response:
    return Response(status_code=503, headers={wire.BUSY: "1"})


def _refused(error: LaminaError) -> Response:
    return Response(status_code=error.status, headers={wire.ERROR: wire.describe_error(error)})


def _internal(call: InvokeRequest) -> ServiceError:
    return ServiceError(f"An internal error occurred. Request id: {call.request_id}")
