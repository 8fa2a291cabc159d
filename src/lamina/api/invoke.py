"""Handlers: Invoke (RequestResponse, Event, DryRun), InvokeAsync, InvokeWithResponseStream."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from starlette.responses import StreamingResponse

from lamina.api.context import ApiContext, Handler, current_request_id, current_trace_header
from lamina.arns import FunctionRef
from lamina.constants import ASYNC_PAYLOAD_MAX_BYTES, FUNCTION_ERROR_UNHANDLED
from lamina.control.states import check_invocable
from lamina.errors import InvalidParameterValue, InvalidRequestContent, RequestTooLarge
from lamina.invoke.asynchronous.dispatcher import AsyncDispatcher
from lamina.invoke.engine import Engine
from lamina.invoke.service import InvokeRequest, InvokeResult
from lamina.invoke.streaming import EVENT_STREAM_CONTENT_TYPE, ResponseStream
from lamina.request_ids import new_request_id
from lamina.sandbox.after_answer import AfterAnswer

_CLIENT_CONTEXT_MAX_BYTES = 3583
SYNC_REQUEST_MAX_BYTES = 6 * 1024 * 1024


def check_payload(payload: bytes, limit: int, operation: str) -> bytes:
    """AWS refuses oversize and non-JSON payloads before invoking anything."""
    if len(payload) > limit:
        raise RequestTooLarge(
            f"Request must be smaller than {limit} bytes for the {operation} operation"
        )
    if not payload.strip():
        return b"{}"
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise InvalidRequestContent(
            f"Could not parse request body into json: Could not parse payload into json: {error}"
        ) from None
    return payload


def decode_client_context(value: str | None) -> str | None:
    if not value:
        return None
    if len(value) > _CLIENT_CONTEXT_MAX_BYTES:
        raise InvalidParameterValue(
            f"Client context must be at most {_CLIENT_CONTEXT_MAX_BYTES} bytes, base64-encoded"
        )
    try:
        decoded = base64.b64decode(value, validate=True)
        orjson.loads(decoded)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidParameterValue("Client context must be a base64-encoded JSON object") from None
    return decoded.decode()


def sync_request(
    ref: FunctionRef,
    qualifier: str | None,
    payload: bytes,
    client_context: str | None,
    trace_header: str | None,
    request_id: str,
    operation: str,
    after_answer: AfterAnswer | None = None,
) -> InvokeRequest:
    """A synchronous invocation as the API received it, checked as AWS checks it
    (`after_answer`: see `InvokeRequest`)."""
    return InvokeRequest(
        ref=ref,
        qualifier=qualifier,
        payload=check_payload(payload, SYNC_REQUEST_MAX_BYTES, operation),
        client_context=decode_client_context(client_context),
        trace_id=trace_header,
        request_id=request_id,
        after_answer=after_answer,
    )


def invoke_response(result: InvokeResult, tail: bool) -> dict[str, Any]:
    """Invoke's output members for a synchronous invocation's result."""
    outcome = result.outcome
    response: dict[str, Any] = {
        "StatusCode": 200,
        "ExecutedVersion": result.executed_version,
        "Payload": outcome.payload,
    }
    if outcome.function_error:
        response["FunctionError"] = FUNCTION_ERROR_UNHANDLED
    if tail:
        response["LogResult"] = outcome.log_result
    return response


def operations(ctx: ApiContext, invoker: Engine, dispatcher: AsyncDispatcher) -> dict[str, Handler]:
    async def enqueue(params: dict[str, Any], payload_member: str, operation: str) -> None:
        """Queue an asynchronous invocation; returns once the event is durable."""
        ref = ctx.function_ref(params)
        # Resolve first, so a missing function or qualifier is a 404 before anything else.
        resolved = invoker.resolve(ref, params.get("Qualifier"))
        check_invocable(resolved.runnable)  # a Pending function takes no events either
        payload = check_payload(
            params.get(payload_member) or b"", ASYNC_PAYLOAD_MAX_BYTES, operation
        )
        await dispatcher.accept(
            resolved.record.name,
            resolved.qualifier,
            payload,
            current_request_id.get() or new_request_id(),
            current_trace_header.get(),
        )

    def prepare(params: dict[str, Any], operation: str) -> InvokeRequest | None:
        """The synchronous request a call describes, or None for a DryRun (checked here)."""
        ref = ctx.function_ref(params)
        qualifier = params.get("Qualifier")
        invocation_type = params.get("InvocationType") or "RequestResponse"
        if invocation_type == "DryRun":
            check_invocable(invoker.resolve(ref, qualifier).runnable)
            return None
        if invocation_type != "RequestResponse":
            raise InvalidParameterValue(
                f"Unsupported invocation type {invocation_type} for {operation}: "
                "use RequestResponse or DryRun"
            )
        return sync_request(
            ref,
            qualifier,
            params.get("Payload") or b"",
            params.get("ClientContext"),
            current_trace_header.get(),
            current_request_id.get() or new_request_id(),
            operation,
        )

    async def invoke(params: dict[str, Any]) -> dict[str, Any]:
        if params.get("InvocationType") == "Event":
            await enqueue(params, "Payload", "Invoke")
            # As AWS: 202, an empty body, the request id; no X-Amz-Executed-Version, since
            # which version runs (an alias's weights) is decided when the event is delivered.
            return {"StatusCode": 202, "Payload": b""}
        request = prepare(params, "Invoke")
        if request is None:
            return {"StatusCode": 204}
        result = await invoker.invoke(request)
        return invoke_response(result, params.get("LogType") == "Tail")

    async def invoke_with_response_stream(
        params: dict[str, Any],
    ) -> dict[str, Any] | StreamingResponse:
        request = prepare(params, "InvokeWithResponseStream")
        if request is None:
            return {"StatusCode": 204}
        # Admission happens here, so a missing function or a throttle is a plain error
        # response; everything after the first byte is reported inside the stream.
        stream = await ResponseStream.open(
            invoker,
            request,
            tail=params.get("LogType") == "Tail",
        )
        return StreamingResponse(
            stream.messages(),
            media_type=EVENT_STREAM_CONTENT_TYPE,
            headers={"X-Amz-Executed-Version": stream.executed_version},
        )

    async def invoke_async(params: dict[str, Any]) -> dict[str, Any]:
        """The deprecated InvokeAsync: an Event invocation under an older name."""
        await enqueue(params, "InvokeArgs", "InvokeAsync")
        return {"Status": 202}

    return {
        "Invoke": invoke,
        "InvokeAsync": invoke_async,
        "InvokeWithResponseStream": invoke_with_response_stream,
    }
