"""What an asynchronous outcome sends: invocation records for destinations, events for DLQs.

The formats are AWS's, whatever carries them: a record for a Lamina function travels on
Lamina's own queue, the others through a `Destinations` sender. Deliveries still owed when
an event goes back to the queue are stored with it, encoded here.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from lamina.aws.destinations import DEAD_LETTER, Delivery
from lamina.constants import FUNCTION_ERROR_UNHANDLED
from lamina.invoke.service import InvokeResult
from lamina.store.protocols import AsyncEvent

RECORD_VERSION = "1.0"
SUCCESS = "Success"
RETRIES_EXHAUSTED = "RetriesExhausted"
EVENT_AGE_EXCEEDED = "EventAgeExceeded"
# Conditions AWS documents no name for; these are Lamina's (LocalStack uses the first).
ZERO_RESERVED_CONCURRENCY = "ZeroReservedConcurrency"
RECURSIVE_LOOP_DETECTED = "RecursiveLoopDetected"

_ERROR_MESSAGE_MAX_BYTES = 1024
_ERROR_MAX_CHARS = 1024


def encode_deliveries(deliveries: list[Delivery]) -> bytes:
    return orjson.dumps([asdict(delivery) for delivery in deliveries])


def decode_deliveries(raw: bytes) -> list[Delivery]:
    deliveries = []
    for doc in orjson.loads(raw):
        doc["attributes"] = {name: tuple(value) for name, value in doc["attributes"].items()}
        deliveries.append(Delivery(**doc))
    return deliveries


@dataclass(frozen=True)
class Response:
    """What the last invocation returned, for a record's responseContext/responsePayload."""

    executed_version: str
    payload: bytes
    function_error: bool


def _json_or_text(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def _timestamp() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def invocation_record(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    invoke_count: int,
    request_payload: bytes,
    response: Response | None,
) -> str:
    """AWS's invocation record, the body every destination receives."""
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "timestamp": _timestamp(),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": _json_or_text(request_payload),
    }
    if response is not None:
        context: dict[str, Any] = {"statusCode": 200, "executedVersion": response.executed_version}
        if response.function_error:
            context["functionError"] = FUNCTION_ERROR_UNHANDLED
        record["responseContext"] = context
        record["responsePayload"] = _json_or_text(response.payload)
    return orjson.dumps(record).decode()


def outcome_record(
    event: AsyncEvent, function_arn: str, condition: str, result: InvokeResult | None
) -> tuple[str, Response | None]:
    """The record of `event` ending in `condition`, and the response it carries, if any."""
    response = (
        Response(result.executed_version, result.outcome.payload, result.outcome.function_error)
        if result is not None
        else None
    )
    # The attempts so far are the failed ones; the invocation that produced `result` is one more.
    invoke_count = event.attempts + (1 if result is not None else 0)
    body = invocation_record(
        request_id=event.event_id,
        function_arn=function_arn,
        condition=condition,
        invoke_count=invoke_count,
        request_payload=event.payload,
        response=response,
    )
    return body, response


def error_message(response: Response | None, fallback: str) -> str:
    """The DLQ's ErrorMessage: the function's errorMessage when it has one, first 1 KB."""
    message = fallback
    if response is not None and response.function_error:
        body = _json_or_text(response.payload)
        if isinstance(body, dict) and isinstance(body.get("errorMessage"), str):
            message = body["errorMessage"]
    encoded = message.encode()[:_ERROR_MESSAGE_MAX_BYTES]
    return encoded.decode("utf-8", "ignore")


def dead_letter(target: str, request_id: str, payload: bytes, code: int, message: str) -> Delivery:
    """The original event for a DLQ, with the attributes AWS adds."""
    return Delivery(
        target=target,
        role=DEAD_LETTER,
        body=payload.decode(),
        attributes={
            "RequestID": ("String", request_id),
            "ErrorCode": ("Number", str(code)),
            "ErrorMessage": ("String", message or "-"),
        },
    )


def dead_letter_code(event: AsyncEvent, condition: str, result: InvokeResult | None) -> int:
    """The DLQ's ErrorCode, an HTTP status: 200 when the function ran and failed,
    429 when it never got to run for throttling, 400 for a recursive loop."""
    if result is not None or (event.attempts and not event.requeues):
        return 200
    return 400 if condition == RECURSIVE_LOOP_DETECTED else 429


def function_error(result: InvokeResult) -> str:
    """`errorType: errorMessage` of a failed invocation, for people reading `lamina events`."""
    outcome = result.outcome
    kind, message = outcome.error_type or FUNCTION_ERROR_UNHANDLED, ""
    with contextlib.suppress(ValueError):
        body = orjson.loads(outcome.payload)
        if isinstance(body, dict):
            kind = str(body.get("errorType") or kind)
            message = str(body.get("errorMessage") or "")
    return f"{kind}: {message}"[:_ERROR_MAX_CHARS] if message else kind
