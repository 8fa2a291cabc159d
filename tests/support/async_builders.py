"""Builders for the unit tests of asynchronous delivery: events, settings and outcomes."""

from __future__ import annotations

import json
from typing import Any

from lamina.control.event_invoke import EventInvokeConfig
from lamina.invoke.service import InvokeResult
from lamina.model.functions import FunctionConfig, FunctionRecord
from lamina.sandbox.environment import InvokeOutcome
from lamina.store.protocols import AsyncEvent
from tests.support.domain import EXECUTION_ROLE

ENQUEUED = 1_000_000.0


def event(event_id: str = "req-1", payload: bytes = b'{"order": 7}', **fields: Any) -> AsyncEvent:
    """An event of function `f` enqueued (and due) at ENQUEUED; `fields` override the rest."""
    return AsyncEvent(
        **{
            "event_id": event_id,
            "function": "f",
            "qualifier": None,
            "payload": payload,
            "enqueued_at": ENQUEUED,
            "next_attempt_at": ENQUEUED,
            **fields,
        }
    )


def event_config(
    retries: int | None = None,
    max_age: int | None = None,
    on_success: str | None = None,
    on_failure: str | None = None,
) -> EventInvokeConfig:
    """Function `f`'s event-invoke config; None leaves AWS's default."""
    return EventInvokeConfig(
        function_name="f",
        qualifier="$LATEST",
        maximum_retry_attempts=retries,
        maximum_event_age_seconds=max_age,
        on_success=on_success,
        on_failure=on_failure,
    )


def function_config(name: str = "f", **fields: Any) -> FunctionConfig:
    return FunctionConfig(
        **{
            "function_name": name,
            "role": EXECUTION_ROLE,
            "runtime": "python3.12",
            "handler": "app.handler",
            "code_sha256": "",
            "code_size": 0,
            "code_blob": "",
            "unzipped_size": 0,
            **fields,
        }
    )


def function_record(name: str = "f", **fields: Any) -> FunctionRecord:
    """A function with its $LATEST config; `fields` set function-wide settings."""
    return FunctionRecord(latest=function_config(name), **fields)


def succeeded(
    request_id: str = "req-1", payload: Any = "ok", version: str = "$LATEST"
) -> InvokeResult:
    return _result(request_id, version, json.dumps(payload).encode(), error_type=None)


def failed(
    request_id: str = "req-1", message: str = "boom", version: str = "$LATEST"
) -> InvokeResult:
    """A function error, as the runtime reports an unhandled exception."""
    body = json.dumps({"errorType": "ValueError", "errorMessage": message}).encode()
    return _result(request_id, version, body, error_type="ValueError")


def _result(request_id: str, version: str, payload: bytes, error_type: str | None) -> InvokeResult:
    outcome = InvokeOutcome(
        payload=payload,
        function_error=error_type is not None,
        log_tail=b"",
        duration_ms=1.0,
        billed_ms=1,
        init_ms=None,
        max_memory_mb=128,
        error_type=error_type,
    )
    return InvokeResult(request_id=request_id, executed_version=version, outcome=outcome)
