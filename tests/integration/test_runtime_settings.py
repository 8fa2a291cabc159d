"""Runtime management and recursion configs over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.lambda_api import error_of

ARN = "arn:aws:lambda:us-east-1:000000000000:function"
RUNTIME_VERSION = "arn:aws:lambda:us-east-1::runtime:0123456789abcdef0123456789abcdef"


def test_runtime_management_defaults_to_auto(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    got = lambda_client.get_runtime_management_config(FunctionName=name)
    assert got["UpdateRuntimeOn"] == "Auto"
    assert got["FunctionArn"] == f"{ARN}:{name}"
    assert "RuntimeVersionArn" not in got


def test_put_manual_pins_a_runtime_version(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    put = lambda_client.put_runtime_management_config(
        FunctionName=name, UpdateRuntimeOn="Manual", RuntimeVersionArn=RUNTIME_VERSION
    )
    assert put["UpdateRuntimeOn"] == "Manual"
    assert put["RuntimeVersionArn"] == RUNTIME_VERSION
    got = lambda_client.get_runtime_management_config(FunctionName=name)
    assert (got["UpdateRuntimeOn"], got["RuntimeVersionArn"]) == ("Manual", RUNTIME_VERSION)
    lambda_client.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="FunctionUpdate")
    got = lambda_client.get_runtime_management_config(FunctionName=name)
    assert got["UpdateRuntimeOn"] == "FunctionUpdate"
    assert "RuntimeVersionArn" not in got


def test_manual_without_a_runtime_version_is_refused(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="Manual")
    code, message, status = error_of(excinfo)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "RuntimeVersionArn" in message


def test_runtime_management_is_per_version(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(Publish=True)["FunctionName"]
    put = lambda_client.put_runtime_management_config(
        FunctionName=name, Qualifier="1", UpdateRuntimeOn="FunctionUpdate"
    )
    assert put["FunctionArn"] == f"{ARN}:{name}:1"
    version = lambda_client.get_runtime_management_config(FunctionName=f"{name}:1")
    assert version["UpdateRuntimeOn"] == "FunctionUpdate"
    latest = lambda_client.get_runtime_management_config(FunctionName=name)
    assert latest["UpdateRuntimeOn"] == "Auto"
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_runtime_management_config(FunctionName=name, Qualifier="7")
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Function not found: {ARN}:{name}:7",
        404,
    )


def test_runtime_management_of_unknown_function_is_not_found(
    lambda_client: Any, unique_name: Callable[[str], str]
) -> None:
    missing = unique_name("missing")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_runtime_management_config(FunctionName=missing, UpdateRuntimeOn="Auto")
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Function not found: {ARN}:{missing}",
        404,
    )


def test_recursion_defaults_to_terminate_and_can_be_allowed(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    got = lambda_client.get_function_recursion_config(FunctionName=name)
    assert got["RecursiveLoop"] == "Terminate"
    put = lambda_client.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")
    assert put["RecursiveLoop"] == "Allow"
    got = lambda_client.get_function_recursion_config(FunctionName=name)
    assert got["RecursiveLoop"] == "Allow"


def test_recursion_refuses_qualified_and_unknown_functions(
    lambda_client: Any, create_function: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    name = create_function(Publish=True)["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_recursion_config(FunctionName=f"{name}:1", RecursiveLoop="Allow")
    assert error_of(excinfo)[0] == "ValidationException"
    missing = unique_name("missing")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function_recursion_config(FunctionName=missing)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Function not found: {ARN}:{missing}",
        404,
    )
