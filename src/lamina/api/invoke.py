"""Handlers: Invoke (RequestResponse and DryRun)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from lamina.api.context import ApiContext, Handler
from lamina.errors import InvalidParameterValue, InvalidRequestContent, RequestTooLarge
from lamina.invoke.service import InvokeRequest, InvokeService

_CLIENT_CONTEXT_MAX_BYTES = 3583
_SYNC_REQUEST_MAX_BYTES = 6 * 1024 * 1024


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


def operations(ctx: ApiContext, invoker: InvokeService) -> dict[str, Handler]:
    async def invoke(params: dict[str, Any]) -> dict[str, Any]:
        ref = ctx.function_ref(params)
        qualifier = params.get("Qualifier")
        invocation_type = params.get("InvocationType") or "RequestResponse"
        if invocation_type == "DryRun":
            invoker.resolve(ref, qualifier)
            return {"StatusCode": 204}
        if invocation_type != "RequestResponse":
            raise InvalidParameterValue(
                f"Invocation type {invocation_type} is not served by this Lamina build yet"
            )
        payload = check_payload(params.get("Payload") or b"", _SYNC_REQUEST_MAX_BYTES, "Invoke")
        result = await invoker.invoke(
            InvokeRequest(
                ref=ref,
                qualifier=qualifier,
                payload=payload,
                client_context=decode_client_context(params.get("ClientContext")),
            )
        )
        outcome = result.outcome
        response: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": result.executed_version,
            "Payload": outcome.payload,
        }
        if outcome.function_error:
            response["FunctionError"] = "Unhandled"
        if params.get("LogType") == "Tail":
            response["LogResult"] = outcome.log_result
        return response

    return {"Invoke": invoke}
