"""What an outcome owes: the OnSuccess record, or the failure path's OnFailure record and DLQ
message. Pure functions of the event, its settings and the invocation result.
"""

from __future__ import annotations

from lamina.aws.destinations import DESTINATION, Delivery
from lamina.control.event_invoke import EventInvokeConfig
from lamina.invoke.asynchronous.records import (
    SUCCESS,
    dead_letter,
    dead_letter_code,
    error_message,
    function_error,
    outcome_record,
)
from lamina.invoke.service import InvokeResult
from lamina.store.protocols import AsyncEvent


def failure_reason(event: AsyncEvent, result: InvokeResult | None) -> str | None:
    """Why the event failed, for people: the function's error, else the last one recorded."""
    return function_error(result) if result is not None else event.last_error


def owed_on_success(
    event: AsyncEvent, function_arn: str, config: EventInvokeConfig, result: InvokeResult
) -> list[Delivery]:
    """The OnSuccess record, if the function has an OnSuccess destination."""
    if config.on_success is None:
        return []
    body, _ = outcome_record(event, function_arn, SUCCESS, result)
    return [Delivery(config.on_success, DESTINATION, body, success=True)]


def owed_on_failure(
    event: AsyncEvent,
    function_arn: str,
    config: EventInvokeConfig,
    dead_letter_target: str | None,
    condition: str,
    result: InvokeResult | None,
) -> list[Delivery]:
    """The failure path: a record for the OnFailure destination and the event for the DLQ
    (of the version that ran), each if configured; both may be owed."""
    body, response = outcome_record(event, function_arn, condition, result)
    deliveries = []
    if config.on_failure:
        deliveries.append(Delivery(config.on_failure, DESTINATION, body))
    if dead_letter_target:
        message = error_message(response, failure_reason(event, result) or condition)
        code = dead_letter_code(event, condition, result)
        deliveries.append(
            dead_letter(dead_letter_target, event.event_id, event.payload, code, message)
        )
    return deliveries
