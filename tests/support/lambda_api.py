"""Calling a test server's Lambda API with boto3: the role functions get, invoking, errors."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

# Lamina does not check the role yet; every test function names this one.
ROLE = "arn:aws:iam::000000000000:role/lamina-test"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function"


def call(client: Any, name: str, payload: Any = None, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    """Invoke synchronously: the response, and its payload decoded (None if it is empty).

    `payload` None sends an empty body, which the function receives as {}.
    """
    body = b"" if payload is None else json.dumps(payload).encode()
    response = client.invoke(FunctionName=name, Payload=body, **kwargs)
    raw = response["Payload"].read()
    return response, json.loads(raw) if raw else None


def invoke(client: Any, name: str, event: Any = None, **kwargs: Any) -> Any:
    """The result of an invocation that must succeed (no FunctionError); `event` None is {}."""
    response, result = call(client, name, {} if event is None else event, **kwargs)
    assert "FunctionError" not in response, result
    return result


def log_tail(response: dict[str, Any]) -> str:
    """The log tail an invocation with LogType=Tail returned (which must be UTF-8)."""
    return base64.b64decode(response["LogResult"]).decode()


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    """(error code, message, HTTP status) of a refused API call."""
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )
