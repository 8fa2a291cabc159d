"""AWS's error texts for a function's sub-resources: async-invoke configs, URL configs,
aliases, versions, layers, concurrency, permissions and code-signing configs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.lambda_api import error_of

ARN = "arn:aws:lambda:us-east-1:000000000000:function"
LAYER_ARN = "arn:aws:lambda:us-east-1:000000000000:layer"
CSC_ARN = "arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-0123456789abcdefg"
QUEUE = "arn:aws:sqs:us-east-1:000000000000:failures"


@pytest.fixture
def function(lambda_client: Any, create_function: Callable[..., Any]) -> Callable[..., str]:
    """A new function, Active (with version 1 when published), by name."""

    def make(**overrides: Any) -> str:
        name: str = create_function(**overrides)["FunctionName"]
        lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)
        return name

    return make


@pytest.fixture
def layer(lambda_client: Any, unique_name: Callable[[str], str]) -> str:
    name = unique_name("layer")
    lambda_client.publish_layer_version(LayerName=name, Content={"ZipFile": make_zip()})
    return name


# ------------------------------------------------------------- async invoke


def test_a_function_without_an_event_invoke_config(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function()
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function_event_invoke_config(FunctionName=name)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"The function {ARN}:{name}:$LATEST doesn't have an EventInvokeConfig",
        404,
    )


def test_a_missing_functions_event_invoke_config(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.delete_function_event_invoke_config(FunctionName="doesnotexist")
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"The function {ARN}:doesnotexist:$LATEST doesn't have an EventInvokeConfig",
        404,
    )


def test_putting_an_event_invoke_config_on_a_missing_function(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_event_invoke_config(
            FunctionName="doesnotexist", MaximumRetryAttempts=1
        )
    assert error_of(excinfo) == ("ResourceNotFoundException", "The function doesn't exist.", 404)


def test_an_event_invoke_config_that_sets_nothing(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_event_invoke_config(FunctionName=function())
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "You must specify at least one of error handling or destination setting.",
        400,
    )


def test_a_function_cannot_be_its_own_destination(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function()
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_event_invoke_config(
            FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": f"{ARN}:{name}"}}
        )
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "You can't specify the function as a destination for itself.",
        400,
    )


def test_a_destination_of_an_unsupported_kind(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    bucket = "arn:aws:s3:::events"
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_event_invoke_config(
            FunctionName=function(),
            DestinationConfig={
                "OnSuccess": {"Destination": bucket},
                "OnFailure": {"Destination": QUEUE},
            },
        )
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "The provided destination config DestinationConfig(onSuccess=OnSuccess(destination="
        f"{bucket}), onFailure=OnFailure(destination={QUEUE})) is invalid.",
        400,
    )


# -------------------------------------------------------------- URL configs


def test_a_function_without_a_url_config(lambda_client: Any, function: Callable[..., str]) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_function_url_config(FunctionName=function())
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        "The resource you requested does not exist.",
        404,
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda client: client.create_function_url_config(
            FunctionName="doesnotexist", AuthType="NONE"
        ),
        lambda client: client.update_function_url_config(
            FunctionName="doesnotexist", AuthType="NONE"
        ),
        lambda client: client.list_function_url_configs(FunctionName="doesnotexist"),
    ],
    ids=["create", "update", "list"],
)
def test_a_url_config_of_a_missing_function(lambda_client: Any, call: Callable[[Any], Any]) -> None:
    with pytest.raises(ClientError) as excinfo:
        call(lambda_client)
    assert error_of(excinfo) == ("ResourceNotFoundException", "Function does not exist", 404)


def test_a_second_url_config(lambda_client: Any, function: Callable[..., str]) -> None:
    name = function()
    lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    with pytest.raises(ClientError) as excinfo:
        lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert error_of(excinfo) == (
        "ResourceConflictException",
        f"Failed to create function url config for [functionArn = {ARN}:{name}]. "
        "Error message:  FunctionUrlConfig exists for this Lambda function",
        409,
    )


# ---------------------------------------------------------- aliases, versions


def test_a_missing_alias(lambda_client: Any, function: Callable[..., str]) -> None:
    name = function()
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_alias(FunctionName=name, Name="ghost", Description="x")
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Cannot find alias arn: {ARN}:{name}:ghost",
        404,
    )


def test_deleting_latest_by_qualifier(lambda_client: Any, function: Callable[..., str]) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.delete_function(FunctionName=function(), Qualifier="$LATEST")
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "$LATEST version cannot be deleted without deleting the function.",
        400,
    )


# ------------------------------------------------------------------- layers


def test_a_function_naming_a_missing_layer_version(
    lambda_client: Any, function: Callable[..., str], layer: str
) -> None:
    missing = f"{LAYER_ARN}:{layer}:9"
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_function_configuration(FunctionName=function(), Layers=[missing])
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        f"Layer version {missing} does not exist.",
        400,
    )


def test_a_function_naming_a_layer_in_another_region(
    lambda_client: Any, function: Callable[..., str], layer: str
) -> None:
    elsewhere = f"arn:aws:lambda:us-east-2:000000000000:layer:{layer}:1"
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_function_configuration(FunctionName=function(), Layers=[elsewhere])
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Layers are not in the same region as the function. Layers are expected to be in "
        "region us-east-1.",
        400,
    )


def test_a_function_naming_two_versions_of_one_layer(
    lambda_client: Any, function: Callable[..., str], layer: str
) -> None:
    lambda_client.publish_layer_version(LayerName=layer, Content={"ZipFile": make_zip()})
    first, second = f"{LAYER_ARN}:{layer}:1", f"{LAYER_ARN}:{layer}:2"
    with pytest.raises(ClientError) as excinfo:
        lambda_client.update_function_configuration(FunctionName=function(), Layers=[first, second])
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Two different versions of the same layer are not allowed to be referenced in the "
        f"same function. {first} and {second} are versions of the same layer.",
        400,
    )


def test_permissions_of_a_missing_layer_version(lambda_client: Any, layer: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_layer_version_policy(LayerName=layer, VersionNumber=2)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Layer version {LAYER_ARN}:{layer}:2 does not exist.",
        404,
    )


def test_a_layer_version_below_one(lambda_client: Any, layer: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_layer_version(LayerName=layer, VersionNumber=0)
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Layer Version Cannot be less than 1",
        400,
    )


def test_a_layer_statement_id_that_exists(lambda_client: Any, layer: str) -> None:
    grant = {
        "LayerName": layer,
        "VersionNumber": 1,
        "StatementId": "s1",
        "Action": "lambda:GetLayerVersion",
        "Principal": "*",
    }
    lambda_client.add_layer_version_permission(**grant)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_layer_version_permission(**grant)
    assert error_of(excinfo) == (
        "ResourceConflictException",
        "The statement id (s1) provided already exists. Please provide a new statement id, or "
        "remove the existing statement.",
        409,
    )


def test_a_stale_layer_policy_revision(lambda_client: Any, layer: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_layer_version_permission(
            LayerName=layer,
            VersionNumber=1,
            StatementId="s1",
            Action="lambda:GetLayerVersion",
            Principal="*",
            RevisionId="stale",
        )
    assert error_of(excinfo) == (
        "PreconditionFailedException",
        "The Revision Id provided does not match the latest Revision Id. Call the "
        "GetLayerPolicy API to retrieve the latest Revision Id",
        412,
    )


# -------------------------------------------------------------- concurrency


def test_reserved_concurrency_on_a_qualified_name(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function(Publish=True)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_concurrency(
            FunctionName=f"{name}:1", ReservedConcurrentExecutions=1
        )
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "This operation is permitted on Lambda functions only. Aliases and versions do not "
        "support this operation. Please specify either a function name or an unqualified "
        "function ARN.",
        400,
    )


def test_provisioned_concurrency_of_latest(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_provisioned_concurrency_config(
            FunctionName=function(), Qualifier="$LATEST"
        )
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "The function resource provided must be an alias or a published version.",
        400,
    )


def test_provisioned_concurrency_of_a_missing_alias(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_provisioned_concurrency_config(
            FunctionName="doesnotexist", Qualifier="noalias", ProvisionedConcurrentExecutions=1
        )
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Cannot find alias arn: {ARN}:doesnotexist:noalias",
        404,
    )


def test_deleting_provisioned_concurrency_that_is_not_there(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    response = lambda_client.delete_provisioned_concurrency_config(
        FunctionName=function(Publish=True), Qualifier="1"
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204


# -------------------------------------------------------------- permissions


def test_a_function_statement_id_that_exists(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    name = function()
    grant = {
        "FunctionName": name,
        "StatementId": "s3",
        "Action": "lambda:InvokeFunction",
        "Principal": "s3.amazonaws.com",
    }
    lambda_client.add_permission(**grant)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_permission(**grant)
    assert error_of(excinfo) == (
        "ResourceConflictException",
        "The statement id (s3) provided already exists. Please provide a new statement id, or "
        "remove the existing statement.",
        409,
    )


def test_a_permission_on_latest(lambda_client: Any, function: Callable[..., str]) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_permission(
            FunctionName=function(),
            StatementId="s3",
            Action="lambda:InvokeFunction",
            Principal="s3.amazonaws.com",
            Qualifier="$LATEST",
        )
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "We currently do not support adding policies for $LATEST.",
        400,
    )


def test_a_permission_on_a_missing_alias(lambda_client: Any, function: Callable[..., str]) -> None:
    name = function()
    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_permission(
            FunctionName=name,
            StatementId="s3",
            Action="lambda:InvokeFunction",
            Principal="s3.amazonaws.com",
            Qualifier="alias-doesnotexist",
        )
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Cannot find alias arn: {ARN}:{name}:alias-doesnotexist",
        404,
    )


def test_an_invalid_principal(lambda_client: Any, function: Callable[..., str]) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.add_permission(
            FunctionName=function(),
            StatementId="s3",
            Action="lambda:InvokeFunction",
            Principal="nobody",
        )
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "The provided principal was invalid. Please check the principal and try again.",
        400,
    )


def test_removing_a_permission_of_a_missing_function(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.remove_permission(FunctionName="doesnotexist", StatementId="s3")
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"No policy found for: {ARN}:doesnotexist",
        404,
    )


def test_removing_a_permission_from_a_function_without_a_policy(
    lambda_client: Any, function: Callable[..., str]
) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.remove_permission(FunctionName=function(), StatementId="s3")
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        "No policy is associated with the given resource.",
        404,
    )


def test_the_policy_of_a_missing_version(lambda_client: Any, function: Callable[..., str]) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_policy(FunctionName=function(), Qualifier="42")
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        "The resource you requested does not exist.",
        404,
    )


# ------------------------------------------------------------- code signing


def test_a_missing_code_signing_config(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.get_code_signing_config(CodeSigningConfigArn=CSC_ARN)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"The Lambda code signing configuration {CSC_ARN} can not be found.",
        404,
    )


def test_attaching_a_missing_code_signing_config(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        lambda_client.put_function_code_signing_config(
            CodeSigningConfigArn=CSC_ARN, FunctionName="doesnotexist"
        )
    assert error_of(excinfo) == (
        "CodeSigningConfigNotFoundException",
        "The code signing configuration cannot be found. Check that the provided configuration "
        f"is not deleted: {CSC_ARN}.",
        404,
    )
