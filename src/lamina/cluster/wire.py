"""How an invocation travels between nodes: the payload is the body, untouched; what else
the call and its outcome carry rides in one header each (base64 of JSON, so any message
survives HTTP's header rules)."""

from __future__ import annotations

import base64
import functools
from typing import Any

import orjson

from lamina.arns import FunctionRef
from lamina.errors import LaminaError
from lamina.invoke.service import InvokeRequest, InvokeResult
from lamina.sandbox.environment import InvokeOutcome

INVOKE_PATH = "/_lamina/internal/invoke"
INVOCATION = "x-lamina-invocation"  # the call (request)
RESULT = "x-lamina-result"  # its outcome (a 200 response)
ERROR = "x-lamina-error"  # the error admission raised (the error's own status)
BUSY = "x-lamina-busy"  # 503: no room here; try the next worker


def _pack(value: dict[str, Any]) -> str:
    return base64.b64encode(orjson.dumps(value)).decode()


def _unpack(header: str) -> dict[str, Any]:
    value = orjson.loads(base64.b64decode(header))
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def describe(request: InvokeRequest, stamp: int) -> str:
    """The call, and how far the sender had seen the store's changes (`shared_stamp`)."""
    return _pack(
        {
            "stamp": stamp,
            "name": request.ref.name,
            "ref_qualifier": request.ref.qualifier,
            "qualifier": request.qualifier,
            "request_id": request.request_id,
            "client_context": request.client_context,
            "trace_id": request.trace_id,
            "received_at": request.received_at,
        }
    )


def request_of(description: str, payload: bytes) -> tuple[InvokeRequest, int]:
    call = _unpack(description)
    return InvokeRequest(
        ref=FunctionRef(call["name"], call["ref_qualifier"]),
        qualifier=call["qualifier"],
        payload=payload,
        client_context=call["client_context"],
        trace_id=call["trace_id"],
        request_id=call["request_id"],
        received_at=call["received_at"],
    ), int(call["stamp"])


def describe_result(result: InvokeResult) -> str:
    outcome = result.outcome
    return _pack(
        {
            "request_id": result.request_id,
            "executed_version": result.executed_version,
            "function_error": outcome.function_error,
            "log_tail": base64.b64encode(outcome.log_tail).decode(),
            "duration_ms": outcome.duration_ms,
            "billed_ms": outcome.billed_ms,
            "init_ms": outcome.init_ms,
            "max_memory_mb": outcome.max_memory_mb,
            "status": outcome.status,
            "error_type": outcome.error_type,
        }
    )


def result_of(description: str, payload: bytes) -> InvokeResult:
    result = _unpack(description)
    outcome = InvokeOutcome(
        payload=payload,
        function_error=result["function_error"],
        log_tail=base64.b64decode(result["log_tail"]),
        duration_ms=result["duration_ms"],
        billed_ms=result["billed_ms"],
        init_ms=result["init_ms"],
        max_memory_mb=result["max_memory_mb"],
        status=result["status"],
        error_type=result["error_type"],
    )
    return InvokeResult(result["request_id"], result["executed_version"], outcome)


def describe_error(error: LaminaError) -> str:
    return _pack(
        {
            "class": type(error).__name__,
            "code": error.code,
            "status": error.status,
            "type": error.error_type,
            "message": error.message,
            "fields": error.fields,
            "headers": error.headers,
        }
    )


def error_of(description: str) -> LaminaError:
    """The error a worker raised, as the same class where Lamina has it (callers tell a
    throttle from a missing function by class), with the worker's code, status and words."""
    value = _unpack(description)
    cls = _error_classes().get(value["class"], LaminaError)
    error = cls.__new__(cls)
    LaminaError.__init__(error, value["message"], **value["fields"])
    error.headers = dict(value["headers"])
    # The wire's word is final even where the class would say otherwise.
    error.code, error.status, error.error_type = value["code"], value["status"], value["type"]
    return error


@functools.cache
def _error_classes() -> dict[str, type[LaminaError]]:
    found: dict[str, type[LaminaError]] = {}
    pending: list[type[LaminaError]] = [LaminaError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


# A streamed invocation's response body is a run of frames: one byte of kind, four of
# length, then the data. Chunks as the function streams them, then one result frame (the
# outcome's description, a newline, and the payload it ended with).
STREAM_PATH = "/_lamina/internal/stream"
EXECUTED_VERSION = "x-lamina-executed-version"
CHUNK = b"c"
END = b"r"
_HEAD = 5


def frame(kind: bytes, data: bytes) -> bytes:
    return kind + len(data).to_bytes(4, "big") + data


def end_frame(result: InvokeResult) -> bytes:
    return frame(END, describe_result(result).encode() + b"\n" + result.outcome.payload)


def result_of_end(data: bytes) -> InvokeResult:
    description, _, payload = data.partition(b"\n")
    return result_of(description.decode(), payload)


class FrameReader:
    """Frames out of a body read in pieces of any size."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= _HEAD:
            size = int.from_bytes(self._buffer[1:_HEAD], "big")
            if len(self._buffer) < _HEAD + size:
                break
            frames.append((bytes(self._buffer[:1]), bytes(self._buffer[_HEAD : _HEAD + size])))
            del self._buffer[: _HEAD + size]
        return frames
