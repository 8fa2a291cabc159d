"""One synchronous invocation per batch, as event source mappings make them.

The batch goes through the same engine as the Invoke API (reserved and account concurrency,
logs, metrics and billing apply). What came of it is one `BatchResult`; the pollers decide
what that means for their records (delete, retry, bisect, send on).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Protocol

from lamina.arns import FunctionRef
from lamina.constants import INIT_TIMEOUT_S
from lamina.control.functions import Resolved
from lamina.errors import LaminaError, ResourceNotFound, TooManyRequests
from lamina.invoke.service import InvokeRequest, InvokeResult
from lamina.model.mappings import EventSourceMapping

log = logging.getLogger("lamina.pollers")

_WATCHDOG_MARGIN_S = 30.0

# What came of a batch's invocation.
OK = "ok"  # the function returned (its payload may still report failed items)
FUNCTION_ERROR = "function-error"  # the function raised, timed out or its runtime failed
THROTTLED = "throttled"  # concurrency limits refused it: try again later, not a retry
PLATFORM_ERROR = "platform-error"  # Lamina or the function's set-up failed: not a retry
GONE = "gone"  # the function (or its qualifier) does not exist

# LastProcessingResult texts for what a poller cannot get past (AWS shows these as
# `PROBLEM: ...`).
FUNCTION_NOT_FOUND = "PROBLEM: Function not found."
THROTTLED_RESULT = "PROBLEM: Function call failed: TooManyRequestsException"


class Engine(Protocol):
    """What a poller needs of the engine (`InvokeService` fits)."""

    def resolve(self, ref: FunctionRef, qualifier: str | None) -> Resolved: ...

    async def invoke(self, request: InvokeRequest) -> InvokeResult: ...


@dataclass(frozen=True)
class BatchResult:
    kind: str  # OK, FUNCTION_ERROR, THROTTLED, PLATFORM_ERROR or GONE
    request_id: str
    payload: bytes = b""
    # 200 for a returned or failed function (Lambda answers 200 with X-Amz-Function-Error);
    # the error's own status for throttles and platform errors.
    status_code: int = 200
    executed_version: str | None = None
    function_error: str | None = None  # "Unhandled" when the function failed
    error: str | None = None  # the error's code and message, when there was one

    @property
    def returned(self) -> bool:
        return self.kind == OK


class BatchInvoker:
    """Invokes a mapping's function with one batch and never raises for what the engine
    refuses; the watchdog bounds a stuck start or a lost reply."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def role(self, mapping: EventSourceMapping) -> str | None:
        """The execution role of the function the mapping invokes (Kinesis records carry it
        as `invokeIdentityArn`); None when the function is gone."""
        try:
            resolved = self._engine.resolve(
                FunctionRef(mapping.function_name, None), mapping.qualifier
            )
        except ResourceNotFound:
            return None
        return resolved.config.role

    async def invoke(self, mapping: EventSourceMapping, payload: bytes) -> BatchResult:
        request_id = str(uuid.uuid4())
        ref = FunctionRef(mapping.function_name, None)
        try:
            resolved = self._engine.resolve(ref, mapping.qualifier)
        except ResourceNotFound as error:
            return BatchResult(GONE, request_id, status_code=404, error=_text(error))
        limit = resolved.config.timeout + INIT_TIMEOUT_S + _WATCHDOG_MARGIN_S
        request = InvokeRequest(
            ref=ref, qualifier=mapping.qualifier, payload=payload, request_id=request_id
        )
        try:
            result = await asyncio.wait_for(self._engine.invoke(request), limit)
        except TimeoutError:
            log.error("mapping %s: invocation did not end within %.0f s", mapping.uuid, limit)
            return BatchResult(
                PLATFORM_ERROR,
                request_id,
                status_code=500,
                error=f"Lamina: no outcome within {limit:.0f} s",
            )
        except TooManyRequests as error:
            return BatchResult(THROTTLED, request_id, status_code=429, error=_text(error))
        except ResourceNotFound as error:
            return BatchResult(GONE, request_id, status_code=404, error=_text(error))
        except LaminaError as error:
            return BatchResult(
                PLATFORM_ERROR, request_id, status_code=error.status, error=_text(error)
            )
        outcome = result.outcome
        if outcome.function_error:
            return BatchResult(
                FUNCTION_ERROR,
                result.request_id,
                payload=outcome.payload,
                executed_version=result.executed_version,
                function_error="Unhandled",
                error=outcome.error_type,
            )
        return BatchResult(
            OK,
            result.request_id,
            payload=outcome.payload,
            executed_version=result.executed_version,
        )


def _text(error: LaminaError) -> str:
    return f"{error.code}: {error.message}"
