"""AWS's own error codes, statuses and words for invalid requests and for names Lamina
cannot serve: validation, function names, and ARNs in other regions and accounts.

Each expected text is one recorded on AWS (see the module docstrings of the sibling
`test_error_texts_*` files for sub-resources, limits and invocations).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE, error_of

ARN = "arn:aws:lambda:us-east-1:000000000000:function"
# The runtimes AWS lists when it refuses an unknown one, in the order it prints them.
CREATE_RUNTIMES = (
    "[nodejs20.x, python3.14, provided.al2023, python3.12, python3.13, nodejs24.x, nodejs22.x, "
    "java17, nodejs16.x, java25, dotnet8, python3.10, java11, python3.11, dotnet6, java21, "
    "nodejs18.x, provided.al2, ruby3.3, ruby3.4, java8.al2, ruby3.2, python3.8, python3.9]"
)


def unknown_runtime(runtime: str) -> tuple[str, str, int]:
    return (
        "InvalidParameterValueException",
        f"Value {runtime} at 'runtime' failed to satisfy constraint: Member must satisfy enum "
        f"value set: {CREATE_RUNTIMES} or be a valid ARN",
        400,
    )


def create_params(name: str, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": "python3.12",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": make_zip()},
    }
    params.update(overrides)
    return params


def active(client: Any, name: str) -> str:
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("runtime", ["python2.1", "PYTHON3.9"])
def test_an_unknown_runtime_on_create_lists_the_runtimes_aws_accepts(
    lambda_client: Any, unique_name: Callable[[str], str], runtime: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function(**create_params(unique_name("rt"), Runtime=runtime))
    assert error_of(excinfo) == unknown_runtime(runtime)


def test_an_unknown_runtime_on_update_is_refused_the_same_way(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = active(lambda_client, create_function()["FunctionName"])
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_function_configuration(FunctionName=name, Runtime="PYTHON3.9")
    assert error_of(excinfo) == unknown_runtime("PYTHON3.9")


def test_a_retired_runtime_is_no_longer_supported(
    lambda_client: Any, unique_name: Callable[[str], str]
) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function(**create_params(unique_name("rt"), Runtime="python2.7"))
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "The runtime parameter of python2.7 is no longer supported for creating or updating "
        "AWS Lambda functions. We recommend you use the new runtime (python3.14) while "
        "creating or updating functions.",
        400,
    )


def test_an_architecture_list_is_reported_whole_at_its_name(
    lambda_client: Any, unique_name: Callable[[str], str]
) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function(
            **create_params(unique_name("arch"), Architectures=["X86_64"])
        )
    assert error_of(excinfo) == (
        "ValidationException",
        "1 validation error detected: Value '[X86_64]' at 'architectures' failed to satisfy "
        "constraint: Member must satisfy constraint: [Member must satisfy enum value set: "
        "[x86_64, arm64], Member must not be null]",
        400,
    )


def test_routing_weights_out_of_range_break_the_map_value_constraint(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = active(lambda_client, create_function(Publish=True)["FunctionName"])
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_alias(
            FunctionName=name,
            Name="live",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": {"2": 2.0}},
        )
    assert error_of(excinfo) == (
        "ValidationException",
        "1 validation error detected: Value '{2=2.0}' at 'routingConfig.additionalVersionWeights' "
        "failed to satisfy constraint: Map value must satisfy constraint: [Member must have "
        "value less than or equal to 1.0, Member must have value greater than or equal to 0.0, "
        "Member must not be null]",
        400,
    )


def test_routing_to_latest_breaks_the_map_key_constraint(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = active(lambda_client, create_function(Publish=True)["FunctionName"])
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_alias(
            FunctionName=name,
            Name="live",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": {"$LATEST": 0.5}},
        )
    assert error_of(excinfo) == (
        "ValidationException",
        "1 validation error detected: Value '{$LATEST=0.5}' at "
        "'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must "
        "satisfy constraint: [Member must have length less than or equal to 1024, Member must "
        "have length greater than or equal to 1, Member must satisfy regular expression "
        "pattern: [0-9]+, Member must not be null]",
        400,
    )


def test_recursive_loop_values_are_listed_in_awss_order(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_recursion_config(FunctionName="any", RecursiveLoop="Stop")
    assert error_of(excinfo) == (
        "ValidationException",
        "1 validation error detected: Value 'Stop' at 'recursiveLoop' failed to satisfy "
        "constraint: Member must satisfy enum value set: [Terminate, Allow]",
        400,
    )


def test_invoke_modes_are_listed_in_awss_order(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function_url_config(
            FunctionName="any", AuthType="NONE", InvokeMode="STREAM"
        )
    assert error_of(excinfo) == (
        "ValidationException",
        "1 validation error detected: Value 'STREAM' at 'invokeMode' failed to satisfy "
        "constraint: Member must satisfy enum value set: [RESPONSE_STREAM, BUFFERED]",
        400,
    )


def test_a_layers_runtimes_are_checked_against_the_runtimes_for_functions(
    lambda_client: Any,
) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.publish_layer_version(
            LayerName="any",
            Content={"ZipFile": make_zip()},
            CompatibleRuntimes=["invalidruntime", "nodejs16.x"],
        )
    assert error_of(excinfo) == (
        "ValidationException",
        "1 validation error detected: Value '[invalidruntime, nodejs16.x]' at "
        "'compatibleRuntimes' failed to satisfy constraint: Member must satisfy enum value "
        f"set: {CREATE_RUNTIMES}",
        400,
    )


def test_a_layers_architectures_are_listed_without_the_null_constraint(
    lambda_client: Any,
) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.publish_layer_version(
            LayerName="any",
            Content={"ZipFile": make_zip()},
            CompatibleArchitectures=["invalidarch", "x86_64"],
        )
    assert error_of(excinfo) == (
        "ValidationException",
        "1 validation error detected: Value '[invalidarch, x86_64]' at "
        "'compatibleArchitectures' failed to satisfy constraint: Member must satisfy "
        "constraint: [Member must satisfy enum value set: [x86_64, arm64]]",
        400,
    )


def test_environment_variable_names_are_not_echoed_back(
    lambda_client: Any, unique_name: Callable[[str], str]
) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function(
            **create_params(unique_name("env"), Environment={"Variables": {"1SECRET": "x"}})
        )
    assert error_of(excinfo) == (
        "ValidationException",
        "1 validation error detected: Value at 'environment.variables' failed to satisfy "
        "constraint: Map keys must satisfy constraint: [Member must satisfy regular expression "
        "pattern: [a-zA-Z]([a-zA-Z0-9_])+, Member must not be null]",
        400,
    )


# ----------------------------------------------------------------------- names

LONG_NAME = "a" * 65


def test_creating_a_function_with_a_name_over_64_characters(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function(**create_params(LONG_NAME))
    assert error_of(excinfo) == (
        "ValidationException",
        f"1 validation error detected: Value '{LONG_NAME}' at 'functionName' failed to satisfy "
        "constraint: Member must have length less than or equal to 64",
        400,
    )


@pytest.mark.parametrize("operation", ["get_function", "delete_function"])
def test_a_name_over_64_characters_is_simply_not_found(lambda_client: Any, operation: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        getattr(lambda_client, operation)(FunctionName=LONG_NAME)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Function not found: {ARN}:{LONG_NAME}",
        404,
    )


def test_reserved_concurrency_of_a_missing_function_names_its_latest(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_concurrency(
            FunctionName="doesnotexist", ReservedConcurrentExecutions=1
        )
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Function not found: {ARN}:doesnotexist:$LATEST",
        404,
    )


def test_deleting_a_missing_function_by_version_names_the_function(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.delete_function(FunctionName="doesnotexist", Qualifier="1")
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Function not found: {ARN}:doesnotexist",
        404,
    )


# ---------------------------------------------------- other regions and accounts


@pytest.mark.parametrize("operation", ["get_function", "invoke", "get_function_concurrency"])
def test_a_function_in_another_region_is_not_reachable(lambda_client: Any, operation: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        getattr(lambda_client, operation)(
            FunctionName="arn:aws:lambda:us-east-2:000000000000:function:elsewhere"
        )
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        "Functions from 'us-east-2' are not reachable in this region ('us-east-1')",
        404,
    )


@pytest.mark.parametrize(
    ("operation", "action"), [("get_function", "GetFunction"), ("invoke", "InvokeFunction")]
)
def test_a_function_in_another_account_is_access_denied(
    lambda_client: Any, operation: str, action: str
) -> None:
    arn = "arn:aws:lambda:us-east-1:111122223333:function:theirs"
    with pytest.raises(ClientError) as excinfo:
        getattr(lambda_client, operation)(FunctionName=arn)
    assert error_of(excinfo) == (
        "AccessDeniedException",
        f"User: arn:aws:iam::000000000000:root is not authorized to perform: lambda:{action} "
        f"on resource: {arn} because no resource-based policy allows the lambda:{action} "
        "action",
        403,
    )


def test_creating_a_function_in_another_account_is_denied_without_a_message(
    lambda_client: Any,
) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function(
            **create_params("arn:aws:lambda:us-east-1:111122223333:function:theirs")
        )
    assert error_of(excinfo) == ("AccessDeniedException", "", 403)


# ------------------------------------------------------------- request size

# Just over AWS's CreateFunction limit once base64-encoded in the JSON body, and under the
# size at which Lamina stops reading a body at all.
_OVERSIZED_ZIP_BYTES = 52_630_000


def test_an_oversized_create_function_request(
    lambda_client: Any, unique_name: Callable[[str], str]
) -> None:
    code = {"ZipFile": b"\0" * _OVERSIZED_ZIP_BYTES}
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function(**create_params(unique_name("big"), Code=code))
    assert error_of(excinfo) == (
        "RequestEntityTooLargeException",
        "Request must be smaller than 70167211 bytes for the CreateFunction operation",
        413,
    )
