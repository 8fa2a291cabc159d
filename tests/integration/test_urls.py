"""Function URL configs over HTTP: create, get, update, delete, list."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.function_urls import url_pattern
from tests.support.lambda_api import error_of
from tests.support.server import LaminaServer

ARN = "arn:aws:lambda:us-east-1:000000000000:function"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
NOT_FOUND = "The resource you requested does not exist."


def test_create_returns_a_url_this_machine_can_resolve(
    lambda_client: Any, server: LaminaServer, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    created = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert url_pattern(server.port).match(created["FunctionUrl"])
    assert created["FunctionArn"] == f"{ARN}:{name}"
    assert created["AuthType"] == "NONE"
    assert created["InvokeMode"] == "BUFFERED"
    assert TIME.match(created["CreationTime"])

    got = lambda_client.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == created["FunctionUrl"]
    assert got["CreationTime"] == created["CreationTime"]
    assert TIME.match(got["LastModifiedTime"])


def test_create_twice_conflicts(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    name = create_function()["FunctionName"]
    lambda_client.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert error_of(excinfo) == (
        "ResourceConflictException",
        f"Failed to create function url config for [functionArn = {ARN}:{name}]. "
        "Error message:  FunctionUrlConfig exists for this Lambda function",
        409,
    )


def test_update_merges_given_fields(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    created = lambda_client.create_function_url_config(
        FunctionName=name,
        AuthType="AWS_IAM",
        Cors={"AllowOrigins": ["https://example.com"], "MaxAge": 60},
    )
    updated = lambda_client.update_function_url_config(
        FunctionName=name,
        Cors={"AllowOrigins": ["*"], "AllowMethods": ["GET", "POST"], "AllowCredentials": True},
        InvokeMode="RESPONSE_STREAM",
    )
    assert updated["FunctionUrl"] == created["FunctionUrl"]
    assert updated["AuthType"] == "AWS_IAM"
    assert updated["InvokeMode"] == "RESPONSE_STREAM"
    assert updated["Cors"] == {
        "AllowOrigins": ["*"],
        "AllowMethods": ["GET", "POST"],
        "AllowCredentials": True,
    }
    updated = lambda_client.update_function_url_config(FunctionName=name, AuthType="NONE")
    assert updated["AuthType"] == "NONE"
    assert updated["Cors"]["AllowOrigins"] == ["*"]
    assert updated["CreationTime"] == created["CreationTime"]


def test_cors_is_validated_by_the_model(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function_url_config(
            FunctionName=name, AuthType="NONE", Cors={"MaxAge": 86401}
        )
    assert error_of(excinfo)[0] == "ValidationException"


def test_alias_urls_are_separate(
    lambda_client: Any, server: LaminaServer, create_function: Callable[..., Any]
) -> None:
    name = create_function(Publish=True)["FunctionName"]
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    latest = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    alias = lambda_client.create_function_url_config(
        FunctionName=name, Qualifier="live", AuthType="NONE"
    )
    assert alias["FunctionArn"] == f"{ARN}:{name}:live"
    assert url_pattern(server.port).match(alias["FunctionUrl"])
    assert alias["FunctionUrl"] != latest["FunctionUrl"]
    got = lambda_client.get_function_url_config(FunctionName=f"{name}:live")
    assert got["FunctionUrl"] == alias["FunctionUrl"]


def test_missing_alias_and_version_qualifiers_are_refused(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(Publish=True)["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function_url_config(
            FunctionName=name, Qualifier="nope", AuthType="NONE"
        )
    assert error_of(excinfo) == ("ResourceNotFoundException", "Function does not exist", 404)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function_url_config(FunctionName=name, Qualifier="1", AuthType="NONE")
    assert error_of(excinfo)[0] == "ValidationException"


def test_get_update_delete_without_a_config_are_not_found(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    calls: list[Callable[[], Any]] = [
        lambda: lambda_client.get_function_url_config(FunctionName=name),
        lambda: lambda_client.update_function_url_config(FunctionName=name, AuthType="NONE"),
        lambda: lambda_client.delete_function_url_config(FunctionName=name),
    ]
    for call in calls:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo) == ("ResourceNotFoundException", NOT_FOUND, 404)


def test_delete_removes_the_url(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    name = create_function()["FunctionName"]
    lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    deleted = lambda_client.delete_function_url_config(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function_url_config(FunctionName=name)
    assert error_of(excinfo) == ("ResourceNotFoundException", NOT_FOUND, 404)


def test_list_pages_through_urls(lambda_client: Any, create_function: Callable[..., Any]) -> None:
    name = create_function(Publish=True)["FunctionName"]
    for alias in ("blue", "green"):
        lambda_client.create_alias(FunctionName=name, Name=alias, FunctionVersion="1")
        lambda_client.create_function_url_config(
            FunctionName=name, Qualifier=alias, AuthType="NONE"
        )
    lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    first = lambda_client.list_function_url_configs(FunctionName=name, MaxItems=2)
    assert len(first["FunctionUrlConfigs"]) == 2
    rest = lambda_client.list_function_url_configs(FunctionName=name, Marker=first["NextMarker"])
    assert "NextMarker" not in rest
    arns = [
        item["FunctionArn"] for item in first["FunctionUrlConfigs"] + rest["FunctionUrlConfigs"]
    ]
    assert sorted(arns) == sorted([f"{ARN}:{name}", f"{ARN}:{name}:blue", f"{ARN}:{name}:green"])


def test_unknown_function_is_not_found(
    lambda_client: Any, unique_name: Callable[[str], str]
) -> None:
    missing = unique_name("missing")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_function_url_configs(FunctionName=missing)
    assert error_of(excinfo) == ("ResourceNotFoundException", "Function does not exist", 404)
