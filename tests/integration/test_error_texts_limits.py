"""AWS's error texts for tags and limits, and the errors an invocation reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import call, error_of
from tests.support.waiting import wait_until

ARN = "arn:aws:lambda:us-east-1:000000000000:function"


@pytest.fixture
def function(lambda_client: Any, create_function: Callable[..., Any]) -> Callable[..., str]:
    """A new function, Active (with version 1 when published), by name."""

    def make(**overrides: Any) -> str:
        name: str = create_function(**overrides)["FunctionName"]
        lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)
        return name

    return make


# --------------------------------------------------------------------- tags


@pytest.mark.parametrize("qualifier", ["1", "$LATEST"])
def test_tags_on_a_version(
    lambda_client: Any, function: Callable[..., str], qualifier: str
) -> None:
    name = function(Publish=True)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.tag_resource(Resource=f"{ARN}:{name}:{qualifier}", Tags={"a": "b"})
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Tags on function aliases and versions are not supported. Please specify a function ARN.",
        400,
    )


def test_more_tags_than_a_resource_may_have(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function(Tags={f"key-{index}": "v" for index in range(45)})
    with pytest.raises(ClientError) as excinfo:
        lambda_client.tag_resource(
            Resource=f"{ARN}:{name}", Tags={f"more-{index}": "v" for index in range(6)}
        )
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Number of tags exceeds resource tag limit.",
        400,
    )


def test_tagging_with_no_tags(lambda_client: Any, function: Callable[..., str]) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.tag_resource(Resource=f"{ARN}:{function()}", Tags={})
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "An error occurred and the request cannot be processed.",
        400,
    )


def test_tags_of_a_function_in_another_account(lambda_client: Any) -> None:
    arn = "arn:aws:lambda:us-east-1:111122223333:function:theirs"
    with pytest.raises(ClientError) as excinfo:
        lambda_client.list_tags(Resource=arn)
    assert error_of(excinfo) == (
        "AccessDeniedException",
        "User: arn:aws:iam::000000000000:root is not authorized to perform: lambda:ListTags on "
        f"resource: {arn} because no resource-based policy allows the lambda:ListTags action",
        403,
    )


# ------------------------------------------------------------------- limits


def test_environment_variables_over_4_kb_are_measured_in_full(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    variables = {"SMALL_VAR": "ok", "LARGE_VAR": "x" * 4096}
    with pytest.raises(ClientError) as excinfo:
        create_function(Environment={"Variables": variables})
    measured = json.dumps(variables, separators=(",", ":"))
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Lambda was unable to configure your environment variables because the environment "
        f"variables you have provided exceeded the 4KB limit. String measured: {measured}",
        400,
    )


def test_snapstart_on_a_runtime_without_it(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    with pytest.raises(ClientError) as excinfo:
        create_function(Runtime="python3.11", SnapStart={"ApplyOn": "PublishedVersions"})
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "python3.11 is not supported for SnapStart enabled functions.",
        400,
    )


# -------------------------------------------------------------- invocations

LARGE_RESPONSE = "def handler(event, context):\n    return 'x' * (6 * 1024 * 1024 + 200)\n"
BROKEN_INIT = "raise RuntimeError('no database configured')\n"


def test_a_response_over_the_payload_limit(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function(Code={"ZipFile": make_zip({"app.py": LARGE_RESPONSE})})
    response, payload = call(lambda_client, name)
    assert response["FunctionError"] == "Unhandled"
    assert payload == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": "Response payload size exceeded maximum allowed payload size "
        "(6291556 bytes).",
    }


def test_a_concurrency_throttle_carries_no_retry_after(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function()
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert error_of(excinfo) == ("TooManyRequestsException", "Rate Exceeded.", 429)
    response = excinfo.value.response
    assert response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert "retryAfterSeconds" not in response
    assert "retry-after" not in response["ResponseMetadata"]["HTTPHeaders"]


def test_a_provisioned_init_failure_names_only_its_kind(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function(Code={"ZipFile": make_zip({"app.py": BROKEN_INIT})}, Publish=True)
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )

    def failed() -> dict[str, Any] | None:
        config: dict[str, Any] = lambda_client.get_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1"
        )
        return config if config["Status"] == "FAILED" else None

    config = wait_until(failed, message=f"{name}:1 never FAILED")
    assert config["StatusReason"] == "FUNCTION_ERROR_INIT_FAILURE"
